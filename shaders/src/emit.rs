//! Emission: module assembly (prelude + template parts + helpers), kernel building, grid
//! sizing, and the splice an anchor template takes (its epilogue and prologue).

use crate::loops;
use crate::template::render;
use crate::views::{VIEW_BLOCK, VIEW_PARAMS};
use crate::{Buf, Error, Kernel};
use sfumato_core::TargetProfile;

const PRELUDE: &str = include_str!("templates/prelude.wgsl");
/// f16 bits to and from the f32 the device holds f16 in (BitCast).
const HALF_BITS: &str = include_str!("templates/half_bits.wgsl");
const NARROW_FLOATS: &str = include_str!("templates/narrow_floats.wgsl");
const INT_POW: &str = include_str!("templates/int_pow.wgsl");

/// Code spliced into an anchor template (matmul, conv, softmax, layer norm): its `extra`
/// declarations (the `epilogue` and, for row reductions, `load_x` functions and their bindings),
/// the params they read (appended after the anchor's own, from index `ev`), and the buffers bound
/// after the template's fixed ones. `first` is what binding 0 holds for row reductions.
#[derive(Clone, Debug)]
pub struct Splice {
    pub extra: String,
    pub params: Vec<u32>,
    pub first: Buf,
    pub bindings: Vec<Buf>,
    /// Loop ends one call of its `load_x` or `epilogue` passes at most (view walks, `pow_u`).
    pub trips: u64,
}

/// The store of an unfused anchor: write the value.
/// `ep_init` reads an epilogue's params once per invocation (matmul kernels call it first).
pub const PLAIN_EPILOGUE: &str =
    "fn epilogue(i: u32, v: f32) {\n    out0[i] = v;\n}\nfn ep_init() {\n}\n";

/// [`PLAIN_EPILOGUE`] for an anchor whose value is a `ty` (`i32` for the integer matmul).
pub fn plain_epilogue(ty: &str) -> String {
    PLAIN_EPILOGUE.replace("v: f32", &format!("v: {ty}"))
}

/// An integer product's splice with nothing fused: store its i32 sum.
pub fn plain_int_splice(_ev: usize) -> Result<Splice, Error> {
    let mut sp = plain_splice(false);
    sp.extra = plain_epilogue("i32");
    Ok(sp)
}

/// An anchor's splice with nothing fused: read input 0, write the value.
pub fn plain_splice(row_reduction: bool) -> Splice {
    let mut extra = String::new();
    if row_reduction {
        extra += "@group(0) @binding(0) var<storage, read> x: array<f32>;\nfn load_x(i: u32) -> f32 {\n    return x[i];\n}\n";
    }
    extra += PLAIN_EPILOGUE;
    Splice {
        extra,
        params: Vec::new(),
        first: Buf::In(0),
        bindings: Vec::new(),
        trips: 0,
    }
}

/// The `pb` and `extra` template values of a splice.
type SpliceVals = [(&'static str, String); 2];

/// Apply an anchor's splice: its params after the anchor's own, its bindings after the
/// template's fixed ones (`fixed` gets the splice's first binding, which row reductions place at
/// 0). Returns the bindings, the template's `pb` (params binding) and `extra` values, and the
/// loop ends one call of the splice's functions passes.
pub(crate) fn apply_splice(
    splice: SpliceFn,
    params: &mut Vec<u32>,
    fixed: impl FnOnce(Buf) -> Vec<Buf>,
) -> Result<(Vec<Buf>, SpliceVals, u64), Error> {
    let sp = splice(params.len())?;
    params.extend(&sp.params);
    let mut bindings = fixed(sp.first);
    bindings.extend(&sp.bindings);
    let vals = [("pb", bindings.len().to_string()), ("extra", sp.extra)];
    Ok((bindings, vals, sp.trips))
}

/// Builds a splice given `ev`, the params index where its view block starts.
pub type SpliceFn<'a> = &'a dyn Fn(usize) -> Result<Splice, Error>;

/// A call of `pow_u` (`int_pow.wgsl`), appended to the modules that make one.
const POW_U_CALL: &str = "pow_u(";

/// Loop ends one evaluation of an expression passes: `pow_u` is the one helper with a loop.
pub(crate) fn expr_trips(expr: &str) -> u64 {
    if expr.contains(POW_U_CALL) {
        loops::POW_U_TRIPS
    } else {
        0
    }
}

/// Prelude + template parts, filled.
pub(crate) fn module(name: &str, parts: &[&str], vals: &[(&str, String)]) -> Result<String, Error> {
    let mut src = String::from(PRELUDE);
    for p in parts {
        src.push('\n');
        src.push_str(p);
    }
    let mut vals = vals.to_vec();
    vals.push(("view_layout", VIEW_PARAMS.wgsl() + &VIEW_BLOCK.wgsl()));
    let mut out = render(name, &src, &vals)?;
    // Helpers outside the prelude, appended only where the module calls them.
    for (calls, helper) in [
        (
            &["bf16_round(", "mini_round(", "e8m0_round("][..],
            NARROW_FLOATS,
        ),
        (&[POW_U_CALL][..], INT_POW),
        (&["f16_bits(", "f16_of_bits("][..], HALF_BITS),
    ] {
        if calls.iter().any(|c| out.contains(c)) {
            out.push('\n');
            out.push_str(helper);
        }
    }
    Ok(out)
}

/// A kernel of 256-invocation workgroups over `threads` invocations.
#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel(
    name: &str,
    template: &str,
    vals: &[(&str, String)],
    bindings: Vec<Buf>,
    params: Vec<u32>,
    threads: usize,
    loop_trips: u64,
    target: &TargetProfile,
) -> Result<Kernel, Error> {
    kernel_of(
        name,
        &[template],
        vals,
        bindings,
        params,
        threads.div_ceil(256),
        loop_trips,
        target,
    )
}

/// A kernel of template `parts` over `workgroups` workgroups (spread by [`grid`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel_of(
    name: &str,
    parts: &[&str],
    vals: &[(&str, String)],
    bindings: Vec<Buf>,
    params: Vec<u32>,
    workgroups: usize,
    loop_trips: u64,
    target: &TargetProfile,
) -> Result<Kernel, Error> {
    let wgsl = module(name, parts, vals)?;
    let workgroups = if workgroups == 0 {
        [0, 0, 0]
    } else {
        grid(workgroups as u64, target)?
    };
    Ok(Kernel {
        name: name.to_string(),
        wgsl,
        bindings,
        params,
        workgroups,
        loop_trips,
    })
}

/// Spread `n` workgroups over x and y so neither exceeds the per-dimension limit.
pub fn grid(n: u64, target: &TargetProfile) -> Result<[u32; 3], Error> {
    let lim = target.max_workgroups_per_dim.max(1) as u64;
    let x = n.min(lim);
    let y = n.div_ceil(x.max(1));
    if y > lim {
        return Err(Error::Limit(format!("{n} workgroups exceed {lim} x {lim}")));
    }
    Ok([x as u32, y as u32, 1])
}

/// A `switch` over `n` cases on `sel` (the last is `default`), each case's body from `body`,
/// indented by `pad`: how the `ubo` kernels run one block's copy of their loop.
pub(crate) fn switch_cases(
    sel: &str,
    n: usize,
    pad: usize,
    body: impl Fn(usize) -> String,
) -> String {
    let p = " ".repeat(pad);
    let mut s = format!("{p}switch {sel} {{\n");
    for i in 0..n {
        let case = if i + 1 == n {
            "default".to_string()
        } else {
            format!("case {i}u")
        };
        s += &format!("{p}    {case}: {{\n{}{p}    }}\n", body(i));
    }
    s + &format!("{p}}}\n")
}
