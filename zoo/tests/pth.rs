//! PyTorch state dicts in both of PyTorch's formats (zoo/tests/data/pth, written without
//! PyTorch by scripts/make-pth-fixtures.py as torch.save lays them out): the zip format and the
//! legacy one, with a strided view, a storage offset and an i64 scalar; truncated and foreign
//! files are errors.

use sfumato_core::DType;
use sfumato_zoo::pth::load_pth;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/pth")
        .join(name)
}

#[test]
fn both_formats_read_views_offsets_and_dtypes() {
    for file in ["tiny-zip.pth", "tiny-legacy.pth"] {
        let t = load_pth(&data(file), None).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(t.len(), 4, "{file}");
        assert_eq!(t["w"].dims(), &[2, 3]);
        assert_eq!(t["w"].to_f32_vec(), vec![0., 1., 2., 3., 4., 5.], "{file}");
        // The transposed view (strides 1, 3) of the same storage.
        assert_eq!(t["t"].dims(), &[3, 2]);
        assert_eq!(t["t"].to_f32_vec(), vec![0., 3., 1., 4., 2., 5.], "{file}");
        // Offset 2 into a storage of 5.
        assert_eq!(t["b"].to_f32_vec(), vec![10., 11., 12.], "{file}");
        assert_eq!(t["n"].dtype(), DType::I64);
        assert_eq!(t["n"].to_i64_vec(), vec![7], "{file}");
    }
}

#[test]
fn truncated_and_foreign_files_are_errors() {
    let dir = std::env::temp_dir().join(format!("sfumato-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["tiny-zip.pth", "tiny-legacy.pth"] {
        let full = std::fs::read(data(file)).unwrap();
        for cut in [0, 3, 20, full.len() / 2, full.len() - 1] {
            let p = dir.join(format!("cut-{cut}-{file}"));
            std::fs::write(&p, &full[..cut]).unwrap();
            let e = load_pth(&p, None).unwrap_err().to_string();
            assert!(
                e.contains(&format!("cut-{cut}-")),
                "{file} cut at {cut}: {e}"
            );
        }
    }
    let p = dir.join("model.safetensors.pth");
    std::fs::write(&p, b"{\"not\": \"a pickle\"}").unwrap();
    let e = load_pth(&p, None).unwrap_err().to_string();
    assert!(e.contains("not a PyTorch file"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
