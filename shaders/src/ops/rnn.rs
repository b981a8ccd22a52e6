//! [`Op::Recurrence`](sfumato_core::Op::Recurrence): a recurrent layer's loop over its steps on
//! the device (`recurrence.wgsl`). One workgroup per batch row runs a chunk of steps, its `h`
//! in workgroup memory and an LSTM's `c` in registers, with two barriers a step (a GRU without
//! linear-before-reset three: its reset gate multiplies `h` before `R_h`, so every unit's gate
//! is needed before any unit's candidate). A chunk is as many steps as the loop budget allows
//! (all of them where there is none, at most [`MAX_STEPS_PER_DISPATCH`]); each later chunk
//! starts from the state its predecessor wrote last, so no step is cut short and no dispatch
//! runs for long.

use super::Io;
use crate::emit::kernel_of;
use crate::expr::lit;
use crate::options::LowerOptions;
use crate::params::{one, Layout};
use crate::{loops, Buf, Error, Kernel};
use sfumato_core::op::{Recurrence, RecurrentAct, RecurrentCell, MAX_RECURRENT_HIDDEN};

/// The params: batch rows, the chunk's first step, its number of steps, and whether it starts
/// from `state0` (the first chunk).
pub const RECURRENCE_PARAMS: Layout = Layout::new(
    "recurrence",
    "RC",
    &[one("batch"), one("first"), one("steps"), one("fresh")],
);

/// The most steps one dispatch runs on an adapter without a loop budget (a dispatch that runs
/// for seconds can trip an OS watchdog).
pub const MAX_STEPS_PER_DISPATCH: usize = 1024;

/// Invocations of the workgroup (units owned by one invocation are this far apart).
const WG: usize = 256;

const TEMPLATE: &str = include_str!("../templates/recurrence.wgsl");

/// A recurrent activation as a WGSL expression of `x`.
fn act_expr(a: RecurrentAct) -> String {
    match a {
        RecurrentAct::Sigmoid => "sigmoid_f(x)".into(),
        RecurrentAct::Tanh => "tanh_f(x)".into(),
        RecurrentAct::Relu => "max(x, 0.0)".into(),
        RecurrentAct::LeakyRelu { alpha } => format!("select({} * x, x, x >= 0.0)", lit(alpha)),
        RecurrentAct::ThresholdedRelu { alpha } => format!("select(0.0, x, x > {})", lit(alpha)),
        RecurrentAct::Elu { alpha } => {
            format!("select({} * (exp(x) - 1.0), x, x >= 0.0)", lit(alpha))
        }
        RecurrentAct::Softsign => "x / (1.0 + abs(x))".into(),
        // Past 20, log(1 + e^x) is x to f32 (and e^x would overflow past 88).
        RecurrentAct::Softplus => "select(log(1.0 + exp(x)), x, x > 20.0)".into(),
        RecurrentAct::HardSigmoid { alpha, beta } => {
            format!("clamp({} * x + {}, 0.0, 1.0)", lit(alpha), lit(beta))
        }
        RecurrentAct::Affine { alpha, beta } => format!("{} * x + {}", lit(alpha), lit(beta)),
        RecurrentAct::ScaledTanh { alpha, beta } => {
            format!("{} * tanh_f({} * x)", lit(alpha), lit(beta))
        }
    }
}

/// `fn dot_NAME(j)`: the columns `gates[i] * H + j` of `R^T` (`rt [H, G*H]`) dotted with each
/// of the workgroup's `rows` vectors in `src`, one result per row. Neighbouring invocations
/// read neighbouring columns, so a row of `R^T` is read contiguously across them (coalesced on
/// a GPU; on llvmpipe a lane reading its own row of `R` gathered from a cache line per lane,
/// 20x slower on a GRU of 256 units), and each value read serves every row. Scalar units
/// (`lanes` 1): a `vec4` per row of the gates' sums, four rows of `R^T` a pass and then the
/// rest. Four units an invocation (`lanes` 4): a `mat4x4` per row, column `i` gate `i`'s four
/// sums, each read of `R^T` one vec4.
fn dot_fn(
    name: &str,
    src: &str,
    gates: &[usize],
    lanes: usize,
    rows: usize,
    hidden: usize,
) -> String {
    let m = if lanes == 4 {
        "mat4x4<f32>"
    } else {
        "vec4<f32>"
    };
    let mut s = format!("fn dot_{name}(j: u32) -> array<{m}, ROWS> {{\n");
    for (i, g) in gates.iter().enumerate() {
        s += &format!("    let c{i} = ({g}u * HIDDEN + j) / LANES;\n");
    }
    s += &format!("    var acc: array<{m}, ROWS>;\n");
    s += "    for (var q = 0u; q < HIDDEN / 4u; q = q + 1u) {\n        let k = q * 4u;\n";
    s += "        let row = k * ROW;\n";
    for i in 0..gates.len() {
        s += &format!(
            "        let w{i} = array<V, 4>(rt[row + c{i}], rt[row + ROW + c{i}], rt[row + 2u * ROW + c{i}], rt[row + 3u * ROW + c{i}]);\n"
        );
    }
    for r in 0..rows {
        let h = if r == 0 {
            "k".to_string()
        } else {
            format!("{r}u * HIDDEN + k")
        };
        for i in 0..gates.len() {
            s += &format!(
                "        acc[{r}][{i}] = acc[{r}][{i}] + w{i}[0] * {src}[{h}] + w{i}[1] * {src}[{h} + 1u] + w{i}[2] * {src}[{h} + 2u] + w{i}[3] * {src}[{h} + 3u];\n"
            );
        }
    }
    s += "    }\n";
    if !hidden.is_multiple_of(4) {
        s += "    for (var k = HIDDEN / 4u * 4u; k < HIDDEN; k = k + 1u) {\n";
        for i in 0..gates.len() {
            s += &format!("        let w{i} = rt[k * ROW + c{i}];\n");
        }
        for r in 0..rows {
            for i in 0..gates.len() {
                s += &format!(
                    "        acc[{r}][{i}] = acc[{r}][{i}] + w{i} * {src}[{r}u * HIDDEN + k];\n"
                );
            }
        }
        s += "    }\n";
    }
    s + "    return acc;\n}\n"
}

/// A loop over this invocation's units and the workgroup's rows: `ds` the unit's dots by
/// `dot` (one per row), then `body` (indented for it) with `b`, `live`, `xrow`, `d` (this row's
/// dots) and `slot` (this unit and row's register).
fn per_unit(dot: &str, body: &str) -> String {
    let mut s = format!(
        "        for (var u = 0u; u < UNITS; u = u + 1u) {{
            let j = (li + u * 256u) * LANES;
            if (j < HIDDEN) {{
                let ds = {dot}(j);
                for (var rr = 0u; rr < ROWS; rr = rr + 1u) {{
                    let b = min(b0 + rr, batch - 1u);
                    let live = i32(t) < lens[b];
                    let xrow = (t * batch + b) * GATES * HIDDEN;
                    let d = ds[rr];
                    let slot = u * ROWS + rr;
"
    );
    for line in body.lines() {
        s += "                    ";
        s += line;
        s += "\n";
    }
    s + "                }\n            }\n        }\n"
}

/// Loop ends of one call of a `dot_fn` over `hidden` columns.
fn dot_trips(hidden: usize) -> u64 {
    let h = hidden as u64;
    loops::lp(h / 4)
        + if !h.is_multiple_of(4) {
            loops::lp(h % 4)
        } else {
            0
        }
}

/// The accessors of the workgroup vectors `name` (`NAME_at(r, j)`, `NAME_set(r, j, v)`: row
/// `r`'s units from `j`) for `lanes` units a V.
fn shared_access(name: &str, lanes: usize) -> String {
    if lanes == 4 {
        format!(
            "fn {name}_at(r: u32, j: u32) -> V {{\n    let i = r * HIDDEN + j;\n    return V({name}[i], {name}[i + 1u], {name}[i + 2u], {name}[i + 3u]);\n}}\n\
             fn {name}_set(r: u32, j: u32, v: V) {{\n    let i = r * HIDDEN + j;\n    {name}[i] = v.x;\n    {name}[i + 1u] = v.y;\n    {name}[i + 2u] = v.z;\n    {name}[i + 3u] = v.w;\n}}\n"
        )
    } else {
        format!(
            "fn {name}_at(r: u32, j: u32) -> V {{\n    return {name}[r * HIDDEN + j];\n}}\n\
             fn {name}_set(r: u32, j: u32, v: V) {{\n    {name}[r * HIDDEN + j] = v;\n}}\n"
        )
    }
}

/// Batch rows one workgroup runs: on an adapter with fast workgroup memory (a GPU) one, for
/// the most workgroups; elsewhere (a CPU adapter, whose cores are few) as many as fit
/// workgroup memory, up to 4, so each read of `R^T` serves them all (an LSTM of 1,024 units
/// over 8 rows re-read 16 MiB a row each step).
pub fn rows_per_workgroup(batch: usize, hidden: usize, fast_workgroup_memory: bool) -> usize {
    if fast_workgroup_memory {
        return 1;
    }
    [4, 2, 1]
        .into_iter()
        .find(|&r| r <= batch && r * hidden <= SHARED_FLOATS)
        .unwrap_or(1)
}

/// f32s of workgroup memory the rows' `h` may take (WebGPU guarantees 16 KiB; a GRU without
/// linear-before-reset takes as much again for `r * h`).
const SHARED_FLOATS: usize = 4096;

/// One direction of a recurrent layer: `ins` are `xw [T, B, G*H]`, `rt [H, G*H]`, `state0`,
/// `lens` and the cell's fifth input; a kernel per chunk of steps.
pub fn recurrence(r: &Recurrence, ins: &[Io], opts: &LowerOptions) -> Result<Vec<Kernel>, Error> {
    let xd = &ins[0].1 .0;
    let (steps, batch) = (xd[0], xd[1]);
    let hidden = ins[1].1 .0[0];
    if hidden == 0 || hidden > MAX_RECURRENT_HIDDEN {
        return Err(Error::Limit(format!(
            "a recurrent layer of hidden size {hidden} (the device loop keeps h in workgroup \
             memory: 1 to {MAX_RECURRENT_HIDDEN})"
        )));
    }
    let lanes = if hidden.is_multiple_of(4) { 4 } else { 1 };
    let units = hidden.div_ceil(lanes * WG);
    let rows = rows_per_workgroup(batch, hidden, opts.target.fast_workgroup_memory);
    let cell = r.cell;
    let v = if lanes == 4 { "vec4<f32>" } else { "f32" };
    let mut acts = match r.clip {
        Some(c) => format!(
            "fn clipped(x: V) -> V {{\n    return clamp(x, V(-{c}), V({c}));\n}}\n",
            c = lit(c)
        ),
        None => "fn clipped(x: V) -> V {\n    return x;\n}\n".into(),
    };
    for i in 0..cell.activations() {
        let a = r.acts.get(i).ok_or_else(|| {
            Error::Internal(format!(
                "{} takes {} activations",
                cell.name(),
                cell.activations()
            ))
        })?;
        acts += &format!(
            "fn act{i}_s(x: f32) -> f32 {{\n    return {};\n}}\n",
            act_expr(*a)
        );
        acts += &if lanes == 4 {
            format!("fn act{i}(x: V) -> V {{\n    return V(act{i}_s(x.x), act{i}_s(x.y), act{i}_s(x.z), act{i}_s(x.w));\n}}\n")
        } else {
            format!("fn act{i}(x: V) -> V {{\n    return act{i}_s(x);\n}}\n")
        };
    }
    let hs_dot = dot_trips(hidden);
    // A loop over the units, each a dot and a loop over the rows.
    let row_loop = loops::lp(rows as u64);
    let unit_loop = |dots: u64| loops::lp(units as u64) + units as u64 * (dots + row_loop);
    let keep = "hn[slot] = select(hs_at(rr, j), hv, live);";
    let dot = |name: &str, gates: &[usize]| dot_fn(name, name, gates, lanes, rows, hidden);
    let (extra, dots, shared, regs, step, per_step) = match cell {
        RecurrentCell::Rnn => (
            None,
            dot("hs", &[0]),
            String::new(),
            "",
            per_unit(
                "dot_hs",
                &format!("let hv = act0(clipped(x_at(xrow + j) + d[0]));\n{keep}"),
            ),
            unit_loop(hs_dot),
        ),
        RecurrentCell::Lstm => (
            Some("peep"),
            dot("hs", &[0, 1, 2, 3]),
            String::new(),
            "var cs: array<V, {{slots}}>;",
            per_unit(
                "dot_hs",
                &format!(
                    "let c = cs[slot];
let ig = act0(clipped(x_at(xrow + j) + d[0] + e_at(j) * c));
let fg = act0(clipped(x_at(xrow + 2u * HIDDEN + j) + d[2] + e_at(2u * HIDDEN + j) * c));
let cg = act1(clipped(x_at(xrow + 3u * HIDDEN + j) + d[3]));
let cn = fg * c + ig * cg;
let og = act0(clipped(x_at(xrow + HIDDEN + j) + d[1] + e_at(HIDDEN + j) * cn));
let hv = og * act2(cn);
{keep}
cs[slot] = select(c, cn, live);"
                ),
            ),
            unit_loop(hs_dot),
        ),
        RecurrentCell::Gru {
            linear_before_reset: true,
        } => (
            Some("rbh"),
            dot("hs", &[0, 1, 2]),
            String::new(),
            "",
            per_unit(
                "dot_hs",
                &format!(
                    "let z = act0(clipped(x_at(xrow + j) + d[0]));
let rg = act0(clipped(x_at(xrow + HIDDEN + j) + d[1]));
let cand = act1(clipped(x_at(xrow + 2u * HIDDEN + j) + rg * (d[2] + e_at(j))));
let hv = cand + z * (hs_at(rr, j) - cand);
{keep}"
                ),
            ),
            unit_loop(hs_dot),
        ),
        // Its `rb_h` input is added outside the loop: not bound.
        RecurrentCell::Gru {
            linear_before_reset: false,
        } => (
            None,
            dot("hs", &[0, 1]) + "\n" + &dot("rh", &[2]),
            format!(
                "var<workgroup> rh: array<f32, {{{{shared_len}}}}>;\n{}",
                shared_access("rh", lanes)
            ),
            "var zs: array<V, {{slots}}>;",
            per_unit(
                "dot_hs",
                "zs[slot] = act0(clipped(x_at(xrow + j) + d[0]));
let rg = act0(clipped(x_at(xrow + HIDDEN + j) + d[1]));
rh_set(rr, j, rg * hs_at(rr, j));",
            ) + "        workgroupBarrier();\n"
                + &per_unit(
                    "dot_rh",
                    &format!(
                        "let cand = act1(clipped(x_at(xrow + 2u * HIDDEN + j) + d[0]));
let hv = cand + zs[slot] * (hs_at(rr, j) - cand);
{keep}"
                    ),
                ),
            2 * unit_loop(hs_dot),
        ),
    };
    let mut helpers = shared_access("hs", lanes);
    helpers += "fn x_at(i: u32) -> V {\n    return xw[i / LANES];\n}\n";
    if let Some(e) = extra {
        helpers += &format!("fn e_at(i: u32) -> V {{\n    return {e}[i / LANES];\n}}\n");
    }
    let lstm = cell == RecurrentCell::Lstm;
    let (c_fresh, c_prev, c_store) = if lstm {
        (
            "\n                    cs[u * ROWS + rr] = state0[(start + HIDDEN + j) / LANES];",
            "\n                    cs[u * ROWS + rr] = out0[(start + HIDDEN + j) / LANES];",
            "\n                        out0[(o + HIDDEN) / LANES] = cs[slot];",
        )
    } else {
        ("", "", "")
    };
    let n_in = 4 + extra.is_some() as usize;
    let extra_binding = match extra {
        Some(name) => {
            format!("@group(0) @binding(4) var<storage, read> {name}: array<{v}>;\n")
        }
        None => String::new(),
    };
    let render = |s: &str| {
        s.replace("{{shared_len}}", &(rows * hidden).to_string())
            .replace("{{slots}}", &(units * rows).to_string())
    };
    let vals = vec![
        ("cell", cell.name().to_string()),
        ("extra_binding", extra_binding),
        ("out_binding", n_in.to_string()),
        ("params_binding", (n_in + 1).to_string()),
        ("layout", RECURRENCE_PARAMS.wgsl()),
        ("hidden", hidden.to_string()),
        ("units", units.to_string()),
        ("rows", rows.to_string()),
        ("slots", (units * rows).to_string()),
        ("shared_len", (rows * hidden).to_string()),
        ("parts", cell.state_parts().to_string()),
        ("gates", cell.gates().to_string()),
        ("shared_extra", render(&shared)),
        ("helpers", helpers),
        ("v", v.into()),
        ("lanes", lanes.to_string()),
        ("registers_extra", render(regs)),
        ("acts", acts),
        ("dots", dots),
        (
            "prev",
            if r.reverse { "(t0 + 1u)" } else { "(t0 - 1u)" }.into(),
        ),
        ("t", if r.reverse { "t0 - s" } else { "t0 + s" }.into()),
        ("step", step),
        ("load_c_fresh", c_fresh.into()),
        ("load_c_prev", c_prev.into()),
        ("store_c", c_store.into()),
    ];
    // Loop ends: the starting load, the step loop, and per step the cell's unit loops and the
    // store loop.
    let store = loops::lp(units as u64) + units as u64 * row_loop;
    let step_trips = per_step + store + 2;
    let fixed = store + 2;
    let chunk = match opts.target.loop_budget {
        Some(budget) => (budget.saturating_sub(fixed + 1) / step_trips) as usize,
        None => MAX_STEPS_PER_DISPATCH,
    }
    .min(MAX_STEPS_PER_DISPATCH);
    if chunk == 0 {
        return Err(Error::LoopBudget(format!(
            "one step of a {} of hidden size {hidden} makes {step_trips} loop trips per \
             invocation, over this adapter's budget",
            cell.name()
        )));
    }
    let name = format!("recurrence_{}", cell.name().to_lowercase());
    let mut bindings: Vec<Buf> = (0..n_in).map(Buf::In).collect();
    bindings.push(Buf::Out(0));
    let mut kernels = Vec::new();
    let mut done = 0;
    while done < steps {
        let n = chunk.min(steps - done);
        let first = if r.reverse { steps - 1 - done } else { done };
        let params = RECURRENCE_PARAMS
            .fill()
            .set("batch", batch as u32)
            .set("first", first as u32)
            .set("steps", n as u32)
            .set("fresh", (done == 0) as u32)
            .finish()?;
        kernels.push(kernel_of(
            &name,
            &[TEMPLATE],
            &vals,
            bindings.clone(),
            params,
            batch.div_ceil(rows),
            fixed + n as u64 * step_trips,
            &opts.target,
        )?);
        done += n;
    }
    Ok(kernels)
}
