//! Running an f32 model in f16: [`to_half`] rewrites a graph so that every f32 value inside it
//! is f16 (weights converted once, here), while its inputs and outputs keep their f32 dtypes (a
//! cast at each), so a caller feeds and reads the same tensors as before. A device that stores
//! f16 tensors as f16 then moves half the bytes; kernels still compute in f32 and round each
//! op's output to f16.

use crate::graph::Graph;
use crate::passes::Rebuild;
use crate::{DType, Error, Op, Result, Tensor};

/// The model's precision on the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// As built.
    #[default]
    F32,
    /// f32 values become f16 ([`to_half`]).
    F16,
}

impl Precision {
    /// The graph at this precision: `g` itself, or [`to_half`] of it.
    pub fn apply(self, g: &Graph) -> Result<Graph> {
        match self {
            Precision::F32 => Ok(g.clone()),
            Precision::F16 => to_half(g),
        }
    }
}

/// `g` with its f32 values in f16: f32 constants converted, each f32 input cast to f16 where it
/// enters, a Cast to f32 made one to f16, and each f32 output cast back to f32. Other dtypes
/// are unchanged. An op whose output stays f32 whatever its inputs (one with an f32 attribute
/// this pass does not know) and that then meets an f16 value fails with the node named.
///
/// A quantized graph (one with an integer product) is refused: its i32 sums are cast to f32 and
/// then scaled down, and in f16 a sum past 65,504 would become infinite before its scale.
pub fn to_half(g: &Graph) -> Result<Graph> {
    if let Some(n) = g
        .nodes()
        .iter()
        .find(|n| matches!(n.op, Op::MatMulInteger | Op::ConvInteger(_)))
    {
        return Err(Error::Unsupported {
            node: n.name.clone(),
            op: n.op.name().into(),
            inputs: String::new(),
            msg: "precision f16 on a quantized model: its integer sums become f32 before their \
                  scales, and past 65,504 they do not fit f16; run it at f32 (its products are \
                  integer either way)"
                .into(),
        });
    }
    let mut r = Rebuild::new(g, "to_half");
    for &v in g.inputs() {
        if g.dtype(v) == DType::F32 {
            let x = r.get(v)?;
            let name = format!("{}/f16", g.value(v).name);
            let h = r.new.add_named(&name, cast(DType::F16), &[x])?[0];
            r.alias(v, h);
        }
    }
    for node in g.nodes() {
        let op = match &node.op {
            Op::Constant(t) if t.dtype() == DType::F32 => {
                Op::Constant(half_constant(&node.name, t)?)
            }
            Op::Cast { to: DType::F32, .. } => cast(DType::F16),
            op => op.clone(),
        };
        let ins = r.inputs_of(node)?;
        let outs = r.new.add_named(&node.name, op, &ins).map_err(|e| {
            Error::Graph(format!(
                "precision f16: node '{}' ({}) cannot run in f16: {e}",
                node.name,
                node.op.name()
            ))
        })?;
        for (&old, &new) in node.outputs.iter().zip(&outs) {
            r.alias(old, new);
        }
    }
    let mut outs = Vec::new();
    for &o in g.outputs() {
        let v = r.get(o)?;
        outs.push(
            if g.dtype(o) == DType::F32 && r.new.dtype(v) == DType::F16 {
                let name = format!("{}/f32", g.value(o).name);
                r.new.add_named(&name, cast(DType::F32), &[v])?[0]
            } else {
                v
            },
        );
    }
    let mut new = r.new;
    new.set_outputs(&outs)?;
    Ok(new)
}

/// The largest finite f16.
const F16_MAX: f32 = 65504.0;

/// An f32 constant in f16, its finite values clamped to f16's range (a mask's `-1e9` or
/// `f32::MIN` becomes -65504, not -inf, so `0 * mask` stays 0 rather than NaN); how many were
/// clamped is logged.
fn half_constant(name: &str, t: &Tensor) -> Result<Tensor> {
    let v = t
        .as_f32()
        .ok_or_else(|| Error::Graph(format!("constant '{name}' is not f32")))?;
    let mut clamped = 0usize;
    let h: Vec<half::f16> = v
        .iter()
        .map(|&x| {
            if x.is_finite() && x.abs() > F16_MAX {
                clamped += 1;
            }
            let x = if x.is_finite() {
                x.clamp(-F16_MAX, F16_MAX)
            } else {
                x
            };
            half::f16::from_f32(x)
        })
        .collect();
    if clamped > 0 {
        tracing::warn!(
            constant = name,
            clamped,
            "precision f16: finite values past f16's range clamped to ±65504"
        );
    }
    Tensor::new(t.shape().clone(), crate::TensorData::F16(h))
}

fn cast(to: DType) -> Op {
    Op::Cast {
        to,
        saturate: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CpuDevice, Device};

    #[test]
    fn an_f32_block_runs_in_f16_with_f32_inputs_and_outputs() {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [4, 64]);
        let w = g.constant(Tensor::random(DType::F32, [64, 32], 1)).unwrap();
        let y = g.matmul(x, w).unwrap();
        let y = g.gelu(y).unwrap();
        let y = g.softmax(y, -1).unwrap();
        g.set_outputs(&[y]).unwrap();
        let h = to_half(&g).unwrap();
        assert_eq!(h.dtype(h.inputs()[0]), DType::F32);
        assert_eq!(h.dtype(h.outputs()[0]), DType::F32);
        let f16_values = h.values().iter().filter(|v| v.dtype == DType::F16).count();
        assert!(f16_values >= 4, "{f16_values}");
        let x = Tensor::random(DType::F32, [4, 64], 2);
        let a = CpuDevice.run(&g, std::slice::from_ref(&x)).unwrap().outputs;
        let b = CpuDevice.run(&h, &[x]).unwrap().outputs;
        let (abs, _) = a[0].max_diff(&b[0]);
        assert!(abs > 0.0 && abs < 2e-3, "{abs}");
    }

    #[test]
    fn a_quantized_graph_is_refused() {
        let mut g = Graph::new();
        let a = g.input("a", DType::I32, [2, 8]);
        let w = g.constant(Tensor::random(DType::I32, [8, 3], 1)).unwrap();
        let p = g.add(Op::MatMulInteger, &[a, w]).unwrap()[0];
        let y = g.cast(p, DType::F32).unwrap();
        g.set_outputs(&[y]).unwrap();
        let e = to_half(&g).unwrap_err().to_string();
        assert!(e.contains("MatMulInteger") && e.contains("65,504"), "{e}");
    }

    #[test]
    fn constants_past_f16s_range_are_clamped_not_infinite() {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [3]);
        let mask = g
            .constant(Tensor::from_f32([3], vec![-1e9, f32::MIN, 1e-3]).unwrap())
            .unwrap();
        let zero = g
            .constant(Tensor::from_f32([3], vec![0.0; 3]).unwrap())
            .unwrap();
        let m = g.mul(mask, zero).unwrap();
        let y = g.add_(x, m).unwrap();
        g.set_outputs(&[y]).unwrap();
        let h = to_half(&g).unwrap();
        let x = Tensor::from_f32([3], vec![1.0, 2.0, 3.0]).unwrap();
        let out = CpuDevice.run(&h, &[x]).unwrap().outputs;
        assert_eq!(out[0].to_f64_vec(), vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn other_dtypes_are_kept() {
        let mut g = Graph::new();
        let x = g.input("x", DType::I32, [3]);
        let y = g.cast(x, DType::F32).unwrap();
        let z = g.cast(x, DType::I64).unwrap();
        g.set_outputs(&[y, z]).unwrap();
        let h = to_half(&g).unwrap();
        assert_eq!(h.dtype(h.inputs()[0]), DType::I32);
        assert_eq!(h.dtype(h.outputs()[0]), DType::F32);
        assert_eq!(h.dtype(h.outputs()[1]), DType::I64);
        // The cast to f32 is now one to f16 and back.
        assert!(h
            .nodes()
            .iter()
            .any(|n| matches!(n.op, Op::Cast { to: DType::F16, .. })));
    }
}
