//! YOLOv5 (Ultralytics v6.x, `yolov5{n,s,m,l,x}.yaml`: `Conv`, `C3`, `SPPF`, nearest 2x
//! upsampling, `Concat`, `Detect`) for object detection, with the `Detect` head's box decoding in
//! the graph.
//!
//! The network is the v6 layer table with its depth and width multiples applied as Ultralytics'
//! `parse_model` applies them ([`layers`]). Weights use Ultralytics' state-dict names,
//! `model.{i}.conv`/`.bn` for a `Conv`, `model.{i}.cv{1,2,3}` and `.m.{j}.cv{1,2}` for a `C3`,
//! `model.{i}.cv{1,2}` for `SPPF`, and `model.24.m.{level}` (1x1 conv with bias) and
//! `model.24.anchors` (anchors in grid units: pixels / stride) for `Detect`. A `Conv` is Conv2d
//! without bias, BatchNorm (eps 1e-3) and SiLU.
//!
//! Input: `pixels` f32 `[batch, 3, image_size, image_size]`, RGB in [0, 1] (letterboxed:
//! [`crate::detect::letterbox`]). Output: `predictions` f32 `[batch, N, 5 + nc]` in Ultralytics'
//! order (level, anchor, grid y, grid x): `cx, cy, w, h` in input pixels, then objectness and
//! the `nc` class scores, all sigmoided; [`crate::detect::decode_yolov5`] and
//! [`crate::detect::nms`] turn them into detections.

use crate::error::{parse_json_config, ConfigCheck, Result, ZooError};
use crate::nn;
use crate::params::{Init, Params};
use serde::Deserialize;
use serde_json::{json, Value};
use sfumato_core::op::{Conv2d, CoordTransform, Pool2d, ResizeMode};
use sfumato_core::{DType, Graph, Op, Tensor, ValueId};

/// A YOLOv5 model's hyper-parameters. JSON with these keys is read by [`Self::from_json`]
/// (others, such as the fixtures' `act` and `layers`, are ignored).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct YoloV5Config {
    /// Repeats of each `C3` are scaled by this (0.33 for n and s).
    pub depth_multiple: f64,
    /// Channels are scaled by this, rounded up to a multiple of 8 (0.25 for n, 0.5 for s).
    pub width_multiple: f64,
    /// Number of classes.
    pub nc: usize,
    /// Height and width of the (letterboxed) input, a multiple of 32.
    pub image_size: usize,
    /// Per output level, the anchors' `w, h` pairs in pixels.
    pub anchors: Vec<Vec<f32>>,
    /// Per output level, its stride in pixels (8, 16, 32).
    pub strides: Vec<usize>,
    /// The BatchNorms' epsilon (Ultralytics: 1e-3).
    #[serde(default = "eps3")]
    pub bn_eps: f32,
}

fn eps3() -> f32 {
    1e-3
}

/// The anchors of `yolov5*.yaml` (P3/8, P4/16, P5/32), in pixels.
pub fn default_anchors() -> Vec<Vec<f32>> {
    vec![
        vec![10., 13., 16., 30., 33., 23.],
        vec![30., 61., 62., 45., 59., 119.],
        vec![116., 90., 156., 198., 373., 326.],
    ]
}

/// YOLOv5n (v6): depth 0.33, width 0.25, 80 COCO classes, 640x640.
pub fn yolov5n() -> YoloV5Config {
    YoloV5Config {
        depth_multiple: 0.33,
        width_multiple: 0.25,
        nc: 80,
        image_size: 640,
        anchors: default_anchors(),
        strides: vec![8, 16, 32],
        bn_eps: 1e-3,
    }
}

/// YOLOv5s (v6): depth 0.33, width 0.50.
pub fn yolov5s() -> YoloV5Config {
    YoloV5Config {
        width_multiple: 0.5,
        ..yolov5n()
    }
}

/// YOLOv5m (v6): depth 0.67, width 0.75.
pub fn yolov5m() -> YoloV5Config {
    YoloV5Config {
        depth_multiple: 0.67,
        width_multiple: 0.75,
        ..yolov5n()
    }
}

/// One module of the network with its channels resolved, as `parse_model` leaves it.
#[derive(Clone, Debug, PartialEq)]
pub enum YoloModule {
    /// Conv2d `k`x`k` stride `s` (padding `p`, else `k / 2`), BatchNorm, SiLU.
    Conv {
        c1: usize,
        c2: usize,
        k: usize,
        s: usize,
        p: Option<usize>,
    },
    /// `cv3(cat(m(cv1(x)), cv2(x)))` with `n` bottlenecks (residual when `shortcut`).
    C3 {
        c1: usize,
        c2: usize,
        n: usize,
        shortcut: bool,
    },
    /// `cv2(cat(x, p(x), p²(x), p³(x)))` after `cv1`, `p` a `k`x`k` stride-1 max pool.
    Sppf { c1: usize, c2: usize, k: usize },
    /// Nearest-neighbour 2x upsampling.
    Upsample,
    /// Concatenation over channels, in `from`'s order.
    Concat,
    /// The head: per level a 1x1 conv from `ch[level]` channels to `anchors * (5 + nc)`.
    Detect { nc: usize, ch: Vec<usize> },
}

/// A layer: where its inputs come from (-1: the previous layer; else a layer index), its
/// depth-scaled repeat count, and its module.
#[derive(Clone, Debug, PartialEq)]
pub struct YoloLayer {
    pub from: Vec<i64>,
    pub number: usize,
    pub module: YoloModule,
}

/// The v6 table as written in `yolov5s.yaml`, before the multiples: from, repeats, module.
enum Base {
    Conv(usize, usize, usize, Option<usize>),
    C3(usize, bool),
    Sppf(usize, usize),
    Upsample,
    Concat,
    Detect,
}

const TABLE: [(&[i64], usize, Base); 25] = [
    (&[-1], 1, Base::Conv(64, 6, 2, Some(2))),
    (&[-1], 1, Base::Conv(128, 3, 2, None)),
    (&[-1], 3, Base::C3(128, true)),
    (&[-1], 1, Base::Conv(256, 3, 2, None)),
    (&[-1], 6, Base::C3(256, true)),
    (&[-1], 1, Base::Conv(512, 3, 2, None)),
    (&[-1], 9, Base::C3(512, true)),
    (&[-1], 1, Base::Conv(1024, 3, 2, None)),
    (&[-1], 3, Base::C3(1024, true)),
    (&[-1], 1, Base::Sppf(1024, 5)),
    (&[-1], 1, Base::Conv(512, 1, 1, None)),
    (&[-1], 1, Base::Upsample),
    (&[-1, 6], 1, Base::Concat),
    (&[-1], 3, Base::C3(512, false)),
    (&[-1], 1, Base::Conv(256, 1, 1, None)),
    (&[-1], 1, Base::Upsample),
    (&[-1, 4], 1, Base::Concat),
    (&[-1], 3, Base::C3(256, false)),
    (&[-1], 1, Base::Conv(256, 3, 2, None)),
    (&[-1, 14], 1, Base::Concat),
    (&[-1], 3, Base::C3(512, false)),
    (&[-1], 1, Base::Conv(512, 3, 2, None)),
    (&[-1, 10], 1, Base::Concat),
    (&[-1], 3, Base::C3(1024, false)),
    (&[17, 20, 23], 1, Base::Detect),
];

/// Where a layer's input `f` comes from: the previous layer for -1, else layer `f`.
fn source(i: usize, f: i64) -> Option<usize> {
    if f < 0 {
        i.checked_sub(1)
    } else {
        Some(f as usize)
    }
}

/// The network's layers for `cfg`, as Ultralytics' `parse_model` resolves them: repeats
/// `max(round(n * depth), 1)` (Python's round, halves to even), channels `ceil(c * width / 8) * 8`.
pub fn layers(cfg: &YoloV5Config) -> Vec<YoloLayer> {
    let depth = |n: usize| {
        if n > 1 {
            ((n as f64 * cfg.depth_multiple).round_ties_even() as usize).max(1)
        } else {
            n
        }
    };
    let width = |c: usize| ((c as f64 * cfg.width_multiple / 8.0).ceil() as usize) * 8;
    let mut ch: Vec<usize> = Vec::new();
    let channels = |ch: &[usize], i: usize, f: i64| match source(i, f) {
        None => 3,
        Some(j) => ch.get(j).copied().unwrap_or(0),
    };
    let mut out = Vec::new();
    for (i, (from, n, base)) in TABLE.iter().enumerate() {
        let c1 = channels(&ch, i, from[0]);
        let number = depth(*n);
        let (module, c2) = match *base {
            Base::Conv(c, k, s, p) => {
                let c2 = width(c);
                (YoloModule::Conv { c1, c2, k, s, p }, c2)
            }
            Base::C3(c, shortcut) => {
                let c2 = width(c);
                let module = YoloModule::C3 {
                    c1,
                    c2,
                    n: number,
                    shortcut,
                };
                (module, c2)
            }
            Base::Sppf(c, k) => {
                let c2 = width(c);
                (YoloModule::Sppf { c1, c2, k }, c2)
            }
            Base::Upsample => (YoloModule::Upsample, c1),
            Base::Concat => {
                let c2 = from.iter().map(|&f| channels(&ch, i, f)).sum();
                (YoloModule::Concat, c2)
            }
            Base::Detect => {
                let levels = from.iter().map(|&f| channels(&ch, i, f)).collect();
                (
                    YoloModule::Detect {
                        nc: cfg.nc,
                        ch: levels,
                    },
                    0,
                )
            }
        };
        ch.push(c2);
        out.push(YoloLayer {
            from: from.to_vec(),
            number,
            module,
        });
    }
    out
}

impl YoloLayer {
    /// The layer as `parse_model`'s row `[from, number, module, args]` (the fixtures' `layers`
    /// list; `anchors` are the Detect's args).
    pub fn to_json(&self, anchors: &[Vec<f32>]) -> Value {
        let from = match self.from.as_slice() {
            [f] => json!(f),
            fs => json!(fs),
        };
        let number = |v: f32| {
            if v.fract() == 0.0 {
                json!(v as i64)
            } else {
                json!(v)
            }
        };
        let (name, args) = match &self.module {
            YoloModule::Conv { c1, c2, k, s, p } => {
                let mut a = vec![json!(c1), json!(c2), json!(k), json!(s)];
                a.extend(p.map(|p| json!(p)));
                ("Conv", Value::Array(a))
            }
            YoloModule::C3 {
                c1,
                c2,
                n,
                shortcut,
            } => {
                let mut a = vec![json!(c1), json!(c2), json!(n)];
                if !shortcut {
                    a.push(json!(false));
                }
                ("C3", Value::Array(a))
            }
            YoloModule::Sppf { c1, c2, k } => ("SPPF", json!([c1, c2, k])),
            YoloModule::Upsample => ("nn.Upsample", json!([null, 2, "nearest"])),
            YoloModule::Concat => ("Concat", json!([1])),
            YoloModule::Detect { nc, ch } => {
                let anchors: Vec<Value> = anchors
                    .iter()
                    .map(|l| Value::Array(l.iter().map(|&v| number(v)).collect()))
                    .collect();
                ("Detect", json!([nc, anchors, ch]))
            }
        };
        json!([from, self.number, name, args])
    }
}

impl YoloV5Config {
    /// A config from JSON text (`path` names it in errors), checked by [`Self::validate`].
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        parse_json_config(text, path, YoloV5Config::validate)
    }

    /// Anchors per level.
    pub fn anchors_per_level(&self) -> usize {
        self.anchors.first().map_or(0, |a| a.len() / 2)
    }

    /// Values per prediction row: box (4), objectness, classes.
    pub fn outputs_per_anchor(&self) -> usize {
        5 + self.nc
    }

    /// Prediction rows per image: anchors times grid cells, over the levels.
    pub fn predictions(&self) -> usize {
        self.strides
            .iter()
            .map(|&s| {
                let side = self.image_size / s.max(1);
                side * side
            })
            .sum::<usize>()
            * self.anchors_per_level()
    }

    /// Multiples and sizes that make this network: positive multiples, at least one class,
    /// three levels of strides 8, 16, 32 with the same number of anchors (pairs) each, and an
    /// image size that is a multiple of 32.
    pub fn validate(&self, path: &str) -> Result<()> {
        let check = ConfigCheck(path);
        let bad = |msg: String| check.fail(msg);
        for (k, v) in [
            ("depth_multiple", self.depth_multiple),
            ("width_multiple", self.width_multiple),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 64.0) {
                return bad(format!("{k} must be in (0, 64], not {v}"));
            }
        }
        if self.nc == 0 {
            return bad("nc must be at least 1".into());
        }
        if self.bn_eps.is_nan() || self.bn_eps <= 0.0 {
            return bad(format!("bn_eps must be positive, not {}", self.bn_eps));
        }
        if self.strides != [8, 16, 32] {
            return bad(format!(
                "the YOLOv5 v6 head has strides [8, 16, 32], not {:?}",
                self.strides
            ));
        }
        let na = self.anchors_per_level();
        if self.anchors.len() != 3
            || na == 0
            || self
                .anchors
                .iter()
                .any(|l| l.len() != 2 * na || l.iter().any(|v| !(v.is_finite() && *v > 0.0)))
        {
            return bad(format!(
                "anchors must be three levels of the same number of positive (w, h) pairs, not {:?}",
                self.anchors
            ));
        }
        if self.image_size == 0 || !self.image_size.is_multiple_of(32) {
            return bad(format!(
                "image_size {} is not a positive multiple of 32",
                self.image_size
            ));
        }
        Ok(())
    }

    /// FLOPs of one forward over `batch` images: two per multiply-add of every convolution
    /// (BatchNorm, SiLU, pooling and the box decoding are left out). 0 for a config that does
    /// not validate.
    pub fn flops(&self, batch: usize) -> f64 {
        if self.validate("").is_err() {
            return 0.0;
        }
        let conv = |c1: usize, c2: usize, k: usize, side: usize| {
            (c1 * c2 * k * k) as f64 * (side * side) as f64
        };
        let no = self.anchors_per_level() * self.outputs_per_anchor();
        let mut sides: Vec<usize> = Vec::new();
        let mut macs = 0.0;
        for (i, l) in layers(self).iter().enumerate() {
            let side_in = match source(i, l.from[0]) {
                None => self.image_size,
                Some(j) => sides.get(j).copied().unwrap_or(0),
            };
            let side = match &l.module {
                YoloModule::Conv { c1, c2, k, s, p } => {
                    let pad = p.unwrap_or(k / 2);
                    let side = (side_in + 2 * pad).saturating_sub(*k) / s + 1;
                    macs += conv(*c1, *c2, *k, side);
                    side
                }
                YoloModule::C3 { c1, c2, n, .. } => {
                    let c = c2 / 2;
                    macs += 2.0 * conv(*c1, c, 1, side_in)
                        + conv(2 * c, *c2, 1, side_in)
                        + *n as f64 * (conv(c, c, 1, side_in) + conv(c, c, 3, side_in));
                    side_in
                }
                YoloModule::Sppf { c1, c2, .. } => {
                    let c = c1 / 2;
                    macs += conv(*c1, c, 1, side_in) + conv(4 * c, *c2, 1, side_in);
                    side_in
                }
                YoloModule::Upsample => side_in * 2,
                YoloModule::Concat => side_in,
                YoloModule::Detect { ch, .. } => {
                    for (&f, &c) in l.from.iter().zip(ch) {
                        let s = source(i, f).and_then(|j| sides.get(j)).copied();
                        macs += conv(c, no, 1, s.unwrap_or(0));
                    }
                    0
                }
            };
            sides.push(side);
        }
        2.0 * macs * batch as f64
    }
}

/// A YOLOv5 detector for `batch` images, its weights from `p` (call [`Params::finish`] after to
/// learn of every missing, unexpected or mis-shaped tensor at once).
///
/// With a checkpoint that has the Detect layer's `anchors` buffer (grid units), those anchors
/// are used, and they must be the config's (in pixels, divided by the strides) to 1e-3:
/// a config that disagrees with its weights is an error rather than silently wrong boxes.
pub fn yolov5(cfg: &YoloV5Config, p: &mut Params, batch: usize) -> Result<Graph> {
    cfg.validate("YoloV5Config")?;
    if batch == 0 {
        return Err(ZooError::Input("yolov5: batch must be at least 1".into()));
    }
    let eps = cfg.bn_eps;
    let s = cfg.image_size;
    let mut g = Graph::new();
    let pixels = g.input("pixels", DType::F32, [batch, 3, s, s]);
    let mut outs: Vec<ValueId> = Vec::new();
    let mut predictions = None;
    for (i, l) in layers(cfg).iter().enumerate() {
        let input = |f: i64| match source(i, f) {
            None => Ok(pixels),
            Some(j) => outs.get(j).copied().ok_or_else(|| {
                ZooError::Input(format!("yolov5: layer {i} reads layer {j}, not built yet"))
            }),
        };
        let x = input(l.from[0])?;
        let name = format!("model.{i}");
        let y = match &l.module {
            &YoloModule::Conv {
                c1,
                c2,
                k,
                s,
                p: pad,
            } => conv_bn_silu(&mut g, p, x, &name, c1, c2, k, s, pad, eps)?,
            &YoloModule::C3 {
                c1,
                c2,
                n,
                shortcut,
            } => c3(&mut g, p, x, &name, c1, c2, n, shortcut, eps)?,
            &YoloModule::Sppf { c1, c2, k } => sppf(&mut g, p, x, &name, c1, c2, k, eps)?,
            YoloModule::Upsample => {
                let dims = g.shape(x).0.clone();
                let (h, w) = (dims[2], dims[3]);
                g.resize(
                    x,
                    [2 * h, 2 * w],
                    ResizeMode::Nearest,
                    CoordTransform::Asymmetric,
                )?
            }
            YoloModule::Concat => {
                let xs = l
                    .from
                    .iter()
                    .map(|&f| input(f))
                    .collect::<Result<Vec<_>>>()?;
                g.concat(&xs, 1)?
            }
            YoloModule::Detect { ch, .. } => {
                let xs = l
                    .from
                    .iter()
                    .map(|&f| input(f))
                    .collect::<Result<Vec<_>>>()?;
                let out = detect(&mut g, p, cfg, &xs, ch, &name, batch)?;
                predictions = Some(out);
                out
            }
        };
        outs.push(y);
    }
    let out = predictions.ok_or_else(|| ZooError::Input("yolov5: no Detect layer".into()))?;
    g.set_outputs(&[out])?;
    Ok(g)
}

/// Ultralytics' `Conv`: Conv2d (no bias, padding `pad` else `k / 2`), BatchNorm, SiLU.
#[allow(clippy::too_many_arguments)]
fn conv_bn_silu(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    c1: usize,
    c2: usize,
    k: usize,
    s: usize,
    pad: Option<usize>,
    eps: f32,
) -> Result<ValueId> {
    let attrs = Conv2d::padded(pad.unwrap_or(k / 2), s);
    let y = nn::conv(g, p, x, &format!("{name}.conv"), c1, c2, k, attrs, false)?;
    let y = nn::batch_norm(g, p, y, &format!("{name}.bn"), c2, eps)?;
    Ok(nn::silu(g, y)?)
}

/// Ultralytics' `C3` (CSP bottleneck with three convolutions).
#[allow(clippy::too_many_arguments)]
fn c3(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    c1: usize,
    c2: usize,
    n: usize,
    shortcut: bool,
    eps: f32,
) -> Result<ValueId> {
    let c = c2 / 2;
    let mut y = conv_bn_silu(g, p, x, &format!("{name}.cv1"), c1, c, 1, 1, None, eps)?;
    for j in 0..n {
        let m = format!("{name}.m.{j}");
        let b = conv_bn_silu(g, p, y, &format!("{m}.cv1"), c, c, 1, 1, None, eps)?;
        let b = conv_bn_silu(g, p, b, &format!("{m}.cv2"), c, c, 3, 1, None, eps)?;
        y = if shortcut { g.add_(y, b)? } else { b };
    }
    let z = conv_bn_silu(g, p, x, &format!("{name}.cv2"), c1, c, 1, 1, None, eps)?;
    let cat = g.concat(&[y, z], 1)?;
    conv_bn_silu(
        g,
        p,
        cat,
        &format!("{name}.cv3"),
        2 * c,
        c2,
        1,
        1,
        None,
        eps,
    )
}

/// Ultralytics' `SPPF`: three chained `k`x`k` stride-1 max pools, concatenated.
#[allow(clippy::too_many_arguments)]
fn sppf(
    g: &mut Graph,
    p: &mut Params,
    x: ValueId,
    name: &str,
    c1: usize,
    c2: usize,
    k: usize,
    eps: f32,
) -> Result<ValueId> {
    let c = c1 / 2;
    let x = conv_bn_silu(g, p, x, &format!("{name}.cv1"), c1, c, 1, 1, None, eps)?;
    let pool = Pool2d::new(k, 1, k / 2);
    let y1 = g.max_pool2d(x, pool)?;
    let y2 = g.max_pool2d(y1, pool)?;
    let y3 = g.max_pool2d(y2, pool)?;
    let cat = g.concat(&[x, y1, y2, y3], 1)?;
    conv_bn_silu(
        g,
        p,
        cat,
        &format!("{name}.cv2"),
        4 * c,
        c2,
        1,
        1,
        None,
        eps,
    )
}

/// The anchors in pixels, `[level][anchor] = (w, h)`: the checkpoint's buffer (grid units)
/// times the strides where there is one, checked against the config; else the config's.
fn anchors_px(cfg: &YoloV5Config, p: &mut Params, name: &str) -> Result<Vec<Vec<[f32; 2]>>> {
    let na = cfg.anchors_per_level();
    let nl = cfg.anchors.len();
    let from_cfg: Vec<Vec<[f32; 2]>> = cfg
        .anchors
        .iter()
        .map(|l| l.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
        .collect();
    let key = format!("{name}.anchors");
    if !p.contains(&key) {
        return Ok(from_cfg);
    }
    let t = p.tensor(&key, &[nl, na, 2], Init::SCALE);
    p.buffer(&key);
    let grid = t.to_f32_vec();
    if grid.len() != nl * na * 2 {
        // A mis-shaped buffer is reported by Params::finish; the config's anchors stand in.
        return Ok(from_cfg);
    }
    let mut out = Vec::with_capacity(nl);
    for (lvl, level) in from_cfg.iter().enumerate() {
        let stride = cfg.strides[lvl] as f32;
        let mut row = Vec::with_capacity(na);
        for (a, want) in level.iter().enumerate() {
            let at = (lvl * na + a) * 2;
            let got = [grid[at] * stride, grid[at + 1] * stride];
            for d in 0..2 {
                if (got[d] - want[d]).abs() > 1e-3 * (1.0 + want[d].abs()) {
                    return Err(ZooError::Config {
                        path: "YoloV5Config".into(),
                        msg: format!(
                            "the checkpoint's {key} give level {lvl} anchor {a} as {got:?} \
                             pixels, the config {want:?}"
                        ),
                    });
                }
            }
            row.push(got);
        }
        out.push(row);
    }
    Ok(out)
}

/// Ultralytics' `Detect` in inference form: per level a 1x1 conv to `na * (5 + nc)` channels,
/// viewed `[b, na, no, cells]` and transposed to `[b, na, cells, no]`, sigmoid; then
/// `xy = (2σ - 0.5 + grid) * stride`, `wh = (2σ)² * anchor`, the rest as they are; the levels
/// concatenated to `predictions` `[b, N, no]`.
fn detect(
    g: &mut Graph,
    p: &mut Params,
    cfg: &YoloV5Config,
    xs: &[ValueId],
    ch: &[usize],
    name: &str,
    batch: usize,
) -> Result<ValueId> {
    let na = cfg.anchors_per_level();
    let no = cfg.outputs_per_anchor();
    let anchors = anchors_px(cfg, p, name)?;
    let mut levels = Vec::with_capacity(xs.len());
    for (lvl, (&x, &c)) in xs.iter().zip(ch).enumerate() {
        let r = nn::conv(
            g,
            p,
            x,
            &format!("{name}.m.{lvl}"),
            c,
            na * no,
            1,
            Conv2d::default(),
            true,
        )?;
        let dims = g.shape(r).0.clone();
        let (ny, nx) = (dims[2], dims[3]);
        let stride = cfg.strides[lvl];
        if ny * stride != cfg.image_size || nx * stride != cfg.image_size {
            return Err(ZooError::Input(format!(
                "yolov5: level {lvl} is {ny}x{nx}, not image_size {} / stride {stride}",
                cfg.image_size
            )));
        }
        let cells = ny * nx;
        let r = g.reshape(r, &[batch as i64, na as i64, no as i64, cells as i64])?;
        let r = g.transpose(r, &[0, 1, 3, 2])?;
        let y = g.sigmoid(r)?;
        let parts = g.split(y, -1, &[2, 2, no - 4])?;

        // (grid - 0.5) in (x, y) order, [1, 1, cells, 2]; the anchors [1, na, 1, 2].
        let grid: Vec<f32> = (0..ny)
            .flat_map(|gy| (0..nx).flat_map(move |gx| [gx as f32 - 0.5, gy as f32 - 0.5]))
            .collect();
        let grid = g.constant(Tensor::from_f32([1, 1, cells, 2], grid)?)?;
        let anchor: Vec<f32> = anchors[lvl].iter().flatten().copied().collect();
        let anchor = g.constant(Tensor::from_f32([1, na, 1, 2], anchor)?)?;
        let two = nn::scalar(g, 2.0)?;
        let stride_c = nn::scalar(g, stride as f32)?;

        let xy = g.mul(parts[0], two)?;
        let xy = g.add_(xy, grid)?;
        let xy = g.mul(xy, stride_c)?;
        let wh = g.mul(parts[1], two)?;
        let wh = g.mul(wh, wh)?;
        let wh = g.mul(wh, anchor)?;
        let z = g.concat(&[xy, wh, parts[2]], -1)?;
        levels.push(g.reshape(z, &[batch as i64, (na * cells) as i64, no as i64])?);
    }
    Ok(nn::named(
        g,
        "predictions",
        Op::Concat { axis: 1 },
        &levels,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_model_rounds_like_ultralytics() {
        let s = layers(&yolov5s());
        assert_eq!(s.len(), 25);
        assert_eq!(
            s[0].module,
            YoloModule::Conv {
                c1: 3,
                c2: 32,
                k: 6,
                s: 2,
                p: Some(2)
            }
        );
        // C3 repeats 3, 6, 9, 3 at depth 0.33: 1, 2, 3, 1.
        let repeats: Vec<usize> = [2, 4, 6, 8].iter().map(|&i| s[i].number).collect();
        assert_eq!(repeats, [1, 2, 3, 1]);
        assert_eq!(
            s[24].module,
            YoloModule::Detect {
                nc: 80,
                ch: vec![128, 256, 512]
            }
        );
        // yolov5m: depth 0.67 gives 2, 4, 6, 2; width 0.75 gives 48 stem channels.
        let m = layers(&yolov5m());
        let repeats: Vec<usize> = [2, 4, 6, 8].iter().map(|&i| m[i].number).collect();
        assert_eq!(repeats, [2, 4, 6, 2]);
        assert!(matches!(m[0].module, YoloModule::Conv { c2: 48, .. }));
        assert_eq!(
            s[13].to_json(&yolov5s().anchors),
            json!([-1, 1, "C3", [512, 256, 1, false]])
        );
    }

    #[test]
    fn flops_are_ultralytics_16_5_gflops_for_yolov5s() {
        let gflops = yolov5s().flops(1) / 1e9;
        assert!((gflops - 16.5).abs() < 0.2, "{gflops}");
        assert_eq!(yolov5s().predictions(), 25200);
    }

    #[test]
    fn bad_configs_are_errors() {
        for bad in [
            YoloV5Config {
                image_size: 100,
                ..yolov5s()
            },
            YoloV5Config { nc: 0, ..yolov5s() },
            YoloV5Config {
                strides: vec![8, 16],
                ..yolov5s()
            },
            YoloV5Config {
                anchors: vec![vec![1.0, 2.0, 3.0]; 3],
                ..yolov5s()
            },
            YoloV5Config {
                width_multiple: f64::NAN,
                ..yolov5s()
            },
        ] {
            assert!(bad.validate("c").is_err(), "{bad:?}");
            assert!(yolov5(&bad, &mut Params::random("y", 1), 1).is_err());
        }
        let mut p = Params::random("y", 1);
        assert!(yolov5(&yolov5n(), &mut p, 0).is_err());
    }
}
