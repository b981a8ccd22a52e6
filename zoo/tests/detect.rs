//! YOLOv8n (NudeNet's Ultralytics ONNX export, fetched from PyPI, never vendored: AGPL-3.0)
//! through the ONNX importer: on scikit-image's astronaut.png it finds her face (FACE_FEMALE,
//! score above 0.8) at 320 and 640, one detection of it after NMS at IoU 0.45 and score 0.25.
//! Skipped loudly without the registry; a failure under SFUMATO_REQUIRE_NETWORK=1.

mod common;

use sfumato_core::{CpuDevice, Device};
use sfumato_zoo::tasks::{detect, DetectOptions};

fn check(dev: &mut dyn Device, size: usize) {
    let (Some(m), Some(img)) = (
        common::cached_weights("yolov8n-nudenet"),
        common::cached_weights("skimage-data"),
    ) else {
        return;
    };
    let opts = DetectOptions {
        size,
        ..Default::default()
    };
    let r = detect(dev, &m.join("320n.onnx"), &img.join("astronaut.png"), &opts).unwrap();
    eprintln!("astronaut.png at {size}: {:#?}", r.found);
    let faces: Vec<_> = r
        .found
        .iter()
        .filter(|d| d.label == "FACE_FEMALE")
        .collect();
    assert_eq!(faces.len(), 1, "{:?}", r.found);
    let f = &faces[0].detection;
    assert!(f.score > 0.8, "face score {}", f.score);
    // Her face is in the upper middle of the 512x512 photo.
    let (cx, cy) = ((f.bbox[0] + f.bbox[2]) / 2.0, (f.bbox[1] + f.bbox[3]) / 2.0);
    assert!(
        (150.0..330.0).contains(&cx) && (40.0..200.0).contains(&cy),
        "{f:?}"
    );
    assert_eq!(r.drawn.len(), r.width * r.height * 3);
}

#[test]
fn yolov8n_finds_the_astronauts_face_at_320_on_the_cpu_reference() {
    check(&mut CpuDevice, 320);
}

#[test]
fn yolov8n_finds_the_astronauts_face_at_320_and_640_on_wgpu() {
    let Some(mut dev) = common::wgpu_device() else {
        return;
    };
    check(&mut dev, 320);
    check(&mut dev, 640);
    // One kernel per op of the graph as built: the same face.
    dev.set_optimization(sfumato_core::Optimization::AsBuilt);
    check(&mut dev, 320);
}

#[test]
fn ultralytics_names_parse() {
    let md = vec![(
        "names".to_string(),
        "{0: 'person', 1: \"bi,cycle\", 2: 'car'}".to_string(),
    )];
    assert_eq!(
        sfumato_zoo::tasks::ultralytics_names(&md),
        vec!["person", "bi,cycle", "car"]
    );
    assert!(sfumato_zoo::tasks::ultralytics_names(&[]).is_empty());
}

/// YOLOv5 from the builder runs the same post-processing (the numpy fixture's tiny 3-class
/// model on a synthetic image, on the CPU reference): boxes inside the image, scores above the
/// threshold, a drawn image of the input's size.
#[test]
fn yolov5_from_the_builder_detects_end_to_end() {
    use sfumato_zoo::params::Params;
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fixtures/yolov5.safetensors");
    let bytes = std::fs::read(&fixture).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let cfg = &meta.metadata().as_ref().unwrap()["config"];
    let cfg = sfumato_zoo::yolov5::YoloV5Config::from_json(cfg, "fixture").unwrap();
    let all = sfumato_zoo::weights::load_safetensors(&fixture).unwrap();
    let weights = all
        .into_iter()
        .filter(|(k, _)| !k.starts_with("input.") && !k.starts_with("output."))
        .collect();
    let mut p = Params::from_tensors("yolov5 fixture", &fixture, weights);
    let (w, h) = (100usize, 80usize);
    let rgb: Vec<u8> = (0..w * h * 3).map(|i| ((i * 7) % 251) as u8).collect();
    let img = std::env::temp_dir().join(format!("sfumato-yolov5-{}.png", std::process::id()));
    sfumato_zoo::tasks::save_png(&img, w, h, &rgb).unwrap();
    let opts = DetectOptions {
        size: 64,
        score_threshold: 0.01,
        ..Default::default()
    };
    let r = sfumato_zoo::tasks::detect_yolov5(&mut CpuDevice, &cfg, &mut p, &img, &opts).unwrap();
    p.finish().unwrap();
    assert_eq!((r.width, r.height, r.drawn.len()), (w, h, w * h * 3));
    assert!(
        !r.found.is_empty(),
        "a random model at threshold 0.01 finds something"
    );
    for d in &r.found {
        let b = d.detection.bbox;
        assert!(d.detection.score > 0.01 && d.detection.class < 3, "{d:?}");
        assert!(
            b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= w as f32 && b[3] <= h as f32,
            "{d:?}"
        );
    }
    let e = sfumato_zoo::tasks::detect_yolov5(
        &mut CpuDevice,
        &cfg,
        &mut Params::random("x", 1),
        &img,
        &DetectOptions {
            size: 50,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("multiple of 32"), "{e}");
    std::fs::remove_file(&img).ok();
}
