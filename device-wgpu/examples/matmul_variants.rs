//! Time every matmul variant on one problem: `cargo run --release -p sfumato-wgpu --example
//! matmul_variants -- 1024 1024 1024`. Prints GFLOP/s per variant (GPU kernel time).

use sfumato_core::{DType, Device, Graph, Tensor};
use sfumato_shaders::MatmulVariant;
use sfumato_wgpu::{DeviceOptions, Tuning, WgpuDevice};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    let (m, n, k) = (
        *a.first().unwrap_or(&1024),
        *a.get(1).unwrap_or(&1024),
        *a.get(2).unwrap_or(&1024),
    );
    let mut d = WgpuDevice::new(DeviceOptions {
        tuning: Tuning::Off,
        ..DeviceOptions::from_env()
    })?;
    let mut g = Graph::new();
    // x is a run input: with both operands constant the graph passes would fold the product.
    let x = g.input("x", DType::F32, [m, k]);
    let xs = [Tensor::random(DType::F32, [m, k], 1)];
    let y = g.constant(Tensor::random(DType::F32, [k, n], 2))?;
    let z = g.matmul(x, y)?;
    g.set_outputs(&[z])?;
    for v in MatmulVariant::all() {
        d.set_matmul_variant(Some(v));
        let mut best = f64::INFINITY;
        for _ in 0..4 {
            let out = d.run(&g, &xs)?;
            best = best.min(out.profile.kernel_ns() as f64 * 1e-9);
        }
        println!(
            "{:<24} {:8.2} GFLOP/s {:8.2} GB/s of weights",
            v.name(),
            2.0 * (m * n * k) as f64 / best / 1e9,
            4.0 * (n * k) as f64 / best / 1e9
        );
    }
    Ok(())
}
