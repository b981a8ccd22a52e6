//! The viewer's panels rendered headless (egui_kittest on the wgpu renderer: lavapipe here and
//! in CI): the graph and the timeline are drawn, a click on a node shows its details and WGSL,
//! groups collapse, search finds nodes, and two simulated runs compare op by op. Snapshots live
//! in tests/snapshots (`UPDATE_SNAPSHOTS=1` rewrites them), so any change to a panel shows in
//! review.

use egui::{Color32, Pos2};
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
mod common;

use common::timed_record;
use sfumato_core::{Device, Optimization, TargetProfile};
use sfumato_viewer::run::group_fill;
use sfumato_viewer::{Tab, Viewer};

const W: f32 = 1280.0;
const H: f32 = 800.0;

/// The harness, or `None` (loudly) where there is no adapter to render with and none is
/// required.
fn harness(viewer: Viewer) -> Option<Harness<'static, Viewer>> {
    let mut h = Harness::builder()
        .with_size([W, H])
        .with_pixels_per_point(1.0)
        .with_theme(egui::Theme::Dark)
        .wgpu()
        .build_ui_state(|ui, v: &mut Viewer| v.ui(ui), viewer);
    h.run();
    match h.render() {
        Ok(_) => Some(h),
        Err(e) => {
            if std::env::var("SFUMATO_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("no adapter to render the viewer with: {e}");
            }
            eprintln!("\n!!! SKIPPED: no adapter to render the viewer with ({e}) !!!\n");
            None
        }
    }
}

/// The harness showing [`timed_record`].
fn timed_harness() -> Option<Harness<'static, Viewer>> {
    let mut v = Viewer::default();
    v.open(timed_record(), "test");
    harness(v)
}

/// Boxes the graph panel draws for a run with nothing collapsed: every op but the constants,
/// and the graph inputs.
fn boxes_expected(run: &sfumato_viewer::Loaded) -> usize {
    let ops = run
        .record
        .nodes
        .iter()
        .filter(|n| n.op != "Constant")
        .count();
    ops + run.record.inputs.len()
}

fn snapshot(h: &mut Harness<'_, Viewer>, name: &str) {
    // Text antialiasing may differ by a shade between machines' lavapipe builds.
    h.snapshot_options(
        name,
        &SnapshotOptions::new().threshold(2.0).max_failed_pixels(400),
    );
}

fn pixel(img: &image::RgbaImage, p: Pos2) -> Color32 {
    let px = img.get_pixel(p.x as u32, p.y as u32).0;
    Color32::from_rgba_unmultiplied(px[0], px[1], px[2], px[3])
}

fn close(a: Color32, b: Color32) -> bool {
    [
        a.r().abs_diff(b.r()),
        a.g().abs_diff(b.g()),
        a.b().abs_diff(b.b()),
    ]
    .iter()
    .all(|&d| d <= 3)
}

#[test]
fn the_graph_and_the_timeline_are_drawn() {
    let Some(mut h) = timed_harness() else { return };
    let img = h.render().unwrap();
    let v = h.state();
    let run = &v.runs[0];
    let d = v.graph.current().expect("the graph was laid out");
    let shown = boxes_expected(run);
    assert_eq!(d.items.len(), shown, "every op and input drawn");
    // Each op's box is filled with its group's colour, shaded by the group's time.
    let mut checked = 0;
    for (i, n) in run.record.nodes.iter().enumerate() {
        if n.op == "Constant" {
            continue;
        }
        let g = n.group.unwrap();
        let rect = v.graph.painted_rect(run, i).expect("box painted");
        let heat = (run.times[g].ns as f32 / run.max_group_ns as f32).sqrt();
        let want = group_fill(g, heat, true);
        let got = pixel(&img, Pos2::new(rect.min.x + 4.0, rect.center().y - 4.0));
        assert!(
            close(got, want),
            "node {} box {got:?}, want {want:?}",
            n.name
        );
        checked += 1;
    }
    assert!(checked >= 7);
    // The timeline's bars: each group's colour appears below the graph.
    let bottom = (H * 0.72) as u32;
    for (g, t) in run.times.iter().enumerate() {
        if t.entries == 0 {
            continue;
        }
        let heat = (t.ns as f32 / run.max_group_ns as f32).sqrt().max(0.4);
        let want = group_fill(g, heat, true);
        let found = (bottom..H as u32)
            .flat_map(|y| (0..W as u32).map(move |x| (x, y)))
            .filter(|&(x, y)| close(pixel(&img, Pos2::new(x as f32, y as f32)), want))
            .count();
        assert!(
            found > 100,
            "group {g}'s timeline bar: {found} pixels of {want:?}"
        );
    }
    snapshot(&mut h, "bottleneck_graph_and_timeline");
}

#[test]
fn clicking_a_node_shows_its_op_shapes_group_and_wgsl() {
    let Some(mut h) = timed_harness() else { return };
    let (conv, rect) = {
        let v = h.state();
        let run = &v.runs[0];
        let conv = run
            .record
            .nodes
            .iter()
            .position(|n| n.op == "Conv2d")
            .unwrap();
        (conv, v.graph.painted_rect(run, conv).unwrap())
    };
    let at = rect.center();
    h.hover_at(at);
    h.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: true,
        modifiers: egui::Modifiers::NONE,
    });
    h.event(egui::Event::PointerButton {
        pos: at,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: egui::Modifiers::NONE,
    });
    h.run();
    assert_eq!(
        h.state().selected,
        Some(conv),
        "the click selected the conv"
    );
    let name = h.state().runs[0].record.nodes[conv].name.clone();
    h.get_by_label(&name);
    h.get_by_label("Conv2d");
    let kernel = {
        let r = &h.state().runs[0].record;
        r.groups[r.nodes[conv].group.unwrap()].kernels[0]
            .name
            .clone()
    };
    h.get_by_label(&format!("WGSL: {kernel}"));
    h.get_by_label_contains("group 2: Conv2d+Relu");
    h.get_by_label_contains("[1, 64, 56, 56]");
    snapshot(&mut h, "bottleneck_conv_selected");
}

#[test]
fn a_fused_group_collapses_into_one_box_and_search_finds_nodes() {
    let Some(mut h) = timed_harness() else { return };
    let before = h.state().graph.current().unwrap().items.len();
    h.state_mut().graph.collapse_all = true;
    h.run();
    let d = h.state().graph.current().unwrap();
    let groups = d
        .items
        .iter()
        .filter(|i| matches!(i, sfumato_viewer::graph_panel::BoxItem::Group(_)))
        .count();
    assert_eq!(groups, 3, "three conv groups collapsed");
    assert_eq!(
        d.items.len(),
        before - 4,
        "7 ops in 3 groups: 4 boxes fewer"
    );
    h.state_mut().graph.collapse_all = false;
    h.state_mut().graph.search = "relu".into();
    h.run();
    assert_eq!(h.state().graph.hits(&h.state().runs[0]).len(), 3);
    h.get_by_label("3 found");
}

/// The same model on the simulated NPU, fused and unfused: the comparison table and a conv's
/// tile schedule.
#[test]
fn two_simulated_runs_compare_op_by_op_and_show_a_schedule() {
    let opts = sfumato_zoo::models::default_options("resnet-bottleneck").unwrap();
    let (graph, inputs) = sfumato_zoo::models::by_name_with("resnet-bottleneck", &opts).unwrap();
    let mut records = vec![];
    for fused in [true, false] {
        let mut dev = sfumato_npu_sim::NpuSim::by_name("ascend910b4")
            .unwrap()
            .with_optimization(Optimization::fused(fused));
        let out = dev.run(&graph, &inputs).unwrap();
        let mut r = dev.record("resnet-bottleneck", &graph, &out).unwrap();
        r.profile.wall_ns = 0; // the host's time, not the prediction's: not stable
        records.push(r);
    }
    let mut v = Viewer::default();
    let a = v.open(records.remove(0), "fused");
    v.open(records.remove(0), "unfused");
    v.show(a);
    v.other = Some(1);
    v.tab = Tab::Compare;
    let rows = sfumato_viewer::panels::compare_rows(&v.runs[0], &v.runs[1]);
    assert_eq!(rows.len(), 3, "three fused conv groups");
    for r in &rows {
        let (b, a) = (r.b_cycles.unwrap(), r.a_cycles.unwrap());
        assert!(b > a, "{}: unfused {b} cycles against fused {a}", r.label);
    }
    let Some(mut h) = harness(v) else { return };
    assert_eq!(
        h.query_all_by_label_contains("B/A").count(),
        2,
        "the totals and the column"
    );
    snapshot(&mut h, "npu_fused_against_unfused");
    let conv = h.state().runs[0]
        .record
        .nodes
        .iter()
        .position(|n| n.op == "Conv2d")
        .unwrap();
    h.state_mut().selected = Some(conv);
    h.state_mut().tab = Tab::Schedule;
    h.run();
    let s = sfumato_viewer::panels::schedules_of(&h.state().runs[0], Some(conv));
    assert_eq!(s.len(), 1);
    assert_eq!(s[0].m, 56 * 56);
    h.get_by_label_contains("blocks of");
    snapshot(&mut h, "npu_conv_schedule");
}

/// A whole model's graph lays out with no two boxes of a layer overlapping.
#[test]
fn whole_models_lay_out_without_overlaps() {
    for model in ["resnet50", "bert-base"] {
        let opts = sfumato_zoo::models::default_options(model).unwrap();
        let (graph, _) = sfumato_zoo::models::by_name_with(model, &opts).unwrap();
        let r = sfumato_viewer::source::explain(model, &graph, true, &TargetProfile::webgpu_gpu())
            .unwrap();
        let run = sfumato_viewer::Loaded::new(r, model);
        let d = sfumato_viewer::graph_panel::drawing(&run, &|_| false, false);
        let l = &d.layout;
        let shown = boxes_expected(&run);
        assert_eq!(d.items.len(), shown);
        let mut by_layer: std::collections::BTreeMap<usize, Vec<(f32, f32)>> = Default::default();
        for (b, label) in d.labels.iter().enumerate() {
            let w = 20.0 + 7.0 * label.chars().count() as f32;
            by_layer
                .entry(l.layer_of[b])
                .or_default()
                .push((l.centers[b][0] - w / 2.0, l.centers[b][0] + w / 2.0));
        }
        for (layer, mut spans) in by_layer {
            spans.sort_by(|a, b| a.0.total_cmp(&b.0));
            for w in spans.windows(2) {
                assert!(
                    w[1].0 >= w[0].1 - 1e-3,
                    "{model}: layer {layer} overlaps: {w:?}"
                );
            }
        }
        eprintln!(
            "{model}: {} boxes in {} layers, {} crossings",
            d.items.len(),
            l.layer_of.iter().max().unwrap() + 1,
            l.crossings
        );
    }
}
