//! The ops whose output's shape depends on their input values: NonZero, Unique and
//! NonMaxSuppression. One graph cannot hold them (every shape in a graph is fixed when it is
//! built), so they run on the host: at import when their inputs are known then (folded), else as
//! a host step of a staged run ([`crate::staged`]), between the device stages before and after,
//! with the round trip in the run's profile.

use crate::proto::AttributeProto;
use crate::{Error, Result};
use sfumato_core::{DType, Tensor};
use std::cmp::Ordering;

/// The ops this module computes.
pub const OPS: &[&str] = &["NonZero", "Unique", "NonMaxSuppression"];

/// Whether `op` (default domain) is computed here.
pub fn is_host_op(op: &str) -> bool {
    OPS.contains(&op)
}

fn attr<'a>(attrs: &'a [AttributeProto], name: &str) -> Option<&'a AttributeProto> {
    attrs.iter().find(|a| a.name == name)
}

fn bad(op: &str, msg: impl std::fmt::Display) -> Error {
    Error::Model(format!("{op}: {msg}"))
}

/// Run `op` on the host. `ins` holds each input (`None`: absent); the result has `n_outputs`
/// tensors.
pub fn run(
    op: &str,
    attrs: &[AttributeProto],
    ins: &[Option<Tensor>],
    n_outputs: usize,
) -> Result<Vec<Tensor>> {
    let input = |i: usize| -> Result<&Tensor> {
        ins.get(i)
            .and_then(Option::as_ref)
            .ok_or_else(|| bad(op, format!("input {i} is missing")))
    };
    let scalar = |i: usize| -> Result<Option<f64>> {
        match ins.get(i).and_then(Option::as_ref) {
            None => Ok(None),
            Some(t) if t.numel() == 0 => Ok(None),
            Some(t) if t.numel() == 1 => Ok(Some(t.to_f64_vec()[0])),
            Some(t) => Err(bad(
                op,
                format!("input {i} must hold one value, not {}", t.shape()),
            )),
        }
    };
    let mut outs = match op {
        "NonZero" => vec![non_zero(input(0)?)],
        "Unique" => {
            let axis = attr(attrs, "axis").map(|a| a.i);
            let sorted = attr(attrs, "sorted").map_or(1, |a| a.i) != 0;
            unique(input(0)?, axis, sorted)?
        }
        "NonMaxSuppression" => {
            let center = attr(attrs, "center_point_box").map_or(0, |a| a.i);
            if center != 0 && center != 1 {
                return Err(bad(op, format!("center_point_box {center} is not 0 or 1")));
            }
            vec![non_max_suppression(
                input(0)?,
                input(1)?,
                scalar(2)?.map_or(0, |m| m.max(0.0) as usize),
                scalar(3)?.unwrap_or(0.0),
                scalar(4)?,
                center == 1,
            )?]
        }
        other => return Err(bad(other, "not an op computed on the host")),
    };
    if n_outputs > outs.len() {
        return Err(bad(
            op,
            format!("{n_outputs} outputs asked for, {} given", outs.len()),
        ));
    }
    outs.truncate(n_outputs);
    Ok(outs)
}

/// `NonZero(x)`: the indices of the non-zero elements, one row per dim, in row-major order.
pub fn non_zero(x: &Tensor) -> Tensor {
    let dims = x.dims();
    let strides = sfumato_core::shape::contiguous_strides(dims);
    let hits: Vec<usize> = x
        .to_f64_vec()
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, _)| i)
        .collect();
    let mut out = vec![0f64; dims.len() * hits.len()];
    for (d, &s) in strides.iter().enumerate() {
        for (j, &i) in hits.iter().enumerate() {
            out[d * hits.len() + j] = ((i / s) % dims[d]) as f64;
        }
    }
    Tensor::from_f64(DType::I64, vec![dims.len(), hits.len()], &out)
}

/// numpy's order for floats: NaN last, and NaNs equal.
fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b)
        .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
}

/// `Unique(x)`: the distinct elements (no axis: of the flattened tensor) or slices along
/// `axis`, sorted or in order of first occurrence; their first indices, each element's index
/// into them, and their counts.
pub fn unique(x: &Tensor, axis: Option<i64>, sorted: bool) -> Result<Vec<Tensor>> {
    let v = x.to_f64_vec();
    let dims = x.dims().to_vec();
    // Slices: `n` of them, each `inner` runs of `len` elements `stride` apart.
    let (n, axis) = match axis {
        None => (v.len(), None),
        Some(a) => {
            let a = sfumato_core::shape::normalize_axis(a, dims.len()).ok_or_else(|| {
                bad(
                    "Unique",
                    format!("axis {a} is out of range for {}", x.shape()),
                )
            })?;
            (dims[a], Some(a))
        }
    };
    let (outer, inner): (usize, usize) = match axis {
        None => (1, 1),
        Some(a) => (dims[..a].iter().product(), dims[a + 1..].iter().product()),
    };
    // Each slice as the flat positions of its elements; int64 values compared as integers
    // (f64 would merge those past 2^53).
    let slice = |k: usize| -> Vec<usize> {
        (0..outer)
            .flat_map(|o| {
                let base = o * n * inner + k * inner;
                base..base + inner
            })
            .collect()
    };
    let slices: Vec<Vec<usize>> = (0..n).map(slice).collect();
    let ints = (x.dtype() == DType::I64).then(|| x.to_i64_vec());
    let elem = |p: usize, q: usize| match &ints {
        Some(i) => i[p].cmp(&i[q]),
        None => cmp_f64(v[p], v[q]),
    };
    let cmp = |a: &Vec<usize>, b: &Vec<usize>| -> Ordering {
        a.iter()
            .zip(b)
            .map(|(&p, &q)| elem(p, q))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    // Distinct slices by first occurrence.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cmp(&slices[a], &slices[b]).then(a.cmp(&b)));
    let mut firsts: Vec<usize> = Vec::new();
    let mut inverse = vec![0usize; n];
    let mut counts: Vec<usize> = Vec::new();
    for &k in &order {
        match firsts.last() {
            Some(&f) if cmp(&slices[f], &slices[k]).is_eq() => {
                *counts.last_mut().expect("a count per first") += 1;
            }
            _ => {
                firsts.push(k);
                counts.push(1);
            }
        }
        inverse[k] = firsts.len() - 1;
    }
    // `firsts` is in sorted order; unsorted output lists them by first occurrence.
    let mut rank: Vec<usize> = (0..firsts.len()).collect();
    if !sorted {
        rank.sort_by_key(|&u| firsts[u]);
    }
    let mut new_of = vec![0usize; firsts.len()];
    for (pos, &u) in rank.iter().enumerate() {
        new_of[u] = pos;
    }
    let m = firsts.len();
    let mut y_dims = dims.clone();
    // The positions Y's elements come from, in Y's order.
    let from: Vec<usize> = match axis {
        None => {
            y_dims = vec![m];
            rank.iter().map(|&u| slices[firsts[u]][0]).collect()
        }
        Some(a) => {
            y_dims[a] = m;
            let mut y = vec![0usize; outer * m * inner];
            for (pos, &u) in rank.iter().enumerate() {
                let s = &slices[firsts[u]];
                for o in 0..outer {
                    let at = o * m * inner + pos * inner;
                    y[at..at + inner].copy_from_slice(&s[o * inner..(o + 1) * inner]);
                }
            }
            y
        }
    };
    let y = match &ints {
        Some(i) => Tensor::from_i64(y_dims, from.iter().map(|&p| i[p]).collect())?,
        None => {
            let f: Vec<f64> = from.iter().map(|&p| v[p]).collect();
            Tensor::from_f64(x.dtype(), y_dims, &f)
        }
    };
    let i64s = |v: Vec<usize>| {
        let f: Vec<f64> = v.iter().map(|&x| x as f64).collect();
        Tensor::from_f64(DType::I64, vec![f.len()], &f)
    };
    Ok(vec![
        y,
        i64s(rank.iter().map(|&u| firsts[u]).collect()),
        i64s(inverse.iter().map(|&u| new_of[u]).collect()),
        i64s(rank.iter().map(|&u| counts[u]).collect()),
    ])
}

/// A box's corners (x_min, x_max, y_min, y_max) from its four numbers.
fn corners(b: &[f64], center: bool) -> (f64, f64, f64, f64) {
    if center {
        let (w, h) = (b[2] / 2.0, b[3] / 2.0);
        (b[0] - w, b[0] + w, b[1] - h, b[1] + h)
    } else {
        // [y1, x1, y2, x2], either diagonal.
        (
            b[1].min(b[3]),
            b[1].max(b[3]),
            b[0].min(b[2]),
            b[0].max(b[2]),
        )
    }
}

/// Whether two boxes overlap by more than `iou` (intersection over union).
fn overlaps(a: &[f64], b: &[f64], center: bool, iou: f64) -> bool {
    let (ax0, ax1, ay0, ay1) = corners(a, center);
    let (bx0, bx1, by0, by1) = corners(b, center);
    let (ix0, ix1) = (ax0.max(bx0), ax1.min(bx1));
    let (iy0, iy1) = (ay0.max(by0), ay1.min(by1));
    if ix1 <= ix0 || iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let (area_a, area_b) = ((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0));
    let union = area_a + area_b - inter;
    if inter <= 0.0 || area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > iou
}

/// `NonMaxSuppression(boxes [B, N, 4], scores [B, C, N])`: per batch and class, the boxes in
/// order of falling score (above `score_threshold` where one is given; ties by lower index),
/// each kept unless it overlaps a kept one by more than `iou_threshold`, at most
/// `max_per_class`; rows of (batch, class, box).
pub fn non_max_suppression(
    boxes: &Tensor,
    scores: &Tensor,
    max_per_class: usize,
    iou_threshold: f64,
    score_threshold: Option<f64>,
    center: bool,
) -> Result<Tensor> {
    let op = "NonMaxSuppression";
    let (bd, sd) = (boxes.dims(), scores.dims());
    if bd.len() != 3 || bd[2] != 4 {
        return Err(bad(
            op,
            format!("boxes must be [batch, boxes, 4], not {}", boxes.shape()),
        ));
    }
    if sd.len() != 3 || sd[0] != bd[0] || sd[2] != bd[1] {
        return Err(bad(
            op,
            format!(
                "scores must be [batch, classes, boxes] = [{}, C, {}], not {}",
                bd[0],
                bd[1],
                scores.shape()
            ),
        ));
    }
    let (nb, nc, nn) = (sd[0], sd[1], sd[2]);
    let (bv, sv) = (boxes.to_f64_vec(), scores.to_f64_vec());
    let mut rows: Vec<f64> = Vec::new();
    for b in 0..nb {
        let bx = |i: usize| &bv[(b * nn + i) * 4..(b * nn + i) * 4 + 4];
        for c in 0..nc {
            let s = &sv[(b * nc + c) * nn..(b * nc + c + 1) * nn];
            let mut cand: Vec<usize> = (0..nn)
                .filter(|&i| score_threshold.is_none_or(|t| s[i] > t))
                .collect();
            cand.sort_by(|&i, &j| cmp_f64(s[j], s[i]).then(i.cmp(&j)));
            let mut kept: Vec<usize> = Vec::new();
            for i in cand {
                if kept.len() >= max_per_class {
                    break;
                }
                if kept
                    .iter()
                    .all(|&k| !overlaps(bx(i), bx(k), center, iou_threshold))
                {
                    kept.push(i);
                    rows.extend([b as f64, c as f64, i as f64]);
                }
            }
        }
    }
    Ok(Tensor::from_f64(DType::I64, vec![rows.len() / 3, 3], &rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_zero_lists_indices_row_major() {
        let x = Tensor::from_f32(vec![2, 3], vec![0., 1., 0., 2., 0., 3.]).unwrap();
        let y = non_zero(&x);
        assert_eq!(y.dims(), &[2, 3]);
        assert_eq!(y.to_i64_vec(), vec![0, 1, 1, 1, 0, 2]);
        let none = non_zero(&Tensor::zeros(DType::F32, vec![4]));
        assert_eq!(none.dims(), &[1, 0]);
    }

    #[test]
    fn unique_sorted_and_by_first_occurrence() {
        let x = Tensor::from_f32(vec![6], vec![2., 1., 1., 3., 4., 3.]).unwrap();
        let s = unique(&x, None, true).unwrap();
        assert_eq!(s[0].to_f64_vec(), vec![1., 2., 3., 4.]);
        assert_eq!(s[1].to_i64_vec(), vec![1, 0, 3, 4]);
        assert_eq!(s[2].to_i64_vec(), vec![1, 0, 0, 2, 3, 2]);
        assert_eq!(s[3].to_i64_vec(), vec![2, 1, 2, 1]);
        let u = unique(&x, None, false).unwrap();
        assert_eq!(u[0].to_f64_vec(), vec![2., 1., 3., 4.]);
        assert_eq!(u[1].to_i64_vec(), vec![0, 1, 3, 4]);
        assert_eq!(u[2].to_i64_vec(), vec![0, 1, 1, 2, 3, 2]);
        assert_eq!(u[3].to_i64_vec(), vec![1, 2, 2, 1]);
    }

    #[test]
    fn unique_keeps_int64_past_f64s_integers_apart() {
        let big = 1i64 << 53;
        let x = Tensor::from_i64(vec![3], vec![big + 1, big, big + 1]).unwrap();
        let s = unique(&x, None, true).unwrap();
        assert_eq!(s[0].to_i64_vec(), vec![big, big + 1]);
        assert_eq!(s[3].to_i64_vec(), vec![1, 2]);
    }

    #[test]
    fn unique_slices_along_an_axis() {
        // Columns of [[1, 0, 1], [2, 3, 2]]: (1,2) twice, (0,3) once.
        let x = Tensor::from_f32(vec![2, 3], vec![1., 0., 1., 2., 3., 2.]).unwrap();
        let s = unique(&x, Some(1), true).unwrap();
        assert_eq!(s[0].dims(), &[2, 2]);
        assert_eq!(s[0].to_f64_vec(), vec![0., 1., 3., 2.]);
        assert_eq!(s[2].to_i64_vec(), vec![1, 0, 1]);
        assert_eq!(s[3].to_i64_vec(), vec![1, 2]);
        assert!(unique(&x, Some(2), true).is_err());
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        // Three boxes: 0 and 1 overlap heavily, 2 is apart.
        let boxes = Tensor::from_f32(
            vec![1, 3, 4],
            vec![0., 0., 1., 1., 0., 0.1, 1., 1.1, 0., 5., 1., 6.],
        )
        .unwrap();
        let scores = Tensor::from_f32(vec![1, 1, 3], vec![0.8, 0.9, 0.3]).unwrap();
        let r = non_max_suppression(&boxes, &scores, 10, 0.5, None, false).unwrap();
        assert_eq!(r.to_i64_vec(), vec![0, 0, 1, 0, 0, 2]);
        let r = non_max_suppression(&boxes, &scores, 1, 0.5, None, false).unwrap();
        assert_eq!(r.to_i64_vec(), vec![0, 0, 1]);
        let r = non_max_suppression(&boxes, &scores, 10, 0.5, Some(0.5), false).unwrap();
        assert_eq!(r.to_i64_vec(), vec![0, 0, 1]);
        let wrong = Tensor::from_f32(vec![1, 1, 2], vec![0.8, 0.9]).unwrap();
        let e = non_max_suppression(&boxes, &wrong, 10, 0.5, None, false).unwrap_err();
        assert!(e.to_string().contains("scores must be"), "{e}");
    }
}
