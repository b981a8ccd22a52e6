//! Which tensors a prepared graph stores as f16 ([`crate::DeviceOptions::half_storage`]).
//!
//! An f16 value is stored as f16 unless something binds it in a way the f16 rewrite
//! ([`sfumato_shaders::half`]) cannot follow: a graph input or output (uploads, readbacks,
//! kept tensors and write-backs stay f32, the device's exchange format), a kernel that binds it
//! other than as an `array<f32>` (raw bits) or as uniform blocks (their layout is f32), or a
//! buffer copy at an odd element (copies move 4-byte words). f16 constants a kernel reads as
//! a texture are rgba16float textures, and f16 tensors a kernel reads through the staging
//! texture (`Buf::StageLinear`) are copied into an rgba16float stage of their own: a float
//! texture's `textureLoad` gives f32 whatever its format, so those kernels are unchanged. Values that
//! share a buffer (a reshape's alias, an in-place output, a copy's source and target) are
//! decided together: one that must be f32 makes them all f32.

use sfumato_core::{DType, Graph, NodeId, Op, Result, ValueId};
use sfumato_shaders::{Buf, GroupKernels, Kernel, Lowered};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

/// Bytes an element of `v` takes on the device.
pub(crate) fn elem_bytes(half: &HashSet<ValueId>, v: ValueId) -> u64 {
    if half.contains(&v) {
        2
    } else {
        4
    }
}

/// Whether the kernels of a group of `nodes` of `g` may compute in f16
/// ([`sfumato_shaders::half::compute_half`]): every float value its nodes read or write is f16,
/// there is one, and each elementwise op is one f16 computes as the reference rounds it (an
/// add, multiply, compare, select, min, max or clamp: one correctly rounded operation on f16
/// values). Transcendentals (whose f16 forms are far less accurate than f32's rounded, and
/// overflow inside, as `asinh` squares its input), HardSwish (`x * 6` overflows where its
/// result does not), Div (WGSL allows f16 division 2.5 ULP, and nothing outside divisors of
/// 2^-14 to 2^14: a reciprocal that flushes gives 0), Pow and the casts keep their group in
/// f32. Anchors (matmul, conv, the row
/// reductions) accumulate in f32 whatever this says.
pub(crate) fn half_arithmetic_fits(g: &Graph, nodes: &[NodeId]) -> bool {
    use sfumato_core::op::{BinaryOp as B, UnaryOp as U};
    let mut any_f16 = false;
    for &n in nodes {
        let node = g.node(n);
        for dt in node.inputs.iter().chain(&node.outputs).map(|&v| g.dtype(v)) {
            if dt.is_float() && dt != DType::F16 {
                return false;
            }
            any_f16 |= dt == DType::F16;
        }
        let single = match &node.op {
            Op::Unary(u) => matches!(
                u,
                U::Relu
                    | U::LeakyRelu { .. }
                    | U::Neg
                    | U::Abs
                    | U::Clip { .. }
                    | U::Floor
                    | U::Ceil
                    | U::Round
                    | U::Sign
            ),
            Op::Binary(b) => matches!(
                b,
                B::Add
                    | B::Sub
                    | B::Mul
                    | B::Max
                    | B::Min
                    | B::Eq
                    | B::Ne
                    | B::Lt
                    | B::Le
                    | B::Gt
                    | B::Ge
            ),
            Op::Cast { .. } | Op::BitCast { .. } => false,
            _ => true,
        };
        if !single {
            return false;
        }
    }
    any_f16
}

/// The values of `g` that its lowered groups (node, kernels) let be stored as f16.
pub(crate) fn half_values(g: &Graph, lowered: &[(NodeId, GroupKernels)]) -> Result<HalfPlan> {
    let n = g.values().len();
    let is_f16 = |v: ValueId| g.dtype(v) == DType::F16;
    if !(0..n).any(|i| is_f16(ValueId(i as u32))) {
        return Ok(HalfPlan::default());
    }
    let mut sets = Sets::new(n);
    let mut rewritten = HashMap::new();
    for &v in g.inputs() {
        sets.force(v, "a graph input");
    }
    for &v in g.outputs() {
        sets.force(v, "a graph output");
    }
    for (_, gk) in lowered {
        match &gk.lowered {
            Lowered::Alias => sets.join(gk.inputs[0], gk.outputs[0]),
            Lowered::Copies(regions) => {
                for r in regions {
                    let (i, o) = (gk.inputs[r.input], gk.outputs[r.output]);
                    sets.join(i, o);
                    if r.src % 2 != 0 || r.dst % 2 != 0 || r.len % 2 != 0 {
                        sets.force(i, "a buffer copy at an odd element");
                    }
                }
            }
            Lowered::Constant => {}
            Lowered::Kernels(ks) => {
                if let Some(v) = gk.inplace {
                    sets.join(v, gk.outputs[0]);
                }
                for k in ks {
                    let value = |b: &Buf| match *b {
                        Buf::In(i) => Some(gk.inputs[i]),
                        Buf::Out(i) => Some(gk.outputs[i]),
                        _ => None,
                    };
                    if !k.bindings.iter().filter_map(value).any(is_f16) {
                        continue;
                    }
                    let f32_arrays = sfumato_shaders::half::f32_array_bindings(&k.name, &k.wgsl)
                        .map_err(|e| sfumato_core::Error::Device(e.to_string()))?;
                    // The rewrite of every f16 binding it could hold as f16 must go through
                    // (a store it cannot follow, such as `+=`, keeps the kernel's f16 values
                    // f32 rather than failing the model); a subset of them does then too.
                    let candidates: Vec<u32> = k
                        .bindings
                        .iter()
                        .enumerate()
                        .filter(|&(bi, b)| {
                            value(b).is_some_and(is_f16) && f32_arrays.contains(&(bi as u32))
                        })
                        .map(|(bi, _)| bi as u32)
                        .collect();
                    let key = (k.wgsl.clone(), candidates);
                    if let Entry::Vacant(e) = rewritten.entry(key) {
                        match sfumato_shaders::half::store_half(&k.name, &k.wgsl, &e.key().1) {
                            Ok(text) => {
                                e.insert(text);
                            }
                            Err(_) => {
                                for v in k.bindings.iter().filter_map(value) {
                                    sets.force(v, "its kernel cannot be rewritten for f16");
                                }
                            }
                        }
                    }
                    for (bi, b) in k.bindings.iter().enumerate() {
                        match *b {
                            Buf::In(_) | Buf::Out(_) => {
                                if !f32_arrays.contains(&(bi as u32)) {
                                    let v = value(b).unwrap_or(ValueId(0));
                                    sets.force(v, "bound other than as array<f32>");
                                }
                            }
                            Buf::Uniform { input, .. } => {
                                sets.force(gk.inputs[input], "read as uniform blocks")
                            }
                            // Read through the f16 stage (rgba16float) where all of the
                            // kernel's staged inputs are f16 and it binds no f32 stage.
                            Buf::StageLinear { input, .. } => {
                                let v = gk.inputs[input];
                                if let Some(first) = staged_inputs(k, gk).first() {
                                    sets.join(*first, v);
                                }
                                if k.bindings.iter().any(|b| matches!(b, Buf::Stage { .. })) {
                                    sets.force(v, "read through the f32 staging texture");
                                }
                            }
                            Buf::Texture(_) | Buf::Stage { .. } => {}
                        }
                    }
                }
            }
        }
    }
    for i in 0..n {
        if !is_f16(ValueId(i as u32)) {
            sets.force(ValueId(i as u32), "not f16");
        }
    }
    // Values a kernel, copy or alias touches (a value fused away inside a kernel has no buffer),
    // and those with a buffer of their own (a reshape's or an in-place output shares its base's,
    // whose bytes are counted once).
    let mut held = vec![false; n];
    let mut own = vec![true; n];
    for (_, gk) in lowered {
        for v in gk.inputs.iter().chain(&gk.outputs) {
            held[v.index()] = true;
        }
        if matches!(gk.lowered, Lowered::Alias) || gk.inplace.is_some() {
            own[gk.outputs[0].index()] = false;
        }
    }
    let bytes =
        |v: ValueId, elem: u64| g.shape(v).numel() as u64 * elem * u64::from(own[v.index()]);
    let mut half = HashSet::new();
    let mut stored_bytes = 0;
    let mut kept: HashMap<&'static str, (usize, u64)> = HashMap::new();
    for v in (0..n as u32).map(ValueId).filter(|v| held[v.index()]) {
        match sets.forced(v) {
            None => {
                half.insert(v);
                stored_bytes += bytes(v, 2);
            }
            Some(why) if is_f16(v) => {
                let k = kept.entry(why).or_default();
                k.0 += 1;
                k.1 += bytes(v, 4);
            }
            Some(_) => {}
        }
    }
    let mut kept: Vec<(&'static str, usize, u64)> =
        kept.into_iter().map(|(w, (c, b))| (w, c, b)).collect();
    kept.sort_by_key(|k| std::cmp::Reverse(k.2));
    Ok(HalfPlan {
        rewritten,
        stored: half.len(),
        stored_bytes,
        half,
        kept,
    })
}

/// Which values a prepared graph stores as f16, and why the other f16 values are f32
/// ([`crate::Explained::f16`]).
#[derive(Clone, Debug, Default)]
pub struct HalfPlan {
    pub(crate) half: HashSet<ValueId>,
    /// Rewrites made while deciding, by (kernel WGSL, its f16 bindings): a kernel whose every
    /// candidate binding holds f16, the usual case, is not rewritten twice.
    pub(crate) rewritten: HashMap<(String, Vec<u32>), String>,
    /// Values stored as f16, and the bytes of their buffers (a view or an in-place output shares
    /// its base's buffer: counted once).
    pub stored: usize,
    pub stored_bytes: u64,
    /// f16 values kept in f32, by reason, the most bytes first: (reason, values, their bytes
    /// as f32).
    pub kept: Vec<(&'static str, usize, u64)>,
}

impl HalfPlan {
    /// One line: what is stored as f16 and what is not, and why; `None` without f16 values.
    pub fn summary(&self) -> Option<String> {
        if self.stored == 0 && self.kept.is_empty() {
            return None;
        }
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut s = format!(
            "f16 storage: {} values as f16 ({:.1} MiB)",
            self.stored,
            mib(self.stored_bytes)
        );
        for (why, n, b) in &self.kept {
            s += &format!("; {n} kept f32 ({:.1} MiB), {why}", mib(*b));
        }
        Some(s)
    }
}

/// The inputs kernel `k` (of group `gk`) reads through the staging texture.
pub(crate) fn staged_inputs(k: &Kernel, gk: &GroupKernels) -> Vec<ValueId> {
    k.bindings
        .iter()
        .filter_map(|b| match *b {
            Buf::StageLinear { input, .. } => Some(gk.inputs[input]),
            _ => None,
        })
        .collect()
}

/// The bindings of kernel `k` (of a group with `inputs` and `outputs`) that hold f16 values.
pub(crate) fn half_bindings(
    k: &Kernel,
    inputs: &[ValueId],
    outputs: &[ValueId],
    half: &HashSet<ValueId>,
) -> Vec<u32> {
    k.bindings
        .iter()
        .enumerate()
        .filter(|(_, b)| match **b {
            Buf::In(i) => half.contains(&inputs[i]),
            Buf::Out(i) => half.contains(&outputs[i]),
            _ => false,
        })
        .map(|(bi, _)| bi as u32)
        .collect()
}

/// Values in sets that share a buffer (union-find), each set forced to f32 (and why) or not.
struct Sets {
    parent: Vec<usize>,
    forced: Vec<Option<&'static str>>,
}

impl Sets {
    fn new(n: usize) -> Self {
        Sets {
            parent: (0..n).collect(),
            forced: vec![None; n],
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn join(&mut self, a: ValueId, b: ValueId) {
        let (ra, rb) = (self.find(a.index()), self.find(b.index()));
        if ra != rb {
            self.parent[rb] = ra;
            self.forced[ra] = self.forced[ra].or(self.forced[rb]);
        }
    }

    fn force(&mut self, v: ValueId, why: &'static str) {
        let r = self.find(v.index());
        self.forced[r] = self.forced[r].or(Some(why));
    }

    fn forced(&mut self, v: ValueId) -> Option<&'static str> {
        let r = self.find(v.index());
        self.forced[r]
    }
}
