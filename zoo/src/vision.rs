//! Images in: decoding with the `image` crate, resizing and cropping, and the per-model
//! normalisation, to an NCHW f32 tensor.

use crate::error::{Result, ZooError};
use image::imageops::FilterType;
use sfumato_core::Tensor;
use std::path::Path;

/// How pixel values become model inputs: `(x / 255 - mean) / std`, per channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalize {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalize {
    /// Scaled to [-1, 1] (TensorFlow's EfficientNet-Lite preprocessing).
    pub const SIGNED: Normalize = Normalize {
        mean: [0.5; 3],
        std: [0.5; 3],
    };
    /// ImageNet's mean and standard deviation (torchvision's models).
    pub const IMAGENET: Normalize = Normalize {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// [0, 1] (YOLO).
    pub const UNIT: Normalize = Normalize {
        mean: [0.0; 3],
        std: [1.0; 3],
    };
}

/// Decode an image file to RGB8: `(width, height, pixels)`.
pub fn load_rgb(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let bad = |msg: String| ZooError::Image {
        path: path.display().to_string(),
        msg,
    };
    let reader = image::ImageReader::open(path)
        .map_err(|e| bad(e.to_string()))?
        .with_guessed_format()
        .map_err(|e| bad(e.to_string()))?;
    let img = reader.decode().map_err(|e| {
        bad(format!(
            "not an image Sfumato can decode (PNG or JPEG): {e}"
        ))
    })?;
    let rgb = img.to_rgb8();
    let (w, h) = rgb.dimensions();
    if w == 0 || h == 0 {
        return Err(bad("the image is empty".into()));
    }
    Ok((w as usize, h as usize, rgb.into_raw()))
}

/// The classification preprocessing: resize the shorter side to `size * 256 / 224`
/// (bilinear), crop the centre `size` x `size`, normalise; `[1, 3, size, size]`.
pub fn center_crop_tensor(
    w: usize,
    h: usize,
    rgb: &[u8],
    size: usize,
    norm: Normalize,
) -> Result<Tensor> {
    let img = image::RgbImage::from_raw(w as u32, h as u32, rgb.to_vec())
        .ok_or_else(|| ZooError::Input(format!("{w}x{h} RGB needs {} bytes", w * h * 3)))?;
    let short = (size * 256).div_ceil(224) as f64;
    let scale = short / w.min(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(size as u32),
        ((h as f64 * scale).round() as u32).max(size as u32),
    );
    let resized = image::imageops::resize(&img, nw, nh, FilterType::Triangle);
    let (x0, y0) = ((nw as usize - size) / 2, (nh as usize - size) / 2);
    let mut out = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let px = resized.get_pixel((x0 + x) as u32, (y0 + y) as u32);
            for c in 0..3 {
                out[c * size * size + y * size + x] =
                    (px[c] as f32 / 255.0 - norm.mean[c]) / norm.std[c];
            }
        }
    }
    Ok(Tensor::from_f32([1, 3, size, size], out)?)
}
