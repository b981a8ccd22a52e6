//! Every built-in model gives the same outputs fused, with the graph passes alone and as built
//! (no passes, no fusion) on the wgpu device, and all three match the CPU reference; the passes
//! cut the dispatches where they fold something (the bottleneck's BatchNorms), fusion cuts them
//! further (a BERT-base layer: at most 10), and the device's `explain` counts the dispatches
//! its run makes.

use sfumato_core::{CpuDevice, Device, Optimization, Tensor};
use sfumato_wgpu::test_device;
use sfumato_zoo::models::{by_name_with, ModelOptions};

fn close(what: &str, got: &[Tensor], want: &[Tensor], rtol: f64, atol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let (abs, rel) = g.max_diff(w);
        assert!(
            g.all_close(w, rtol, atol),
            "{what}: output {i} {} differs: max abs {abs:e}, max rel {rel:e}",
            w.shape()
        );
    }
}

#[test]
fn built_in_models_agree_fused_unfused_and_with_the_reference() {
    let Some(mut dev) = test_device() else {
        return;
    };
    let small = |batch, layers, seq, size| ModelOptions {
        batch,
        layers,
        seq,
        size,
    };
    let cases = [
        ("mlp", small(3, 1, 1, 1), None),
        ("bert-base", small(2, 2, 16, 1), Some(2 * 10)),
        ("resnet-bottleneck", small(1, 2, 1, 8), Some(2 * 3)),
        ("gpt2-decode", small(1, 1, 8, 1), None),
    ];
    for (name, opts, max_dispatches) in cases {
        let (g, inputs) = by_name_with(name, &opts).unwrap();
        let want = CpuDevice.run(&g, &inputs).unwrap();
        dev.set_fusion(true);
        let fused = dev.run(&g, &inputs).unwrap();
        dev.set_optimization(Optimization::PassesOnly);
        let passes = dev.run(&g, &inputs).unwrap();
        dev.set_fusion(false);
        let unfused = dev.run(&g, &inputs).unwrap();
        dev.set_fusion(true);
        close(
            &format!("{name} passes only vs cpu"),
            &passes.outputs,
            &want.outputs,
            2e-3,
            2e-3,
        );
        close(
            &format!("{name} fused vs cpu"),
            &fused.outputs,
            &want.outputs,
            2e-3,
            2e-3,
        );
        close(
            &format!("{name} unfused vs cpu"),
            &unfused.outputs,
            &want.outputs,
            2e-3,
            2e-3,
        );
        close(
            &format!("{name} fused vs unfused"),
            &fused.outputs,
            &unfused.outputs,
            2e-3,
            2e-3,
        );
        let (nf, np, nu) = (
            fused.profile.entries.len(),
            passes.profile.entries.len(),
            unfused.profile.entries.len(),
        );
        // What `sfumato explain` shows is the plan the device runs: the same dispatches.
        for (o, n) in [
            (Optimization::PassesAndFusion, nf),
            (Optimization::PassesOnly, np),
            (Optimization::AsBuilt, nu),
        ] {
            dev.set_optimization(o);
            let x = dev.explain(&g).unwrap();
            assert_eq!(x.totals.dispatches, n, "{name} ({o:?}): explain vs run");
        }
        dev.set_fusion(true);
        assert!(
            nf < np && np <= nu,
            "{name}: {nf} fused dispatches, {np} with the passes alone, {nu} as built"
        );
        if name == "resnet-bottleneck" {
            // Each conv's BatchNorm is folded into its weights: three dispatches fewer a block
            // before any fusion, a gain `bench compare` does not count as fusion's.
            assert_eq!(
                nu - np,
                2 * 3,
                "{name}: {np} dispatches with the passes, {nu} as built"
            );
        }
        if let Some(m) = max_dispatches {
            // On a CPU adapter a staged conv or product first copies its operand to the
            // staging texture: a dispatch more, not a group more.
            let copies = fused
                .profile
                .entries
                .iter()
                .filter(|e| e.kernel == "conv_stage" || e.kernel == "matmul_stage")
                .count();
            assert!(
                nf - copies <= m,
                "{name}: {nf} dispatches ({copies} staging copies), want at most {m} besides them"
            );
        }
        dev.trim();
    }
}
