//! The ONNX operator conformance runner: each case folder holds `model.onnx` and
//! `test_data_set_0/{input,output}_<j>.pb`; the model runs on a device and its outputs are
//! compared with the expected ones (rtol 1e-3, atol 1e-7; f16 and bfloat16 by their own
//! precision; integers and booleans exact).
//!
//! The case's inputs are given to the importer as known values (an op whose shape, axes or
//! count comes from an input needs them), so some cases' outputs are computed at import and
//! only handed to the device: each pass says where its outputs were computed ([`Computed`]),
//! and the totals count device and host passes apart.

use crate::{self as onnx, Error, ImportOptions};
use serde::Serialize;
use sfumato_core::device::Profile;
use sfumato_core::{DType, Device, Graph, Op, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// ONNX's usual tolerances.
pub const RTOL: f64 = 1e-3;
pub const ATOL: f64 = 1e-7;
/// The absolute tolerance of DFT and STFT outputs, in units of the output's largest magnitude:
/// eight f32 epsilons. The transform runs in f32 (ONNX's expected values come from f64), and its
/// rounding error is relative to the whole spectrum: a bin whose exact value is 0 (the
/// imaginary part of a real signal's inverse transform) comes out a few epsilons times the
/// largest bin, far over the 1e-7 absolute tolerance.
pub const ATOL_DFT_EPS: f64 = 8.0 * f32::EPSILON as f64;

/// The relative tolerance for bfloat16 outputs: two units in its last place (2^-6). bfloat16
/// holds 8 significant bits, so values apart by less than 1e-3 are the same bfloat16 number:
/// the usual 1e-3 would ask for bit-exact rounding, which depends on the order of the ops.
pub const RTOL_BF16: f64 = 1.0 / 64.0;

/// The tolerances for f16 outputs: four units in its last place relative (2^-8) and one unit
/// at 1.0 absolute (2^-10). A device that stores f16 tensors as f16 rounds every op's output
/// to f16, as f16 arithmetic does: an attention's or a sum's intermediates, rounded at a
/// magnitude near 1, leave an error near one ulp of 1.0 in a small output.
pub const RTOL_F16: f64 = 1.0 / 256.0;
pub const ATOL_F16: f64 = 1.0 / 1024.0;

/// The path of the suite: `$SFUMATO_ONNX_TESTS`, else `../shared/onnx-node-tests` beside the
/// workspace.
pub fn default_suite_dir() -> PathBuf {
    std::env::var_os("SFUMATO_ONNX_TESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/onnx-node-tests")
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Unsupported,
    Error,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Unsupported => "unsupported",
            Status::Error => "error",
        }
    }
}

/// Where a passing case's outputs were computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Computed {
    /// At least one output was computed by a device kernel from a run input.
    Device,
    /// No kernel computed any output from a run input: every output was known at import (the
    /// importer computed it from the case's inputs, given as known values, or it is a constant
    /// the passes fold) or is a run input handed back unchanged (Identity, Reshape). The device
    /// only uploaded and read back.
    Host,
}

impl Computed {
    pub fn name(self) -> &'static str {
        match self {
            Computed::Device => "device",
            Computed::Host => "host",
        }
    }

    fn parse(s: &str) -> Option<Computed> {
        match s {
            "device" => Some(Computed::Device),
            "host" => Some(Computed::Host),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub status: Status,
    /// For a pass, where its outputs were computed; `None` otherwise.
    pub computed: Option<Computed>,
    pub detail: String,
    /// The op types of the case's model.
    pub ops: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub pass: usize,
    /// The passes whose outputs a device kernel computed ([`Computed::Device`]).
    pub pass_device: usize,
    /// The passes whose outputs were all known at import ([`Computed::Host`]).
    pub pass_host: usize,
    pub fail: usize,
    pub unsupported: usize,
    pub error: usize,
}

impl Totals {
    pub fn of(cases: &[CaseResult]) -> Totals {
        let mut t = Totals::default();
        for c in cases {
            t.add(c);
        }
        t
    }

    fn add(&mut self, c: &CaseResult) {
        match c.status {
            Status::Pass => self.pass += 1,
            Status::Fail => self.fail += 1,
            Status::Unsupported => self.unsupported += 1,
            Status::Error => self.error += 1,
        }
        match c.computed {
            Some(Computed::Device) => self.pass_device += 1,
            Some(Computed::Host) => self.pass_host += 1,
            None => {}
        }
    }
}

/// Per op type: counts of each status over the cases whose model uses it.
pub fn per_op(cases: &[CaseResult]) -> BTreeMap<String, Totals> {
    let mut m: BTreeMap<String, Totals> = BTreeMap::new();
    for c in cases {
        for op in &c.ops {
            m.entry(op.clone()).or_default().add(c);
        }
    }
    m
}

/// The list of passing cases a test pins: a `# ` line for each line of `header`, then one
/// `NAME device` or `NAME host` line per pass, sorted by name.
pub fn passing_list(results: &[CaseResult], header: &str) -> String {
    let mut s: String = header.lines().map(|l| format!("# {l}\n")).collect();
    let passes: BTreeMap<&str, Computed> = results
        .iter()
        .filter_map(|r| Some((r.name.as_str(), r.computed?)))
        .collect();
    for (name, c) in passes {
        s += &format!("{name} {}\n", c.name());
    }
    s
}

/// Read a list written by [`passing_list`]: case name to where its outputs were computed.
pub fn parse_passing_list(text: &str) -> Result<BTreeMap<String, Computed>, String> {
    let mut m = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once(' ')
            .and_then(|(n, c)| Some((n.to_string(), Computed::parse(c.trim())?)));
        let Some((name, c)) = parsed else {
            return Err(format!(
                "line {}: '{line}' is not 'NAME device' or 'NAME host'",
                i + 1
            ));
        };
        if m.insert(name, c).is_some() {
            return Err(format!("line {}: '{line}' is listed twice", i + 1));
        }
    }
    Ok(m)
}

/// How a run's passes differ from a pinned list ([`diff_passing`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassingDiff {
    /// Regressions: listed cases that no longer pass (or are not in the suite), and device
    /// passes that became host passes; each `NAME: what it is now`.
    pub lost: Vec<String>,
    /// Passes the list does not hold, and host passes that became device passes.
    pub new: Vec<String>,
}

/// Compare `results` with a pinned list of passes.
pub fn diff_passing(listed: &BTreeMap<String, Computed>, results: &[CaseResult]) -> PassingDiff {
    let by_name: HashMap<&str, &CaseResult> =
        results.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut d = PassingDiff::default();
    for (name, &was) in listed {
        match by_name.get(name.as_str()) {
            None => d.lost.push(format!("{name}: not in the suite")),
            Some(r) => match r.computed {
                None => d
                    .lost
                    .push(format!("{name}: {} {}", r.status.name(), r.detail)),
                Some(Computed::Host) if was == Computed::Device => d
                    .lost
                    .push(format!("{name}: a host pass, listed as a device pass")),
                Some(Computed::Device) if was == Computed::Host => d
                    .new
                    .push(format!("{name}: a device pass, listed as a host pass")),
                Some(_) => {}
            },
        }
    }
    for r in results {
        if let Some(c) = r.computed.filter(|_| !listed.contains_key(&r.name)) {
            d.new
                .push(format!("{}: a {} pass, not listed", r.name, c.name()));
        }
    }
    d
}

/// The case folders under `dir` (those with a `model.onnx`), sorted by name.
pub fn case_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .collect();
    v.sort();
    Ok(v)
}

/// Whether an error means "not supported" (a coverage gap) rather than a bug.
pub fn is_unsupported(e: &Error) -> bool {
    e.is_unsupported()
}

/// The status of a case that ended in `e`: a coverage gap (an op, dtype or attribute Sfumato
/// lacks) is unsupported; anything else, an internal error of the shader generator included, is
/// an error.
pub fn status_of(e: &Error) -> Status {
    if is_unsupported(e) {
        Status::Unsupported
    } else {
        Status::Error
    }
}

/// Where the outputs of a run of `g` (the graph as imported) were computed: on the device when
/// some graph output with elements is computed by an op from a graph input (a Reshape only
/// relabels its input, and a Constant reads none) and the run's profile lists at least one
/// kernel (the wgpu device dispatches none for an identity Transpose, a view of its input); on
/// the host otherwise. The passes fold only what reads no graph input, so the imported graph
/// tells the same as the one the device runs.
pub fn computed(g: &Graph, profile: &Profile) -> Computed {
    if computed_outputs(g).contains(&true) && !profile.entries.is_empty() {
        Computed::Device
    } else {
        Computed::Host
    }
}

/// Per graph output of `g`: whether it has elements and is computed by an op from a graph
/// input (see [`computed`]).
pub fn computed_outputs(g: &Graph) -> Vec<bool> {
    // Per value: None, independent of the run inputs; Some(false), a run input, maybe
    // reshaped; Some(true), computed from one by an op.
    let mut from_run: Vec<Option<bool>> = vec![None; g.values().len()];
    for &i in g.inputs() {
        from_run[i.index()] = Some(false);
    }
    for n in g.nodes() {
        let ins: Vec<bool> = n
            .inputs
            .iter()
            .filter_map(|i| from_run[i.index()])
            .collect();
        if ins.is_empty() {
            continue;
        }
        let by_op = !matches!(n.op, Op::Reshape { .. } | Op::Constant(_));
        let computed = by_op || ins.contains(&true);
        for o in &n.outputs {
            from_run[o.index()] = Some(computed);
        }
    }
    g.outputs()
        .iter()
        .map(|&o| from_run[o.index()] == Some(true) && g.shape(o).numel() > 0)
        .collect()
}

fn numbered(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for j in 0.. {
        let p = dir.join(format!("{prefix}_{j}.pb"));
        if !p.is_file() {
            break;
        }
        v.push(p);
    }
    v
}

/// Run one case on `dev`.
pub fn run_case(dir: &Path, dev: &mut dyn Device) -> CaseResult {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let model = dir.join("model.onnx");
    let mut ops = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_case_inner(&model, dir, dev, &mut ops)
    }));
    let (status, computed, detail) = match result {
        Ok(Ok(c)) => (Status::Pass, Some(c), String::new()),
        Ok(Err(Outcome::Fail(d))) => (Status::Fail, None, d),
        Ok(Err(Outcome::Err(e))) => (status_of(&e), None, e.to_string()),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            (Status::Error, None, format!("panic: {msg}"))
        }
    };
    CaseResult {
        name,
        status,
        computed,
        detail,
        ops,
    }
}

enum Outcome {
    Fail(String),
    Err(Error),
}

impl From<Error> for Outcome {
    fn from(e: Error) -> Self {
        Outcome::Err(e)
    }
}

impl From<sfumato_core::Error> for Outcome {
    fn from(e: sfumato_core::Error) -> Self {
        Outcome::Err(e.into())
    }
}

fn run_case_inner(
    model: &Path,
    dir: &Path,
    dev: &mut dyn Device,
    ops: &mut Vec<String>,
) -> Result<Computed, Outcome> {
    let bytes = std::fs::read(model)
        .map_err(|e| Error::Model(format!("cannot read {}: {e}", model.display())))?;
    let info = onnx::inspect(&bytes)?;
    *ops = info.ops.keys().cloned().collect();
    if let Some(v) = info
        .inputs
        .iter()
        .chain(&info.outputs)
        .find(|v| v.dtype == "map" || v.dtype == "sparse")
    {
        return Err(sfumato_core::Error::Unsupported {
            node: v.name.clone(),
            op: "graph input/output".into(),
            inputs: String::new(),
            msg: format!(
                "{} values are not supported (tensors, sequences and optionals are)",
                v.dtype
            ),
        }
        .into());
    }
    let data = dir.join("test_data_set_0");
    // Each file is read as the kind of value its graph input or output declares.
    fn kind(io: &[onnx::IoInfo], j: usize) -> &str {
        io.get(j).map_or("tensor", |v| v.dtype.as_str())
    }
    let ins: Vec<onnx::OnnxValue> = numbered(&data, "input")
        .iter()
        .enumerate()
        .map(|(j, p)| onnx::read_value_pb(p, kind(&info.inputs, j)))
        .collect::<Result<_, _>>()?;
    let want: Vec<Tensor> = numbered(&data, "output")
        .iter()
        .enumerate()
        .map(|(j, p)| onnx::read_value_pb(p, kind(&info.outputs, j)))
        .collect::<Result<Vec<_>, _>>()?
        .iter()
        .flat_map(|v| v.leaves().into_iter().cloned())
        .collect();
    let names: Vec<String> = info.inputs.iter().map(|i| i.name.clone()).collect();
    if names.len() < ins.len() {
        return Err(Error::Model(format!(
            "{} input files for {} graph inputs",
            ins.len(),
            names.len()
        ))
        .into());
    }
    let mut opts = ImportOptions {
        base_dir: model.parent().map(Path::to_path_buf),
        ..Default::default()
    };
    let mut by_name: HashMap<String, Tensor> = HashMap::new();
    for (n, v) in names.iter().zip(&ins) {
        match v {
            onnx::OnnxValue::Tensor(t) => {
                opts.input_shapes.insert(n.clone(), t.dims().to_vec());
                opts.known_inputs.insert(n.clone(), t.clone());
                by_name.insert(n.clone(), t.clone());
            }
            other => {
                // The importer names the leaves NAME.K.
                opts.structured_inputs.insert(n.clone(), other.clone());
                for (k, t) in other.leaves().into_iter().enumerate() {
                    by_name.insert(onnx::leaf_name(n, k), t.clone());
                    opts.known_inputs.insert(onnx::leaf_name(n, k), t.clone());
                }
            }
        }
    }
    let m = match onnx::import(&bytes, &opts) {
        // A value known only at run time: the model runs staged.
        Err(Error::RunTime(_)) if ins.iter().all(|v| matches!(v, onnx::OnnxValue::Tensor(_))) => {
            let model = onnx::decode(&bytes)?;
            let r = onnx::staged::run(&model, &opts, &by_name, dev)?;
            let got: Vec<Tensor> = r.outputs;
            check_outputs(&info, None, &got, &want)?;
            return Ok(if r.on_device.contains(&true) {
                Computed::Device
            } else {
                Computed::Host
            });
        }
        other => other?,
    };
    let feed: Vec<Tensor> = m
        .inputs
        .iter()
        .map(|n| {
            by_name
                .get(n)
                .cloned()
                .ok_or_else(|| Error::Model(format!("no test data for input '{n}'")))
        })
        .collect::<Result<_, _>>()?;
    let out = dev.run(&m.graph, &feed)?;
    check_outputs(&info, feed.first(), &out.outputs, &want)?;
    Ok(computed(&m.graph, &out.profile))
}

/// Compare a case's outputs with the expected ones (`x`: the first input, for cases that only
/// cast).
fn check_outputs(
    info: &onnx::Inspection,
    x: Option<&Tensor>,
    outputs: &[Tensor],
    want: &[Tensor],
) -> Result<(), Outcome> {
    if outputs.len() != want.len() {
        return Err(Outcome::Fail(format!(
            "{} outputs, expected {}",
            outputs.len(),
            want.len()
        )));
    }
    let casts_only =
        !info.ops.is_empty() && info.ops.keys().all(|o| o == "Cast" || o == "CastLike");
    for (k, (got, exp)) in outputs.iter().zip(want).enumerate() {
        let (got, exp) = match x {
            Some(x) if casts_only => undefined_casts_agreed(x, got, exp),
            _ => (got.clone(), exp.clone()),
        };
        // A Fourier transform's f32 rounding error scales with the whole output, not with each
        // element: a bin that is 0 in exact arithmetic comes out near eps times the largest.
        let atol = if info.ops.contains_key("DFT") || info.ops.contains_key("STFT") {
            ATOL + ATOL_DFT_EPS * exp.to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()))
        } else {
            ATOL
        };
        compare_within(&got, &exp, atol).map_err(|d| Outcome::Fail(format!("output {k}: {d}")))?;
    }
    Ok(())
}

/// ONNX's Cast leaves a float cast to a fixed-point type out of its range undefined ("fixed
/// point: undefined if OOR"). For a case that only casts a float input `x` to a 4- or 2-bit
/// integer (the suite's expected values there are whatever the generator's ml_dtypes wrote: 0.6
/// wraps, 0.7 writes 0), the elements whose input is out of range are not compared: both sides
/// hold 0 there. Every other case is compared whole.
fn undefined_casts_agreed(x: &Tensor, got: &Tensor, exp: &Tensor) -> (Tensor, Tensor) {
    let to = exp.dtype();
    if to.sub_byte_int().is_none()
        || !x.dtype().is_float()
        || x.shape() != exp.shape()
        || got.shape() != exp.shape()
    {
        return (got.clone(), exp.clone());
    }
    // In range: the conversion keeps the truncated value (out of range, it wraps).
    let defined: Vec<bool> = x
        .to_f64_vec()
        .iter()
        .map(|&v| v.is_finite() && to.round(v) == v.trunc())
        .collect();
    let keep = |t: &Tensor| {
        let v: Vec<f64> = t
            .to_f64_vec()
            .iter()
            .zip(&defined)
            .map(|(&v, &d)| if d { v } else { 0.0 })
            .collect();
        Tensor::from_f64(t.dtype(), t.shape().clone(), &v)
    };
    (keep(got), keep(exp))
}

/// Compare an output with the expected tensor: same dtype and shape, values within
/// rtol/atol for floats ([`RTOL_BF16`] for bfloat16, [`RTOL_F16`] and [`ATOL_F16`] for f16; NaN matches NaN, infinities must match),
/// exact for integers and booleans.
pub fn compare(got: &Tensor, want: &Tensor) -> Result<(), String> {
    compare_within(got, want, ATOL)
}

/// [`compare`] with another absolute tolerance.
pub fn compare_within(got: &Tensor, want: &Tensor, atol: f64) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!(
            "dtype {} where {} was expected",
            got.dtype(),
            want.dtype()
        ));
    }
    if got.dims() != want.dims() {
        return Err(format!(
            "shape {} where {} was expected",
            got.shape(),
            want.shape()
        ));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let float = got.dtype().is_float();
    let (rtol, atol) = match got.dtype() {
        DType::BF16 => (RTOL_BF16, atol),
        DType::F16 => (RTOL_F16, atol.max(ATOL_F16)),
        _ => (RTOL, atol),
    };
    let (mut max_abs, mut max_rel, mut bad) = (0.0f64, 0.0f64, 0usize);
    for (&a, &b) in g.iter().zip(&w) {
        if a.is_nan() && b.is_nan() || a == b {
            continue;
        }
        let d = (a - b).abs();
        let ok = float && d <= atol + rtol * b.abs();
        if !ok {
            bad += 1;
        }
        max_abs = max_abs.max(if d.is_nan() { f64::INFINITY } else { d });
        if b != 0.0 {
            max_rel = max_rel.max(d / b.abs());
        }
    }
    if bad > 0 {
        return Err(format!(
            "{bad} of {} values differ: max abs error {max_abs:.3e}, max rel error {max_rel:.3e}",
            g.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::data_type;
    use crate::testutil::{model, node, vi};
    use prost::Message;
    use sfumato_core::device::{OpTiming, RunOutput, TimingSource};
    use sfumato_core::CpuDevice;

    /// A case folder `NAME` under a fresh temporary suite: `model.onnx` and one input and
    /// expected output.
    fn case(name: &str, model: Vec<u8>, input: &Tensor, output: &Tensor) -> PathBuf {
        // A folder per call: tests run in parallel, and each removes its own when done.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir()
            .join(format!("sfumato-conf-{}-{n}-{name}", std::process::id()))
            .join(name);
        let data = dir.join("test_data_set_0");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(dir.join("model.onnx"), model).unwrap();
        let pb = |t: &Tensor, n: &str| crate::tensor::to_proto(t, n).encode_to_vec();
        std::fs::write(data.join("input_0.pb"), pb(input, "x")).unwrap();
        std::fs::write(data.join("output_0.pb"), pb(output, "y")).unwrap();
        dir
    }

    /// `y = OP(x)`, x and y f32 [4].
    fn unary_case(name: &str, op: &str, y: &[f32]) -> PathBuf {
        let f = |n: &str| vi(n, data_type::FLOAT, &[Ok(4)]);
        let m = model(
            vec![node(op, &["x"], &["y"], vec![])],
            vec![],
            vec![f("x")],
            vec![f("y")],
        );
        let x = Tensor::from_f32([4], vec![-1.0, 2.0, -3.0, 4.0]).unwrap();
        case(name, m, &x, &Tensor::from_f32([4], y.to_vec()).unwrap())
    }

    /// A device whose every run ends in one error.
    struct Failing(fn() -> sfumato_core::Error);

    impl Device for Failing {
        fn name(&self) -> String {
            "failing".into()
        }
        fn run(&mut self, _: &Graph, _: &[Tensor]) -> sfumato_core::Result<RunOutput> {
            Err((self.0)())
        }
    }

    fn internal() -> sfumato_core::Error {
        sfumato_core::Error::Internal {
            node: "relu_0".into(),
            op: "Relu".into(),
            inputs: "f32 [4]".into(),
            msg: "a group output not computed by it".into(),
        }
    }

    fn unsupported() -> sfumato_core::Error {
        sfumato_core::Error::Unsupported {
            node: "exp_0".into(),
            op: "Exp".into(),
            inputs: "u32 [4]".into(),
            msg: "Exp on u32".into(),
        }
    }

    /// The shader generator's internal failure (a bug) is an error, never "unsupported" (a
    /// coverage gap); a gap stays unsupported.
    #[test]
    fn an_internal_error_is_an_error_and_a_gap_is_unsupported() {
        assert_eq!(status_of(&internal().into()), Status::Error);
        assert_eq!(status_of(&unsupported().into()), Status::Unsupported);
        let dir = unary_case("test_relu", "Relu", &[0.0, 2.0, 0.0, 4.0]);
        let r = run_case(&dir, &mut Failing(internal));
        assert_eq!((r.status, r.computed), (Status::Error, None), "{r:?}");
        assert!(r.detail.contains("internal error"), "{}", r.detail);
        let r = run_case(&dir, &mut Failing(unsupported));
        assert_eq!(r.status, Status::Unsupported, "{r:?}");
        let t = Totals::of(&[r, run_case(&dir, &mut Failing(internal))]);
        assert_eq!((t.unsupported, t.error), (1, 1));
        std::fs::remove_dir_all(dir.parent().unwrap()).ok();
    }

    fn kernel() -> Profile {
        Profile {
            entries: vec![OpTiming {
                nodes: vec!["n".into()],
                ops: vec!["Relu".into()],
                kernel: "k".into(),
                start_ns: 0,
                duration_ns: 0,
                source: TimingSource::WholeRun,
                simulated: None,
            }],
            ..Default::default()
        }
    }

    /// A pass is a device pass only where an op computes an output from a run input and the
    /// run dispatched a kernel; an output known at import, or a run input handed back
    /// reshaped, is a host pass.
    #[test]
    fn computed_tells_device_passes_from_host_passes() {
        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [2, 3]);
        let r = g.reshape(x, &[3, 2]).unwrap();
        let c = g
            .constant(Tensor::from_f32([3, 2], vec![1.0; 6]).unwrap())
            .unwrap();
        let folded = g.relu(c).unwrap();
        let sum = g.add_(r, c).unwrap();
        let e = g.input("e", DType::F32, [0, 3]);
        let empty = g.relu(e).unwrap();
        let with = |outs: &[sfumato_core::ValueId]| {
            let mut g = g.clone();
            g.set_outputs(outs).unwrap();
            g
        };
        assert_eq!(computed(&with(&[r]), &kernel()), Computed::Host);
        assert_eq!(computed(&with(&[folded]), &kernel()), Computed::Host);
        assert_eq!(computed(&with(&[c, r]), &kernel()), Computed::Host);
        assert_eq!(computed(&with(&[sum]), &kernel()), Computed::Device);
        assert_eq!(computed(&with(&[folded, sum]), &kernel()), Computed::Device);
        // An empty output has no value to compute.
        assert_eq!(computed(&with(&[empty]), &kernel()), Computed::Host);
        // Nothing dispatched: the device only copied.
        assert_eq!(computed(&with(&[sum]), &Profile::default()), Computed::Host);
    }

    /// Through the runner: Relu of the input is a device pass; Shape of it is known at import.
    #[test]
    fn run_case_says_where_a_pass_was_computed() {
        let dir = unary_case("test_relu", "Relu", &[0.0, 2.0, 0.0, 4.0]);
        let r = run_case(&dir, &mut CpuDevice);
        assert_eq!(
            (r.status, r.computed),
            (Status::Pass, Some(Computed::Device)),
            "{r:?}"
        );
        let m = model(
            vec![node("Shape", &["x"], &["y"], vec![])],
            vec![],
            vec![vi("x", data_type::FLOAT, &[Ok(4)])],
            vec![vi("y", data_type::INT64, &[Ok(1)])],
        );
        let x = Tensor::from_f32([4], vec![1.0; 4]).unwrap();
        let shape = Tensor::from_i64([1], vec![4]).unwrap();
        let dir2 = case("test_shape", m, &x, &shape);
        let r2 = run_case(&dir2, &mut CpuDevice);
        assert_eq!(
            (r2.status, r2.computed),
            (Status::Pass, Some(Computed::Host)),
            "{r2:?}"
        );
        let t = Totals::of(&[r, r2]);
        assert_eq!((t.pass, t.pass_device, t.pass_host), (2, 1, 1));
        std::fs::remove_dir_all(dir.parent().unwrap()).ok();
        std::fs::remove_dir_all(dir2.parent().unwrap()).ok();
    }

    fn result(name: &str, status: Status, computed: Option<Computed>) -> CaseResult {
        CaseResult {
            name: name.into(),
            status,
            computed,
            detail: String::new(),
            ops: vec![],
        }
    }

    /// The pinned list round-trips, and its diff names lost passes (a regression), device
    /// passes now host passes (a regression), and passes it does not hold.
    #[test]
    fn the_passing_list_round_trips_and_diffs() {
        use Computed::{Device as D, Host as H};
        let was = [
            result("test_a", Status::Pass, Some(D)),
            result("test_b", Status::Pass, Some(H)),
            result("test_c", Status::Unsupported, None),
            result("test_d", Status::Pass, Some(D)),
        ];
        let text = passing_list(&was, "the header\nregenerate: ...");
        assert!(
            text.starts_with("# the header\n# regenerate: ...\n"),
            "{text}"
        );
        let listed = parse_passing_list(&text).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(diff_passing(&listed, &was), PassingDiff::default());
        let now = [
            result("test_a", Status::Error, None),
            result("test_b", Status::Pass, Some(D)),
            result("test_c", Status::Pass, Some(H)),
            result("test_d", Status::Pass, Some(H)),
        ];
        let d = diff_passing(&listed, &now);
        assert_eq!(d.lost.len(), 2, "{d:?}");
        assert!(d.lost[0].starts_with("test_a: error"), "{d:?}");
        assert!(d.lost[1].starts_with("test_d: a host pass"), "{d:?}");
        assert_eq!(d.new.len(), 2, "{d:?}");
        assert!(d.new[0].starts_with("test_b: a device pass"), "{d:?}");
        assert!(
            d.new[1].starts_with("test_c: a host pass, not listed"),
            "{d:?}"
        );
        assert!(parse_passing_list("test_a gpu").is_err());
        assert!(parse_passing_list("test_a host\ntest_a host").is_err());
    }

    /// -9.0 and 8.0 to int4 are undefined by ONNX: whatever the suite expects there (ml_dtypes 0.6
    /// wraps to 7 and -8, 0.7 writes 0) is not compared; an in-range element still is.
    #[test]
    fn out_of_range_float_to_int4_is_not_compared() {
        let x = Tensor::from_f64(DType::F32, [4], &[-9.0, 8.0, 3.7, -8.0]);
        let got = Tensor::from_f64(DType::I4, [4], &[7.0, -8.0, 3.0, -8.0]);
        let zeros = Tensor::from_f64(DType::I4, [4], &[0.0, 0.0, 3.0, -8.0]);
        let (g, e) = undefined_casts_agreed(&x, &got, &zeros);
        assert!(compare(&g, &e).is_ok());
        let wrong = Tensor::from_f64(DType::I4, [4], &[7.0, -8.0, 2.0, -8.0]);
        let (g, e) = undefined_casts_agreed(&x, &wrong, &zeros);
        assert!(compare(&g, &e).is_err());
        // Not a sub-byte target: compared whole.
        let y = Tensor::from_f64(DType::I8, [4], &[-9.0, 8.0, 3.0, -8.0]);
        let z = Tensor::from_f64(DType::I8, [4], &[0.0, 8.0, 3.0, -8.0]);
        let (g, e) = undefined_casts_agreed(&x, &y, &z);
        assert!(compare(&g, &e).is_err());
    }
}
