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
