//! Weights over the adapter's storage-binding limit (128 MiB on lavapipe and WebGPU's default):
//! the compile pipeline splits the MatMul or Gather that reads one into blocks that fit
//! (`sfumato_core::legalize`), and the result matches the CPU reference. A language model's
//! embedding table (GPT-2 medium's is 206 MB) is read both ways: the token Gather and the tied
//! LM head's MatMul.

mod common;

use sfumato_core::{CpuDevice, DType, Device, Graph, Op, Tensor};
use sfumato_wgpu::WgpuDevice;

/// Columns of a `[64, N]` f32 weight just over 128 MiB (153.6 MB).
const N: usize = 600_000;
const K: usize = 64;

/// Whether the device splits `g` (its weight is over the adapter's limit), and how many nodes
/// of `op` the graph it runs has; every constant in it fits the limit.
fn explain_split(d: &mut WgpuDevice, g: &Graph, op: &str) -> (bool, usize) {
    let limit = d.adapter().max_storage_buffer_binding_size;
    let e = d.explain(g).unwrap();
    for n in e.graph.nodes() {
        if let Op::Constant(t) = &n.op {
            assert!(t.numel() as u64 * 4 <= limit, "{} is over {limit}", n.name);
        }
    }
    let count = e.graph.nodes().iter().filter(|n| n.op.name() == op).count();
    (e.passes.oversized_constants_split == 1, count)
}

#[test]
fn a_matmul_weight_over_the_binding_limit_runs_in_blocks() {
    let mut g = Graph::new();
    let a = g.input("a", DType::F32, [2, K]);
    let w = g.constant(Tensor::random(DType::F32, [K, N], 7)).unwrap();
    let y = g.matmul(a, w).unwrap();
    g.set_outputs(&[y]).unwrap();
    let x = Tensor::random(DType::F32, [2, K], 8);
    let want = CpuDevice.run(&g, std::slice::from_ref(&x)).unwrap().outputs;
    common::with_device(|d| {
        let limit = d.adapter().max_storage_buffer_binding_size;
        let bytes = (K * N * 4) as u64;
        let (split, blocks) = explain_split(d, &g, "MatMul");
        assert_eq!(split, bytes > limit, "limit {limit}");
        let got = d.run(&g, &[x]).unwrap().outputs;
        let (abs, _) = got[0].max_diff(&want[0]);
        eprintln!(
            "{}: [{K}, {N}] f32 weight ({bytes} bytes, limit {limit}, {blocks} blocks): max \
             |diff| {abs:e}",
            d.name(),
        );
        assert!(got[0].all_close(&want[0], 1e-4, 1e-4), "max |diff| {abs}");
    });
}

#[test]
fn a_gather_table_over_the_binding_limit_runs_in_blocks() {
    let mut g = Graph::new();
    let ids = g.input("ids", DType::I64, [2, 4]);
    let table = g.constant(Tensor::random(DType::F32, [N, K], 9)).unwrap();
    let y = g.gather(table, ids, 0).unwrap();
    g.set_outputs(&[y]).unwrap();
    // Rows in the first and the last block, at both ends of the table, and a negative one.
    let idx = Tensor::from_i64(
        [2, 4],
        vec![0, 1, 300_000, 524_287, 524_288, 599_999, -1, 42],
    )
    .unwrap();
    let want = CpuDevice
        .run(&g, std::slice::from_ref(&idx))
        .unwrap()
        .outputs;
    common::with_device(|d| {
        let limit = d.adapter().max_storage_buffer_binding_size;
        let bytes = (K * N * 4) as u64;
        let (split, blocks) = explain_split(d, &g, "Gather");
        assert_eq!(split, bytes > limit, "limit {limit}");
        eprintln!("{}: [{N}, {K}] f32 table in {blocks} blocks", d.name());
        let got = d.run(&g, &[idx]).unwrap().outputs;
        // A gather copies rows: exact.
        assert_eq!(got[0], want[0]);
    });
}
