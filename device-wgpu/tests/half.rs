//! f16 storage: f16 tensors stored as f16 on an adapter with `shader-f16` (lavapipe has it),
//! kernels computing in f32, checked against the CPU reference on random shapes as wide as real
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
