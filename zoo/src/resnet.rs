//! ResNet (torchvision's `resnet18` to `resnet101`, v1.5: a bottleneck's stride is on its 3x3)
//! for image classification.
//!
//! Weights use torchvision's state-dict names: `conv1`, `bn1`, `layer{1..4}.{i}.conv{1,2,3}` and
//! `.bn{1,2,3}`, `layer{s}.0.downsample.0` (the 1x1 conv) and `.downsample.1` (its BatchNorm),
//! `fc`. Batch norms run in inference form from their running statistics; `num_batches_tracked`
//! is ignored.
//!
//! Input: `pixels` f32 `[batch, 3, image_size, image_size]` (normalised as the checkpoint was
//! trained, ImageNet's mean and standard deviation for torchvision's). Output: `logits` f32
//! `[batch, num_classes]`.

use crate::error::{ConfigCheck, Result, ZooError};
use crate::nn;
use crate::params::Params;
use serde::Deserialize;
use sfumato_core::op::{conv_out, BinaryOp, Conv2d, Pool2d};
use sfumato_core::{DType, Graph, Op, ValueId};

/// A residual block's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResNetBlock {
    /// Two 3x3 convolutions (ResNet-18, -34); expansion 1.
    Basic,
    /// 1x1, 3x3 (strided), 1x1 convolutions (ResNet-50, -101, -152); expansion 4.
    Bottleneck,
}

impl ResNetBlock {
    /// How many times wider a block's output is than its `planes`.
    pub fn expansion(self) -> usize {
        match self {
            ResNetBlock::Basic => 1,
            ResNetBlock::Bottleneck => 4,
        }
    }
}

/// A ResNet's hyper-parameters. JSON with these keys (and an optional `expansion`, checked
/// against `block`) is what the zoo's fixtures store.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ResNetConfig {
    pub block: ResNetBlock,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// The stem's channels and stage 1's planes (64 in torchvision); stage `s` has
    /// `width * 2^s` planes.
    pub width: usize,
    pub num_classes: usize,
    /// Height and width of the input image.
    pub image_size: usize,
    #[serde(default = "eps5")]
    pub bn_eps: f32,
}

fn eps5() -> f32 {
    1e-5
}

/// torchvision ResNet-18: basic blocks `[2, 2, 2, 2]`, 1000 classes, 224x224.
pub fn resnet18() -> ResNetConfig {
    ResNetConfig {
        block: ResNetBlock::Basic,
        layers: [2, 2, 2, 2],
        width: 64,
        num_classes: 1000,
        image_size: 224,
        bn_eps: 1e-5,
    }
}

/// torchvision ResNet-34: basic blocks `[3, 4, 6, 3]`.
pub fn resnet34() -> ResNetConfig {
    ResNetConfig {
        layers: [3, 4, 6, 3],
        ..resnet18()
    }
}

/// torchvision ResNet-50: bottleneck blocks `[3, 4, 6, 3]`.
pub fn resnet50() -> ResNetConfig {
    ResNetConfig {
        block: ResNetBlock::Bottleneck,
        layers: [3, 4, 6, 3],
        ..resnet18()
    }
}

/// torchvision ResNet-101: bottleneck blocks `[3, 4, 23, 3]`.
pub fn resnet101() -> ResNetConfig {
    ResNetConfig {
        layers: [3, 4, 23, 3],
        ..resnet50()
    }
}

/// One residual block, as [`ResNetConfig::blocks`] lays them out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSpec {
    /// The state-dict prefix, `layer{s}.{i}`.
    pub name: String,
    pub inplanes: usize,
    pub planes: usize,
    pub stride: usize,
    /// Whether the shortcut is a strided 1x1 conv and BatchNorm (`downsample`).
    pub downsample: bool,
}

impl ResNetConfig {
    /// A config from JSON text (`path` names it in errors), checked by [`Self::validate`].
    pub fn from_json(text: &str, path: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct WithExpansion {
            #[serde(flatten)]
            cfg: ResNetConfig,
            expansion: Option<usize>,
        }
        let raw: WithExpansion = serde_json::from_str(text).map_err(|e| ZooError::Config {
            path: path.into(),
            msg: e.to_string(),
        })?;
        if let Some(e) = raw.expansion {
            if e != raw.cfg.block.expansion() {
                return Err(ZooError::Config {
                    path: path.into(),
                    msg: format!(
                        "expansion {e} does not fit {:?} blocks (expansion {})",
                        raw.cfg.block,
                        raw.cfg.block.expansion()
                    ),
                });
            }
        }
        raw.cfg.validate(path)?;
        Ok(raw.cfg)
    }

    /// Sizes that make a network: no zero, an image the stem and four stages can reduce.
    pub fn validate(&self, path: &str) -> Result<()> {
        let check = ConfigCheck(path);
        let bad = |msg: String| check.fail(msg);
        check.positive(&[
            ("width", self.width),
            ("num_classes", self.num_classes),
            ("image_size", self.image_size),
        ])?;
        if self.layers.contains(&0) {
            return bad(format!(
                "every stage needs a block, layers is {:?}",
                self.layers
            ));
        }
        if self.bn_eps.is_nan() || self.bn_eps <= 0.0 {
            return bad(format!("bn_eps must be positive, not {}", self.bn_eps));
        }
        if let Err(msg) = self.spatial() {
            return bad(msg);
        }
        Ok(())
    }

    /// Every residual block in order, with its channels, stride and shortcut: where torchvision
    /// puts a `downsample` (block 0 of a stage whose stride is not 1 or whose input width is
    /// not the block's output width).
    pub fn blocks(&self) -> Vec<BlockSpec> {
        let exp = self.block.expansion();
        let mut inplanes = self.width;
        let mut out = Vec::new();
        for (s, &n) in self.layers.iter().enumerate() {
            let planes = self.width << s;
            let stage_stride = if s == 0 { 1 } else { 2 };
            for i in 0..n {
                let stride = if i == 0 { stage_stride } else { 1 };
                out.push(BlockSpec {
                    name: format!("layer{}.{i}", s + 1),
                    inplanes,
                    planes,
                    stride,
                    downsample: i == 0 && (stride != 1 || inplanes != planes * exp),
                });
                inplanes = planes * exp;
            }
        }
        out
    }

    /// Channels into `fc`.
    pub fn features(&self) -> usize {
        (self.width << 3) * self.block.expansion()
    }

    /// The input side after the stem conv and after its max pool (each stage after halves it,
    /// rounding up, down to 1 at least).
    fn spatial(&self) -> std::result::Result<[usize; 2], String> {
        let err = |e: String| format!("image_size {}: {e}", self.image_size);
        let conv = conv_out(self.image_size, 7, 2, 6, 1).map_err(err)?;
        let pool = conv_out(conv, 3, 2, 2, 1).map_err(err)?;
        Ok([conv, pool])
    }

    /// FLOPs of one forward over `batch` images: two per multiply-add of every convolution and
    /// of `fc` (BatchNorm, ReLU, pooling and the residual adds are left out, as torchvision's
    /// published GFLOPS leave them out). 0 for a config that does not validate.
    pub fn flops(&self, batch: usize) -> f64 {
        let Ok(sides) = self.spatial() else {
            return 0.0;
        };
        let conv = |cin: usize, cout: usize, k: usize, side: usize| {
            (cin * cout * k * k) as f64 * (side * side) as f64
        };
        let mut macs = conv(3, self.width, 7, sides[0]);
        let exp = self.block.expansion();
        let mut side = sides[1];
        for b in self.blocks() {
            let (inp, pl) = (b.inplanes, b.planes);
            let out_side = side.div_ceil(b.stride);
            macs += match self.block {
                ResNetBlock::Basic => conv(inp, pl, 3, out_side) + conv(pl, pl, 3, out_side),
                ResNetBlock::Bottleneck => {
                    conv(inp, pl, 1, side)
                        + conv(pl, pl, 3, out_side)
                        + conv(pl, pl * exp, 1, out_side)
                }
            };
            if b.downsample {
                macs += conv(inp, pl * exp, 1, out_side);
            }
            side = out_side;
        }
        macs += (self.features() * self.num_classes) as f64;
        2.0 * macs * batch as f64
    }
}

/// A ResNet for `batch` images, its weights from `p` (call [`Params::finish`] after to learn
/// of every missing, unexpected or mis-shaped tensor at once).
pub fn resnet(cfg: &ResNetConfig, p: &mut Params, batch: usize) -> Result<Graph> {
    cfg.validate("ResNetConfig")?;
    if batch == 0 {
        return Err(ZooError::Input("resnet: batch must be at least 1".into()));
    }
    let eps = cfg.bn_eps;
    let exp = cfg.block.expansion();
    let s = cfg.image_size;
    let mut g = Graph::new();
    let pixels = g.input("pixels", DType::F32, [batch, 3, s, s]);

    let x = nn::conv(
        &mut g,
        p,
        pixels,
        "conv1",
        3,
        cfg.width,
        7,
        Conv2d::padded(3, 2),
        false,
    )?;
    let x = nn::batch_norm(&mut g, p, x, "bn1", cfg.width, eps)?;
    let x = g.relu(x)?;
    let mut x = g.max_pool2d(x, Pool2d::new(3, 2, 1))?;

    for b in cfg.blocks() {
        let conv_bn = |g: &mut Graph,
                       p: &mut Params,
                       x: ValueId,
                       i: usize,
                       cin: usize,
                       cout: usize,
                       k: usize,
                       stride: usize| {
            let y = nn::conv(
                g,
                p,
                x,
                &format!("{}.conv{i}", b.name),
                cin,
                cout,
                k,
                Conv2d::padded(k / 2, stride),
                false,
            )?;
            nn::batch_norm(g, p, y, &format!("{}.bn{i}", b.name), cout, eps)
        };
        let (inp, pl) = (b.inplanes, b.planes);
        let y = match cfg.block {
            ResNetBlock::Basic => {
                let y = conv_bn(&mut g, p, x, 1, inp, pl, 3, b.stride)?;
                let y = g.relu(y)?;
                conv_bn(&mut g, p, y, 2, pl, pl, 3, 1)?
            }
            ResNetBlock::Bottleneck => {
                let y = conv_bn(&mut g, p, x, 1, inp, pl, 1, 1)?;
                let y = g.relu(y)?;
                let y = conv_bn(&mut g, p, y, 2, pl, pl, 3, b.stride)?;
                let y = g.relu(y)?;
                conv_bn(&mut g, p, y, 3, pl, pl * exp, 1, 1)?
            }
        };
        let shortcut = if b.downsample {
            let d = nn::conv(
                &mut g,
                p,
                x,
                &format!("{}.downsample.0", b.name),
                inp,
                pl * exp,
                1,
                Conv2d::padded(0, b.stride),
                false,
            )?;
            nn::batch_norm(
                &mut g,
                p,
                d,
                &format!("{}.downsample.1", b.name),
                pl * exp,
                eps,
            )?
        } else {
            x
        };
        let y = g.add_(y, shortcut)?;
        x = g.relu(y)?;
    }

    let c = cfg.features();
    let pooled = g.global_avg_pool(x)?;
    let flat = g.reshape(pooled, &[batch as i64, c as i64])?;
    let w = p.linear_weight(&mut g, "fc.weight", c, cfg.num_classes)?;
    let bias = p.constant(
        &mut g,
        "fc.bias",
        &[cfg.num_classes],
        crate::params::Init::BIAS,
    )?;
    let y = g.matmul(flat, w)?;
    let logits = nn::named(&mut g, "logits", Op::Binary(BinaryOp::Add), &[y, bias])?;
    g.set_outputs(&[logits])?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downsamples_sit_where_torchvision_puts_them() {
        let names = |c: &ResNetConfig| -> Vec<String> {
            c.blocks()
                .into_iter()
                .filter(|b| b.downsample)
                .map(|b| b.name)
                .collect()
        };
        assert_eq!(names(&resnet18()), ["layer2.0", "layer3.0", "layer4.0"]);
        assert_eq!(
            names(&resnet50()),
            ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
        );
        assert_eq!(resnet101().blocks().len(), 33);
        assert_eq!(resnet50().features(), 2048);
        assert_eq!(resnet34().features(), 512);
    }

    #[test]
    fn flops_match_torchvision() {
        // torchvision's published GMACs ("GFLOPS") at 224: 1.81, 3.66, 4.09, 7.80.
        for (cfg, gmacs) in [
            (resnet18(), 1.814),
            (resnet34(), 3.664),
            (resnet50(), 4.089),
            (resnet101(), 7.801),
        ] {
            let got = cfg.flops(1) / 2e9;
            assert!(
                (got - gmacs).abs() / gmacs < 0.01,
                "{cfg:?}: {got} GMACs, torchvision {gmacs}"
            );
        }
        assert_eq!(resnet50().flops(3), 3.0 * resnet50().flops(1));
    }

    #[test]
    fn configs_from_json_are_checked() {
        let ok = r#"{"block": "bottleneck", "layers": [3, 4, 6, 3], "width": 8,
            "num_classes": 10, "image_size": 32, "bn_eps": 1e-05, "expansion": 4}"#;
        let c = ResNetConfig::from_json(ok, "c.json").unwrap();
        assert_eq!(c.block, ResNetBlock::Bottleneck);
        assert_eq!(c.width, 8);
        let wrong_exp = ok.replace("\"expansion\": 4", "\"expansion\": 1");
        let e = ResNetConfig::from_json(&wrong_exp, "c.json").unwrap_err();
        assert!(e.to_string().contains("expansion 1"), "{e}");
        let tiny = ok.replace("\"image_size\": 32", "\"image_size\": 0");
        assert!(ResNetConfig::from_json(&tiny, "c.json").is_err());
        let unknown = ok.replace("bottleneck", "inverted");
        assert!(ResNetConfig::from_json(&unknown, "c.json").is_err());
        let empty_stage = ok.replace("[3, 4, 6, 3]", "[3, 0, 6, 3]");
        assert!(ResNetConfig::from_json(&empty_stage, "c.json").is_err());
    }

    #[test]
    fn batch_zero_is_an_error_not_a_panic() {
        let cfg = ResNetConfig {
            width: 4,
            num_classes: 3,
            image_size: 32,
            ..resnet18()
        };
        let mut p = Params::random("resnet", 1);
        assert!(resnet(&cfg, &mut p, 0).is_err());
    }
}
