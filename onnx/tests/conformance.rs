//! The ONNX operator conformance suite on the wgpu device: the pass count must not drop below
//! the committed floor and no case may give wrong values (or fail with an error that is not a
//! declared gap). The suite is `$SFUMATO_ONNX_TESTS`, else `../shared/onnx-node-tests`;
//! `scripts/make-onnx-node-tests.py` writes it (CI does when it is absent).

use sfumato_onnx::conformance::{case_dirs, default_suite_dir, run_case, Status, Totals};
use sfumato_wgpu::test_device;

/// Raise this as coverage grows (measured: 1,482 of 1,884 on lavapipe, 0 fail, 0 error).
const PASS_FLOOR: usize = 1482;

#[test]
fn conformance_suite_on_wgpu_keeps_its_floor_and_never_gives_wrong_values() {
    let dir = default_suite_dir();
    let cases = match case_dirs(&dir) {
        Ok(c) if !c.is_empty() => c,
        _ => {
            let msg = format!(
                "the ONNX conformance suite is not at {} (set SFUMATO_ONNX_TESTS or run scripts/make-onnx-node-tests.py)",
                dir.display()
            );
            if std::env::var("SFUMATO_REQUIRE_ONNX_TESTS").is_ok_and(|v| v == "1") {
                panic!("{msg}");
            }
            eprintln!("\n!!! SKIPPED: {msg}\n");
            return;
        }
    };
    let Some(mut dev) = test_device() else {
        return;
    };
    let results: Vec<_> = cases.iter().map(|c| run_case(c, &mut dev)).collect();
    let t = Totals::of(&results);
    let bad: Vec<String> = results
        .iter()
        .filter(|r| matches!(r.status, Status::Fail | Status::Error))
        .map(|r| format!("{} {}: {}", r.status.name(), r.name, r.detail))
        .collect();
    eprintln!(
        "{} cases: {} pass, {} fail, {} unsupported, {} error",
        results.len(),
        t.pass,
        t.fail,
        t.unsupported,
        t.error
    );
    assert!(
        bad.is_empty(),
        "{} cases failed or errored:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert!(
        t.pass >= PASS_FLOOR,
        "{} cases pass, below the floor of {PASS_FLOOR}",
        t.pass
    );
}
