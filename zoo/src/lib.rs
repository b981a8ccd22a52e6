//! sfumato-zoo: the model library: the built-in models (used by the `sfumato` command, in `cli/`,
//! and by tests), the model families with weights loaders and tasks, and `.npy` tensor files.
//! It depends on sfumato-core and sfumato-onnx only: no device, no CLI (tasks take any
//! `&mut dyn Device`).
//!
//! Every model is a function of the batch size that returns the graph and seeded random inputs
//! in the order of [`Graph::inputs`], so any device can run it as is. [`by_name`] looks models
//! up by the names the CLI accepts ([`MODELS`]).
//!
//! The model families ([`bert`], [`gpt2`], [`resnet`], [`vit`], [`yolov5`], [`efficientnet`])
//! build real architectures from a config and a [`params::Params`] source: a checkpoint's
//! tensors under their usual names, or a seeded random init. `zoo::resnet50()`,
//! `zoo::vit_b16()`, `zoo::yolov5s()` and their siblings are the standard configs; [`tasks`]
//! runs them end to end (embed, classify, detect, qa, generate) on any device.

pub mod bert;
pub mod catalog;
pub mod detect;
pub mod efficientnet;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod gpt2;
pub mod models;
pub mod nn;
pub mod npy;
pub mod params;
#[cfg(not(target_arch = "wasm32"))]
pub mod pth;
pub mod resnet;
#[cfg(not(target_arch = "wasm32"))]
pub mod tasks;
#[cfg(not(target_arch = "wasm32"))]
pub mod text;
pub mod vision;
pub mod vit;
pub mod weights;
pub mod yolov5;

pub use error::{Result as ZooResult, ZooError};

pub use models::{by_name, mlp, MODELS};
pub use resnet::{resnet101, resnet18, resnet34, resnet50, ResNetConfig};
pub use sfumato_core::{Graph, Tensor};
pub use vit::{vit_b16, ViTConfig};
pub use yolov5::{yolov5m, yolov5n, yolov5s, YoloV5Config};

#[cfg(test)]
mod tests {
    use super::*;
    use sfumato_core::{CpuDevice, Device};

    #[test]
    fn mlp_runs_on_cpu_and_softmax_rows_sum_to_one() {
        let batch = 3;
        let (graph, inputs) = mlp(batch).unwrap();
        let out = CpuDevice.run(&graph, &inputs).unwrap();
        assert_eq!(out.outputs.len(), 1);
        let y = &out.outputs[0];
        assert_eq!(y.dims(), &[batch, 10]);
        let v = y.to_f64_vec();
        for (r, row) in v.chunks(10).enumerate() {
            let sum: f64 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-4, "row {r} sums to {sum}");
            assert!(
                row.iter().all(|&p| (0.0..=1.0).contains(&p)),
                "row {r} is not a distribution: {row:?}"
            );
        }
        // The rows differ: the model depends on its input.
        assert_ne!(v[..10], v[10..20]);
    }

    #[test]
    fn by_name_knows_mlp_and_lists_names_otherwise() {
        assert!(by_name("mlp", 2).is_ok());
        let err = by_name("nosuchmodel", 2).unwrap_err().to_string();
        assert!(err.contains("nosuchmodel") && err.contains("mlp"), "{err}");
    }

    #[test]
    fn mlp_rejects_batch_zero() {
        assert!(mlp(0).is_err());
    }
}
