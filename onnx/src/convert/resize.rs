//! Resize: the modes the kernel has map onto it; the others run separably, as one matrix
//! product per resized axis.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use crate::tensor::MAX_ELEMENTS;
use sfumato_core::op::*;
use sfumato_core::{Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("Resize", Tensors(|c| c.resize())),
    // Upsample (opsets 7 to 9) is Resize-10: the input, the scales, the mode.
    ("Upsample", Tensors(|c| c.resize())),
];

impl Importer<'_> {
    /// Resize: the common 2-D cases (nearest with floor rounding, linear; half-pixel,
    /// align-corners, asymmetric; output size over input size as the scale) run on Sfumato's
    /// Resize kernel; every other case (cubic, antialiasing, the other nearest roundings and
    /// coordinate maps, `axes`, `keep_aspect_ratio_policy`, scales that are not out/in, any
    /// rank) runs separably, one constant interpolation matrix per resized axis
    /// ([`Importer::resize_separable`]).
    fn resize(&mut self) -> R<Vec<ValueId>> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let r = dims.len();
        let (roi_i, scales_i, sizes_i) = if self.opset < 11 {
            (usize::MAX, 1, usize::MAX)
        } else {
            (1, 2, 3)
        };
        let axes: Vec<usize> = match self.ais("axes") {
            Some(a) => {
                let a: Vec<usize> = a.iter().map(|&v| self.axis(v, r)).collect::<R<_>>()?;
                let mut u = a.clone();
                u.sort_unstable();
                u.dedup();
                if u.len() != a.len() {
                    return bad(format!("repeated axis in {a:?}"));
                }
                a
            }
            None => (0..r).collect(),
        };
        let n = axes.len();
        let mut out: Vec<usize> = dims.clone();
        let mut scale: Vec<f64> = vec![1.0; r];
        let given_sizes = self.has(sizes_i);
        if given_sizes {
            let s = self.const_ints(sizes_i)?;
            if s.len() != n || s.iter().any(|&v| v < 0) {
                return bad(format!("sizes {s:?} for axes {axes:?}"));
            }
            for (k, &a) in axes.iter().enumerate() {
                out[a] = s[k] as usize;
                scale[a] = s[k] as f64 / dims[a].max(1) as f64;
            }
            let policy = self.astr("keep_aspect_ratio_policy", "stretch");
            if policy != "stretch" {
                let ss = axes.iter().map(|&a| scale[a]);
                let one = match policy.as_str() {
                    "not_larger" => ss.fold(f64::INFINITY, f64::min),
                    "not_smaller" => ss.fold(0.0, f64::max),
                    other => return bad(format!("keep_aspect_ratio_policy '{other}'")),
                };
                for &a in &axes {
                    scale[a] = one;
                    out[a] = (one * dims[a] as f64 + 0.5) as usize;
                }
            }
        } else if self.has(scales_i) && self.const_in(scales_i)?.numel() > 0 {
            let s = self.const_in(scales_i)?.to_f64_vec();
            if s.len() != n || s.iter().any(|&v| v <= 0.0 || !v.is_finite()) {
                return bad(format!("scales {s:?} for axes {axes:?}"));
            }
            for (k, &a) in axes.iter().enumerate() {
                scale[a] = s[k];
                out[a] = (dims[a] as f64 * s[k]) as usize;
            }
        } else {
            return bad("neither scales nor sizes");
        }
        if out.iter().product::<usize>() > MAX_ELEMENTS {
            return bad(format!("output {out:?} is too large"));
        }
        let mut roi = vec![[0.0, 1.0]; r];
        let coord = self.astr(
            "coordinate_transformation_mode",
            if self.opset < 11 {
                "asymmetric"
            } else {
                "half_pixel"
            },
        );
        if coord == "tf_crop_and_resize" {
            let v = if self.has(roi_i) {
                self.const_in(roi_i)?.to_f64_vec()
            } else {
                Vec::new()
            };
            if v.len() != 2 * n {
                return bad(format!("roi {v:?} for axes {axes:?}"));
            }
            for (k, &a) in axes.iter().enumerate() {
                roi[a] = [v[k], v[n + k]];
            }
        }
        let spec = ResizeSpec {
            mode: self.astr("mode", "nearest"),
            // Upsample picks the source pixel by flooring (it repeats each pixel).
            nearest: self.astr(
                "nearest_mode",
                if self.op == "Upsample" {
                    "floor"
                } else {
                    "round_prefer_floor"
                },
            ),
            coord,
            cubic_a: self.af("cubic_coeff_a", -0.75) as f64,
            antialias: self.ai("antialias", 0) != 0,
            exclude_outside: self.ai("exclude_outside", 0) != 0,
            extrapolation: self.af("extrapolation_value", 0.0) as f64,
        };
        // Sfumato's Resize kernel: 4-D, only H and W resized, out/in as the scale.
        let kernel_mode = match (spec.mode.as_str(), spec.nearest.as_str()) {
            ("nearest", "floor") => Some(ResizeMode::Nearest),
            ("linear" | "bilinear", _) => Some(ResizeMode::Bilinear),
            _ => None,
        };
        let kernel_coord = match spec.coord.as_str() {
            "half_pixel" => Some(CoordTransform::HalfPixel),
            "pytorch_half_pixel" if r == 4 && out[2] > 1 && out[3] > 1 => {
                Some(CoordTransform::HalfPixel)
            }
            "align_corners" => Some(CoordTransform::AlignCorners),
            "asymmetric" => Some(CoordTransform::Asymmetric),
            _ => None,
        };
        let fits_kernel = r == 4
            && out[0] == dims[0]
            && out[1] == dims[1]
            && !spec.antialias
            && !spec.exclude_outside
            && (2..4).all(|d| (out[d] as f64 / dims[d].max(1) as f64 - scale[d]).abs() < 1e-6)
            && self.g.dtype(x).is_float();
        if let (true, Some(mode), Some(coord)) = (fits_kernel, kernel_mode, kernel_coord) {
            return self.add(
                Op::Resize {
                    mode,
                    coord,
                    size: [out[2], out[3]],
                },
                &[x],
            );
        }
        let plan: Vec<ResizeAxis> = axes
            .iter()
            .map(|&a| ResizeAxis {
                axis: a,
                input: dims[a],
                output: out[a],
                scale: scale[a],
                roi: roi[a],
            })
            .collect();
        Ok(vec![self.resize_separable(x, &spec, &plan)?])
    }

    /// Resize as one matrix product per resized axis: the axis is brought to the middle of an
    /// `[outer, in, inner]` view and multiplied by the constant `[out, in]` interpolation matrix;
    /// extrapolated rows (`tf_crop_and_resize`) take `extrapolation_value`. Axes that keep
    /// their size at scale 1 (and the whole region) are skipped, as in ONNX's reference.
    pub(super) fn resize_separable(
        &mut self,
        x: ValueId,
        spec: &ResizeSpec,
        axes: &[ResizeAxis],
    ) -> R<ValueId> {
        let dt = self.g.dtype(x);
        if !dt.is_float() {
            return unsup(format!("Resize of {dt} in mode '{}'", spec.mode));
        }
        if spec.antialias && spec.mode == "nearest" {
            return bad("antialias with mode 'nearest'");
        }
        let mut y = x;
        for a in axes {
            let identity = (a.scale - 1.0).abs() < 1e-9
                && a.output == a.input
                && a.roi[0].abs() < 1e-9
                && (a.roi[1] - 1.0).abs() < 1e-9;
            if identity {
                continue;
            }
            let mut dims = self.shape(y);
            if a.input == 0 && a.output > 0 {
                return bad(format!(
                    "cannot resize an empty axis {} to {}",
                    a.axis, a.output
                ));
            }
            if a.input.saturating_mul(a.output) > MAX_MATRIX {
                return unsup(format!(
                    "resizing axis {} from {} to {} needs a {}x{} interpolation matrix, over {MAX_MATRIX} elements",
                    a.axis, a.input, a.output, a.output, a.input
                ));
            }
            let outer: usize = dims[..a.axis].iter().product();
            let inner: usize = dims[a.axis + 1..].iter().product();
            let (w, outside) = spec.matrix(a)?;
            let w = self.konst(Tensor::from_f64(dt, [a.output, a.input], &w))?;
            let v = self.reshape(y, vec![outer, a.input, inner])?;
            let mut r = self.add1(Op::MatMul, &[w, v])?;
            if outside.iter().any(|&o| o) {
                let mask = self.konst(Tensor::from_bool([1, a.output, 1], outside)?)?;
                let e = self.scalar(dt, spec.extrapolation)?;
                r = self.add1(Op::Where, &[mask, e, r])?;
            }
            dims[a.axis] = a.output;
            y = self.reshape(r, dims)?;
        }
        Ok(y)
    }
}

/// The largest interpolation matrix (elements) the separable Resize builds for one axis.
const MAX_MATRIX: usize = 1 << 24;

/// The attributes of an ONNX Resize that shape its interpolation.
pub(super) struct ResizeSpec {
    /// `nearest`, `linear` or `cubic`.
    pub mode: String,
    /// `round_prefer_floor`, `round_prefer_ceil`, `floor` or `ceil`.
    pub nearest: String,
    pub coord: String,
    pub cubic_a: f64,
    pub antialias: bool,
    pub exclude_outside: bool,
    pub extrapolation: f64,
}

/// One resized axis: its input and output sizes, the scale of the coordinate map and (for
/// `tf_crop_and_resize`) the region of interest.
pub(super) struct ResizeAxis {
    pub axis: usize,
    pub input: usize,
    pub output: usize,
    pub scale: f64,
    pub roi: [f64; 2],
}

impl ResizeSpec {
    /// The source coordinate of output index `y` (None: outside the crop, extrapolated).
    fn source(&self, a: &ResizeAxis, y: f64) -> R<Option<f64>> {
        let (inp, scale) = (a.input as f64, a.scale);
        let out_f = scale * inp;
        Ok(Some(match self.coord.as_str() {
            "half_pixel" => (y + 0.5) / scale - 0.5,
            "pytorch_half_pixel" if out_f == 1.0 => -0.5,
            "pytorch_half_pixel" => (y + 0.5) / scale - 0.5,
            "align_corners" if out_f == 1.0 => 0.0,
            "align_corners" => y * (inp - 1.0) / (out_f - 1.0),
            "asymmetric" => y / scale,
            "half_pixel_symmetric" => {
                let offset = inp / 2.0 * (1.0 - a.output as f64 / out_f);
                offset + (y + 0.5) / scale - 0.5
            }
            "tf_crop_and_resize" => {
                let [r0, r1] = a.roi;
                let x = if out_f == 1.0 {
                    (r1 - r0) * (inp - 1.0) / 2.0
                } else {
                    y * (r1 - r0) * (inp - 1.0) / (out_f - 1.0)
                } + r0 * (inp - 1.0);
                if x < 0.0 || x > inp - 1.0 {
                    return Ok(None);
                }
                x
            }
            other => return unsup(format!("coordinate_transformation_mode '{other}'")),
        }))
    }

    /// The interpolation weights of the taps around a source coordinate whose fractional part
    /// is `ratio` (1 at an integer).
    fn coeffs(&self, ratio: f64, scale: f64) -> R<Vec<f64>> {
        let a = self.cubic_a;
        let cubic = |x: f64| {
            let x = x.abs();
            if x <= 1.0 {
                ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
            } else if x < 2.0 {
                ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
            } else {
                0.0
            }
        };
        let normalized = |v: Vec<f64>| {
            let s: f64 = v.iter().sum();
            v.into_iter().map(|c| c / s).collect::<Vec<_>>()
        };
        Ok(match self.mode.as_str() {
            "nearest" if ratio == 1.0 => vec![0.0, 1.0],
            "nearest" => {
                let up = match self.nearest.as_str() {
                    "round_prefer_floor" => ratio > 0.5,
                    "round_prefer_ceil" => ratio >= 0.5,
                    "floor" => false,
                    "ceil" => true,
                    other => return bad(format!("nearest_mode '{other}'")),
                };
                vec![(!up) as u8 as f64, up as u8 as f64]
            }
            "linear" if self.antialias => {
                let s = scale.min(1.0);
                let start = (-1.0 / s).floor() as i64 + 1;
                let taps = 2 - 2 * start;
                normalized(
                    (start..start + taps)
                        .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                        .collect(),
                )
            }
            "linear" => vec![1.0 - ratio, ratio],
            "cubic" if self.antialias => {
                let s = scale.min(1.0);
                let start = (-2.0 / s).floor() as i64 + 1;
                normalized(
                    (start..2 - start)
                        .map(|i| cubic(s * (i as f64 - ratio)))
                        .collect(),
                )
            }
            "cubic" => [ratio + 1.0, ratio, 1.0 - ratio, 2.0 - ratio]
                .iter()
                .map(|&x| cubic(x))
                .collect(),
            other => return unsup(format!("mode '{other}'")),
        })
    }

    /// The `[output, input]` interpolation matrix of one axis (edge-clamped taps, or taps
    /// outside dropped and the rest renormalized with `exclude_outside`), and which output
    /// rows are extrapolated.
    fn matrix(&self, a: &ResizeAxis) -> R<(Vec<f64>, Vec<bool>)> {
        let (n_in, n_out) = (a.input, a.output);
        let mut w = vec![0.0; n_out * n_in];
        let mut outside = vec![false; n_out];
        for y in 0..n_out {
            let Some(x) = self.source(a, y as f64)? else {
                outside[y] = true;
                continue;
            };
            let xi = x.floor();
            let ratio = if x == xi { 1.0 } else { x - xi };
            let mut c = self.coeffs(ratio, a.scale)?;
            let n = c.len() as i64;
            // The n taps nearest x (the lower one on ties), as ONNX's reference picks them.
            let pad = (n + 1) / 2;
            let xp = x + pad as f64;
            let p = xp.floor();
            let frac = xp - p;
            let offset = if n % 2 == 0 {
                if frac == 0.0 {
                    -(n / 2)
                } else {
                    -(n / 2) + 1
                }
            } else if frac <= 0.5 {
                -((n - 1) / 2)
            } else {
                -((n - 1) / 2) + 1
            };
            let first = p as i64 + offset - pad;
            if self.exclude_outside {
                for (k, ck) in c.iter_mut().enumerate() {
                    let i = first + k as i64;
                    if i < 0 || i >= n_in as i64 {
                        *ck = 0.0;
                    }
                }
                let s: f64 = c.iter().sum();
                let s = if s == 0.0 { 1.0 } else { s };
                c.iter_mut().for_each(|ck| *ck /= s);
            }
            for (k, ck) in c.iter().enumerate() {
                let i = (first + k as i64).clamp(0, n_in as i64 - 1) as usize;
                w[y * n_in + i] += ck;
            }
        }
        Ok((w, outside))
    }
}
