//! Bad input gives errors that name the node, op and shapes, never panics; device limits are
//! respected (large dispatches wrap, oversized tensors are refused).

mod common;

use sfumato_core::op::UnaryOp;
use sfumato_core::{DType, Device, Error, Graph, Profile, Tensor, TimingSource};

#[test]
fn bad_shapes_are_refused_with_the_node_named() {
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [2, 3]);
    let b = g.input("b", DType::F32, [5, 4]);
    let e = g.matmul(a, b).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Node { .. }), "{e:?}");
    assert!(
        msg.contains("MatMul") && msg.contains("[2, 3]") && msg.contains("[5, 4]"),
        "{msg}"
    );
    assert!(g.add_(a, b).is_err());
    assert!(g.reshape(a, &[4, -1]).is_err());
    assert!(g.transpose(a, &[0, 0]).is_err());
    assert!(g.softmax(a, 2).is_err());
}

#[test]
fn wrong_dtypes_are_refused() {
    let mut g = Graph::new();
    let i = g.input("i", DType::I32, [4]);
    let f = g.input("f", DType::F32, [4]);
    let msg = g.unary(UnaryOp::Exp, i).unwrap_err().to_string();
    assert!(msg.contains("Exp") && msg.contains("i32"), "{msg}");
    assert!(g.add_(i, f).is_err());
    assert!(g.matmul(i, i).is_err());
    assert!(g.gather(f, f, 0).is_err());
}

#[test]
fn wrong_run_inputs_are_refused() {
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [2, 3]);
    let r = g.relu(a).unwrap();
    g.set_outputs(&[r]).unwrap();
    let bad = Tensor::zeros(DType::F32, [3, 2]);
    common::with_device(|d| {
        let e = d.run(&g, std::slice::from_ref(&bad)).unwrap_err();
        assert!(e.to_string().contains("expects f32 [2, 3]"), "{e}");
        assert!(d.run(&g, &[]).is_err());
    });
}

#[test]
fn i64_out_of_device_range_is_an_error_not_a_wrong_answer() {
    let mut g = Graph::new();
    let a = g.input("a", DType::I64, [2]);
    let r = g.unary(UnaryOp::Neg, a).unwrap();
    g.set_outputs(&[r]).unwrap();
    let t = Tensor::from_i64([2], vec![1, 1 << 40]).unwrap();
    common::with_device(|d| {
        let e = d.run(&g, &[t]).unwrap_err();
        assert!(e.to_string().contains("i32 range"), "{e}");
    });
}

#[test]
fn tensor_over_the_binding_limit_is_refused() {
    common::with_device(|d| {
        let limit = d.adapter().max_storage_buffer_binding_size;
        // An outer product whose result is over the limit; the inputs are tiny.
        let side = ((limit / 4) as f64).sqrt() as usize + 16;
        let mut g = Graph::new();
        let a = g.input("a", DType::F32, [side, 1]);
        let b = g.input("b", DType::F32, [1, side]);
        let c = g.matmul(a, b).unwrap();
        g.set_outputs(&[c]).unwrap();
        let e = d
            .run(
                &g,
                &[
                    Tensor::zeros(DType::F32, [side, 1]),
                    Tensor::zeros(DType::F32, [1, side]),
                ],
            )
            .unwrap_err();
        assert!(matches!(e, Error::Limit { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("matmul_0") && msg.contains("max_storage_buffer_binding_size"),
            "{msg}"
        );
    });
}

#[test]
fn dispatch_over_65535_workgroups_runs() {
    // 70,000 workgroups of 256: the grid wraps into y.
    let n = 70_000 * 256 + 7;
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [n]);
    let r = g.relu(a).unwrap();
    g.set_outputs(&[r]).unwrap();
    let t = Tensor::random(DType::F32, [n], 3);
    let want: Vec<f32> = t.as_f32().unwrap().iter().map(|x| x.max(0.0)).collect();
    common::with_device(|d| {
        let out = d.run(&g, &[t]).unwrap();
        assert_eq!(out.outputs[0].as_f32().unwrap(), &want[..]);
        assert_eq!(out.profile.entries.len(), 1);
    });
}

#[test]
fn profile_has_one_timed_entry_per_dispatch() {
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [8, 16]);
    let w = g.constant(Tensor::random(DType::F32, [16, 4], 1)).unwrap();
    let m = g.matmul(a, w).unwrap();
    let r = g.relu(m).unwrap();
    let s = g.softmax(r, -1).unwrap();
    let rs = g.reshape(s, &[32]).unwrap();
    g.set_outputs(&[rs]).unwrap();
    common::with_device(|d| {
        let out = d
            .run(&g, &[Tensor::random(DType::F32, [8, 16], 2)])
            .unwrap();
        let ops: Vec<String> = out
            .profile
            .entries
            .iter()
            .map(|e| e.ops.join("+"))
            .collect();
        // Fused: the relu is the matmul's epilogue; the reshape is a view.
        assert_eq!(ops, ["MatMul+Relu", "Softmax"]);
        check_times(&out.profile, d.has_timestamps());
        d.set_fusion(false);
        let unfused = d
            .run(&g, &[Tensor::random(DType::F32, [8, 16], 2)])
            .unwrap();
        d.set_fusion(true);
        let ops: Vec<String> = unfused
            .profile
            .entries
            .iter()
            .map(|e| e.ops.join("+"))
            .collect();
        assert_eq!(ops, ["MatMul", "Relu", "Softmax"]);
        check_times(&unfused.profile, d.has_timestamps());
        assert!(unfused.outputs[0].all_close(&out.outputs[0], 1e-5, 1e-6));
        // A second run reuses the prepared plan, constants and pipelines.
        let again = d
            .run(&g, &[Tensor::random(DType::F32, [8, 16], 2)])
            .unwrap();
        assert_eq!(again.outputs, out.outputs);
    });
}

/// The times of a profile of a chain of dispatches (each reads the one before). With timestamp
/// queries: every entry has a positive duration, starts no earlier than the previous one ends,
/// and the kernel time (their sum) fits in the span from the first start to the last end, which
/// fits in the host's wall time of the whole run (a misread timestamp period breaks this); the
/// trace shows the same times. Without: every entry says `WholeRun` with no time of its own, and
/// the run's wall time is the figure.
fn check_times(p: &Profile, timestamps: bool) {
    assert!(p.wall_ns > 0, "no wall time: {p:?}");
    let trace = p.chrome_trace();
    let events = trace["traceEvents"].as_array().unwrap();
    if !timestamps {
        assert!(
            p.entries
                .iter()
                .all(|e| e.source == TimingSource::WholeRun && e.duration_ns == 0),
            "{p:?}"
        );
        assert_eq!(events.len(), 1);
        return;
    }
    assert!(
        p.entries
            .iter()
            .all(|e| e.source == TimingSource::GpuTimestamp),
        "{p:?}"
    );
    assert!(
        p.entries.iter().all(|e| e.duration_ns > 0),
        "a dispatch took no time: {p:?}"
    );
    for w in p.entries.windows(2) {
        assert!(
            w[1].start_ns >= w[0].start_ns + w[0].duration_ns,
            "{} starts before {} ends: {p:?}",
            w[1].kernel,
            w[0].kernel
        );
    }
    let first = p.entries.first().unwrap().start_ns;
    let last = p
        .entries
        .last()
        .map(|e| e.start_ns + e.duration_ns)
        .unwrap();
    assert!(
        p.kernel_ns() <= last - first && last - first <= p.wall_ns,
        "kernel time {} ns, span {} ns, wall {} ns: {p:?}",
        p.kernel_ns(),
        last - first,
        p.wall_ns
    );
    assert_eq!(events.len(), p.entries.len());
    for (ev, e) in events.iter().zip(&p.entries) {
        assert_eq!(ev["dur"].as_f64().unwrap(), e.duration_ns as f64 / 1000.0);
        assert_eq!(ev["ts"].as_f64().unwrap(), e.start_ns as f64 / 1000.0);
    }
}

#[test]
fn gather_index_out_of_range_is_an_error() {
    let mut g = Graph::new();
    let table = g.constant(Tensor::random(DType::F32, [10, 4], 1)).unwrap();
    let ids = g.input("ids", DType::I64, [3]);
    let e = g.gather(table, ids, 0).unwrap();
    g.set_outputs(&[e]).unwrap();
    let bad = Tensor::from_i64([3], vec![1, 10, 2]).unwrap();
    common::with_device(|d| {
        let err = d
            .run(&g, std::slice::from_ref(&bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gather_1") && err.contains("index 10 is out of range"),
            "{err}"
        );
        let ok = Tensor::from_i64([3], vec![1, -10, 9]).unwrap();
        assert!(d.run(&g, &[ok]).is_ok());
    });
}

/// Kept tensors: one kept by another device, an output that is the tensor it is written back
/// into, and gather indices the host cannot check are errors; nothing is written.
#[test]
fn kept_tensor_misuse_is_an_error() {
    use sfumato_core::{CpuDevice, Feed, WriteBack};
    common::with_device(|d| {
        let mut g = Graph::new();
        let c = g.input("cache", DType::F32, [2, 3]);
        let r = g.reshape(c, &[3, 2]).unwrap();
        let r = g.reshape(r, &[2, 3]).unwrap();
        g.set_outputs(&[r]).unwrap();
        let host = CpuDevice.keep(Tensor::zeros(DType::F32, [2, 3])).unwrap();
        let e = d.run_fed(&g, &[Feed::Kept(&host)], &[]).unwrap_err();
        assert!(e.to_string().contains("another device"), "{e}");
        let t = Tensor::random(DType::F32, [2, 3], 1);
        let k = d.keep(t.clone()).unwrap();
        // The output is the kept buffer itself (reshapes are aliases).
        let w = [WriteBack {
            output: 0,
            into: &k,
            axis: 0,
            at: 0,
        }];
        let e = d.run_fed(&g, &[Feed::Kept(&k)], &w).unwrap_err();
        assert!(e.to_string().contains("writes back into"), "{e}");
        assert_eq!(d.read_kept(&k).unwrap(), t);
        let e = CpuDevice.read_kept(&k).unwrap_err();
        assert!(e.to_string().contains("another device"), "{e}");

        let mut g = Graph::new();
        let x = g.input("x", DType::F32, [4, 2]);
        let i = g.input("i", DType::I64, [3]);
        let y = g.gather(x, i, 0).unwrap();
        g.set_outputs(&[y]).unwrap();
        let ki = d
            .keep(Tensor::from_i64([3], vec![0, 9, 1]).unwrap())
            .unwrap();
        let xs = Tensor::random(DType::F32, [4, 2], 2);
        let e = d
            .run_fed(&g, &[Feed::Tensor(&xs), Feed::Kept(&ki)], &[])
            .unwrap_err();
        assert!(e.to_string().contains("not range-checked"), "{e}");
    });
}
