//! The ONNX operator conformance suite on the wgpu device: every case in the committed list
//! `tests/data/passing-cases.txt` must still pass, each where it is listed (a device pass may
//! not become a host pass), no case may give wrong values or end in an error that is not a
//! declared gap, and a pass the list does not hold fails too, asking for the list to be written
//! again (`SFUMATO_UPDATE_PASSING=1 cargo test -p sfumato-onnx --test conformance`), so the
//! list always holds every pass and a change in coverage shows in review. The suite is
//! `$SFUMATO_ONNX_TESTS`, else `../shared/onnx-node-tests`; `scripts/make-onnx-node-tests.py`
//! writes it (CI does when it is absent).

use sfumato_onnx::conformance::{
    case_dirs, default_suite_dir, diff_passing, parse_passing_list, passing_list, run_case, Status,
    Totals,
};
use sfumato_wgpu::test_device;
use std::path::Path;

const REGENERATE: &str = "SFUMATO_UPDATE_PASSING=1 cargo test -p sfumato-onnx --test conformance";

#[test]
fn conformance_suite_on_wgpu_keeps_every_listed_pass_and_never_gives_wrong_values() {
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
    eprintln!(
        "{} cases: {} pass (device {}, host {}), {} fail, {} unsupported, {} error",
        results.len(),
        t.pass,
        t.pass_device,
        t.pass_host,
        t.fail,
        t.unsupported,
        t.error
    );
    let bad: Vec<String> = results
        .iter()
        .filter(|r| matches!(r.status, Status::Fail | Status::Error))
        .map(|r| format!("{} {}: {}", r.status.name(), r.name, r.detail))
        .collect();
    assert!(
        bad.is_empty(),
        "{} cases failed or errored:\n{}",
        bad.len(),
        bad.join("\n")
    );
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/passing-cases.txt");
    if std::env::var("SFUMATO_UPDATE_PASSING").is_ok_and(|v| v == "1") {
        let header = format!(
            "The ONNX conformance cases that pass on the wgpu device (lavapipe in CI), each with\n\
             where its outputs were computed: device (a kernel computed an output from a run\n\
             input) or host (every output was known at import, or is a run input handed back).\n\
             onnx/tests/conformance.rs fails when a listed case no longer passes there, or when\n\
             a pass is not listed. Written by: {REGENERATE}\n\
             {} passes: {} device, {} host.",
            t.pass, t.pass_device, t.pass_host
        );
        std::fs::write(&list, passing_list(&results, &header)).unwrap();
        eprintln!("wrote {}", list.display());
        return;
    }
    let text = std::fs::read_to_string(&list)
        .unwrap_or_else(|e| panic!("{}: {e} (write it with {REGENERATE})", list.display()));
    let listed = parse_passing_list(&text).unwrap_or_else(|e| panic!("{}: {e}", list.display()));
    let d = diff_passing(&listed, &results);
    assert!(
        d.lost.is_empty(),
        "{} listed passes are lost (a regression; if it is meant, write the list again with \
         {REGENERATE}):\n{}",
        d.lost.len(),
        d.lost.join("\n")
    );
    assert!(
        d.new.is_empty(),
        "{} passes are not in {} as they are now: write it again with {REGENERATE} and commit \
         it:\n{}",
        d.new.len(),
        list.display(),
        d.new.join("\n")
    );
}
