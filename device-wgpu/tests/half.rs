//! f16 storage: f16 tensors stored as f16 on an adapter with `shader-f16` (lavapipe has it),
//! elementwise kernels computing in f16 and the rest in f32, checked against the CPU reference on random shapes as wide as real
//! models use (K in the thousands, thousands of channels, long rows), and against the same
//! graphs on a device that stores f16 as f32. The storage is checked too: the kernels bind
//! `array<f16>` and the weights take half the bytes.

mod common;

use common::{check_outputs, with_device};
use proptest::prelude::*;
use sfumato_core::op::{Conv2d, Pool2d};
use sfumato_core::{DType, Device, Graph, Tensor};
use sfumato_shaders::Lowered;
use sfumato_wgpu::{DeviceOptions, Tuning, WgpuDevice};

fn cfg(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    }
}

/// A device that stores f16 as f32 (the path of an adapter without `shader-f16`).
fn f32_storage_device() -> Option<WgpuDevice> {
    WgpuDevice::new(DeviceOptions {
        tuning: Tuning::Off,
        tune_store: None,
        half_storage: false,
        ..DeviceOptions::from_env()
    })
    .ok()
}

/// Runs `g` on the shared device: checks it against the reference and against f32 storage, and,
/// where the adapter has `shader-f16`, that at least `min_half` values are stored as f16 and
/// some kernel binds `array<f16>` (or `array<vec4<f16>>`).
fn check(g: &Graph, inputs: &[Tensor], min_half: usize) -> Result<(), String> {
    let Some(r) = with_device(|d| -> Result<_, String> {
        let out = d.run(g, inputs).map_err(|e| format!("wgpu: {e}"))?;
        let x = d.explain(g).map_err(|e| format!("explain: {e}"))?;
        Ok((out, x, d.has_half_storage()))
    }) else {
        return Ok(());
    };
    let (out, x, half) = r?;
    check_outputs(g, inputs, &out, 0.0)?;
    if !half {
        eprintln!("\n!!! this adapter has no shader-f16: f16 storage is not tested\n");
        return Ok(());
    }
    if x.f16.stored < min_half {
        return Err(format!(
            "{} values stored as f16, expected at least {min_half}: {:?}",
            x.f16.stored,
            x.f16.summary()
        ));
    }
    let binds_half = x.kernels.iter().any(|gk| match &gk.lowered {
        Lowered::Kernels(ks) => ks
            .iter()
            .any(|k| k.wgsl.contains("array<f16>") || k.wgsl.contains("array<vec4<f16>>")),
        _ => false,
    });
    if min_half > 0 && !binds_half {
        return Err("no kernel binds array<f16> or array<vec4<f16>>".into());
    }
    if let Some(mut plain) = f32_storage_device() {
        let p = plain
            .run(g, inputs)
            .map_err(|e| format!("f32 storage: {e}"))?;
        let px = plain.explain(g).map_err(|e| format!("explain: {e}"))?;
        if px.f16.stored != 0 {
            return Err("a device without f16 storage stored f16 values".into());
        }
        check_outputs(g, inputs, &p, 0.0)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(cfg(6))]

    /// A transformer's MLP and attention-score block in f16: matmul (K up to 3072) with an f16
    /// weight and bias, GELU, layer norm, softmax over the row.
    #[test]
    fn f16_matmul_block(m in 1usize..40, k in prop_oneof![1usize..64, 700usize..3073], n in prop_oneof![1usize..64, 500usize..1100], b_input in any::<bool>(), seed in any::<u64>()) {
        let mut g = Graph::new();
        let x = g.input("x", DType::F16, [m, k]);
        let mut inputs = vec![Tensor::random(DType::F16, [m, k], seed ^ 4)];
        let w = if b_input {
            // B an activation (tanh of an input, scaled): no texture; a CPU adapter reads it
            // through the f16 stage.
            let wi = g.input("w", DType::F16, [k, n]);
            inputs.push(Tensor::random(DType::F16, [k, n], seed));
            let t = g.unary(sfumato_core::op::UnaryOp::Tanh, wi).unwrap();
            let s = g.constant(Tensor::from_f64(DType::F16, [1], &[1.0 / (k as f64).sqrt()])).unwrap();
            g.mul(t, s).unwrap()
        } else {
            // A constant weight: a texture (rgba16float) on a CPU adapter.
            let scale = Tensor::from_f64(DType::F16, [k, n], &Tensor::random(DType::F32, [k, n], seed).to_f64_vec().iter().map(|v| v / (k as f64).sqrt()).collect::<Vec<_>>());
            g.constant(scale).unwrap()
        };
        let b = g.constant(Tensor::random(DType::F16, [n], seed ^ 1)).unwrap();
        let y = g.matmul(x, w).unwrap();
        let y = g.add_(y, b).unwrap();
        let y = g.gelu(y).unwrap();
        let gamma = g.constant(Tensor::random(DType::F16, [n], seed ^ 2)).unwrap();
        let beta = g.constant(Tensor::random(DType::F16, [n], seed ^ 3)).unwrap();
        let y = g.layer_norm(y, gamma, Some(beta), -1, 1e-5).unwrap();
        let y = g.softmax(y, -1).unwrap();
        g.set_outputs(&[y]).unwrap();
        check(&g, &inputs, 3).map_err(TestCaseError::fail)?;
    }

    /// A convolution block in f16: 3x3 conv (up to 512 channels in, 1,024 out), ReLU, max pool.
    #[test]
    fn f16_conv_block(c in prop_oneof![1usize..8, 256usize..513], o in prop_oneof![1usize..8, 512usize..1025], s in 3usize..12, seed in any::<u64>()) {
        let mut g = Graph::new();
        let x = g.input("x", DType::F16, [1, c, s, s]);
        let wv: Vec<f64> = Tensor::random(DType::F32, [o, c, 3, 3], seed).to_f64_vec().iter().map(|v| v / (9.0 * c as f64).sqrt()).collect();
        let w = g.constant(Tensor::from_f64(DType::F16, [o, c, 3, 3], &wv)).unwrap();
        let conv = Conv2d { stride: [1, 1], padding: [1, 1, 1, 1], dilation: [1, 1], groups: 1 };
        let y = g.conv2d(x, w, None, conv).unwrap();
        let y = g.relu(y).unwrap();
        let y = g.max_pool2d(y, Pool2d::new(2, 2, 0)).unwrap();
        g.set_outputs(&[y]).unwrap();
        check(&g, &[Tensor::random(DType::F16, [1, c, s, s], seed ^ 5)], 1).map_err(TestCaseError::fail)?;
    }

    /// Copies and views of f16 tensors: a concat at odd and even offsets (buffer copies move
    /// 4-byte words: an odd one keeps its tensors f32), a reshape, a transpose, long softmax rows.
    #[test]
    fn f16_concat_reshape_softmax(a in 1usize..9, b in 1usize..9, n in prop_oneof![1usize..16, 4000usize..4200], seed in any::<u64>()) {
        let mut g = Graph::new();
        let x = g.input("x", DType::F16, [a, n]);
        let y = g.input("y", DType::F16, [b, n]);
        let x2 = g.unary(sfumato_core::op::UnaryOp::Tanh, x).unwrap();
        let y2 = g.unary(sfumato_core::op::UnaryOp::Sigmoid, y).unwrap();
        let c = g.concat(&[x2, y2], 0).unwrap();
        let r = g.reshape(c, &[-1]).unwrap();
        let r = g.reshape(r, &[(a + b) as i64, n as i64]).unwrap();
        let t = g.transpose(r, &[1, 0]).unwrap();
        let t = g.transpose(t, &[1, 0]).unwrap();
        let s = g.softmax(t, -1).unwrap();
        g.set_outputs(&[s]).unwrap();
        // A copy at an odd element keeps the concat's tensors f32 (copies move 4-byte words).
        let even = (a * n) % 2 == 0 && (b * n) % 2 == 0;
        check(&g, &[Tensor::random(DType::F16, [a, n], seed), Tensor::random(DType::F16, [b, n], seed ^ 1)], usize::from(even)).map_err(TestCaseError::fail)?;
    }

    /// A zero Pad of f16 values along one axis, as copies and clears (`pad_copies`), at odd and
    /// even offsets: an odd one keeps the pad's tensors f32 (copies and clears move 4-byte
    /// words), an even one leaves them f16. Exact.
    #[test]
    fn f16_zero_pad_copies(outer in 1usize..5, c in 1usize..6, before in 0usize..3, after in 1usize..3, inner in 1usize..40, seed in any::<u64>()) {
        let mut g = Graph::new();
        let x = g.input("x", DType::F16, [outer, c, inner]);
        let t = g.unary(sfumato_core::op::UnaryOp::Tanh, x).unwrap();
        let p = g.pad(t, &[[0, 0], [before, after], [0, 0]], sfumato_core::op::PadMode::Constant(0.0)).unwrap();
        // Softmax writes a buffer of its own (an in-place kernel would tie the pad to the output).
        let y = g.softmax(p, -1).unwrap();
        g.set_outputs(&[y]).unwrap();
        let even = inner % 2 == 0 || (c % 2 == 0 && before % 2 == 0 && after % 2 == 0 && outer == 1);
        check(&g, &[Tensor::random(DType::F16, [outer, c, inner], seed)], usize::from(even)).map_err(TestCaseError::fail)?;
    }
}

proptest! {
    #![proptest_config(cfg(6))]
    /// The recurrent loop of each cell over f16 values: `R^T` and the cell's fifth input f16
    /// constants, stored as f16 and read through the loop's scalar or vec4 units.
    #[test]
    fn f16_recurrence(cell in 0usize..4, t in 1usize..20, b in 1usize..4, h in prop_oneof![1usize..17, 256usize..520], seed in any::<u64>()) {
        use sfumato_core::op::{RecurrentAct as A, RecurrentCell as C, Recurrence};
        let (cell, acts) = [
            (C::Rnn, vec![A::Tanh]),
            (C::Gru { linear_before_reset: false }, vec![A::Sigmoid, A::Tanh]),
            (C::Gru { linear_before_reset: true }, vec![A::Sigmoid, A::Tanh]),
            (C::Lstm, vec![A::Sigmoid, A::Tanh, A::Tanh]),
        ][cell].clone();
        let (gates, parts) = (cell.gates(), cell.state_parts());
        let mut g = Graph::new();
        let xw = g.input("xw", DType::F16, [t, b, gates * h]);
        let s0 = g.input("s0", DType::F16, [b, parts * h]);
        let scaled = |dims: Vec<usize>, seed: u64| {
            let v = Tensor::random(DType::F32, dims.clone(), seed).to_f64_vec();
            let k = 1.0 / (h as f64).sqrt();
            Tensor::from_f64(DType::F16, dims, &v.iter().map(|x| x * k).collect::<Vec<_>>())
        };
        let rt = g.constant(scaled(vec![h, gates * h], seed ^ 2)).unwrap();
        let lens = g.constant(Tensor::from_i32([b], (0..b).map(|i| (t - i * t / 3) as i32).collect()).unwrap()).unwrap();
        let mut ins = vec![xw, rt, s0, lens];
        if let Some(rows) = cell.extra_rows() {
            ins.push(g.constant(scaled(vec![rows, h], seed ^ 3)).unwrap());
        }
        let op = sfumato_core::Op::Recurrence(Recurrence { cell, reverse: seed % 2 == 1, clip: None, acts });
        let y = g.add(op, &ins).unwrap()[0];
        g.set_outputs(&[y]).unwrap();
        let inputs = [Tensor::random(DType::F16, [t, b, gates * h], seed), Tensor::random(DType::F16, [b, parts * h], seed ^ 1)];
        check(&g, &inputs, 1).map_err(TestCaseError::fail)?;
    }
}

/// The kernels of `g`'s prepared form on `d` that compute in f16 (their names end in `_f16`;
/// each must enable f16).
fn f16_kernels(d: &mut WgpuDevice, g: &Graph) -> Result<Vec<String>, String> {
    let x = d.explain(g).map_err(|e| format!("explain: {e}"))?;
    let mut computed = Vec::new();
    for k in x.all_kernels().filter(|k| k.name.ends_with("_f16")) {
        if !k.wgsl.starts_with("enable f16;") {
            return Err(format!("{} does not enable f16:\n{}", k.name, k.wgsl));
        }
        computed.push(k.name.clone());
    }
    Ok(computed)
}

proptest! {
    #![proptest_config(cfg(6))]
    /// f16 arithmetic: an elementwise chain between two f16 matmuls (bias, scale, ReLU, Clip,
    /// LeakyRelu, a Where, Abs, a residual; constants f16 holds exactly) computes in f16 (its
    /// kernel is `fused_elementwise_f16`), as do the chain at the graph's output (stored f32,
    /// the exchange format) and the second matmul's epilogue (bias, ReLU); the matmuls
    /// accumulate in f32. Checked against the reference, against f32 storage and against the
    /// same storage computing in f32, on rows up to 4,200 wide.
    #[test]
    fn f16_elementwise_arithmetic(m in 1usize..9, k in prop_oneof![1usize..32, 600usize..800], n in prop_oneof![1usize..16, 4000usize..4200], seed in any::<u64>()) {
        use sfumato_core::op::{BinaryOp, UnaryOp};
        let mut g = Graph::new();
        let x = g.input("x", DType::F16, [m, k]);
        let scaled = |dims: Vec<usize>, scale: f64, seed: u64| {
            let v = Tensor::random(DType::F32, dims.clone(), seed).to_f64_vec();
            Tensor::from_f64(DType::F16, dims, &v.iter().map(|x| x * scale).collect::<Vec<_>>())
        };
        let w1 = g.constant(scaled(vec![k, n], 1.0 / (k as f64).sqrt(), seed ^ 1)).unwrap();
        let b = g.constant(scaled(vec![n], 1.0, seed ^ 2)).unwrap();
        let half = g.constant(Tensor::from_f64(DType::F16, [1], &[0.75])).unwrap();
        let y = g.matmul(x, w1).unwrap();
        // Two readers of y keep the chain out of the matmul's epilogue.
        let t = g.add_(y, b).unwrap();
        let t = g.mul(t, half).unwrap();
        let r = g.relu(t).unwrap();
        let c = g.unary(UnaryOp::Clip { min: -0.5, max: 1.5 }, t).unwrap();
        let l = g.unary(UnaryOp::LeakyRelu { alpha: 0.125 }, t).unwrap();
        // The Where's condition from an input, not from y: a 1-ulp difference in the
        // matmul's rounding would flip it where y is near b.
        let u = g.input("u", DType::F16, [m, n]);
        let gt = g.binary(BinaryOp::Gt, u, b).unwrap();
        let sel = g.where_(gt, c, l).unwrap();
        let a = g.unary(UnaryOp::Abs, sel).unwrap();
        let z = g.binary(BinaryOp::Sub, r, a).unwrap();
        let z = g.add_(z, y).unwrap();
        let w2 = g.constant(scaled(vec![n, 8], 1.0 / (n as f64).sqrt(), seed ^ 3)).unwrap();
        let b2 = g.constant(scaled(vec![8], 1.0, seed ^ 5)).unwrap();
        let o1 = g.matmul(z, w2).unwrap();
        let o1 = g.add_(o1, b2).unwrap();
        let o1 = g.relu(o1).unwrap();
        let o2 = g.binary(BinaryOp::Sub, y, z).unwrap();
        let o2 = g.mul(o2, half).unwrap();
        g.set_outputs(&[o1, o2]).unwrap();
        let inputs = [Tensor::random(DType::F16, [m, k], seed), Tensor::random(DType::F16, [m, n], seed ^ 4)];
        check(&g, &inputs, 1).map_err(TestCaseError::fail)?;
        let Some(r) = with_device(|d| -> Result<_, String> {
            Ok((f16_kernels(d, &g)?, d.run(&g, &inputs).map_err(|e| e.to_string())?, d.has_half_storage()))
        }) else {
            return Ok(());
        };
        let (computed, out, has_half) = r.map_err(TestCaseError::fail)?;
        if !has_half {
            return Ok(());
        }
        prop_assert!(computed.iter().any(|k| k == "fused_elementwise_f16"), "no elementwise kernel computes in f16: {:?}", computed);
        // The second matmul's epilogue (bias, ReLU) too.
        prop_assert!(computed.iter().any(|k| k.starts_with("matmul")), "no matmul epilogue computes in f16: {:?}", computed);
        // The same storage, computing in f32.
        let mut wide = WgpuDevice::new(DeviceOptions { tuning: Tuning::Off, tune_store: None, half_compute: false, ..DeviceOptions::from_env() }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let none = f16_kernels(&mut wide, &g).map_err(TestCaseError::fail)?;
        prop_assert!(none.is_empty(), "half_compute off, yet {:?}", none);
        let p = wide.run(&g, &inputs).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (a, b) in out.outputs.iter().zip(&p.outputs) {
            prop_assert!(a.all_close(b, 2e-3, 2e-3), "f16 and f32 arithmetic differ: {:?}", a.max_diff(b));
        }
    }
}

/// A case of the test below: its name and the op (or ops) it puts after the first matmul.
type Case<'a> = (
    &'a str,
    &'a dyn Fn(&mut Graph, sfumato_core::ValueId) -> sfumato_core::ValueId,
);

/// What keeps f32 arithmetic on f16 storage, each alone between two f16 matmuls: a chain that
/// casts to f32 (its f32 values keep f32's precision), and each op whose f16 form would not
/// round as the reference does: GELU (an f32 helper), Exp, Sqrt, Asinh (builtins WGSL lets be
/// far less accurate in f16, and asinh squares its input), HardSwish (`x * 6` overflows inside).
#[test]
fn f16_arithmetic_stays_out_of_f32_values_and_inexact_ops() {
    use sfumato_core::op::{BinaryOp, UnaryOp};
    let scaled = |dims: [usize; 2], seed: u64| {
        let v = Tensor::random(DType::F32, dims, seed).to_f64_vec();
        let k = 1.0 / (dims[0] as f64).sqrt();
        Tensor::from_f64(
            DType::F16,
            dims,
            &v.iter().map(|x| x * k).collect::<Vec<_>>(),
        )
    };
    let cases: [Case; 6] = [
        ("cast to f32 and back", &|g, y| {
            // Scaled by a value f16 cannot hold, in f32.
            let big = g
                .constant(Tensor::from_f64(DType::F32, [1], &[1.0e6]))
                .unwrap();
            let yf = g.cast(y, DType::F32).unwrap();
            let yf = g.mul(yf, big).unwrap();
            let yf = g.binary(BinaryOp::Div, yf, big).unwrap();
            g.cast(yf, DType::F16).unwrap()
        }),
        ("gelu", &|g, y| g.gelu(y).unwrap()),
        ("exp", &|g, y| g.unary(UnaryOp::Exp, y).unwrap()),
        ("sqrt", &|g, y| {
            let a = g.unary(UnaryOp::Abs, y).unwrap();
            g.unary(UnaryOp::Sqrt, a).unwrap()
        }),
        ("asinh", &|g, y| g.unary(UnaryOp::Asinh, y).unwrap()),
        ("hardswish", &|g, y| g.unary(UnaryOp::HardSwish, y).unwrap()),
    ];
    for (what, op) in cases {
        let mut g = Graph::new();
        let x = g.input("x", DType::F16, [64, 300]);
        let w = g.constant(scaled([300, 300], 3)).unwrap();
        let y = g.matmul(x, w).unwrap();
        let e = op(&mut g, y);
        // Two readers of y keep the op out of the matmul's epilogue.
        let s = g.add_(e, y).unwrap();
        let w2 = g.constant(scaled([300, 4], 4)).unwrap();
        let o = g.matmul(s, w2).unwrap();
        g.set_outputs(&[o]).unwrap();
        let inputs = [Tensor::random(DType::F16, [64, 300], 5)];
        let Some(r) = with_device(|d| -> Result<_, String> {
            Ok((
                f16_kernels(d, &g)?,
                d.run(&g, &inputs).map_err(|e| e.to_string())?,
            ))
        }) else {
            return;
        };
        let (computed, out) = r.unwrap();
        assert!(computed.is_empty(), "{what}: {computed:?}");
        check_outputs(&g, &inputs, &out, 0.0).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

/// An f16 weight takes half the bytes on the device (the setup's weight bytes, f16 against f32
/// storage), and a device without f16 storage keeps the old path.
#[test]
fn f16_weights_take_half_the_bytes() {
    // A constant an elementwise kernel reads (a buffer on every adapter; a matmul's B may be a
    // texture, rgba16float for f16 whatever the storage).
    let mut g = Graph::new();
    let x = g.input("x", DType::F16, [256, 512]);
    let w = g
        .constant(Tensor::random(DType::F16, [256, 512], 7))
        .unwrap();
    let y = g.add_(x, w).unwrap();
    let y = g.relu(y).unwrap();
    g.set_outputs(&[y]).unwrap();
    let inputs = [Tensor::random(DType::F16, [256, 512], 8)];
    let Some(r) = with_device(|d| {
        d.trim();
        let out = d.run(&g, &inputs).unwrap();
        (out, d.has_half_storage())
    }) else {
        return;
    };
    let (out, half) = r;
    let mut plain = f32_storage_device().expect("a second device on the same adapter");
    let p = plain.run(&g, &inputs).unwrap();
    let bytes = |o: &sfumato_core::RunOutput| o.profile.setup.as_ref().unwrap().weight_bytes;
    assert_eq!(bytes(&p), 256 * 512 * 4);
    if half {
        assert_eq!(bytes(&out), 256 * 512 * 2);
    } else {
        eprintln!("\n!!! this adapter has no shader-f16: f16 storage is not tested\n");
    }
    let (abs, _) = out.outputs[0].max_diff(&p.outputs[0]);
    assert!(abs < 1e-2, "{abs}");
}
