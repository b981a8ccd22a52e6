//! Object-detection pre- and post-processing on plain buffers: Ultralytics-style letterboxing,
//! YOLOv5 / YOLOv8 output decoding, non-maximum suppression, and drawing boxes and labels.
//!
//! Images are `width × height` RGB8 buffers, row-major, 3 bytes a pixel, no row padding.
//! Nothing here panics on odd input: zero-size images, buffers shorter than `width × height × 3`
//! (the missing pixels read as black and are never written), boxes partly or wholly outside
//! the image, NaN and infinite coordinates.
//!
//! The usual pipeline: [`letterbox`] the image to the model's square input, run the model,
//! decode its output with [`decode_yolov8`] or [`decode_yolov5`] (boxes in input pixels), keep
//! the best boxes with [`nms`], map them back with [`Letterbox::to_original`], then
//! [`draw_box`] and [`draw_label`] with colours from [`palette`].

use std::cmp::Ordering;

/// The grey Ultralytics pads letterboxed images with: 114 of 255 in every channel.
pub const PAD_VALUE: f32 = 114.0 / 255.0;

/// How [`letterbox`] placed an image in the square model input, to map boxes back with
/// [`Letterbox::to_original`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Input pixels per original pixel: `min(size / width, size / height)` (0 for an empty
    /// image).
    pub scale: f32,
    /// Columns of padding left of the image (a whole number).
    pub pad_x: f32,
    /// Rows of padding above the image (a whole number).
    pub pad_y: f32,
    /// The side of the square input, in pixels.
    pub size: usize,
    /// The original image's width, which [`Letterbox::to_original`] clips to.
    pub width: usize,
    /// The original image's height, which [`Letterbox::to_original`] clips to.
    pub height: usize,
}

impl Letterbox {
    /// Map a box `[x1, y1, x2, y2]` in input pixels back to original pixels:
    /// `(x - pad_x) / scale`, `(y - pad_y) / scale`, then clipped to `[0, width]` and
    /// `[0, height]` as Ultralytics' `scale_boxes` does. NaN coordinates become 0.
    pub fn to_original(self, bbox: [f32; 4]) -> [f32; 4] {
        let (w, h) = (self.width as f32, self.height as f32);
        // f32::max returns the other operand for NaN, so NaN (also from a scale of 0) maps to 0.
        let x = |v: f32| ((v - self.pad_x) / self.scale).max(0.0).min(w);
        let y = |v: f32| ((v - self.pad_y) / self.scale).max(0.0).min(h);
        [x(bbox[0]), y(bbox[1]), x(bbox[2]), y(bbox[3])]
    }
}

/// Source positions of one output axis for bilinear resizing: for each output index, the two
/// neighbouring source indices and the weight of the second.
fn axis_taps(src: usize, dst: usize) -> Vec<(usize, usize, f32)> {
    let ratio = src as f64 / dst as f64;
    (0..dst)
        .map(|d| {
            // Half-pixel centres: output pixel d covers source position (d + 0.5) * ratio - 0.5.
            let s = ((d as f64 + 0.5) * ratio - 0.5).max(0.0);
            let i0 = s.floor() as usize;
            if i0 >= src - 1 {
                (src - 1, src - 1, 0.0)
            } else {
                (i0, i0 + 1, (s - i0 as f64) as f32)
            }
        })
        .collect()
}

/// Resize and pad an RGB8 image into a `size × size` model input the way Ultralytics does for
/// YOLO models, returning the input as `f32` CHW (RGB planes, values in `[0, 1]`, length
/// `3 × size × size`) and where the image went.
///
/// - Scale: `scale = min(size / w, size / h)`; the resized image is `round(w × scale)` by
///   `round(h × scale)` pixels (rounded half away from zero, at least 1, at most `size`).
/// - Resampling: bilinear with half-pixel centres, as OpenCV's `cv2.INTER_LINEAR`: output
///   pixel `d` samples source position `s = (d + 0.5) × src / dst − 0.5`, with `s < 0` taken as
///   0 and positions past the last pixel taken as the last pixel (edge replication); the two
///   neighbours are weighted `1 − frac(s)` and `frac(s)`, rows after columns. The arithmetic
///   is `f32` with no rounding to 8 bits in between (OpenCV rounds its 11-bit fixed-point
///   result to `u8`), so values may differ from a cv2 pipeline by about 1/255. Like
///   `INTER_LINEAR` there is no anti-aliasing when shrinking.
/// - Padding: the rest is grey [`PAD_VALUE`], the image centred. With `d` pixels of padding
///   along an axis, `d / 2` (rounded down) go before the image and the rest after, so an odd
///   pixel goes right / below: Ultralytics' `round(d / 2 − 0.1)` and `round(d / 2 + 0.1)`.
///
/// An empty image (`w` or `h` 0) gives an all-grey input with scale 0; a buffer shorter than
/// `w × h × 3` reads black for the missing pixels; a `size` whose input would not fit in
/// memory's address space gives an empty vector.
pub fn letterbox(rgb: &[u8], w: usize, h: usize, size: usize) -> (Vec<f32>, Letterbox) {
    let mut info = Letterbox {
        scale: 0.0,
        pad_x: 0.0,
        pad_y: 0.0,
        size,
        width: w,
        height: h,
    };
    let Some(plane) = size.checked_mul(size) else {
        return (Vec::new(), info);
    };
    let Some(total) = plane.checked_mul(3) else {
        return (Vec::new(), info);
    };
    let mut out = vec![PAD_VALUE; total];
    if w == 0 || h == 0 || size == 0 {
        return (out, info);
    }
    let scale = (size as f64 / w as f64).min(size as f64 / h as f64);
    let new_w = ((w as f64 * scale).round() as usize).clamp(1, size);
    let new_h = ((h as f64 * scale).round() as usize).clamp(1, size);
    let (pad_x, pad_y) = ((size - new_w) / 2, (size - new_h) / 2);
    info.scale = scale as f32;
    info.pad_x = pad_x as f32;
    info.pad_y = pad_y as f32;

    let xs = axis_taps(w, new_w);
    let ys = axis_taps(h, new_h);
    // One source pixel's channel, black where the buffer ends (or the index would overflow).
    let px = |y: usize, x: usize, c: usize| -> f32 {
        y.checked_mul(w)
            .and_then(|i| i.checked_add(x))
            .and_then(|i| i.checked_mul(3))
            .and_then(|i| i.checked_add(c))
            .and_then(|i| rgb.get(i))
            .map_or(0.0, |&v| f32::from(v))
    };
    for (c, out_plane) in out.chunks_exact_mut(plane).enumerate() {
        let rows = out_plane.chunks_exact_mut(size).skip(pad_y);
        for (out_row, &(y0, y1, fy)) in rows.zip(&ys) {
            for (o, &(x0, x1, fx)) in out_row[pad_x..].iter_mut().zip(&xs) {
                let top = px(y0, x0, c) * (1.0 - fx) + px(y0, x1, c) * fx;
                let bottom = px(y1, x0, c) * (1.0 - fx) + px(y1, x1, c) * fx;
                *o = (top * (1.0 - fy) + bottom * fy) / 255.0;
            }
        }
    }
    (out, info)
}

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Class index (into `coco-classes.txt` for COCO-trained YOLO models).
    pub class: usize,
    /// Confidence in `[0, 1]` for well-formed model outputs.
    pub score: f32,
    /// `[x1, y1, x2, y2]`, in original-image pixels once mapped with
    /// [`Letterbox::to_original`] (the decoders return model-input pixels).
    pub bbox: [f32; 4],
}

/// Centre, width, height to corners.
fn xywh_to_xyxy(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

/// Decode a YOLOv8 (also YOLOv11) detection output `[1, 4 + nc, N]`: channel-major, so row `r`
/// holds the `N = anchors` values of channel `r`. Rows 0 to 3 are the box centre x, centre y,
/// width and height in model-input pixels; rows 4 onward are the `nc` class scores, already
/// sigmoided. A detection's score is the largest class score and its class that score's index
/// (the first on ties; NaN scores are skipped); detections with `score > score_threshold` (as
/// Ultralytics: strictly greater) are returned in anchor order, boxes in model-input pixels.
///
/// `pred` may be longer than `rows × anchors` (a batch: only the first image is decoded); it
/// returns nothing when `rows < 5` or `pred` is shorter.
pub fn decode_yolov8(
    pred: &[f32],
    rows: usize,
    anchors: usize,
    score_threshold: f32,
) -> Vec<Detection> {
    let Some(len) = rows.checked_mul(anchors) else {
        return Vec::new();
    };
    if rows < 5 || anchors == 0 || pred.len() < len {
        return Vec::new();
    }
    let mut channels = pred[..len].chunks_exact(anchors);
    let (Some(cx), Some(cy), Some(bw), Some(bh)) = (
        channels.next(),
        channels.next(),
        channels.next(),
        channels.next(),
    ) else {
        return Vec::new();
    };
    // Best (class, score) per anchor, one class row at a time (rows are contiguous).
    let mut best = vec![(0usize, f32::NEG_INFINITY); anchors];
    for (class, scores) in channels.enumerate() {
        for (b, &s) in best.iter_mut().zip(scores) {
            if s > b.1 {
                *b = (class, s);
            }
        }
    }
    let boxes = cx.iter().zip(cy).zip(bw).zip(bh);
    best.iter()
        .zip(boxes)
        .filter(|((_, score), _)| *score > score_threshold)
        .map(|(&(class, score), (((&x, &y), &w), &h))| Detection {
            class,
            score,
            bbox: xywh_to_xyxy(x, y, w, h),
        })
        .collect()
}

/// Decode a YOLOv5 detection output `[1, N, 5 + nc]`: row-major, so each of the `n` rows is
/// `cx, cy, w, h, objectness, nc class scores` (boxes in model-input pixels, scores already
/// sigmoided). A detection's score is the largest `objectness × class score`, its class that
/// score's index (the first on ties; NaN products are skipped); detections with
/// `score > score_threshold` are returned in row order.
///
/// `pred` may be longer than `n × cols` (only the first image is decoded); it returns nothing
/// when `cols < 6` or `pred` is shorter.
pub fn decode_yolov5(pred: &[f32], n: usize, cols: usize, score_threshold: f32) -> Vec<Detection> {
    let Some(len) = n.checked_mul(cols) else {
        return Vec::new();
    };
    if cols < 6 || pred.len() < len {
        return Vec::new();
    }
    pred[..len]
        .chunks_exact(cols)
        .filter_map(|row| {
            let obj = row[4];
            let mut best = (0usize, f32::NEG_INFINITY);
            for (class, &s) in row[5..].iter().enumerate() {
                if obj * s > best.1 {
                    best = (class, obj * s);
                }
            }
            (best.1 > score_threshold).then(|| Detection {
                class: best.0,
                score: best.1,
                bbox: xywh_to_xyxy(row[0], row[1], row[2], row[3]),
            })
        })
        .collect()
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes. A box with `x2 < x1` or `y2 < y1`
/// has no area; the result is 0 when the union is empty (or not a positive number, as with
/// NaN coordinates), and otherwise in `[0, 1]`.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    if a.iter().chain(b).any(|v| v.is_nan()) {
        return 0.0;
    }
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let union = area(a) + area(b) - inter;
    if union.is_nan() || union <= 0.0 {
        return 0.0;
    }
    let r = inter / union;
    if r.is_nan() {
        0.0
    } else {
        r.clamp(0.0, 1.0)
    }
}

/// Greedy non-maximum suppression. Detections with a NaN score are dropped; the rest are
/// sorted by score, highest first (a stable sort: equal scores keep their input order); then
/// each is kept unless it overlaps an already kept detection with [`iou`] strictly greater
/// than `iou_threshold` (torchvision's rule; equal to the threshold is kept). With `per_class`
/// only detections of the same class suppress each other (Ultralytics' default,
/// `agnostic=False`). At most `max_det` detections are returned, highest score first.
pub fn nms(
    mut dets: Vec<Detection>,
    iou_threshold: f32,
    per_class: bool,
    max_det: usize,
) -> Vec<Detection> {
    dets.retain(|d| !d.score.is_nan());
    dets.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal));
    let mut kept: Vec<Detection> = Vec::new();
    for d in dets {
        if kept.len() >= max_det {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| (!per_class || k.class == d.class) && iou(&k.bbox, &d.bbox) > iou_threshold);
        if !suppressed {
            kept.push(d);
        }
    }
    kept
}

/// An inclusive pixel rectangle, which may lie partly or wholly outside the image.
#[derive(Debug, Clone, Copy)]
struct Rect {
    x0: i64,
    y0: i64,
    x1: i64,
    y1: i64,
}

/// A length as i64, capped far beyond any real image so arithmetic on it cannot overflow.
fn ilen(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX).min(1 << 40)
}

/// Fill the part of `r` inside the image (and inside the buffer) with `color`.
fn fill(rgb: &mut [u8], w: usize, h: usize, r: Rect, color: [u8; 3]) {
    let (x0, y0) = (r.x0.max(0), r.y0.max(0));
    let (x1, y1) = (r.x1.min(ilen(w) - 1), r.y1.min(ilen(h) - 1));
    if x0 > x1 || y0 > y1 {
        return;
    }
    // All four are now in [0, w) or [0, h), so the casts are exact.
    let (x0, y0, x1, y1) = (x0 as usize, y0 as usize, x1 as usize, y1 as usize);
    let Some(stride) = w.checked_mul(3) else {
        return;
    };
    for row in rgb.chunks_exact_mut(stride).take(y1 + 1).skip(y0) {
        for p in row[x0 * 3..(x1 + 1) * 3].chunks_exact_mut(3) {
            p.copy_from_slice(&color);
        }
    }
}

/// The first pixel index whose centre is at or after coordinate `v` (`ceil(v − 0.5)`),
/// clamped to `[lo, hi]`; `v` must not be NaN.
fn first_px(v: f32, lo: i64, hi: i64) -> i64 {
    (f64::from(v) - 0.5).ceil().clamp(lo as f64, hi as f64) as i64
}

/// The last pixel index whose centre is at or before coordinate `v` (`floor(v − 0.5)`),
/// clamped to `[lo, hi]`; `v` must not be NaN.
fn last_px(v: f32, lo: i64, hi: i64) -> i64 {
    (f64::from(v) - 0.5).floor().clamp(lo as f64, hi as f64) as i64
}

/// Draw the outline of `bbox` (`[x1, y1, x2, y2]` in pixels; the corners may come in either
/// order) on an RGB8 image. The outline lies inside the box: its outer edge is the ring of
/// pixels whose centres are the outermost ones inside the box (columns `ceil(x1 − 0.5)` to
/// `floor(x2 − 0.5)`, rows likewise), and it is `thickness` pixels wide, growing inward; a box
/// holding no pixel centre still marks one pixel. Edges outside the image are not drawn (a
/// box partly outside shows only its visible edges). NaN coordinates or a zero thickness draw
/// nothing.
pub fn draw_box(
    rgb: &mut [u8],
    w: usize,
    h: usize,
    bbox: [f32; 4],
    color: [u8; 3],
    thickness: usize,
) {
    if w == 0 || h == 0 || thickness == 0 || bbox.iter().any(|v| v.is_nan()) {
        return;
    }
    let (iw, ih) = (ilen(w), ilen(h));
    let t = ilen(thickness).min(iw.max(ih) + 1);
    // Clamp far enough outside the image that edges off the image stay off it.
    let m = t + 2;
    let left = first_px(bbox[0].min(bbox[2]), -m, iw + m);
    let top = first_px(bbox[1].min(bbox[3]), -m, ih + m);
    let right = last_px(bbox[0].max(bbox[2]), -m, iw + m).max(left);
    let bottom = last_px(bbox[1].max(bbox[3]), -m, ih + m).max(top);
    let bands = [
        Rect {
            x0: left,
            y0: top,
            x1: right,
            y1: (top + t - 1).min(bottom),
        },
        Rect {
            x0: left,
            y0: (bottom - t + 1).max(top),
            x1: right,
            y1: bottom,
        },
        Rect {
            x0: left,
            y0: top,
            x1: (left + t - 1).min(right),
            y1: bottom,
        },
        Rect {
            x0: (right - t + 1).max(left),
            y0: top,
            x1: right,
            y1: bottom,
        },
    ];
    for band in bands {
        fill(rgb, w, h, band, color);
    }
}

/// Glyph width of the built-in font, in font pixels.
const GLYPH_W: usize = 5;
/// Glyph height of the built-in font, in font pixels.
const GLYPH_H: usize = 7;
/// Horizontal advance from one character to the next: the glyph and one pixel of space.
const ADVANCE: usize = GLYPH_W + 1;

/// The built-in 5×7 font: seven rows, top first, bit 4 the leftmost pixel. Covers A–Z (a–z
/// draw as upper case), 0–9, space and `_ - . : % ' , ( ) / ? ! +`; anything else draws as `?`.
fn glyph(c: char) -> [u8; GLYPH_H] {
    match c.to_ascii_uppercase() {
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ' ' => [0; GLYPH_H],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '\'' => [0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00],
        ',' => [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '!' => [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

/// Colours and size of a label drawn by [`draw_label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelStyle {
    /// Text colour.
    pub fg: [u8; 3],
    /// Background colour of the label's box.
    pub bg: [u8; 3],
    /// Pixels per font pixel (1 gives 5×7 glyphs; 0 is taken as 1, more than 64 as 64).
    pub scale: usize,
}

impl Default for LabelStyle {
    /// White text on black at scale 1.
    fn default() -> Self {
        LabelStyle {
            fg: [255, 255, 255],
            bg: [0, 0, 0],
            scale: 1,
        }
    }
}

/// Width and height in pixels of the label [`draw_label`] draws for `text` at `scale`: one
/// font pixel of margin around the text, each character 6 font pixels wide (5 and a space),
/// 9 font pixels high; `(0, 0)` for empty text.
pub fn label_size(text: &str, scale: usize) -> (usize, usize) {
    let s = scale.clamp(1, 64);
    let n = text.chars().count();
    if n == 0 {
        return (0, 0);
    }
    (
        n.saturating_mul(ADVANCE)
            .saturating_add(1)
            .saturating_mul(s),
        (GLYPH_H + 2) * s,
    )
}

/// Draw `text` in a filled box for the detection box whose top-left corner is `(x, y)`
/// (pixels, as in [`draw_box`]): the label's bottom row is the row just above the box's top
/// edge, its left column the box's left edge (or column 0); with no room above (the label
/// would start above row 0) it goes inside the box, its top row the box's top edge (or row 0).
/// If it would cross the right border it is moved left to end there (but not past column 0;
/// a box starting right of the image is not followed). What still falls outside the image
/// (text wider than the image, a label below the bottom) is clipped. The
/// size is [`label_size`]; the font is a built-in 5×7 one (letters in upper case; characters
/// it lacks draw as `?`). NaN coordinates or empty text draw nothing.
pub fn draw_label(
    rgb: &mut [u8],
    w: usize,
    h: usize,
    x: f32,
    y: f32,
    text: &str,
    style: LabelStyle,
) {
    let (lw, lh) = label_size(text, style.scale);
    if w == 0 || h == 0 || lw == 0 || x.is_nan() || y.is_nan() {
        return;
    }
    let s = ilen(style.scale.clamp(1, 64));
    let (iw, ih) = (ilen(w), ilen(h));
    let (lw, lh) = (ilen(lw), ilen(lh));
    let left = first_px(x, -1, iw + 1);
    let top = first_px(y, -lh - 1, ih + lh + 1);
    let ly = if top - lh >= 0 { top - lh } else { top.max(0) };
    // Moved left to fit only when the box starts inside the image (or left of it).
    let lx = if left >= iw {
        left
    } else {
        left.min(iw - lw).max(0)
    };
    let bg = Rect {
        x0: lx,
        y0: ly,
        x1: lx + lw - 1,
        y1: ly + lh - 1,
    };
    fill(rgb, w, h, bg, style.bg);
    let adv = ilen(ADVANCE) * s;
    for (i, c) in text.chars().enumerate() {
        let gx = lx + s + ilen(i) * adv;
        if gx >= iw {
            break;
        }
        for (r, bits) in glyph(c).iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (0x10 >> col) != 0 {
                    let px = gx + ilen(col) * s;
                    let py = ly + s + ilen(r) * s;
                    let dot = Rect {
                        x0: px,
                        y0: py,
                        x1: px + s - 1,
                        y1: py + s - 1,
                    };
                    fill(rgb, w, h, dot, style.fg);
                }
            }
        }
    }
}

/// Kelly's 22 colours of maximum contrast without white and black.
const KELLY: [[u8; 3]; 20] = [
    [0xFF, 0xB3, 0x00],
    [0x80, 0x3E, 0x75],
    [0xFF, 0x68, 0x00],
    [0xA6, 0xBD, 0xD7],
    [0xC1, 0x00, 0x20],
    [0xCE, 0xA2, 0x62],
    [0x81, 0x70, 0x66],
    [0x00, 0x7D, 0x34],
    [0xF6, 0x76, 0x8E],
    [0x00, 0x53, 0x8A],
    [0xFF, 0x7A, 0x5C],
    [0x53, 0x37, 0x7A],
    [0xFF, 0x8E, 0x00],
    [0xB3, 0x28, 0x51],
    [0xF4, 0xC8, 0x00],
    [0x7F, 0x18, 0x0D],
    [0x93, 0xAA, 0x00],
    [0x59, 0x33, 0x15],
    [0xF1, 0x3A, 0x13],
    [0x23, 0x2C, 0x16],
];

/// A colour for a class: Kelly's 20 contrasting colours (no white or black) for classes 0 to
/// 19, then hues stepped by the golden ratio with varying saturation and brightness, so
/// neighbouring classes differ clearly and every COCO class gets its own colour.
pub fn palette(class: usize) -> [u8; 3] {
    if let Some(c) = KELLY.get(class) {
        return *c;
    }
    let k = (class - KELLY.len()) as f64;
    let hue = (k * 0.618_033_988_749_895).fract() * 6.0;
    let sat = [0.85, 0.6, 0.95][class % 3];
    let val = [0.95, 0.8, 0.65, 0.9][class % 4];
    let sector = hue.floor();
    let f = hue - sector;
    let (p, q, t) = (
        val * (1.0 - sat),
        val * (1.0 - sat * f),
        val * (1.0 - sat * (1.0 - f)),
    );
    let (r, g, b) = match sector as u32 {
        0 => (val, t, p),
        1 => (q, val, p),
        2 => (p, val, t),
        3 => (p, q, val),
        4 => (t, p, val),
        _ => (val, p, q),
    };
    let byte = |v: f64| (v * 255.0).round().clamp(0.0, 255.0) as u8;
    [byte(r), byte(g), byte(b)]
}

/// Black or white, whichever reads better on `bg` (by Rec. 601 luma), for label text.
pub fn contrast_text(bg: [u8; 3]) -> [u8; 3] {
    let luma = 0.299 * f32::from(bg[0]) + 0.587 * f32::from(bg[1]) + 0.114 * f32::from(bg[2]);
    if luma > 150.0 {
        [0, 0, 0]
    } else {
        [255, 255, 255]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: usize, score: f32, bbox: [f32; 4]) -> Detection {
        Detection { class, score, bbox }
    }

    fn pixel(rgb: &[u8], w: usize, x: usize, y: usize) -> [u8; 3] {
        let i = (y * w + x) * 3;
        [rgb[i], rgb[i + 1], rgb[i + 2]]
    }

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn letterbox_200x100_to_64() {
        let (w, h, size) = (200, 100, 64);
        let rgb: Vec<u8> = [10u8, 20, 30].repeat(w * h);
        let (x, lb) = letterbox(&rgb, w, h, size);
        assert_eq!(x.len(), 3 * size * size);
        assert!(close(lb.scale, 0.32, 1e-7), "scale {}", lb.scale);
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 16.0));
        assert_eq!((lb.size, lb.width, lb.height), (64, 200, 100));
        let at = |c: usize, row: usize, col: usize| x[c * size * size + row * size + col];
        for c in 0..3 {
            let want = [10.0f32, 20.0, 30.0][c] / 255.0;
            for row in 0..size {
                for col in 0..size {
                    let v = at(c, row, col);
                    if (16..48).contains(&row) {
                        assert!(close(v, want, 1e-6), "c{c} ({col},{row}) = {v}");
                    } else {
                        assert_eq!(v, PAD_VALUE, "c{c} ({col},{row}) should be grey");
                    }
                }
            }
        }
        // Round trip: a box in original pixels, mapped forward by hand, comes back.
        let orig = [20.0f32, 10.0, 150.0, 90.0];
        let input = [
            20.0 * 0.32,
            10.0 * 0.32 + 16.0,
            150.0 * 0.32,
            90.0 * 0.32 + 16.0,
        ];
        let back = lb.to_original(input);
        for (b, o) in back.iter().zip(orig) {
            assert!(close(*b, o, 1e-3), "{back:?} vs {orig:?}");
        }
        // Boxes reaching into the padding are clipped to the image; NaN becomes 0.
        assert_eq!(
            lb.to_original([-5.0, 2.0, 70.0, 63.0]),
            [0.0, 0.0, 200.0, 100.0]
        );
        assert_eq!(lb.to_original([f32::NAN, 16.0, 0.0, 16.0])[0], 0.0);
    }

    #[test]
    fn letterbox_samples_half_pixel_centres_like_cv2() {
        // Upscale a 2x1 image (values 0 and 200) to 4: scale 2, 4x2 content, pad_y 1.
        // Output columns sample source x = -0.25 (clamped to 0), 0.25, 0.75, 1.25 (past the
        // last pixel: the last pixel), so 0, 50, 150, 200.
        let rgb = [0u8, 0, 0, 200, 200, 200];
        let (x, lb) = letterbox(&rgb, 2, 1, 4);
        assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (2.0, 0.0, 1.0));
        let want = [0.0f32, 50.0, 150.0, 200.0];
        for c in 0..3 {
            for row in 1..3 {
                for (col, wv) in want.iter().enumerate() {
                    let v = x[c * 16 + row * 4 + col];
                    assert!(
                        close(v, wv / 255.0, 1e-6),
                        "c{c} ({col},{row}) = {}",
                        v * 255.0
                    );
                }
            }
            for row in [0, 3] {
                assert!(x[c * 16 + row * 4..c * 16 + row * 4 + 4]
                    .iter()
                    .all(|&v| v == PAD_VALUE));
            }
        }
        // Downscale 4x2 to 2: scale 0.5, content 2x1 at row 0 (the odd pad row goes below).
        // Output pixel 0 samples (0.5, 0.5): the mean of the top-left 2x2 block.
        let vals: [u8; 8] = [0, 40, 80, 120, 160, 200, 240, 250];
        let rgb: Vec<u8> = vals.iter().flat_map(|&v| [v, v, v]).collect();
        let (x, lb) = letterbox(&rgb, 4, 2, 2);
        assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (0.5, 0.0, 0.0));
        assert!(close(
            x[0] * 255.0,
            (0.0 + 40.0 + 160.0 + 200.0) / 4.0,
            1e-3
        ));
        assert!(close(
            x[1] * 255.0,
            (80.0 + 120.0 + 240.0 + 250.0) / 4.0,
            1e-3
        ));
        assert_eq!(&x[2..4], &[PAD_VALUE, PAD_VALUE]);
    }

    #[test]
    fn letterbox_odd_padding_goes_right_and_below() {
        // 3x1 to 4: scale 4/3, content 4x1, 3 pad rows: 1 above, 2 below.
        let (x, lb) = letterbox(&[255; 9], 3, 1, 4);
        assert_eq!(lb.pad_y, 1.0);
        let rows: Vec<bool> = (0..4).map(|r| x[r * 4] == PAD_VALUE).collect();
        assert_eq!(rows, [true, false, true, true]);
        // 1x4 to 5: scale 1.25, content round(1.25) = 1 by 5, 4 pad columns: 2 left, 2 right.
        let (x, lb) = letterbox(&[255; 12], 1, 4, 5);
        assert_eq!((lb.pad_x, lb.pad_y), (2.0, 0.0));
        assert!(close(x[2], 1.0, 1e-6));
        assert_eq!(x[1], PAD_VALUE);
        assert_eq!(x[3], PAD_VALUE);
    }

    #[test]
    fn letterbox_odd_inputs_do_not_panic() {
        let (x, lb) = letterbox(&[], 0, 0, 8);
        assert_eq!(x.len(), 3 * 64);
        assert!(x.iter().all(|&v| v == PAD_VALUE));
        assert_eq!(lb.scale, 0.0);
        assert_eq!(lb.to_original([1.0, 2.0, 3.0, 4.0]), [0.0; 4]);
        // Buffer too short: missing pixels read black.
        let (x, _) = letterbox(&[255, 255, 255], 2, 2, 2);
        assert_eq!(x[0], 1.0);
        assert_eq!(x[3], 0.0);
        assert!(letterbox(&[1, 2, 3], 1, 1, 0).0.is_empty());
        assert!(letterbox(&[1, 2, 3], 1, 1, usize::MAX).0.is_empty());
        let (x, _) = letterbox(&[9; 3], usize::MAX, 1, 4);
        assert_eq!(x.len(), 48);
    }

    #[test]
    fn decode_yolov8_reads_channel_major() {
        // 3 classes, 3 anchors; row r holds channel r of every anchor.
        #[rustfmt::skip]
        let pred = [
            10.0, 50.0, 30.0, // cx
            20.0, 60.0, 40.0, // cy
            4.0, 8.0, 2.0, // w
            6.0, 8.0, 2.0, // h
            0.1, 0.2, 0.5, // class 0
            0.9, 0.2, f32::NAN, // class 1
            0.3, 0.2, 0.4, // class 2
        ];
        let d = decode_yolov8(&pred, 7, 3, 0.25);
        assert_eq!(
            d,
            [
                det(1, 0.9, [8.0, 17.0, 12.0, 23.0]),
                det(0, 0.5, [29.0, 39.0, 31.0, 41.0]),
            ]
        );
        // Strictly greater than the threshold.
        assert_eq!(decode_yolov8(&pred, 7, 3, 0.5).len(), 1);
        // Ties take the first class: anchor 1 at threshold 0.1.
        assert_eq!(decode_yolov8(&pred, 7, 3, 0.1)[1].class, 0);
        // A batch: extra values are ignored; bad shapes give nothing.
        let mut batch = pred.to_vec();
        batch.extend_from_slice(&[1.0; 21]);
        assert_eq!(decode_yolov8(&batch, 7, 3, 0.25), d);
        assert!(decode_yolov8(&pred[..20], 7, 3, 0.25).is_empty());
        assert!(decode_yolov8(&pred, 4, 3, 0.0).is_empty());
        assert!(decode_yolov8(&pred, 7, 0, 0.0).is_empty());
        assert!(decode_yolov8(&pred, usize::MAX, 3, 0.0).is_empty());
    }

    #[test]
    fn decode_yolov5_multiplies_objectness() {
        #[rustfmt::skip]
        let pred = [
            10.0, 10.0, 4.0, 2.0, 0.8, 0.5, 0.9,
            30.0, 30.0, 2.0, 2.0, 0.9, 0.2, 0.1,
            50.0, 50.0, 2.0, 2.0, 0.5, 0.6, 0.1,
        ];
        let d = decode_yolov5(&pred, 3, 7, 0.25);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].class, 1);
        assert!(close(d[0].score, 0.72, 1e-6));
        assert_eq!(d[0].bbox, [8.0, 9.0, 12.0, 11.0]);
        assert_eq!(d[1].class, 0);
        assert!(close(d[1].score, 0.3, 1e-6));
        assert!(decode_yolov5(&pred, 3, 5, 0.0).is_empty());
        assert!(decode_yolov5(&pred[..20], 3, 7, 0.0).is_empty());
        assert!(decode_yolov5(&pred, usize::MAX, 7, 0.0).is_empty());
    }

    #[test]
    fn iou_by_hand() {
        let a = [0.0, 0.0, 2.0, 2.0];
        assert_eq!(iou(&a, &a), 1.0);
        // Overlap 1x1, union 4 + 4 - 1 = 7.
        assert!(close(iou(&a, &[1.0, 1.0, 3.0, 3.0]), 1.0 / 7.0, 1e-7));
        // Contained: 4 / 16.
        assert_eq!(iou(&[0.0, 0.0, 4.0, 4.0], &[1.0, 1.0, 3.0, 3.0]), 0.25);
        // Half overlap along x: inter 2x1 = 2, union 3 + 3 - 2 = 4.
        assert_eq!(iou(&[0.0, 0.0, 3.0, 1.0], &[1.0, 0.0, 4.0, 1.0]), 0.5);
        // Touching edges and disjoint boxes.
        assert_eq!(iou(&a, &[2.0, 0.0, 4.0, 2.0]), 0.0);
        assert_eq!(iou(&a, &[5.0, 5.0, 6.0, 6.0]), 0.0);
        // Overlapping columns but separate rows (and the reverse).
        assert_eq!(iou(&a, &[0.0, 3.0, 2.0, 5.0]), 0.0);
        assert_eq!(iou(&a, &[3.0, 0.0, 5.0, 2.0]), 0.0);
        // Empty union, inverted boxes, NaN, infinities.
        assert_eq!(iou(&[1.0, 1.0, 1.0, 1.0], &[1.0, 1.0, 1.0, 1.0]), 0.0);
        assert_eq!(iou(&[2.0, 2.0, 0.0, 0.0], &a), 0.0);
        assert_eq!(iou(&[f32::NAN, 0.0, 2.0, 2.0], &a), 0.0);
        let inf = [
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::INFINITY,
        ];
        assert_eq!(iou(&inf, &inf), 0.0);
        assert_eq!(iou(&inf, &a), 0.0);
    }

    #[test]
    fn nms_suppresses_overlaps() {
        let dets = vec![
            det(0, 0.6, [1.0, 1.0, 11.0, 11.0]),
            det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.8, [20.0, 20.0, 30.0, 30.0]),
        ];
        let kept = nms(dets.clone(), 0.5, true, 100);
        assert_eq!(kept, [dets[1], dets[2]]);
    }

    #[test]
    fn nms_per_class() {
        let dets = vec![
            det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(1, 0.8, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.7, [0.0, 0.0, 10.0, 10.0]),
        ];
        assert_eq!(nms(dets.clone(), 0.5, true, 100), [dets[0], dets[1]]);
        assert_eq!(nms(dets.clone(), 0.5, false, 100), [dets[0]]);
    }

    #[test]
    fn nms_threshold_boundary() {
        // IoU exactly 0.5: kept at threshold 0.5, suppressed just below.
        let dets = vec![
            det(3, 0.9, [0.0, 0.0, 3.0, 1.0]),
            det(3, 0.8, [1.0, 0.0, 4.0, 1.0]),
        ];
        assert_eq!(nms(dets.clone(), 0.5, true, 10).len(), 2);
        assert_eq!(nms(dets.clone(), 0.499, true, 10), [dets[0]]);
        // NaN threshold suppresses nothing.
        assert_eq!(nms(dets, f32::NAN, true, 10).len(), 2);
    }

    #[test]
    fn nms_max_det_order_nan_and_ties() {
        let dets: Vec<Detection> = (0..10)
            .map(|i| {
                det(
                    0,
                    i as f32 / 10.0,
                    [i as f32 * 20.0, 0.0, i as f32 * 20.0 + 10.0, 10.0],
                )
            })
            .collect();
        let kept = nms(dets.clone(), 0.5, true, 3);
        assert_eq!(kept, [dets[9], dets[8], dets[7]]);
        assert!(nms(dets, 0.5, true, 0).is_empty());
        // NaN scores are dropped; equal scores keep input order (stable), so the first of two
        // identical boxes wins.
        let dets = vec![
            det(0, f32::NAN, [0.0, 0.0, 10.0, 10.0]),
            det(1, 0.5, [0.0, 0.0, 10.0, 10.0]),
            det(2, 0.5, [0.0, 0.0, 10.0, 10.0]),
        ];
        assert_eq!(nms(dets.clone(), 0.5, false, 10), [dets[1]]);
        let dets = vec![dets[2], dets[1]];
        assert_eq!(nms(dets.clone(), 0.5, false, 10), [dets[0]]);
    }

    #[test]
    fn draw_box_marks_edges_not_inside() {
        let (w, h) = (20, 20);
        let red = [255, 0, 0];
        let mut img = vec![0u8; w * h * 3];
        draw_box(&mut img, w, h, [5.0, 5.0, 15.0, 15.0], red, 1);
        // Pixels 5..=14 on the ring.
        for &(x, y) in &[
            (5, 5),
            (14, 5),
            (5, 14),
            (14, 14),
            (10, 5),
            (5, 10),
            (14, 10),
            (10, 14),
        ] {
            assert_eq!(pixel(&img, w, x, y), red, "({x},{y}) should be on the edge");
        }
        for &(x, y) in &[
            (6, 6),
            (10, 10),
            (13, 13),
            (4, 5),
            (15, 5),
            (5, 4),
            (5, 15),
            (0, 0),
        ] {
            assert_eq!(
                pixel(&img, w, x, y),
                [0; 3],
                "({x},{y}) should be untouched"
            );
        }
        let ring = img.chunks_exact(3).filter(|p| *p == red).count();
        assert_eq!(ring, 36);
        // Thickness 2 grows inward; corners may come swapped.
        let mut img = vec![0u8; w * h * 3];
        draw_box(&mut img, w, h, [15.0, 15.0, 5.0, 5.0], red, 2);
        assert_eq!(pixel(&img, w, 6, 6), red);
        assert_eq!(pixel(&img, w, 13, 10), red);
        assert_eq!(pixel(&img, w, 7, 7), [0; 3]);
        assert_eq!(pixel(&img, w, 4, 4), [0; 3]);
    }

    #[test]
    fn draw_box_clips_at_borders() {
        let (w, h) = (10, 8);
        let c = [1, 2, 3];
        let mut img = vec![0u8; w * h * 3];
        // Top and left edges are outside: only the right (x 4) and bottom (y 4) edges show.
        draw_box(&mut img, w, h, [-10.0, -10.0, 5.0, 5.0], c, 1);
        let drawn: Vec<(usize, usize)> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .filter(|&(x, y)| pixel(&img, w, x, y) == c)
            .collect();
        let want: Vec<(usize, usize)> = (0..5)
            .flat_map(|y| (0..5).map(move |x| (x, y)))
            .filter(|&(x, y)| x == 4 || y == 4)
            .collect();
        assert_eq!(drawn, want);
        // Wholly outside, infinite, NaN, huge thickness, short buffer, empty image: no panic.
        let before = img.clone();
        draw_box(&mut img, w, h, [20.0, 20.0, 30.0, 30.0], c, 1);
        draw_box(&mut img, w, h, [f32::NAN, 0.0, 5.0, 5.0], c, 1);
        draw_box(&mut img, w, h, [0.0, 0.0, 5.0, 5.0], c, 0);
        assert_eq!(img, before);
        let inf = [
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
            f32::INFINITY,
            f32::INFINITY,
        ];
        draw_box(&mut img, w, h, inf, c, 1);
        assert_eq!(img, before);
        draw_box(&mut img, w, h, [1.0, 1.0, 9.0, 7.0], c, usize::MAX);
        assert_eq!(pixel(&img, w, 4, 3), c);
        draw_box(&mut [0u8; 5], w, h, [0.0, 0.0, 10.0, 8.0], c, 3);
        draw_box(&mut [], 0, 0, [0.0, 0.0, 1.0, 1.0], c, 1);
        draw_box(&mut [], usize::MAX, usize::MAX, [0.0, 0.0, 1.0, 1.0], c, 1);
    }

    fn painted_bounds(img: &[u8], w: usize, h: usize, c: [u8; 3]) -> Option<[usize; 4]> {
        let mut b: Option<[usize; 4]> = None;
        for y in 0..h {
            for x in 0..w {
                if pixel(img, w, x, y) == c {
                    let r = b.get_or_insert([x, y, x, y]);
                    *r = [r[0].min(x), r[1].min(y), r[2].max(x), r[3].max(y)];
                }
            }
        }
        b
    }

    #[test]
    fn draw_label_above_then_inside() {
        let (w, h) = (40, 30);
        let style = LabelStyle {
            fg: [255, 255, 255],
            bg: [0, 0, 200],
            scale: 1,
        };
        assert_eq!(label_size("A1", 1), (13, 9));
        assert_eq!(label_size("A1", 2), (26, 18));
        assert_eq!(label_size("", 1), (0, 0));
        let mut img = vec![0u8; w * h * 3];
        draw_label(&mut img, w, h, 5.0, 20.0, "A", style);
        // Background + text cover exactly columns 5..=11, rows 11..=19.
        let any = |img: &[u8]| {
            let mut b: Option<[usize; 4]> = None;
            for y in 0..h {
                for x in 0..w {
                    if pixel(img, w, x, y) != [0; 3] {
                        let r = b.get_or_insert([x, y, x, y]);
                        *r = [r[0].min(x), r[1].min(y), r[2].max(x), r[3].max(y)];
                    }
                }
            }
            b
        };
        assert_eq!(any(&img), Some([5, 11, 11, 19]));
        // The glyph: 'A' drawn at (6, 12), bit 4 leftmost.
        let a = glyph('A');
        for (r, bits) in a.iter().enumerate() {
            for col in 0..5 {
                let want = if bits & (0x10 >> col) != 0 {
                    style.fg
                } else {
                    style.bg
                };
                assert_eq!(pixel(&img, w, 6 + col, 12 + r), want, "A ({col},{r})");
            }
        }
        assert_eq!(pixel(&img, w, 5, 11), style.bg);
        // No room above: inside the box, from its top row.
        let mut img = vec![0u8; w * h * 3];
        draw_label(&mut img, w, h, 5.0, 3.0, "A", style);
        assert_eq!(any(&img), Some([5, 3, 11, 11]));
        let mut img = vec![0u8; w * h * 3];
        draw_label(&mut img, w, h, -7.0, -50.0, "A", style);
        assert_eq!(any(&img), Some([0, 0, 6, 8]));
    }

    #[test]
    fn draw_label_clips_at_borders() {
        let (w, h) = (20, 12);
        let style = LabelStyle {
            fg: [9, 9, 9],
            bg: [200, 0, 0],
            scale: 1,
        };
        // Crossing the right border: moved left to end at column 19.
        let mut img = vec![0u8; w * h * 3];
        draw_label(&mut img, w, h, 15.0, 10.0, "AB", style);
        assert_eq!(painted_bounds(&img, w, h, style.bg), Some([7, 1, 19, 9]));
        // Wider than the image: starts at 0, clipped on the right.
        let mut img = vec![0u8; w * h * 3];
        draw_label(&mut img, w, h, 3.0, 10.0, "PERSON 0.93", style);
        assert_eq!(painted_bounds(&img, w, h, style.bg), Some([0, 1, 19, 9]));
        // Taller than the image at scale 2: clipped at the bottom.
        let mut img = vec![0u8; w * h * 3];
        draw_label(
            &mut img,
            w,
            h,
            0.0,
            0.0,
            "A",
            LabelStyle { scale: 2, ..style },
        );
        assert_eq!(painted_bounds(&img, w, h, style.bg), Some([0, 0, 13, 11]));
        // Below the image: nothing; odd inputs: no panic.
        let mut img = vec![0u8; w * h * 3];
        draw_label(&mut img, w, h, 0.0, 1e9, "A", style);
        draw_label(&mut img, w, h, 25.0, 11.0, "A", style);
        assert!(img.iter().all(|&v| v == 0));
        draw_label(&mut img, w, h, f32::NAN, 0.0, "A", style);
        draw_label(&mut img, w, h, 0.0, 0.0, "", style);
        assert!(img.iter().all(|&v| v == 0));
        draw_label(
            &mut img,
            w,
            h,
            f32::INFINITY,
            f32::NEG_INFINITY,
            "x~é",
            style,
        );
        draw_label(&mut [0u8; 7], w, h, 0.0, 0.0, "abc", style);
        draw_label(&mut [], 0, 0, 0.0, 0.0, "abc", style);
        draw_label(
            &mut img,
            w,
            h,
            0.0,
            0.0,
            "A",
            LabelStyle {
                scale: usize::MAX,
                ..style
            },
        );
    }

    #[test]
    fn font_covers_the_required_characters() {
        let required: Vec<char> = ('A'..='Z')
            .chain('0'..='9')
            .chain("_-.:%".chars())
            .collect();
        let unknown = glyph('~');
        for (i, &a) in required.iter().enumerate() {
            let g = glyph(a);
            assert!(g.iter().all(|&r| r < 0x20), "{a} wider than 5");
            assert!(g.iter().any(|&r| r != 0), "{a} is blank");
            assert_ne!(g, unknown, "{a} falls back to '?'");
            for &b in &required[i + 1..] {
                assert_ne!(g, glyph(b), "{a} and {b} look the same");
            }
        }
        assert_eq!(glyph(' '), [0; 7]);
        for c in 'a'..='z' {
            assert_eq!(glyph(c), glyph(c.to_ascii_uppercase()));
        }
    }

    #[test]
    fn palette_colours_differ() {
        let colours: Vec<[u8; 3]> = (0..80).map(palette).collect();
        for (i, a) in colours.iter().enumerate() {
            for (j, b) in colours.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "classes {i} and {j}");
            }
        }
        // Neighbouring classes differ clearly (sum of channel differences).
        for (i, pair) in colours.windows(2).enumerate() {
            let d: i32 = (0..3)
                .map(|c| (i32::from(pair[0][c]) - i32::from(pair[1][c])).abs())
                .sum();
            assert!(d >= 60, "classes {i} and {} are too alike: {pair:?}", i + 1);
        }
        assert_eq!(palette(0), [0xFF, 0xB3, 0x00]);
        let _ = palette(usize::MAX);
        assert_eq!(contrast_text([255, 255, 0]), [0, 0, 0]);
        assert_eq!(contrast_text([0, 0, 128]), [255, 255, 255]);
    }
}
