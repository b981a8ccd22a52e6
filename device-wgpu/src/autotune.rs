//! The matmul autotune cache: which kernel variant won, per adapter and shape class, kept in a
//! [`TuneStore`] the host hands in (a file natively; memory only where there is none).
//!
//! The adapter key holds what decides kernel speed: adapter name, backend, driver and driver
//! info, and for a CPU adapter (lavapipe) the host CPU model too, since lavapipe reports one name
//! on CPUs whose best kernels differ.

use crate::host::TuneStore;
use sfumato_shaders::MatmulVariant;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Winners per adapter key and shape class.
#[derive(Debug, Default)]
pub struct TuneCache {
    store: Option<Arc<dyn TuneStore>>,
    entries: BTreeMap<String, BTreeMap<String, String>>,
}

impl TuneCache {
    /// Load from a store (a missing or unreadable one is an empty cache).
    pub fn load(store: Option<Arc<dyn TuneStore>>) -> Self {
        let entries = store
            .as_ref()
            .and_then(|s| s.load())
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        TuneCache { store, entries }
    }

    pub fn get(&self, adapter: &str, class: &str) -> Option<MatmulVariant> {
        self.entries
            .get(adapter)?
            .get(class)
            .and_then(|v| MatmulVariant::from_name(v))
    }

    /// Record a winner and save the store (best effort: a read-only disk only loses the cache).
    pub fn put(&mut self, adapter: &str, class: &str, v: MatmulVariant) {
        self.entries
            .entry(adapter.to_string())
            .or_default()
            .insert(class.to_string(), v.name().to_string());
        if let Some(s) = &self.store {
            let text = serde_json::to_string_pretty(&self.entries).unwrap_or_default();
            if let Err(e) = s.save(&text) {
                tracing::warn!("could not write the autotune cache {e}");
            }
        }
    }
}
