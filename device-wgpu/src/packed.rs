//! Which constants a prepared graph stores as packed int8, four values to a 32-bit word: those
//! whose every value fits in i8 (a quantized weight less its zero point, as the importer folds
//! it) and that only bindings [`sfumato_shaders::packed`] can rewrite read. That module says
//! which kernels and how; here the device finds the constants, packs their bytes and applies
//! the rewrites. Any other reader (another kernel, a copy, a view, a graph output) keeps a
//! constant i32.

use sfumato_core::{Graph, NodeId, Op, Result, Tensor, ValueId};
use sfumato_shaders::{Buf, GroupKernels, Lowered};
use std::collections::{HashMap, HashSet};

/// The bytes of `t` packed, one a value in order, where it can be: an integer the device holds
/// as i32, every value in i8's range, a whole number of words.
fn packed_i8(t: &Tensor) -> Option<Vec<u8>> {
    if sfumato_shaders::Elem::of(t.dtype()) != sfumato_shaders::Elem::I32
        || t.numel() == 0
        || !t.numel().is_multiple_of(4)
    {
        return None;
    }
    t.to_f64_vec()
        .iter()
        .map(|&x| (-128.0..=127.0).contains(&x).then_some(x as i8 as u8))
        .collect()
}

/// The constants of `g` (`consts`: value, its node) to store packed, with their packed bytes,
/// given its lowered groups; and the kernels that read one rewritten to unpack it. `unpack4x`:
/// the adapter has WGSL's `packed_4x8_integer_dot_product`.
pub(crate) fn pack_int8(
    g: &Graph,
    consts: &[(ValueId, NodeId)],
    lowered: &mut [(NodeId, GroupKernels)],
    unpack4x: bool,
) -> Result<HashMap<ValueId, Vec<u8>>> {
    // The values packable operands read, and those read any other way (another kernel, another
    // binding, a copy, a view), which stay i32.
    let (mut operand, mut other) = (HashSet::new(), HashSet::new());
    for (_, gk) in lowered.iter() {
        match &gk.lowered {
            Lowered::Kernels(ks) => {
                for k in ks {
                    for (bi, b) in k.bindings.iter().enumerate() {
                        let v = match *b {
                            Buf::In(i) | Buf::Texture(i) => gk.inputs[i],
                            Buf::Uniform { input, .. } | Buf::StageLinear { input, .. } => {
                                gk.inputs[input]
                            }
                            Buf::Out(i) => gk.outputs[i],
                            Buf::Stage { .. } => continue,
                        };
                        if matches!(b, Buf::In(_))
                            && sfumato_shaders::packed::packable(k, bi, unpack4x)
                        {
                            operand.insert(v);
                        } else {
                            other.insert(v);
                        }
                    }
                }
            }
            Lowered::Constant => {}
            Lowered::Alias | Lowered::Copies(_) => {
                other.extend(gk.inputs.iter().chain(&gk.outputs));
            }
        }
    }
    other.extend(g.outputs());
    // Of those, the constants whose values fit (checked last: it reads the whole tensor).
    let packed: HashMap<ValueId, Vec<u8>> = consts
        .iter()
        .filter(|(v, _)| operand.contains(v) && !other.contains(v))
        .filter_map(|&(v, n)| match &g.node(n).op {
            Op::Constant(t) => Some((v, packed_i8(t)?)),
            _ => None,
        })
        .collect();
    if packed.is_empty() {
        return Ok(packed);
    }
    for (node, gk) in lowered.iter_mut() {
        let inputs = gk.inputs.clone();
        if let Lowered::Kernels(ks) = &mut gk.lowered {
            for k in ks.iter_mut() {
                let which: Vec<usize> = (k.bindings.iter().enumerate())
                    .filter(|(_, b)| matches!(b, Buf::In(i) if packed.contains_key(&inputs[*i])))
                    .map(|(bi, _)| bi)
                    .collect();
                if let Some(p) = sfumato_shaders::packed::pack_int8(k, &which)
                    .map_err(|e| e.for_node(g, g.node(*node)))?
                {
                    *k = p;
                }
            }
        }
    }
    Ok(packed)
}
