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
    declare_half(wgsl, &module, &halves, &mut edits).map_err(internal)?;
    for f in functions(&module) {
        function_edits(wgsl, f, &halves, &mut edits, ("f32", "f16")).map_err(internal)?;
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

/// The declarations of `halves` in `wgsl` edited to hold f16: the last `array<f32>` (or
/// `array<vecN<f32>>`) of each one's span.
fn declare_half(
    wgsl: &str,
    module: &Module,
    halves: &Halves,
    edits: &mut Edits,
) -> Result<(), String> {
    for (&g, &(vector, binding)) in halves {
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
            .ok_or_else(|| format!("binding {binding}'s declaration has no {ty}"))?;
        let at = span.start + at;
        edits.replace(at..at + ty.len(), ty.replace("f32", "f16"));
    }
    Ok(())
}

/// The elementwise kernels [`compute_half`] may run in f16 whole: straight-line code per
/// element, nothing accumulated.
pub const HALF_COMPUTE_KERNELS: &[&str] = &["fused_elementwise", "unary", "binary", "where"];

/// An anchor's epilogue (the chain after a matmul, conv or row reduction) in f16: the anchor's
/// f32 result rounded to f16 on entry, as the reference rounds the anchor's f16 output.
const EPILOGUE: (&str, &str) = (
    "fn epilogue(i: u32, v: f32) {",
    "fn epilogue(i: u32, v_f32: f32) {\n    let v = f16(v_f32);",
);
/// A row reduction's prologue (the chain before it) in f16, widened for the reduction.
const LOAD_X: (&str, &str) = (
    "fn load_x(i: u32) -> f32 {",
    "fn load_x(i: u32) -> f32 {\n    return f32(load_x_f16(i));\n}\nfn load_x_f16(i: u32) -> f16 {",
);

/// f16 arithmetic: the WGSL of kernel `kernel` with its elementwise work computing in f16. Every
/// float tensor it binds must hold f16 values (the caller checks their dtypes): `bindings` are
/// those stored as f16, the other `array<f32>` bindings f16 values stored as f32 (a graph's
/// inputs and outputs).
///
/// What computes in f16: the whole of an elementwise kernel ([`HALF_COMPUTE_KERNELS`]); in an
/// anchor kernel (a matmul, conv or row reduction with a fused chain), only the chain: its
/// `epilogue` and `load_x`, the anchor's own loop accumulating in f32 on loads widened as
/// [`store_half`] widens them. Where f16 is computed, f16 bindings are read and written as they
/// are, f32-stored ones narrowed on load (exact) and widened on store, and the fused node
/// functions are typed f16: WGSL's type inference carries f16 through the chain, and a chain
/// that names f32 anywhere (a transcendental helper such as `sigmoid_f`, an integer converted
/// to a float) is a type error, so such a kernel keeps computing in f32 (`None`; [`store_half`]
/// then widens its loads). Constants written as `bitcast<f32>(BITS)` become the literal of their
/// value, which is the same f32 where an f32 takes it. A literal f16 cannot hold exactly also
/// gives `None`: an epsilon of 1e-7 must not become 0 unseen, nor a LeakyRelu's 0.01 bias
/// every product.
pub fn compute_half(kernel: &str, wgsl: &str, bindings: &[u32]) -> Result<Option<String>, Error> {
    let internal = |what: String| Error::Internal(format!("kernel '{kernel}': {what}"));
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| Error::Naga {
        kernel: kernel.to_string(),
        msg: e.emit_to_string(wgsl),
    })?;
    let named = |name: &str| {
        module
            .functions
            .iter()
            .any(|(_, f)| f.name.as_deref() == Some(name))
    };
    let anchor = named("epilogue") && wgsl.contains("fn node_");
    if !anchor && !HALF_COMPUTE_KERNELS.contains(&kernel) {
        return Ok(None);
    }
    let stored_f32: Vec<u32> = float_arrays(&module)
        .into_iter()
        .filter(|b| !bindings.contains(b))
        .collect();
    let halves = half_bindings(&module, bindings).map_err(internal)?;
    let wide = half_bindings(&module, &stored_f32).map_err(internal)?;
    let mut edits = Edits::default();
    declare_half(wgsl, &module, &halves, &mut edits).map_err(internal)?;
    for f in functions(&module) {
        let in_half = !anchor || matches!(f.name.as_deref(), Some("epilogue" | "load_x"));
        let done = if in_half {
            function_edits(wgsl, f, &wide, &mut edits, ("f16", "f32"))
        } else {
            function_edits(wgsl, f, &halves, &mut edits, ("f32", "f16"))
        };
        // A store this cannot follow (`+=`) keeps the kernel in f32.
        if done.is_err() {
            return Ok(None);
        }
    }
    if anchor {
        for (from, to) in [EPILOGUE, LOAD_X] {
            if let Some(at) = wgsl.find(from) {
                edits.replace(at..at + from.len(), to.to_string());
            }
        }
    }
    // The node functions typed f16 (same length: the spans above still hold), and the f16
    // NaN-aware helpers they call.
    let text = edits.apply(&node_functions_half(wgsl));
    let helpers = if text.contains("nanh(") {
        NAN_HELPERS_HALF
    } else {
        ""
    };
    let text = format!("enable f16;\n{}{helpers}", constant_literals(&text));
    let Ok((module, info)) = crate::validated(kernel, &text) else {
        return Ok(None);
    };
    let holds = half_literals_hold(&text, &module) && half_math_holds(&module, &info);
    Ok(holds.then_some(text))
}

/// Whether every builtin function `module` (valid, f16 enabled; `info`, its analysis) calls on
/// f16 values is one f16
/// computes exactly as f32 then rounded does (abs, min, max, clamp, floor, ceil, round,
/// trunc, sign, saturate). WGSL lets f16's `exp`, `log`, `sqrt`, the trigonometric and
/// hyperbolic functions be far less accurate than that, and some overflow inside (`asinh`
/// squares its input): a kernel calling one on f16 stays in f32.
fn half_math_holds(module: &Module, info: &naga::valid::ModuleInfo) -> bool {
    use naga::MathFunction as M;
    let mut functions: Vec<(&Function, &naga::valid::FunctionInfo)> = module
        .functions
        .iter()
        .map(|(h, f)| (f, &info[h]))
        .collect();
    functions.extend(
        module
            .entry_points
            .iter()
            .enumerate()
            .map(|(i, e)| (&e.function, info.get_entry_point(i))),
    );
    functions.iter().all(|(f, fi)| {
        f.expressions.iter().all(|(h, e)| {
            let Expression::Math { fun, .. } = *e else {
                return true;
            };
            let half = fi[h].ty.inner_with(&module.types).scalar() == Some(Scalar::F16);
            !half
                || matches!(
                    fun,
                    M::Abs
                        | M::Min
                        | M::Max
                        | M::Clamp
                        | M::Saturate
                        | M::Floor
                        | M::Ceil
                        | M::Round
                        | M::Trunc
                        | M::Sign
                )
        })
    })
}

/// The NaN-aware helpers of the prelude (`is_nan`, `max_nan`, `min_nan`) over f16, under names
/// of the same length, which [`node_functions_half`] calls (a NaN widened to f32 is a NaN).
const NAN_HELPERS_HALF: &str = "
fn isnanh(x: f16) -> bool {
    return is_nan(f32(x));
}

fn maxnanh(a: f16, b: f16) -> f16 {
    if (isnanh(a) || isnanh(b)) {
        return f16(f32_nan());
    }
    return max(a, b);
}

fn minnanh(a: f16, b: f16) -> f16 {
    if (isnanh(a) || isnanh(b)) {
        return f16(f32_nan());
    }
    return min(a, b);
}
";

/// `wgsl` with the fused kernel's node functions (`fn node_N`, one op each: in a group whose
/// float values are all f16, every float they take or give is f16) typed f16, and their calls
/// of the NaN-aware helpers made calls of [`NAN_HELPERS_HALF`]. Every edit keeps the length.
fn node_functions_half(wgsl: &str) -> String {
    const START: &str = "fn node_";
    let mut out = String::with_capacity(wgsl.len());
    let mut rest = wgsl;
    while let Some(i) = rest.find(START) {
        out.push_str(&rest[..i]);
        let body = &rest[i..];
        let end = body.find("\n}\n").map_or(body.len(), |e| e + 3);
        let typed = f32_tokens_half(&body[..end])
            .replace("is_nan(", "isnanh(")
            .replace("max_nan(", "maxnanh(")
            .replace("min_nan(", "minnanh(");
        out.push_str(&typed);
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// `text` with every `f32` that is a whole word written `f16` (`f32_nan` stays, and so does a
/// `bitcast<f32>`).
fn f32_tokens_half(text: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(i) = text[at..].find("f32").map(|i| at + i) {
        let (before, after) = (text[..i].chars().next_back(), text[i + 3..].chars().next());
        out.push_str(&text[at..i]);
        // `bitcast<f32>(BITS)` is a constant: [`constant_literals`] writes it as its value.
        let constant = text[..i].ends_with("bitcast<");
        out.push_str(if word(before) || word(after) || constant {
            "f32"
        } else {
            "f16"
        });
        at = i + 3;
    }
    out.push_str(&text[at..]);
    out
}

/// `wgsl` with each `bitcast<f32>(DIGITSu)` of a finite value written as that value's literal
/// (an abstract float: exact as an f32, rounded where an f16 takes it).
fn constant_literals(wgsl: &str) -> String {
    const OPEN: &str = "bitcast<f32>(";
    let mut out = String::with_capacity(wgsl.len());
    let mut rest = wgsl;
    while let Some(i) = rest.find(OPEN) {
        out.push_str(&rest[..i]);
        let after = &rest[i + OPEN.len()..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let value = after[..digits].parse::<u32>().ok().map(f32::from_bits);
        match value.filter(|v| v.is_finite() && after[digits..].starts_with("u)")) {
            Some(v) => {
                // f32 -> f64 is exact, and `{:e}` of an f64 reads back as the same f64.
                out.push_str(&format!("({:e})", f64::from(v)));
                rest = &after[digits + 2..];
            }
            None => {
                out.push_str(OPEN);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether every f16 literal of `module` (parsed from `wgsl`) is its source's value exactly (a
/// literal, or a constant written as one; a folded expression is not taken).
fn half_literals_hold(wgsl: &str, module: &Module) -> bool {
    let lits = functions(module).into_iter().flat_map(|f| {
        f.expressions
            .iter()
            .map(move |(h, e)| (e, f.expressions.get_span(h)))
    });
    let globals = module
        .global_expressions
        .iter()
        .map(|(h, e)| (e, module.global_expressions.get_span(h)));
    for (e, span) in lits.chain(globals) {
        let naga::Expression::Literal(naga::Literal::F16(h)) = *e else {
            continue;
        };
        let h = f64::from(h);
        let source = span
            .to_range()
            .and_then(|r| wgsl.get(r))
            .map(|t| t.trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace()))
            .map(|t| t.trim_end_matches('h'))
            .and_then(|t| t.parse::<f64>().ok());
        // Exactly: a rounded constant would bias every product it takes part in the same way
        // (a LeakyRelu's 0.01 is 0.0099945 in f16), where the reference rounds only the result.
        if source != Some(h) {
            return false;
        }
    }
    true
}

/// The bindings (group 0) of `wgsl` that [`store_half`] can store as f16: storage arrays of
/// f32 or of vectors of f32. (A kernel that binds a float tensor another way, as `array<u32>`
/// bits for a copy, needs that tensor in f32.)
pub fn f32_array_bindings(kernel: &str, wgsl: &str) -> Result<Vec<u32>, Error> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| Error::Naga {
        kernel: kernel.to_string(),
        msg: e.emit_to_string(wgsl),
    })?;
    Ok(float_arrays(&module))
}

/// The group-0 bindings of `module` that are storage arrays of f32 or of vectors of f32.
fn float_arrays(module: &Module) -> Vec<u32> {
    let mut out: Vec<u32> = module
        .global_variables
        .iter()
        .filter(|(_, gv)| f32_elements(module, gv).is_ok())
        .filter_map(|(_, gv)| Some(gv.binding.as_ref().filter(|b| b.group == 0)?.binding))
        .collect();
    out.sort_unstable();
    out
}

/// The functions of `module`, its entry points' included.
fn functions(module: &Module) -> Vec<&Function> {
    let mut out: Vec<&Function> = module.functions.iter().map(|(_, f)| f).collect();
    out.extend(module.entry_points.iter().map(|e| &e.function));
    out
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

/// The edits of `f`: each load from a binding of `halves` converted to `load` (`f32`: widened),
/// each store into one converted to `store` (`f16`: narrowed).
fn function_edits(
    wgsl: &str,
    f: &Function,
    halves: &Halves,
    edits: &mut Edits,
    (load, store): (&str, &str),
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
        edits.wrap(span, value_type(vector, depth, load), false);
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
        edits.wrap(value, value_type(vector, depth, store), true);
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

    /// A chain of the kind the fused elementwise kernel writes: loads, arithmetic, a
    /// `bitcast<f32>` constant (a LeakyRelu's alpha, 0.125), a store.
    const CHAIN: &str = "
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out0: array<f32>;
@group(0) @binding(3) var<storage, read> params: array<u32>;

fn f32_inf() -> f32 { return bitcast<f32>(params[1]); }
fn fast_div(x: u32, d: u32) -> u32 { return u32(f32(x) / f32(d)); }

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= params[0] { return; }
    let v0 = a[i];
    let v1 = b[fast_div(i, 3u)];
    let v2 = max(v0 + v1 * 2.0, 0.0);
    let v3 = select(bitcast<f32>(1040187392u) * v2, v2, v2 >= 0.0);
    out0[i] = BODY;
}
";

    fn chain(body: &str) -> String {
        CHAIN.replace("BODY", body)
    }

    #[test]
    fn an_elementwise_chain_computes_in_f16() {
        let w = compute_half("fused_elementwise", &chain("v3"), &[0, 1, 2])
            .unwrap()
            .expect("the chain computes in f16");
        assert!(w.starts_with("enable f16;"), "{w}");
        assert!(!w.contains("array<f32>"), "{w}");
        // Nothing widened: the loads are f16 and so is the arithmetic.
        assert!(!w.contains("f32(a[") && !w.contains("f16(v"), "{w}");
        // The helpers that do not touch the tensors keep their f32.
        assert!(w.contains("f32(x) / f32(d)"), "{w}");
        insta::assert_snapshot!(w);
    }

    #[test]
    fn what_f16_arithmetic_cannot_follow_stays_f32() {
        let floats = |body: &str, bindings: &[u32]| {
            compute_half("fused_elementwise", &chain(body), bindings).unwrap()
        };
        // An f32 helper (a transcendental), an integer made a float, an infinity; a builtin
        // transcendental on f16 (valid WGSL, but far less accurate than f32's rounded).
        for body in [
            "exp(f32(v3))",
            "v3 + f32(i)",
            "min(v3, f32_inf())",
            "exp(v3)",
            "sqrt(abs(v3))",
        ] {
            assert!(floats(body, &[0, 1, 2]).is_none(), "{body}");
        }
        // An epsilon f16 flushes to a subnormal, a constant f16 rounds (0.01), one past its
        // range.
        for body in [
            "v3 / (v0 + 1e-7)",
            "v3 * bitcast<f32>(1008981770u)",
            "v3 * 1e6",
            "v3 * 0.1",
        ] {
            assert!(floats(body, &[0, 1, 2]).is_none(), "{body}");
        }
        // A binding stored as f32 (a graph output): narrowed on load, widened on store.
        let w = floats("v3", &[0, 1]).expect("an f32-stored output");
        assert!(
            w.contains("array<f32>") && w.contains("out0[i] = f32(v3)"),
            "{w}"
        );
        let w = floats("v3", &[]).expect("f32-stored tensors");
        assert!(w.contains("let v0 = f16(a[i]);"), "{w}");
        // Not an elementwise kernel.
        assert!(compute_half("matmul_tiled", &chain("v3"), &[0, 1, 2])
            .unwrap()
            .is_none());
        // The same chain in range does compute in f16.
        assert!(floats("v3 / (v0 + 0.5)", &[0, 1, 2]).is_some());
    }

    /// An anchor kernel of the kind the fused generator writes: a loop accumulating in f32, then
    /// the epilogue's chain (a bias add, a NaN-aware Max, a constant) in node functions.
    const ANCHOR: &str = "
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> out0: array<f32>;
@group(0) @binding(3) var<storage, read> params: array<u32>;

fn f32_nan() -> f32 { return bitcast<f32>(params[2]); }
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn max_nan(a: f32, b: f32) -> f32 { if (is_nan(a) || is_nan(b)) { return f32_nan(); } return max(a, b); }

fn node_3(a: f32, b: f32) -> f32 {
    return a + b;
}
fn node_4(a: f32, b: f32) -> f32 {
    return max_nan(a, b) * bitcast<f32>(1040187392u);
}
fn epilogue(i: u32, v: f32) {
    let r1 = bias[i % 4u];
    let v5 = node_3(v, r1);
    let v6 = node_4(v5, 0.0);
    out0[i] = v6;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    var acc = 0.0;
    for (var k = 0u; k < params[0]; k++) {
        acc += a[i * params[0] + k] * max_nan(a[k], 0.0);
    }
    epilogue(i, acc);
}
";

    #[test]
    fn an_anchor_accumulates_in_f32_and_its_epilogue_computes_in_f16() {
        let w = compute_half("matmul_tiled", ANCHOR, &[0, 1, 2])
            .unwrap()
            .expect("the epilogue computes in f16");
        // The loop widens its loads and keeps the f32 helpers.
        assert!(
            w.contains("acc += f32(a[i * params[0] + k]) * max_nan(f32(a[k]), 0.0);"),
            "{w}"
        );
        // The epilogue rounds the sum to f16 once, then the chain is f16.
        assert!(w.contains("let v = f16(v_f32);"), "{w}");
        assert!(w.contains("fn node_3(a: f16, b: f16) -> f16"), "{w}");
        // A constant inside a node function: the literal of its value (0.125).
        assert!(w.contains("return maxnanh(a, b) * (1.25e-1);"), "{w}");
        assert!(w.contains("    out0[i] = v6;"), "{w}");
        insta::assert_snapshot!(w);
        // The output stored f32 (a graph output): widened at the store.
        let w = compute_half("matmul_tiled", ANCHOR, &[0, 1])
            .unwrap()
            .unwrap();
        assert!(
            w.contains("out0[i] = f32(v6);")
                && w.contains("var<storage, read_write> out0: array<f32>"),
            "{w}"
        );
        // Without a fused chain, nothing computes in f16.
        let plain = ANCHOR
            .replace("fn node_", "fn step_")
            .replace("node_", "step_");
        assert!(compute_half("matmul_tiled", &plain, &[0, 1, 2])
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_constant_becomes_the_literal_of_its_value() {
        let v = 0.01f32;
        let text = format!("x * bitcast<f32>({}u) + bitcast<f32>(q)", v.to_bits());
        let out = constant_literals(&text);
        assert!(
            out.starts_with("x * (") && out.ends_with(") + bitcast<f32>(q)"),
            "{out}"
        );
        let lit = &out[5..out.find(')').unwrap()];
        assert_eq!(lit.parse::<f64>().unwrap() as f32, v, "{out}");
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
