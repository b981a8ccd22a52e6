//! f16 storage: a kernel whose tensors are stored as f16 (half the bytes) keeps computing in
//! f32. Templates and fused kernels are written once, for `array<f32>` bindings; where the
//! adapter has `shader-f16` and a bound tensor is f16, [`store_half`] rewrites the kernel: those
//! bindings become `array<f16>` (or `array<vec4<f16>>`), every load from them is widened to f32
//! where it is read and every store narrowed to f16 (rounded to nearest) where it is written.
//! Arithmetic, accumulators and workgroup memory stay f32, so matmul, conv, reductions, softmax
//! and layer norm accumulate in f32, and an f16 tensor's values round once, when a kernel stores
//! them (as the CPU reference rounds each op's f16 output).
//!
//! The loads and stores are found in naga's IR of the module (every `Load` whose pointer is
//! rooted at one of the bindings, every `Store` into one), and the text is edited at their
//! spans: `a[i]` becomes `f32(a[i])`, `out[i] = v` becomes `out[i] = f16(v)`. The result is
//! validated again with naga's f16 capability; WGSL has no implicit conversion, so a load or
//! store the rewrite missed is a type error there, never a silently narrowed value.

use crate::Error;
use naga::{
    AddressSpace, Block, Expression, Function, GlobalVariable, Handle, Module, Scalar, Statement,
    TypeInner,
};
use std::collections::HashMap;

/// The WGSL of `wgsl` (kernel `kernel`, valid) with the storage bindings `bindings` (group 0)
/// holding f16 instead of f32: each must be a storage `array<f32>` or `array<vecN<f32>>`, else
/// an internal error. Validated with naga's f16 capability.
pub fn store_half(kernel: &str, wgsl: &str, bindings: &[u32]) -> Result<String, Error> {
    if bindings.is_empty() {
        return Ok(wgsl.to_string());
    }
    let naga_err = |msg: String| Error::Naga {
        kernel: kernel.to_string(),
        msg,
    };
    let internal = |what: String| Error::Internal(format!("kernel '{kernel}': {what}"));
    let module =
        naga::front::wgsl::parse_str(wgsl).map_err(|e| naga_err(e.emit_to_string(wgsl)))?;
    let halves = half_bindings(&module, bindings).map_err(internal)?;
    let mut edits = Edits::default();
    for (&g, &(vector, binding)) in &halves {
        // The declaration's type: the last `array<f32>` (or `array<vecN<f32>>`) of its span.
        let span = module
            .global_variables
            .get_span(g)
            .to_range()
            .unwrap_or(0..0);
        let ty = match vector {
            Some(n) => format!("array<vec{n}<f32>>"),
            None => "array<f32>".to_string(),
        };
        let at = wgsl
            .get(span.clone())
            .and_then(|text| text.rfind(&ty))
            .ok_or_else(|| internal(format!("binding {binding}'s declaration has no {ty}")))?;
        let at = span.start + at;
        edits.replace(at..at + ty.len(), ty.replace("f32", "f16"));
    }
    let mut functions: Vec<&Function> = module.functions.iter().map(|(_, f)| f).collect();
    functions.extend(module.entry_points.iter().map(|e| &e.function));
    for f in functions {
        function_edits(wgsl, f, &halves, &mut edits).map_err(internal)?;
    }
    let text = format!("enable f16;\n{}", edits.apply(wgsl));
    // Validated as every kernel is (with the f16 capability it enables, and Tint's rules).
    crate::validate(kernel, &text).map_err(|e| match e {
        Error::Naga { kernel, msg } => Error::Naga {
            kernel,
            msg: format!("after the f16 storage rewrite: {msg}"),
        },
        e => e,
    })?;
    Ok(text)
}

/// The bindings (group 0) of `wgsl` that [`store_half`] can store as f16: storage arrays of
/// f32 or of vectors of f32. (A kernel that binds a float tensor another way, as `array<u32>`
/// bits for a copy, needs that tensor in f32.)
pub fn f32_array_bindings(kernel: &str, wgsl: &str) -> Result<Vec<u32>, Error> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| Error::Naga {
        kernel: kernel.to_string(),
        msg: e.emit_to_string(wgsl),
    })?;
    let mut out: Vec<u32> = module
        .global_variables
        .iter()
        .filter(|(_, gv)| f32_elements(&module, gv).is_ok())
        .filter_map(|(_, gv)| Some(gv.binding.as_ref().filter(|b| b.group == 0)?.binding))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// The globals of `bindings`: each one's element vector size (None: a scalar) and binding.
type Halves = HashMap<Handle<GlobalVariable>, (Option<u8>, u32)>;

fn half_bindings(module: &Module, bindings: &[u32]) -> Result<Halves, String> {
    let mut found = HashMap::new();
    for (h, gv) in module.global_variables.iter() {
        let Some(b) = gv.binding.as_ref().filter(|b| b.group == 0) else {
            continue;
        };
        if !bindings.contains(&b.binding) {
            continue;
        }
        let vector = f32_elements(module, gv)
            .map_err(|what| format!("binding {} cannot be stored as f16: {what}", b.binding))?;
        found.insert(h, (vector, b.binding));
    }
    if let Some(missing) = bindings
        .iter()
        .find(|&&b| !found.values().any(|&(_, f)| f == b))
    {
        return Err(format!("it has no binding {missing} to store as f16"));
    }
    Ok(found)
}

/// A storage array of f32 or of vectors of f32: its vector size (None: scalars); else what it
/// is not.
fn f32_elements(module: &Module, gv: &GlobalVariable) -> Result<Option<u8>, &'static str> {
    if !matches!(gv.space, AddressSpace::Storage { .. }) {
        return Err("it is not a storage buffer");
    }
    let TypeInner::Array { base, .. } = module.types[gv.ty].inner else {
        return Err("it is not an array");
    };
    match module.types[base].inner {
        TypeInner::Scalar(s) if s == Scalar::F32 => Ok(None),
        TypeInner::Vector { size, scalar } if scalar == Scalar::F32 => Ok(Some(size as u8)),
        _ => Err("its elements are not f32 or vectors of f32"),
    }
}

/// The binding a pointer points into and the accesses on the way (1: an element, 2: a
/// component of a vector element).
fn root(f: &Function, mut e: Handle<Expression>) -> Option<(Handle<GlobalVariable>, usize)> {
    let mut depth = 0;
    loop {
        match f.expressions[e] {
            Expression::Access { base, .. } | Expression::AccessIndex { base, .. } => {
                e = base;
                depth += 1;
            }
            Expression::GlobalVariable(g) => return Some((g, depth)),
            _ => return None,
        }
    }
}

/// The WGSL type of what a pointer into a half binding at `depth` reads or writes, in `float`
/// (`f32` or `f16`).
fn value_type(vector: Option<u8>, depth: usize, float: &str) -> String {
    match vector {
        Some(n) if depth < 2 => format!("vec{n}<{float}>"),
        _ => float.to_string(),
    }
}

/// The edits of `f`: each load from a half binding widened, each store into one narrowed.
fn function_edits(
    wgsl: &str,
    f: &Function,
    halves: &Halves,
    edits: &mut Edits,
) -> Result<(), String> {
    for (h, e) in f.expressions.iter() {
        let Expression::Load { pointer } = *e else {
            continue;
        };
        let Some((g, depth)) = root(f, pointer) else {
            continue;
        };
        let Some(&(vector, _)) = halves.get(&g) else {
            continue;
        };
        let span = f.expressions.get_span(h).to_range().unwrap_or(0..0);
        if span.is_empty() {
            return Err("a load from an f16 binding has no span in the source".into());
        }
        edits.wrap(span, value_type(vector, depth, "f32"), false);
    }
    let mut stores = Vec::new();
    collect_stores(&f.body, &mut stores);
    for (pointer, span) in stores {
        let Some((g, depth)) = root(f, pointer) else {
            continue;
        };
        let Some(&(vector, _)) = halves.get(&g) else {
            continue;
        };
        // The value is what follows the pointer's `=` in the statement's text (an expression's
        // own span can be elsewhere: a function argument's is its declaration).
        let target = f.expressions.get_span(pointer).to_range().unwrap_or(0..0);
        let stmt = span.to_range().unwrap_or(0..0);
        let value = (!target.is_empty() && target.end <= stmt.end)
            .then(|| assigned(wgsl, target.end, stmt.end))
            .flatten()
            .ok_or_else(|| {
                format!(
                    "a store into an f16 binding that is not `x = value` (a compound \
                     assignment such as `+=`?) at '{}'",
                    wgsl.get(stmt.clone()).unwrap_or("?")
                )
            })?;
        edits.wrap(value, value_type(vector, depth, "f16"), true);
    }
    Ok(())
}

/// The byte range of the value of an assignment whose target ends at `from` and whose
/// statement ends at `end`: after `=` (not `==`, `+=`, ...), trimmed, without a final `;`.
fn assigned(wgsl: &str, from: usize, end: usize) -> Option<std::ops::Range<usize>> {
    let text = wgsl.get(from..end)?;
    let rest = text.trim_start().strip_prefix('=')?;
    if rest.starts_with('=') {
        return None;
    }
    let start = end - rest.len();
    let value = rest.trim_end().trim_end_matches(';').trim_end();
    let lead = value.len() - value.trim_start().len();
    (!value.trim().is_empty()).then(|| start + lead..start + value.len())
}

/// Every store of a block and the blocks inside it: (pointer, the statement's span).
fn collect_stores(block: &Block, out: &mut Vec<(Handle<Expression>, naga::Span)>) {
    for (stmt, span) in block.span_iter() {
        match stmt {
            Statement::Store { pointer, .. } => out.push((*pointer, *span)),
            Statement::Block(b) => collect_stores(b, out),
            Statement::If { accept, reject, .. } => {
                collect_stores(accept, out);
                collect_stores(reject, out);
            }
            Statement::Loop {
                body, continuing, ..
            } => {
                collect_stores(body, out);
                collect_stores(continuing, out);
            }
            Statement::Switch { cases, .. } => {
                for c in cases {
                    collect_stores(&c.body, out);
                }
            }
            _ => {}
        }
    }
}

/// Text edits at byte ranges of the source: wraps (`ty(` ... `)`), which nest, and
/// replacements, which touch no wrap.
#[derive(Default)]
struct Edits {
    /// (start, end, type, outer): `type(` at start, `)` at end; of two wraps of one range, the
    /// outer one is outside (a store's narrowing of a value that is a load).
    wraps: Vec<(usize, usize, String, bool)>,
    replaces: Vec<(std::ops::Range<usize>, String)>,
}

impl Edits {
    fn wrap(&mut self, at: std::ops::Range<usize>, ty: String, outer: bool) {
        self.wraps.push((at.start, at.end, ty, outer));
    }

    fn replace(&mut self, at: std::ops::Range<usize>, with: String) {
        self.replaces.push((at, with));
    }

    fn apply(&self, wgsl: &str) -> String {
        // Inserts (position, rank, text): at one position every `)` comes first, then the
        // opens, the wider (or, of one range, the outer) first.
        let mut inserts: Vec<(usize, (u8, usize, bool), String)> = Vec::new();
        for (s, e, ty, outer) in &self.wraps {
            inserts.push((*s, (1, usize::MAX - (e - s), !outer), format!("{ty}(")));
            inserts.push((*e, (0, e - s, *outer), ")".to_string()));
        }
        inserts.sort_by_key(|x| (x.0, x.1));
        let mut replaces: Vec<&(std::ops::Range<usize>, String)> = self.replaces.iter().collect();
        replaces.sort_by_key(|r| r.0.start);
        let mut out = String::with_capacity(wgsl.len() + 8 * inserts.len());
        let (mut at, mut r) = (0, 0);
        for (pos, _, text) in &inserts {
            while let Some((range, with)) = replaces.get(r).filter(|x| x.0.start <= *pos) {
                out.push_str(&wgsl[at..range.start]);
                out.push_str(with);
                at = range.end;
                r += 1;
            }
            out.push_str(&wgsl[at..*pos]);
            out.push_str(text);
            at = *pos;
        }
        for (range, with) in &replaces[r..] {
            out.push_str(&wgsl[at..range.start]);
            out.push_str(with);
            at = range.end;
        }
        out.push_str(&wgsl[at..]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL: &str = "
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read> params: array<u32>;

fn first(i: u32) -> f32 { return a[i] * 2.0; }
fn put(i: u32, v: f32) { out[i + 1u] = v ; }

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= params[0] { return; }
    var acc = 0.0;
    for (var k = 0u; k < 4u; k++) {
        acc += b[i][k] + first(i);
    }
    out[i] = acc + b[i].y;
    if acc < 0.0 { out[i] = a[u32(out[i])]; }
    put(i, acc);
}
";

    #[test]
    fn bindings_become_f16_arrays_and_the_kernel_stays_valid() {
        let w = store_half("k", KERNEL, &[0, 1, 2]).unwrap();
        assert!(w.contains("enable f16;"), "{w}");
        assert!(w.contains("array<f16>"), "{w}");
        assert!(w.contains("array<vec4<f16>>"), "{w}");
        assert!(w.contains("array<u32>"), "{w}");
        insta::assert_snapshot!(w);
    }

    #[test]
    fn a_compound_assignment_is_refused() {
        let k = KERNEL.replace("out[i] = acc + b[i].y;", "out[i] = acc; out[i] += b[i].y;");
        let e = store_half("k", &k, &[2]).unwrap_err().to_string();
        assert!(e.contains("compound assignment"), "{e}");
    }

    #[test]
    fn the_f32_array_bindings_are_found() {
        assert_eq!(f32_array_bindings("k", KERNEL).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn no_bindings_is_the_same_text() {
        assert_eq!(store_half("k", KERNEL, &[]).unwrap(), KERNEL);
    }

    #[test]
    fn a_binding_that_is_not_an_f32_array_is_refused() {
        let e = store_half("k", KERNEL, &[3]).unwrap_err().to_string();
        assert!(e.contains("binding 3") && e.contains("not f32"), "{e}");
        let e = store_half("k", KERNEL, &[9]).unwrap_err().to_string();
        assert!(e.contains("no binding 9"), "{e}");
    }
}
