//! The loop budget (`sfumato_shaders::loops`) on whole models, with no device: every kernel the
//! generator makes for the built-in models, at the benchmarks' shapes and at long ones (BERT at
//! 512 tokens, a GPT-2 decode step over a 1,024-token cache, ResNet blocks at 224x224), fused
//! and unfused, stays under llvmpipe's budget. (The ONNX conformance suite runs on lavapipe in
//! `conformance.rs`, where a kernel over the budget is an error that fails it.)

use sfumato_core::plan::{plan, PlanOptions};
use sfumato_core::TargetProfile;
use sfumato_shaders::loops::LLVMPIPE_LOOP_BUDGET;
use sfumato_shaders::{generate, group_matmul_problem, LowerOptions, Lowered};
use sfumato_zoo::models::{by_name_with, ModelOptions};

fn check(name: &str, opts: &ModelOptions) {
    let m = by_name_with(name, opts).unwrap();
    for fuse in [true, false] {
        let g = if fuse {
            sfumato_core::passes::optimize(&m.0).unwrap().0
        } else {
            m.0.clone()
        };
        let p = plan(
            &g,
            &PlanOptions {
                fuse,
                max_storage_buffers: 32,
            },
        );
        let mut worst = (0u64, String::new());
        for group in &p.groups {
            let mut lo = LowerOptions {
                target: TargetProfile::llvmpipe(),
                ..Default::default()
            };
            // Every matmul candidate the autotuner may pick, not only the first.
            let mut cands: Vec<_> = group_matmul_problem(&g, &p, group, &lo)
                .map(|mp| {
                    sfumato_shaders::MatmulVariant::candidates(&mp, &lo.target)
                        .into_iter()
                        .map(Some)
                        .collect()
                })
                .unwrap_or_default();
            if cands.is_empty() {
                cands.push(None);
            }
            for v in cands {
                lo.matmul = v;
                let gk = generate(&g, &p, group, &lo).unwrap_or_else(|e| {
                    panic!(
                        "{name} {opts:?} fuse {fuse}: group {}: {e}",
                        gk_label(&g, group)
                    )
                });
                if let Lowered::Kernels(ks) = &gk.lowered {
                    for k in ks {
                        assert!(k.loop_trips < LLVMPIPE_LOOP_BUDGET, "{}", k.name);
                        if k.loop_trips > worst.0 {
                            worst = (k.loop_trips, k.name.clone());
                        }
                    }
                }
            }
        }
        eprintln!(
            "{name} {opts:?} fuse {fuse}: most loop trips {} ({})",
            worst.0, worst.1
        );
    }
}

fn gk_label(g: &sfumato_core::Graph, group: &sfumato_core::plan::Group) -> String {
    sfumato_shaders::fused::group_label(g, group)
}

#[test]
fn built_in_models_stay_under_the_loop_budget() {
    let base = ModelOptions::default();
    check("mlp", &base);
    check("bert-base", &base);
    check("bert-base", &ModelOptions { seq: 512, ..base });
    check("resnet-bottleneck", &base);
    check("resnet-bottleneck", &ModelOptions { size: 224, ..base });
    check("gpt2-decode", &base);
    check("gpt2-decode", &ModelOptions { seq: 1024, ..base });
}
