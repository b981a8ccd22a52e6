//! The ops the importer composes from device ops, run on the wgpu device against naive
//! references written here (f64 loops that follow ONNX's definitions), on random shapes and
//! values (proptest): Einsum, CumProd, TopK, ScatterND and ScatterElements with every
//! reduction, GatherND, RNN/GRU/LSTM with sequence lengths in both directions, the linear
//! attention recurrences, QuantizeLinear/DequantizeLinear per axis, a QDQ MatMul (an integer
//! product), and DFT. The conformance
//! suite checks the same ops on ONNX's own cases; these reach wider shapes and the attribute
//! combinations the suite leaves out.

use proptest::prelude::*;
use prost::Message;
use sfumato_core::{DType, Device, Tensor};
use sfumato_onnx::proto::*;
use sfumato_onnx::{import, tensor, ImportOptions, RecurrentForm};
// `testutil.rs` names `crate::{proto, tensor, ImportOptions, OnnxValue}`: these two only for it.
use sfumato_onnx::{proto, OnnxValue};
use std::sync::Mutex;

/// The crate's test helpers (value infos), shared rather than copied.
#[path = "../src/testutil.rs"]
#[allow(dead_code)]
mod testutil;

static DEVICE: Mutex<Option<Option<sfumato_wgpu::WgpuDevice>>> = Mutex::new(None);

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    }
}

fn elem(dt: DType) -> i32 {
    match dt {
        DType::F32 => data_type::FLOAT,
        DType::I64 => data_type::INT64,
        DType::I32 => data_type::INT32,
        DType::U8 => data_type::UINT8,
        DType::I8 => data_type::INT8,
        other => panic!("no element type for {other} in these tests"),
    }
}

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i: v,
        ..Default::default()
    }
}

fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOAT,
        f: v,
        ..Default::default()
    }
}

fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::STRING,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A KV-cache update as exported LLMs write it: ScatterND of one position per head into a
/// cache of 32 heads x 2,048 positions x 128. The one-hot mask this used to need (65,536 rows x
/// 32 updates x 128 = 268M elements) was refused; ScatterRows runs it, with `add` too.
#[test]
fn scatter_nd_into_a_long_kv_cache() {
    let (h, len, d) = (32usize, 2048usize, 128usize);
    let data = rand_f(h * len * d, 1, -1.0, 1.0);
    let upd = rand_f(h * d, 2, -1.0, 1.0);
    let pos: Vec<usize> = (0..h).map(|i| (i * 97 + 5) % len).collect();
    let mut idx = Vec::new();
    for (i, &p) in pos.iter().enumerate() {
        idx.extend([0i64, i as i64, p as i64]);
    }
    let x = Tensor::from_f64(DType::F32, [1, h, len, d], &data);
    let it = Tensor::from_i64([h, 1, 3], idx).unwrap();
    let ut = Tensor::from_f64(DType::F32, [h, 1, d], &upd);
    for (red, add) in [("none", false), ("add", true)] {
        let Some(got) = run_node(
            18,
            "ScatterND",
            &["x", "i", "u"],
            &[("x", &x), ("u", &ut)],
            &[("i", &it)],
            &["y"],
            vec![attr_s("reduction", red)],
        ) else {
            return;
        };
        let mut want = x.to_f64_vec();
        for (i, &p) in pos.iter().enumerate() {
            for e in 0..d {
                let at = (i * len + p) * d + e;
                let u = ut.to_f64_vec()[i * d + e];
                want[at] = if add {
                    (want[at] as f32 + u as f32) as f64
                } else {
                    u
                };
            }
        }
        close("ScatterND into a KV cache", &got[0], &want, 0.0, 0.0).unwrap();
    }
}

/// A node of `op` reading `ins`, writing `out` (also its name).
fn nd(op: &str, ins: &[&str], out: &str, attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        name: out.into(),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// A MatMul of DequantizeLinear outputs runs as an integer product only where that computes
/// the same function: A's scale per tensor, B's per tensor or per column, 8-bit values, one
/// zero point per scale. Every other form stays an f32 MatMul of the dequantized values.
#[test]
fn qdq_forms_the_integer_product_does_not_fit_stay_float() {
    let (m, k, n) = (3usize, 8usize, 5usize);
    let f32s = |dims: &[usize], v: f64| {
        let n: usize = dims.iter().product();
        Tensor::from_f64(DType::F32, dims.to_vec(), &vec![v; n])
    };
    let x = Tensor::from_f64(DType::F32, [m, k], &rand_f(m * k, 1, -1.0, 1.0));
    let w8 = Tensor::from_f64(DType::I8, [k, n], &vec![3.0; k * n]);
    let w4 = Tensor::from_f64(DType::I4, [k, n], &vec![3.0; k * n]);
    // (what, weight, weight scale, weight zero point, weight DQ's axis, x's scale).
    type Form<'a> = (&'a str, &'a Tensor, Tensor, Option<Tensor>, i64, Tensor);
    let cases: Vec<Form> = vec![
        (
            "the weight's scale along K",
            &w8,
            f32s(&[k], 0.1),
            None,
            0,
            f32s(&[], 0.1),
        ),
        (
            "x's scale per column of x",
            &w8,
            f32s(&[], 0.1),
            None,
            1,
            f32s(&[k], 0.1),
        ),
        (
            "a 4-bit weight",
            &w4,
            f32s(&[], 0.1),
            None,
            1,
            f32s(&[], 0.1),
        ),
        (
            "a zero point of another size than its scale",
            &w8,
            f32s(&[], 0.1),
            Some(Tensor::from_f64(DType::I8, [n], &vec![1.0; n])),
            1,
            f32s(&[], 0.1),
        ),
    ];
    for (what, w, sw, zw, axis, sx) in cases {
        let zx = Tensor::from_f64(DType::U8, sx.dims().to_vec(), &vec![128.0; sx.numel()]);
        let mut wq = vec!["w", "sw"];
        if zw.is_some() {
            wq.push("zw");
        }
        let nodes = vec![
            nd(
                "QuantizeLinear",
                &["x", "sx", "zx"],
                "xq",
                vec![attr_i("axis", 1)],
            ),
            nd(
                "DequantizeLinear",
                &["xq", "sx", "zx"],
                "xd",
                vec![attr_i("axis", 1)],
            ),
            nd("DequantizeLinear", &wq, "wd", vec![attr_i("axis", axis)]),
            nd("MatMul", &["xd", "wd"], "y", vec![]),
        ];
        let mut consts = vec![("w", w), ("sw", &sw), ("sx", &sx), ("zx", &zx)];
        if let Some(z) = &zw {
            consts.push(("zw", z));
        }
        let model = import_nodes(21, nodes, &[("x", &x)], &consts, &["y"]);
        let ops: Vec<&str> = model.graph.nodes().iter().map(|nd| nd.op.name()).collect();
        assert!(
            ops.contains(&"MatMul") && !ops.contains(&"MatMulInteger"),
            "{what}: {ops:?}"
        );
    }
}

/// TopK of `rows` random rows of `l` (integer-valued where `ties`, with NaNs where `nans`)
/// along axis 1 against a stable sort: equal values keep the lower index first, and NaN is
/// greater than every number (numpy's and PyTorch's order).
fn check_top_k(
    rows: usize,
    l: usize,
    k: usize,
    largest: bool,
    ties: bool,
    nans: bool,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut v = rand_f(rows * l, seed, -10.0, 10.0);
    if ties {
        v.iter_mut().for_each(|x| *x = x.round());
    }
    if nans {
        v.iter_mut().step_by(7).for_each(|x| *x = f64::NAN);
    }
    let x = Tensor::from_f64(DType::F32, [rows, l], &v);
    let v = x.to_f64_vec();
    let kt = Tensor::from_i64([1], vec![k as i64]).unwrap();
    let Some(got) = run_node(
        11,
        "TopK",
        &["x", "k"],
        &[("x", &x)],
        &[("k", &kt)],
        &["values", "indices"],
        vec![attr_i("axis", 1), attr_i("largest", largest as i64)],
    ) else {
        return Ok(());
    };
    let (mut wv, mut wi) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let mut idx: Vec<usize> = (0..l).collect();
        let row = &v[r * l..(r + 1) * l];
        // Stable, -0 equal to 0 as the device compares, NaN above every number.
        let order = |x: f64, y: f64| match (x.is_nan(), y.is_nan()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => x.partial_cmp(&y).unwrap(),
        };
        idx.sort_by(|&a, &b| {
            if largest {
                order(row[b], row[a])
            } else {
                order(row[a], row[b])
            }
        });
        for &i in &idx[..k] {
            wv.push(row[i]);
            wi.push(i as f64);
        }
    }
    close("TopK values", &got[0], &wv, 0.0, 0.0)?;
    close("TopK indices", &got[1], &wi, 0.0, 0.0)?;
    Ok(())
}

/// One node at `opset`: its inputs named in `order` ("" for an absent optional one), each a
/// graph input fed at run time (`feeds`) or an initializer (`consts`); the outputs' shapes come
/// from inference. `None` where no adapter is found (a loud skip, or a failure in CI).
fn run_node(
    opset: i64,
    op: &str,
    order: &[&str],
    feeds: &[(&str, &Tensor)],
    consts: &[(&str, &Tensor)],
    outs: &[&str],
    attrs: Vec<AttributeProto>,
) -> Option<Vec<Tensor>> {
    let model = import_nodes(
        opset,
        vec![node(op, order, outs, attrs)],
        feeds,
        consts,
        outs,
    );
    run_model(op, &model.graph, feeds)
}

/// One `op` node from inputs `order` to `outs`.
fn node(op: &str, order: &[&str], outs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: order.iter().map(|n| n.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        name: format!("{op}_node"),
        op_type: op.into(),
        attribute: attrs,
        ..Default::default()
    }
}

/// A model of `nodes` with `feeds` as its inputs and `consts` as initializers, imported.
fn import_nodes(
    opset: i64,
    nodes: Vec<NodeProto>,
    feeds: &[(&str, &Tensor)],
    consts: &[(&str, &Tensor)],
    outs: &[&str],
) -> sfumato_onnx::OnnxModel {
    import_nodes_with(&ImportOptions::default(), opset, nodes, feeds, consts, outs)
}

/// [`import_nodes`] with these options.
fn import_nodes_with(
    opts: &ImportOptions,
    opset: i64,
    nodes: Vec<NodeProto>,
    feeds: &[(&str, &Tensor)],
    consts: &[(&str, &Tensor)],
    outs: &[&str],
) -> sfumato_onnx::OnnxModel {
    let m = ModelProto {
        ir_version: 10,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "g".into(),
            initializer: consts.iter().map(|(n, t)| tensor::to_proto(t, n)).collect(),
            input: feeds
                .iter()
                .map(|(n, t)| {
                    let dims: Vec<Result<i64, &str>> =
                        t.dims().iter().map(|&d| Ok(d as i64)).collect();
                    testutil::vi(n, elem(t.dtype()), &dims)
                })
                .collect(),
            output: outs
                .iter()
                .map(|o| ValueInfoProto {
                    name: o.to_string(),
                    r#type: None,
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    import(&m.encode_to_vec(), opts).unwrap_or_else(|e| panic!("import: {e}"))
}

/// `g` run on the wgpu test device (`None` where there is no adapter).
fn run_model(
    what: &str,
    g: &sfumato_core::Graph,
    feeds: &[(&str, &Tensor)],
) -> Option<Vec<Tensor>> {
    let feeds: Vec<Tensor> = feeds.iter().map(|(_, t)| (*t).clone()).collect();
    let mut guard = DEVICE.lock().unwrap_or_else(|p| p.into_inner());
    let dev = guard
        .get_or_insert_with(sfumato_wgpu::test_device)
        .as_mut()?;
    Some(
        dev.run(g, &feeds)
            .unwrap_or_else(|e| panic!("{what} on wgpu: {e}"))
            .outputs,
    )
}

/// Staged runs on the wgpu device (`sfumato_onnx::staged`): an If on a computed condition, a
/// Loop with a computed trip count and a Reshape to a computed shape, and a Loop whose body
/// holds a host step (the models are `testutil`'s, which the CPU reference's tests run too).
#[test]
fn staged_runs_read_values_back_between_device_stages() {
    let mut guard = DEVICE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(dev) = guard.get_or_insert_with(sfumato_wgpu::test_device).as_mut() else {
        return;
    };
    let mut run = |bytes: &[u8], inputs: &[(&str, Tensor)]| {
        let m = sfumato_onnx::decode(bytes).unwrap();
        let ins = inputs
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        sfumato_onnx::staged::run(&m, &ImportOptions::default(), &ins, dev).unwrap()
    };
    let hosts = |r: &sfumato_onnx::staged::StagedRun| {
        r.profile
            .entries
            .iter()
            .filter(|e| e.kernel.starts_with("host:"))
            .count()
    };
    let f32s = testutil::f32s;
    for (x, want) in [([1.0, 2.0], [2.0, 4.0]), ([-1.0, -2.0], [-3.0, -6.0])] {
        let r = run(&testutil::staged_if_model(), &[("x", f32s(&[2], &x))]);
        assert_eq!(r.outputs[0].to_f32_vec(), want);
        assert_eq!((r.on_device[0], r.stages.len(), hosts(&r)), (true, 3, 1));
    }
    let r = run(
        &testutil::staged_loop_reshape_model(),
        &[
            ("x", f32s(&[2], &[1.0, -2.0])),
            ("n", f32s(&[], &[-3.0])),
            ("shape", f32s(&[1], &[-6.0])),
        ],
    );
    assert_eq!(r.outputs[0].to_f32_vec(), vec![3.0, 4.0]);
    assert_eq!(
        r.outputs[1].to_f32_vec(),
        vec![0.0, 10.0, 0.0, 10.0, 1.0, 8.0]
    );
    assert_eq!(r.on_device, vec![true, true]);
    let r = run(
        &testutil::staged_host_loop_model(),
        &[("n", f32s(&[], &[2.0])), ("a", f32s(&[2], &[0.0, 1.0]))],
    );
    assert_eq!(r.outputs[0].to_f32_vec(), vec![3.0, 4.0]);
    // The trip count read back, the NonZero of each of the two iterations, and the Loop.
    assert_eq!(hosts(&r), 4, "{:?}", r.stages);
}

/// `got` against `want` within `atol + rtol * |want|`.
fn close(
    what: &str,
    got: &Tensor,
    want: &[f64],
    atol: f64,
    rtol: f64,
) -> Result<(), TestCaseError> {
    let g = got.to_f64_vec();
    prop_assert_eq!(g.len(), want.len(), "{}: length", what);
    for (i, (a, b)) in g.iter().zip(want).enumerate() {
        prop_assert!(
            (a - b).abs() <= atol + rtol * b.abs() || (a.is_nan() && b.is_nan()),
            "{}: element {} is {}, expected {}",
            what,
            i,
            a,
            b
        );
    }
    Ok(())
}

fn rand_f(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    Tensor::random(DType::F32, [n], seed)
        .to_f64_vec()
        .iter()
        .map(|u| lo + (u + 1.0) / 2.0 * (hi - lo))
        .collect()
}

fn unravel(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut c = vec![0; dims.len()];
    for d in (0..dims.len()).rev() {
        c[d] = i % dims[d].max(1);
        i /= dims[d].max(1);
    }
    c
}

fn ravel(c: &[usize], dims: &[usize]) -> usize {
    c.iter().zip(dims).fold(0, |a, (&c, &d)| a * d + c)
}

/// A naive einsum over explicit label lists.
fn einsum_ref(terms: &[(&str, &[usize], &[f64])], out: &str) -> (Vec<usize>, Vec<f64>) {
    let mut size = std::collections::BTreeMap::new();
    for (t, d, _) in terms {
        for (c, &n) in t.chars().zip(d.iter()) {
            size.insert(c, n);
        }
    }
    let labels: Vec<char> = size.keys().copied().collect();
    let dims: Vec<usize> = labels.iter().map(|c| size[c]).collect();
    let od: Vec<usize> = out.chars().map(|c| size[&c]).collect();
    let mut res = vec![0.0; od.iter().product()];
    for p in 0..dims.iter().product::<usize>() {
        let c = unravel(p, &dims);
        let at = |ch: char| c[labels.iter().position(|&l| l == ch).unwrap()];
        let mut v = 1.0;
        for (t, d, x) in terms {
            let ci: Vec<usize> = t.chars().map(at).collect();
            v *= x[ravel(&ci, d)];
        }
        let oc: Vec<usize> = out.chars().map(at).collect();
        res[ravel(&oc, &od)] += v;
    }
    (od, res)
}

proptest! {
    #![proptest_config(cfg(16))]

    #[test]
    fn einsum(k in 0usize..9, a in 1usize..7, b in 1usize..7, c in 1usize..40, d in 1usize..5, seed in any::<u64>()) {
        // (equation, operand label strings, output labels)
        let cases: [(&str, &[&str], &str); 9] = [
            ("ij,jk->ik", &["ij", "jk"], "ik"),
            ("bij,bjk->bik", &["bij", "bjk"], "bik"),
            ("ii->i", &["ii"], "i"),
            ("ij->", &["ij"], ""),
            ("ijk->kji", &["ijk"], "kji"),
            ("bhqd,bhkd->bhqk", &["bhqd", "bhkd"], "bhqk"),
            ("i,j->ij", &["i", "j"], "ij"),
            ("ij,ij->i", &["ij", "ij"], "i"),
            ("ij,jk,kl->il", &["ij", "jk", "kl"], "il"),
        ];
        let (eq, terms, out) = cases[k];
        let size = |ch: char| match ch {
            'i' | 'q' => a,
            'j' | 'd' => c,
            'k' => b,
            'l' => d + 1,
            'b' => d,
            _ => 2,
        };
        let mut tensors = Vec::new();
        for (n, t) in terms.iter().enumerate() {
            let dims: Vec<usize> = t.chars().map(size).collect();
            let v = rand_f(dims.iter().product(), seed + n as u64, -1.0, 1.0);
            tensors.push(Tensor::from_f64(DType::F32, dims, &v));
        }
        let names = ["x0", "x1", "x2"];
        let ins: Vec<(&str, &Tensor)> = tensors.iter().enumerate().map(|(i, t)| (names[i], t)).collect();
        let Some(got) = run_node(12, "Einsum", &ins.iter().map(|(n, _)| *n).collect::<Vec<_>>(), &ins, &[], &["y"], vec![attr_s("equation", eq)]) else { return Ok(()); };
        let vals: Vec<Vec<f64>> = tensors.iter().map(|t| t.to_f64_vec()).collect();
        let spec: Vec<(&str, &[usize], &[f64])> = terms.iter().zip(&tensors).zip(&vals).map(|((t, x), v)| (*t, x.dims(), v.as_slice())).collect();
        let (od, want) = einsum_ref(&spec, out);
        prop_assert_eq!(got[0].dims(), od.as_slice());
        close(eq, &got[0], &want, 1e-4, 1e-4)?;
    }

    #[test]
    fn cum_prod(dims in prop::collection::vec(1usize..9, 1..4), ax in 0usize..3, exclusive in any::<bool>(), reverse in any::<bool>(), seed in any::<u64>()) {
        let axis = ax % dims.len();
        let n: usize = dims.iter().product();
        let x = Tensor::from_f64(DType::F32, dims.clone(), &rand_f(n, seed, 0.5, 1.5));
        let axis_t = Tensor::from_i64([1], vec![axis as i64]).unwrap();
        let Some(got) = run_node(26, "CumProd", &["x", "axis"], &[("x", &x)], &[("axis", &axis_t)], &["y"],
            vec![attr_i("exclusive", exclusive as i64), attr_i("reverse", reverse as i64)]) else { return Ok(()); };
        let xv = x.to_f64_vec();
        let want: Vec<f64> = (0..n).map(|p| {
            let c = unravel(p, &dims);
            let range: Vec<usize> = if reverse { (c[axis]..dims[axis]).collect() } else { (0..=c[axis]).collect() };
            range.into_iter().filter(|&j| !(exclusive && j == c[axis])).map(|j| {
                let mut cc = c.clone();
                cc[axis] = j;
                xv[ravel(&cc, &dims)]
            }).product()
        }).collect();
        close("CumProd", &got[0], &want, 1e-5, 1e-4)?;
    }

    /// Short rows: the rank composition (up to 128) and just past it the bitonic network.
    #[test]
    fn top_k(rows in 1usize..5, l in 1usize..200, kf in 0.0f64..1.0, largest in any::<bool>(), ties in any::<bool>(), nans in any::<bool>(), seed in any::<u64>()) {
        let k = ((l as f64 * kf) as usize).max(1).min(l);
        check_top_k(rows, l, k, largest, ties, nans, seed)?;
    }

    #[test]
    fn scatter_nd(d0 in 1usize..12, d1 in 1usize..6, k2 in any::<bool>(), nu in 1usize..8, red in 0usize..5, seed in any::<u64>()) {
        let reds = ["none", "add", "mul", "max", "min"];
        let dims = [d0, d1];
        let kk = if k2 { 2 } else { 1 };
        let data = Tensor::from_f64(DType::F32, dims.to_vec(), &rand_f(d0 * d1, seed, -2.0, 2.0));
        // Index tuples: distinct for 'none' (ONNX leaves duplicates undefined there), any otherwise.
        let rows: usize = dims[..kk].iter().product();
        let pick = rand_f(nu, seed ^ 7, 0.0, rows as f64 - 0.01);
        let mut targets: Vec<usize> = pick.iter().map(|p| *p as usize).collect();
        if red == 0 { targets.sort_unstable(); targets.dedup(); }
        let u = targets.len();
        let mut iv = Vec::new();
        for &t in &targets {
            let c = unravel(t, &dims[..kk]);
            // Negative indices count from the end.
            for (j, &cj) in c.iter().enumerate() { iv.push(if (t + j) % 3 == 0 { cj as i64 - dims[j] as i64 } else { cj as i64 }); }
        }
        let idx = Tensor::from_i64([u, kk], iv).unwrap();
        let s: usize = dims[kk..].iter().product();
        let mut ud = vec![u];
        ud.extend(&dims[kk..]);
        let upd = Tensor::from_f64(DType::F32, ud, &rand_f(u * s, seed ^ 9, -2.0, 2.0));
        let Some(got) = run_node(18, "ScatterND", &["data", "indices", "updates"], &[("data", &data), ("indices", &idx), ("updates", &upd)], &[], &["y"],
            vec![attr_s("reduction", reds[red])]) else { return Ok(()); };
        let mut want = data.to_f64_vec();
        let uv = upd.to_f64_vec();
        for (p, &t) in targets.iter().enumerate() {
            for e in 0..s {
                let w = &mut want[t * s + e];
                let x = uv[p * s + e];
                *w = match red { 0 => x, 1 => *w + x, 2 => *w * x, 3 => w.max(x), _ => w.min(x) };
            }
        }
        close("ScatterND", &got[0], &want, 1e-5, 1e-5)?;
    }

    #[test]
    fn scatter_elements(d0 in 1usize..8, d1 in 1usize..8, axis in 0usize..2, red in 0usize..5, seed in any::<u64>()) {
        let reds = ["none", "add", "mul", "max", "min"];
        let dims = [d0, d1];
        let data = Tensor::from_f64(DType::F32, dims.to_vec(), &rand_f(d0 * d1, seed, -2.0, 2.0));
        // Updates over a smaller block; along the axis each row targets distinct positions for
        // 'none'.
        let ud = [d0.div_ceil(2), d1.div_ceil(2)];
        let n = ud[0] * ud[1];
        let mut iv = Vec::new();
        for p in 0..n {
            let c = unravel(p, &ud);
            let other = c[1 - axis];
            let t = if red == 0 { (c[axis] * 2 + other) % dims[axis] } else { (p * 7 + seed as usize) % dims[axis] };
            iv.push(t as i64);
        }
        if red == 0 {
            // Distinct along the axis within each line: c[axis] * 2 spreads them when they fit.
            for line in 0..ud[1 - axis] {
                let mut seen = std::collections::HashSet::new();
                for j in 0..ud[axis] {
                    let mut c = [0, 0];
                    c[axis] = j;
                    c[1 - axis] = line;
                    if !seen.insert(iv[ravel(&c, &ud)]) { return Ok(()); }
                }
            }
        }
        let idx = Tensor::from_i64(ud.to_vec(), iv.clone()).unwrap();
        let upd = Tensor::from_f64(DType::F32, ud.to_vec(), &rand_f(n, seed ^ 3, -2.0, 2.0));
        let Some(got) = run_node(18, "ScatterElements", &["data", "indices", "updates"], &[("data", &data), ("indices", &idx), ("updates", &upd)], &[], &["y"],
            vec![attr_i("axis", axis as i64), attr_s("reduction", reds[red])]) else { return Ok(()); };
        let mut want = data.to_f64_vec();
        let uv = upd.to_f64_vec();
        for p in 0..n {
            let mut c = unravel(p, &ud);
            c[axis] = iv[p] as usize;
            let w = &mut want[ravel(&c, &dims)];
            let x = uv[p];
            *w = match red { 0 => x, 1 => *w + x, 2 => *w * x, 3 => w.max(x), _ => w.min(x) };
        }
        close("ScatterElements", &got[0], &want, 1e-5, 1e-5)?;
    }

    #[test]
    fn gather_nd(b in 1usize..4, d1 in 1usize..6, d2 in 1usize..6, d3 in 1usize..4, batch_dims in 0usize..2, k in 1usize..3, m in 1usize..5, seed in any::<u64>()) {
        let dims = [b, d1, d2, d3];
        let n: usize = dims.iter().product();
        let x = Tensor::from_f64(DType::F32, dims.to_vec(), &rand_f(n, seed, -5.0, 5.0));
        let idx_dims: Vec<usize> = if batch_dims == 1 { vec![b, m, k] } else { vec![m, k] };
        let nt = idx_dims.iter().product::<usize>() / k;
        let mut iv = Vec::new();
        let pick = rand_f(nt * k, seed ^ 5, 0.0, 0.999);
        for t in 0..nt {
            for j in 0..k {
                let dim = dims[batch_dims + j];
                iv.push((pick[t * k + j] * dim as f64) as i64 - if j == 0 && t % 2 == 1 { dim as i64 } else { 0 });
            }
        }
        let idx = Tensor::from_i64(idx_dims.clone(), iv.clone()).unwrap();
        let Some(got) = run_node(13, "GatherND", &["x", "i"], &[("x", &x), ("i", &idx)], &[], &["y"], vec![attr_i("batch_dims", batch_dims as i64)]) else { return Ok(()); };
        let slice: usize = dims[batch_dims + k..].iter().product();
        let mut want = Vec::new();
        for t in 0..nt {
            let bi = if batch_dims == 1 { t / m } else { 0 };
            let mut c = vec![0usize; 4];
            if batch_dims == 1 { c[0] = bi; }
            for j in 0..k {
                let dim = dims[batch_dims + j] as i64;
                c[batch_dims + j] = iv[t * k + j].rem_euclid(dim) as usize;
            }
            let start = ravel(&c, &dims);
            want.extend_from_slice(&x.to_f64_vec()[start..start + slice]);
        }
        close("GatherND", &got[0], &want, 0.0, 0.0)?;
    }

    #[test]
    fn quantize_dequantize(c in 1usize..40, w in 1usize..9, signed in any::<bool>(), seed in any::<u64>()) {
        let x = Tensor::from_f64(DType::F32, [2, c, w], &rand_f(2 * c * w, seed, -30.0, 30.0));
        let scales = rand_f(c, seed ^ 1, 0.05, 0.5);
        let st = Tensor::from_f64(DType::F32, [c], &scales);
        let (zdt, lo, hi) = if signed { (DType::I8, -128.0, 127.0) } else { (DType::U8, 0.0, 255.0) };
        let zps: Vec<f64> = rand_f(c, seed ^ 2, lo / 4.0, hi / 4.0).iter().map(|v| v.round()).collect();
        let zt = Tensor::from_f64(zdt, [c], &zps);
        let Some(got) = run_node(21, "QuantizeLinear", &["x", "s", "z"], &[("x", &x)], &[("s", &st), ("z", &zt)], &["y"], vec![attr_i("axis", 1)]) else { return Ok(()); };
        let q: Vec<f64> = x.to_f64_vec().iter().enumerate().map(|(i, &v)| {
            let ch = (i / w) % c;
            ((v as f32 / scales[ch] as f32) as f64).round_ties_even().add_clamp(zps[ch], lo, hi)
        }).collect();
        // One step of rounding at an exact half may differ with the division's last bit.
        close("QuantizeLinear", &got[0], &q, 1.0, 0.0)?;
        let qt = got[0].clone();
        let Some(back) = run_node(21, "DequantizeLinear", &["q", "s", "z"], &[("q", &qt)], &[("s", &st), ("z", &zt)], &["y"], vec![attr_i("axis", 1)]) else { return Ok(()); };
        let want: Vec<f64> = qt.to_f64_vec().iter().enumerate().map(|(i, &v)| (v - zps[(i / w) % c]) * scales[(i / w) % c]).collect();
        close("DequantizeLinear", &back[0], &want, 1e-6, 1e-6)?;
    }

    /// The QDQ form: x quantized and dequantized, times a dequantized 8-bit weight (per
    /// tensor or per column), imported as one integer product (no f32 MatMul left) and
    /// checked against the exact sum of the integers times both scales.
    #[test]
    fn qdq_matmul_runs_as_an_integer_product(m in 1usize..40, k in prop_oneof![1usize..300, 2_000usize..3_100], n in 1usize..70,
            per_column in any::<bool>(), signed in any::<bool>(), seed in any::<u64>()) {
        // x is (q - zx) * sx for integers q, sx a power of two: quantizing gives q back exactly.
        let (sx, zx) = (0.0625f64, 7.0f64);
        let xq: Vec<f64> = rand_f(m * k, seed, 0.0, 255.0).iter().map(|v| v.round()).collect();
        let x = Tensor::from_f64(DType::F32, [m, k], &xq.iter().map(|q| (q - zx) * sx).collect::<Vec<_>>());
        let (wdt, lo, hi) = if signed { (DType::I8, -128.0, 127.0) } else { (DType::U8, 0.0, 255.0) };
        let wq: Vec<f64> = rand_f(k * n, seed ^ 1, lo, hi).iter().map(|v| v.round()).collect();
        let cols = if per_column { n } else { 1 };
        let sw = rand_f(cols, seed ^ 2, 0.001, 0.01);
        let zw: Vec<f64> = rand_f(cols, seed ^ 3, lo / 8.0, hi / 8.0).iter().map(|v| v.round()).collect();
        let pdims: Vec<usize> = if per_column { vec![n] } else { vec![] };
        let wt = Tensor::from_f64(wdt, [k, n], &wq);
        let swt = Tensor::from_f64(DType::F32, pdims.clone(), &sw);
        let zwt = Tensor::from_f64(wdt, pdims, &zw);
        let sxt = Tensor::from_f64(DType::F32, [], &[sx]);
        let zxt = Tensor::from_f64(DType::U8, [], &[zx]);
        let nodes = vec![
            nd("QuantizeLinear", &["x", "sx", "zx"], "xq", vec![]),
            nd("DequantizeLinear", &["xq", "sx", "zx"], "xd", vec![]),
            nd("DequantizeLinear", &["w", "sw", "zw"], "wd", vec![attr_i("axis", 1)]),
            nd("MatMul", &["xd", "wd"], "y", vec![]),
        ];
        let feeds = [("x", &x)];
        let model = import_nodes(21, nodes, &feeds, &[("w", &wt), ("sw", &swt), ("zw", &zwt), ("sx", &sxt), ("zx", &zxt)], &["y"]);
        let ops: Vec<&str> = model.graph.nodes().iter().map(|nd| nd.op.name()).collect();
        prop_assert!(ops.contains(&"MatMulInteger") && !ops.contains(&"MatMul"), "ops: {:?}", ops);
        let Some(got) = run_model("QDQ MatMul", &model.graph, &feeds) else { return Ok(()); };
        let mut want = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let c = if per_column { j } else { 0 };
                let acc: f64 = (0..k).map(|p| (xq[i * k + p] - zx) * (wq[p * n + j] - zw[c])).sum();
                want[i * n + j] = acc * (sx as f32 as f64) * (sw[c] as f32 as f64);
            }
        }
        close("QDQ MatMul", &got[0], &want, 1e-5, 1e-5)?;
    }

    /// QLinearMatMul at widths quantized models reach (K to 3,000), B per tensor or per
    /// column: the integer product with the requantisation as its epilogue, against ONNX's
    /// reference (exact i32 sums times `a_scale * b_scale / y_scale`, rounded half to even).
    #[test]
    fn qlinear_matmul_requantises_exact_sums(m in 1usize..24, k in prop_oneof![1usize..300, 1_000usize..3_000], n in 1usize..40,
            per_column in any::<bool>(), signed in any::<bool>(), seed in any::<u64>()) {
        let aq: Vec<f64> = rand_f(m * k, seed, 0.0, 255.0).iter().map(|v| v.round()).collect();
        let (bdt, lo, hi) = if signed { (DType::I8, -128.0, 127.0) } else { (DType::U8, 0.0, 255.0) };
        let bq: Vec<f64> = rand_f(k * n, seed ^ 1, lo, hi).iter().map(|v| v.round()).collect();
        let cols = if per_column { n } else { 1 };
        let pdims: Vec<usize> = if per_column { vec![n] } else { vec![] };
        let sb = rand_f(cols, seed ^ 2, 0.001, 0.01);
        // Zero points near the middle of each range, so that the sums spread both ways.
        let mid = (lo + hi) / 2.0;
        let zb: Vec<f64> = rand_f(cols, seed ^ 3, mid - 16.0, mid + 16.0).iter().map(|v| v.round()).collect();
        let (sa, za, zy) = (0.05f64, 121.0f64, 100.0f64);
        // The output scale spreads the sums over the u8 range.
        let sy = 0.05 * 0.01 * 40.0 * (k as f64).sqrt();
        let a = Tensor::from_f64(DType::U8, [m, k], &aq);
        let consts = [
            ("sa", Tensor::from_f64(DType::F32, [], &[sa])),
            ("za", Tensor::from_f64(DType::U8, [], &[za])),
            ("b", Tensor::from_f64(bdt, [k, n], &bq)),
            ("sb", Tensor::from_f64(DType::F32, pdims.clone(), &sb)),
            ("zb", Tensor::from_f64(bdt, pdims, &zb)),
            ("sy", Tensor::from_f64(DType::F32, [], &[sy])),
            ("zy", Tensor::from_f64(DType::U8, [], &[zy])),
        ];
        let consts: Vec<(&str, &Tensor)> = consts.iter().map(|(n, t)| (*n, t)).collect();
        let Some(got) = run_node(21, "QLinearMatMul", &["a", "sa", "za", "b", "sb", "zb", "sy", "zy"],
            &[("a", &a)], &consts, &["y"], vec![]) else { return Ok(()); };
        let f = |x: f64| x as f32;
        let mut want = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let c = if per_column { j } else { 0 };
                let acc: f64 = (0..k).map(|p| (aq[i * k + p] - za) * (bq[p * n + j] - zb[c])).sum();
                let mult = ((f(sa) * f(sb[c])) / f(sy)) as f64;
                want[i * n + j] = (acc * mult + zy).round_ties_even().clamp(0.0, 255.0);
            }
        }
        // A product at an exact half may round the other way in f32.
        close("QLinearMatMul", &got[0], &want, 1.0, 0.0)?;
    }

    /// QLinearConv (plain, strided and depthwise, with an i32 bias, W per tensor or per output
    /// channel, up to 600 channels: K = 5,400) on the integer conv with the requantisation as
    /// its epilogue, against the exact sums of ONNX's reference.
    #[test]
    fn qlinear_conv_requantises_exact_sums(c in prop_oneof![1usize..24, 200usize..600], o in 1usize..12, size in 3usize..9,
            stride in 1usize..3, depthwise in any::<bool>(), per_channel in any::<bool>(), seed in any::<u64>()) {
        let (groups, o) = if depthwise { (c, c) } else { (1, o) };
        let cig = c / groups;
        let xq: Vec<f64> = rand_f(c * size * size, seed, 0.0, 255.0).iter().map(|v| v.round()).collect();
        let wq: Vec<f64> = rand_f(o * cig * 9, seed ^ 1, -128.0, 127.0).iter().map(|v| v.round()).collect();
        let chans = if per_channel { o } else { 1 };
        let pdims: Vec<usize> = if per_channel { vec![o] } else { vec![] };
        let sw = rand_f(chans, seed ^ 2, 0.001, 0.01);
        let zw: Vec<f64> = rand_f(chans, seed ^ 3, -16.0, 16.0).iter().map(|v| v.round()).collect();
        let bias: Vec<f64> = rand_f(o, seed ^ 4, -2000.0, 2000.0).iter().map(|v| v.round()).collect();
        let (sx, zx, zy) = (0.05f64, 120.0f64, 128.0f64);
        let sy = 0.05 * 0.01 * 30.0 * ((cig * 9) as f64).sqrt();
        let x = Tensor::from_f64(DType::U8, [1, c, size, size], &xq);
        let consts = [
            ("sx", Tensor::from_f64(DType::F32, [], &[sx])),
            ("zx", Tensor::from_f64(DType::U8, [], &[zx])),
            ("w", Tensor::from_f64(DType::I8, [o, cig, 3, 3], &wq)),
            ("sw", Tensor::from_f64(DType::F32, pdims.clone(), &sw)),
            ("zw", Tensor::from_f64(DType::I8, pdims, &zw)),
            ("sy", Tensor::from_f64(DType::F32, [], &[sy])),
            ("zy", Tensor::from_f64(DType::U8, [], &[zy])),
            ("b", Tensor::from_f64(DType::I32, [o], &bias)),
        ];
        let consts: Vec<(&str, &Tensor)> = consts.iter().map(|(n, t)| (*n, t)).collect();
        let attrs = vec![
            testutil::ints("pads", &[1, 1, 1, 1]),
            testutil::ints("strides", &[stride as i64, stride as i64]),
            attr_i("group", groups as i64),
        ];
        let Some(got) = run_node(21, "QLinearConv", &["x", "sx", "zx", "w", "sw", "zw", "sy", "zy", "b"],
            &[("x", &x)], &consts, &["y"], attrs) else { return Ok(()); };
        let f = |v: f64| v as f32;
        let oh = (size + 2 - 3) / stride + 1;
        let mut want = vec![0.0; o * oh * oh];
        for oc in 0..o {
            let ch = if per_channel { oc } else { 0 };
            let mult = ((f(sx) * f(sw[ch])) / f(sy)) as f64;
            let g = oc / (o / groups);
            for y in 0..oh {
                for xo in 0..oh {
                    let mut acc = bias[oc];
                    for icl in 0..cig {
                        let ic = g * cig + icl;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (iy, ix) = ((y * stride + ky) as isize - 1, (xo * stride + kx) as isize - 1);
                                if iy < 0 || ix < 0 || iy >= size as isize || ix >= size as isize {
                                    continue;
                                }
                                let xv = xq[(ic * size + iy as usize) * size + ix as usize] - zx;
                                acc += xv * (wq[((oc * cig + icl) * 3 + ky) * 3 + kx] - zw[ch]);
                            }
                        }
                    }
                    want[(oc * oh + y) * oh + xo] = (acc * mult + zy).round_ties_even().clamp(0.0, 255.0);
                }
            }
        }
        // A product at an exact half may round the other way in f32.
        close("QLinearConv", &got[0], &want, 1.0, 0.0)?;
    }

    /// MatMulInteger with a zero point per row of A and per column of B (1-D, as ONNX allows),
    /// batched A, against exact sums.
    #[test]
    fn matmul_integer_zero_points_per_row_and_column(b in 1usize..3, m in 1usize..9, k in prop_oneof![1usize..40, 500usize..700],
            n in 1usize..9, seed in any::<u64>()) {
        let aq: Vec<f64> = rand_f(b * m * k, seed, 0.0, 255.0).iter().map(|v| v.round()).collect();
        let bq: Vec<f64> = rand_f(k * n, seed ^ 1, -128.0, 127.0).iter().map(|v| v.round()).collect();
        let za: Vec<f64> = rand_f(m, seed ^ 2, 100.0, 150.0).iter().map(|v| v.round()).collect();
        let zb: Vec<f64> = rand_f(n, seed ^ 3, -20.0, 20.0).iter().map(|v| v.round()).collect();
        let a = Tensor::from_f64(DType::U8, [b, m, k], &aq);
        let consts = [
            ("b", Tensor::from_f64(DType::I8, [k, n], &bq)),
            ("za", Tensor::from_f64(DType::U8, [m], &za)),
            ("zb", Tensor::from_f64(DType::I8, [n], &zb)),
        ];
        let consts: Vec<(&str, &Tensor)> = consts.iter().map(|(n, t)| (*n, t)).collect();
        let Some(got) = run_node(10, "MatMulInteger", &["a", "b", "za", "zb"], &[("a", &a)], &consts, &["y"], vec![])
        else { return Ok(()); };
        let mut want = vec![0.0; b * m * n];
        for bi in 0..b {
            for i in 0..m {
                for j in 0..n {
                    want[(bi * m + i) * n + j] = (0..k)
                        .map(|p| (aq[(bi * m + i) * k + p] - za[i]) * (bq[p * n + j] - zb[j]))
                        .sum();
                }
            }
        }
        close("MatMulInteger", &got[0], &want, 0.0, 0.0)?;
    }

    #[test]
    fn dft(rows in 1usize..4, n in 1usize..70, complex in any::<bool>(), inverse in any::<bool>(), seed in any::<u64>()) {
        let parts = if complex { 2 } else { 1 };
        let v = rand_f(rows * n * parts, seed, -1.0, 1.0);
        let x = Tensor::from_f64(DType::F32, [rows, n, parts], &v);
        let axis = Tensor::from_i64([], vec![1]).unwrap();
        let Some(got) = run_node(20, "DFT", &["x", "", "axis"], &[("x", &x)], &[("axis", &axis)], &["y"],
            vec![attr_i("inverse", inverse as i64)]) else { return Ok(()); };
        let sign = if inverse { 1.0 } else { -1.0 };
        let scale = if inverse { 1.0 / n as f64 } else { 1.0 };
        let mut want = Vec::new();
        for r in 0..rows {
            for k in 0..n {
                let (mut re, mut im) = (0.0, 0.0);
                for i in 0..n {
                    let a = v[(r * n + i) * parts];
                    let b = if complex { v[(r * n + i) * parts + 1] } else { 0.0 };
                    let th = sign * 2.0 * std::f64::consts::PI * (i * k) as f64 / n as f64;
                    re += a * th.cos() - b * th.sin();
                    im += a * th.sin() + b * th.cos();
                }
                want.extend([re * scale, im * scale]);
            }
        }
        let top = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        close("DFT", &got[0], &want, 1e-5 * top * (n as f64).sqrt(), 1e-4)?;
    }
}

/// A recurrent layer's sizes and options for [`check_recurrent`].
struct Layer {
    kind: usize,
    t: usize,
    b: usize,
    input: usize,
    h: usize,
    dir: usize,
    lbr: bool,
    unrolled: bool,
    /// A cell clip of 0.9 and, on an LSTM, peepholes.
    extras: bool,
    seed: u64,
}

/// Layer `l` (RNN, GRU or LSTM by `kind`) imported and run on wgpu, against ONNX's equations
/// step by step in f64; the graph holds an `Op::Recurrence` unless `unrolled`.
fn check_recurrent(l: Layer) -> Result<(), TestCaseError> {
    let Layer {
        kind,
        t,
        b,
        input,
        h,
        dir,
        lbr,
        unrolled,
        extras,
        seed,
    } = l;
    let g = [1, 3, 4][kind];
    let op = ["RNN", "GRU", "LSTM"][kind];
    let dirs: Vec<bool> = match dir {
        0 => vec![false],
        1 => vec![true],
        _ => vec![false, true],
    };
    let nd = dirs.len();
    let f = |n: usize, s: u64| rand_f(n, seed ^ s, -0.6, 0.6);
    let (xv, wv, rv, bv, h0v, c0v) = (
        f(t * b * input, 1),
        f(nd * g * h * input, 2),
        f(nd * g * h * h, 3)
            .iter()
            .map(|v| v * (4.0 / (h as f64).sqrt()).min(1.0))
            .collect::<Vec<f64>>(),
        f(nd * 2 * g * h, 4),
        f(nd * b * h, 5),
        f(nd * b * h, 6),
    );
    let lens: Vec<i64> = f(b, 7)
        .iter()
        .map(|u| 1 + ((u + 0.6) / 1.2 * t as f64) as i64 % t as i64)
        .collect();
    let x = Tensor::from_f64(DType::F32, [t, b, input], &xv);
    let w = Tensor::from_f64(DType::F32, [nd, g * h, input], &wv);
    let r = Tensor::from_f64(DType::F32, [nd, g * h, h], &rv);
    let bias = Tensor::from_f64(DType::F32, [nd, 2 * g * h], &bv);
    let lt = Tensor::from_i32([b], lens.iter().map(|&l| l as i32).collect()).unwrap();
    let h0 = Tensor::from_f64(DType::F32, [nd, b, h], &h0v);
    let c0 = Tensor::from_f64(DType::F32, [nd, b, h], &c0v);
    let direction = ["forward", "reverse", "bidirectional"][dir];
    let mut attrs = vec![
        attr_i("hidden_size", h as i64),
        attr_s("direction", direction),
    ];
    if kind == 1 {
        attrs.push(attr_i("linear_before_reset", lbr as i64));
    }
    let clip = 0.9;
    if extras {
        attrs.push(attr_f("clip", clip as f32));
    }
    let cl = |v: f64| if extras { v.clamp(-clip, clip) } else { v };
    let pv = if extras && kind == 2 {
        f(nd * 3 * h, 8)
    } else {
        vec![0.0; nd * 3 * h]
    };
    let peep = Tensor::from_f64(DType::F32, [nd, 3 * h], &pv);
    let mut order = vec!["x", "w", "r", "b", "lens", "h0"];
    let mut feeds = vec![
        ("x", &x),
        ("w", &w),
        ("r", &r),
        ("b", &bias),
        ("lens", &lt),
        ("h0", &h0),
    ];
    if kind == 2 {
        order.push("c0");
        feeds.push(("c0", &c0));
        if extras {
            order.push("p");
            feeds.push(("p", &peep));
        }
    }
    let outs: &[&str] = if kind == 2 {
        &["y", "yh", "yc"]
    } else {
        &["y", "yh"]
    };
    let recurrence = if unrolled {
        RecurrentForm::Unrolled
    } else {
        RecurrentForm::Loop
    };
    let opts = ImportOptions {
        recurrence,
        ..Default::default()
    };
    let model = import_nodes_with(
        &opts,
        14,
        vec![node(op, &order, outs, attrs)],
        &feeds,
        &[],
        outs,
    );
    let loops = model
        .graph
        .nodes()
        .iter()
        .filter(|n| matches!(n.op, sfumato_core::Op::Recurrence(_)))
        .count();
    prop_assert_eq!(
        loops,
        if unrolled { 0 } else { nd },
        "device loops, one per direction"
    );
    let Some(got) = run_model(op, &model.graph, &feeds) else {
        return Ok(());
    };
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut y = vec![0.0; t * nd * b * h];
    let mut yh = vec![0.0; nd * b * h];
    let mut yc = vec![0.0; nd * b * h];
    for (d, &rev) in dirs.iter().enumerate() {
        let wd = |row: usize, col: usize| wv[(d * g * h + row) * input + col];
        let rd = |row: usize, col: usize| rv[(d * g * h + row) * h + col];
        let wb = |row: usize| bv[d * 2 * g * h + row];
        let rb = |row: usize| bv[d * 2 * g * h + g * h + row];
        for bi in 0..b {
            let mut hs: Vec<f64> = (0..h).map(|j| h0v[(d * b + bi) * h + j]).collect();
            let mut cs: Vec<f64> = (0..h).map(|j| c0v[(d * b + bi) * h + j]).collect();
            let len = lens[bi] as usize;
            let steps: Vec<usize> = if rev {
                (0..len).rev().collect()
            } else {
                (0..len).collect()
            };
            for ti in steps {
                let xt = &xv[(ti * b + bi) * input..(ti * b + bi + 1) * input];
                let xg = |row: usize| (0..input).map(|c| wd(row, c) * xt[c]).sum::<f64>() + wb(row);
                let hg = |row: usize, hv: &[f64]| {
                    (0..h).map(|c| rd(row, c) * hv[c]).sum::<f64>() + rb(row)
                };
                let (nh, nc): (Vec<f64>, Vec<f64>) = match kind {
                    0 => (
                        (0..h).map(|j| cl(xg(j) + hg(j, &hs)).tanh()).collect(),
                        cs.clone(),
                    ),
                    1 => {
                        let z: Vec<f64> = (0..h).map(|j| sig(cl(xg(j) + hg(j, &hs)))).collect();
                        let rr: Vec<f64> = (0..h)
                            .map(|j| sig(cl(xg(h + j) + hg(h + j, &hs))))
                            .collect();
                        let cand: Vec<f64> = (0..h)
                            .map(|j| {
                                let rec = if lbr {
                                    rr[j] * hg(2 * h + j, &hs)
                                } else {
                                    let rh: Vec<f64> = (0..h).map(|c| rr[c] * hs[c]).collect();
                                    hg(2 * h + j, &rh)
                                };
                                cl(xg(2 * h + j) + rec).tanh()
                            })
                            .collect();
                        (
                            (0..h)
                                .map(|j| (1.0 - z[j]) * cand[j] + z[j] * hs[j])
                                .collect(),
                            cs.clone(),
                        )
                    }
                    _ => {
                        // Peepholes i, o, f; the o gate's sees the new c.
                        let gate = |k: usize, j: usize| xg(k * h + j) + hg(k * h + j, &hs);
                        let p = |k: usize, j: usize| pv[(d * 3 + k) * h + j];
                        let c: Vec<f64> = (0..h)
                            .map(|j| {
                                sig(cl(gate(2, j) + p(2, j) * cs[j])) * cs[j]
                                    + sig(cl(gate(0, j) + p(0, j) * cs[j])) * cl(gate(3, j)).tanh()
                            })
                            .collect();
                        (
                            (0..h)
                                .map(|j| sig(cl(gate(1, j) + p(1, j) * c[j])) * c[j].tanh())
                                .collect(),
                            c,
                        )
                    }
                };
                hs = nh;
                cs = nc;
                for j in 0..h {
                    y[((ti * nd + d) * b + bi) * h + j] = hs[j];
                }
            }
            for j in 0..h {
                yh[(d * b + bi) * h + j] = hs[j];
                yc[(d * b + bi) * h + j] = cs[j];
            }
        }
    }
    close(&format!("{op} Y"), &got[0], &y, 1e-4, 1e-3)?;
    close(&format!("{op} Y_h"), &got[1], &yh, 1e-4, 1e-3)?;
    if kind == 2 {
        close("LSTM Y_c", &got[2], &yc, 1e-4, 1e-3)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(12))]

    /// RNN, GRU (both reset placements) and LSTM over random sizes, forward, reverse or both,
    /// with per-row sequence lengths and initial states, with a clip and LSTM peepholes or
    /// without, against ONNX's equations step by step: as the device loop (`Op::Recurrence`)
    /// and unrolled.
    #[test]
    fn recurrent(kind in 0usize..3, t in 1usize..10, b in 1usize..4, input in 1usize..9, h in 1usize..17, dir in 0usize..3, lbr in any::<bool>(), unrolled in any::<bool>(), extras in any::<bool>(), seed in any::<u64>()) {
        check_recurrent(Layer { kind, t, b, input, h, dir, lbr, unrolled, extras, seed })?;
    }

    /// The device loop over sequences long enough to take several dispatches under llvmpipe's
    /// loop budget (up to 2,500 steps), and over hidden sizes of real speech and NLP layers
    /// (up to 1,100 units, past 1,024 two vec4 groups an invocation; up to 4 batch rows a
    /// workgroup on a CPU adapter), with a clip and peepholes or without.
    #[test]
    fn recurrent_long_and_wide(kind in 0usize..3, long in any::<bool>(), size in 0.0f64..1.0, b in 1usize..5, dir in 0usize..2, lbr in any::<bool>(), extras in any::<bool>(), seed in any::<u64>()) {
        let (t, h) = if long { (300 + (size * 2200.0) as usize, 8 + (size * 32.0) as usize) } else { (2 + (size * 3.0) as usize, 256 + (size * 844.0) as usize) };
        check_recurrent(Layer { kind, t, b, input: 6, h, dir, lbr, unrolled: false, extras, seed })?;
    }

    /// LinearAttention's four update rules with grouped heads, per-key or per-head decay and a
    /// past state, against the recurrence token by token.
    #[test]
    fn linear_attention(rule in 0usize..4, b in 1usize..3, t in 1usize..7, hk in 1usize..3, group in 1usize..3, dk in 1usize..9, dv in 1usize..9, per_key in any::<bool>(), seed in any::<u64>()) {
        let rules = ["linear", "gated", "delta", "gated_delta"];
        let (gated, delta) = (rule == 1 || rule == 3, rule >= 2);
        let hq = hk * group;
        let f = |n: usize, s: u64, lo: f64, hi: f64| rand_f(n, seed ^ s, lo, hi);
        let qv = f(b * t * hq * dk, 1, -1.0, 1.0);
        let kv = f(b * t * hk * dk, 2, -0.5, 0.5);
        let vv = f(b * t * hk * dv, 3, -1.0, 1.0);
        let pv = f(b * hk * dk * dv, 4, -0.5, 0.5);
        let gw = if per_key { hk * dk } else { hk };
        let gv = f(b * t * gw, 5, -1.0, 0.0);
        let bv = f(b * t * hk, 6, 0.0, 1.0);
        let q = Tensor::from_f64(DType::F32, [b, t, hq * dk], &qv);
        let k = Tensor::from_f64(DType::F32, [b, t, hk * dk], &kv);
        let v = Tensor::from_f64(DType::F32, [b, t, hk * dv], &vv);
        let past = Tensor::from_f64(DType::F32, [b, hk, dk, dv], &pv);
        let gt = Tensor::from_f64(DType::F32, [b, t, gw], &gv);
        let bt = Tensor::from_f64(DType::F32, [b, t, hk], &bv);
        let mut order = vec!["q", "k", "v", "past"];
        let mut feeds = vec![("q", &q), ("k", &k), ("v", &v), ("past", &past)];
        if gated { order.push("g"); feeds.push(("g", &gt)); } else if delta { order.push(""); }
        if delta { order.push("beta"); feeds.push(("beta", &bt)); }
        let attrs = vec![attr_i("q_num_heads", hq as i64), attr_i("kv_num_heads", hk as i64), attr_s("update_rule", rules[rule]), attr_f("scale", 0.0)];
        let Some(got) = run_node(27, "LinearAttention", &order, &feeds, &[], &["o", "state"], attrs) else { return Ok(()); };
        let scale = 1.0 / (dk as f64).sqrt();
        let mut s = pv.clone();
        let mut o = vec![0.0; b * t * hq * dv];
        for bi in 0..b {
            for ti in 0..t {
                for h in 0..hk {
                    let st = |i: usize, j: usize| ((bi * hk + h) * dk + i) * dv + j;
                    let kt = |i: usize| kv[(bi * t + ti) * hk * dk + h * dk + i];
                    if gated {
                        for i in 0..dk {
                            let g = if per_key { gv[(bi * t + ti) * gw + h * dk + i] } else { gv[(bi * t + ti) * gw + h] };
                            for j in 0..dv { s[st(i, j)] *= g.exp(); }
                        }
                    }
                    let vt: Vec<f64> = (0..dv).map(|j| vv[(bi * t + ti) * hk * dv + h * dv + j]).collect();
                    let upd: Vec<f64> = if delta {
                        let beta = bv[(bi * t + ti) * hk + h];
                        (0..dv).map(|j| beta * (vt[j] - (0..dk).map(|i| s[st(i, j)] * kt(i)).sum::<f64>())).collect()
                    } else { vt };
                    for i in 0..dk { for j in 0..dv { s[st(i, j)] += kt(i) * upd[j]; } }
                    for gq in 0..group {
                        let qh = h * group + gq;
                        for j in 0..dv {
                            o[(bi * t + ti) * hq * dv + qh * dv + j] = scale * (0..dk).map(|i| qv[(bi * t + ti) * hq * dk + qh * dk + i] * s[st(i, j)]).sum::<f64>();
                        }
                    }
                }
            }
        }
        close("LinearAttention output", &got[0], &o, 1e-4, 1e-3)?;
        close("LinearAttention state", &got[1], &s, 1e-4, 1e-3)?;
    }

}

trait AddClamp {
    fn add_clamp(self, z: f64, lo: f64, hi: f64) -> f64;
}

impl AddClamp for f64 {
    fn add_clamp(self, z: f64, lo: f64, hi: f64) -> f64 {
        (self + z).clamp(lo, hi)
    }
}

proptest! {
    #![proptest_config(cfg(6))]

    /// Long rows, as a vocabulary's logits or a detector's anchors: the bitonic network, with
    /// k from 1 to the whole row (a few rows, so the padding and the chunk rounds vary).
    #[test]
    fn top_k_long_rows(rows in 1usize..3, l in 129usize..6000, small in any::<bool>(), kf in 0.0f64..1.0, largest in any::<bool>(), ties in any::<bool>(), nans in any::<bool>(), seed in any::<u64>()) {
        let k = if small { 1 + (kf * 16.0) as usize } else { ((l as f64 * kf) as usize).max(1) };
        check_top_k(rows, l, k.min(l), largest, ties, nans, seed)?;
    }
}

proptest! {
    #![proptest_config(cfg(6))]

    /// Lengths from 4,096 on: the radix-2 FFT for powers of two, Bluestein's chirp (by FFTs of
    /// twice the length) for the others (odd and even, past the matrices' 8,192 too); whole
    /// (real or complex input, either direction), one-sided, and the inverse of a one-sided
    /// spectrum (a real signal back from its half spectrum, computed here in f64).
    #[test]
    fn dft_long_by_fft(rows in 1usize..3, n in prop_oneof![Just(4096usize), Just(8192), 4097usize..8192, 8193usize..11000], mode in 0usize..3, complex in any::<bool>(), inverse in any::<bool>(), seed in any::<u64>()) {
        // Back from a one-sided spectrum without `dft_length` the length is 2 (bins - 1): even.
        let n = if mode == 2 { n & !1 } else { n };
        let tau = 2.0 * std::f64::consts::PI;
        // cos and sin of 2π m / n, for m = i·k mod n.
        let (cs, sn): (Vec<f64>, Vec<f64>) = (0..n).map(|m| {
            let th = tau * m as f64 / n as f64;
            (th.cos(), th.sin())
        }).unzip();
        // The forward DFT of rows of (re, im) pairs, bins 0..k_out.
        let dft = |x: &[(f64, f64)], k_out: usize, sign: f64| -> Vec<(f64, f64)> {
            (0..k_out).map(|k| {
                let (mut re, mut im) = (0.0, 0.0);
                for (i, &(a, b)) in x.iter().enumerate() {
                    let m = (i * k) % n;
                    let (c, s) = (cs[m], sign * sn[m]);
                    re += a * c - b * s;
                    im += a * s + b * c;
                }
                (re, im)
            }).collect()
        };
        let v = rand_f(rows * n * 2, seed, -1.0, 1.0);
        let (x, attrs, want, top): (Tensor, Vec<AttributeProto>, Vec<f64>, f64) = match mode {
            // Whole.
            0 => {
                let parts = if complex { 2 } else { 1 };
                let x = Tensor::from_f64(DType::F32, [rows, n, parts], &v[..rows * n * parts]);
                let xv = x.to_f64_vec();
                let (sign, scale) = if inverse { (1.0, 1.0 / n as f64) } else { (-1.0, 1.0) };
                let mut want = Vec::new();
                for r in 0..rows {
                    let row: Vec<(f64, f64)> = (0..n).map(|i| {
                        let at = (r * n + i) * parts;
                        (xv[at], if complex { xv[at + 1] } else { 0.0 })
                    }).collect();
                    for (re, im) in dft(&row, n, sign) { want.extend([re * scale, im * scale]); }
                }
                (x, vec![attr_i("inverse", inverse as i64)], want, (n as f64).sqrt())
            }
            // One-sided, of a real signal.
            1 => {
                let x = Tensor::from_f64(DType::F32, [rows, n, 1], &v[..rows * n]);
                let xv = x.to_f64_vec();
                let mut want = Vec::new();
                for r in 0..rows {
                    let row: Vec<(f64, f64)> = (0..n).map(|i| (xv[r * n + i], 0.0)).collect();
                    for (re, im) in dft(&row, n / 2 + 1, -1.0) { want.extend([re, im]); }
                }
                (x, vec![attr_i("onesided", 1)], want, (n as f64).sqrt())
            }
            // A real signal back from its one-sided spectrum.
            _ => {
                let sig: Vec<f64> = v[..rows * n].to_vec();
                let mut spec = Vec::new();
                for r in 0..rows {
                    let row: Vec<(f64, f64)> = (0..n).map(|i| (sig[r * n + i], 0.0)).collect();
                    for (re, im) in dft(&row, n / 2 + 1, -1.0) { spec.extend([re, im]); }
                }
                let x = Tensor::from_f64(DType::F32, [rows, n / 2 + 1, 2], &spec);
                (x, vec![attr_i("inverse", 1), attr_i("onesided", 1)], sig, 1.0)
            }
        };
        let axis = Tensor::from_i64([], vec![1]).unwrap();
        let Some(got) = run_node(20, "DFT", &["x", "", "axis"], &[("x", &x)], &[("axis", &axis)], &["y"], attrs)
            else { return Ok(()); };
        // The FFT's rounding grows with log n, not n: a few f32 epsilons of the norm (Bluestein's
        // three transforms of twice the length and its chirps: a few times that).
        let slack = if n.is_power_of_two() { 1.0 } else { 4.0 };
        close("DFT by FFT", &got[0], &want, 1e-5 * top * slack, 1e-4)?;
    }
}
