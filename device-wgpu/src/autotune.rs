//! The matmul autotune cache: which kernel variant won, per adapter and shape class, on disk.
//!
//! The adapter key holds what decides kernel speed: adapter name, backend, driver and driver
//! info, and for a CPU adapter (lavapipe) the host CPU model too, since lavapipe reports one name
//! on CPUs whose best kernels differ.

use sfumato_shaders::MatmulVariant;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Winners per adapter key and shape class.
#[derive(Debug, Default)]
pub struct TuneCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, BTreeMap<String, String>>,
}

impl TuneCache {
    /// Load from `dir/autotune.json` (a missing or unreadable file is an empty cache).
    pub fn load(dir: Option<PathBuf>) -> Self {
        let path = dir.map(|d| d.join("autotune.json"));
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        TuneCache { path, entries }
    }

    pub fn get(&self, adapter: &str, class: &str) -> Option<MatmulVariant> {
        self.entries
            .get(adapter)?
            .get(class)
            .and_then(|v| MatmulVariant::from_name(v))
    }

    /// Record a winner and write the file (best effort: a read-only disk only loses the cache).
    pub fn put(&mut self, adapter: &str, class: &str, v: MatmulVariant) {
        self.entries
            .entry(adapter.to_string())
            .or_default()
            .insert(class.to_string(), v.name().to_string());
        if let Some(p) = &self.path {
            let write = || -> std::io::Result<()> {
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let tmp = p.with_extension("json.tmp");
                std::fs::write(&tmp, serde_json::to_string_pretty(&self.entries)?)?;
                std::fs::rename(tmp, p)
            };
            if let Err(e) = write() {
                tracing::warn!("could not write the autotune cache {}: {e}", p.display());
            }
        }
    }
}

/// `$SFUMATO_CACHE_DIR`, else `$XDG_CACHE_HOME/sfumato`, else `$HOME/.cache/sfumato`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SFUMATO_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("sfumato"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("sfumato"))
}
