//! The native viewer in a real window: the `sfumato-viewer` binary opens a saved run under X
//! (Xvfb where no display is set), renders through wgpu (lavapipe here and in CI) and writes a
//! screenshot of its window, which must show the graph's groups in their colours and the
//! timeline. The run is real: the zoo's resnet-bottleneck (a ResNet-50 stage) run on the wgpu
//! device, its kernels timed by GPU timestamps. The screenshot is kept in
//! `output/screenshots/` (not committed) for CI's artefacts.

use sfumato_viewer::run::group_fill;
use std::path::PathBuf;
use std::process::{Child, Command};

/// An X server of our own where none is set; `None` (loudly) where none can be had and none
/// is required (CI sets SFUMATO_REQUIRE_DISPLAY=1).
struct Display {
    name: String,
    server: Option<Child>,
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(c) = &mut self.server {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn display() -> Option<Display> {
    if let Ok(d) = std::env::var("DISPLAY") {
        if !d.is_empty() {
            return Some(Display {
                name: d,
                server: None,
            });
        }
    }
    let n = 90 + std::process::id() % 400;
    let started = Command::new("Xvfb")
        .args([
            format!(":{n}").as_str(),
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match started {
        Ok(child) => {
            let sock = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
            for _ in 0..100 {
                if sock.exists() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Some(Display {
                name: format!(":{n}"),
                server: Some(child),
            })
        }
        Err(e) => {
            if std::env::var("SFUMATO_REQUIRE_DISPLAY").as_deref() == Ok("1") {
                panic!("no display and no Xvfb ({e}); install the xvfb package");
            }
            eprintln!("\n!!! SKIPPED: no DISPLAY and no Xvfb to open a window on ({e}) !!!\n");
            None
        }
    }
}

/// Zoo model `model` (seeded random weights) run on the wgpu device after a warm-up run, as
/// `sfumato run --save-run` records it; `None` (loudly, from `test_device`) without an adapter,
/// where none is required.
fn measured_record(model: &str) -> Option<sfumato_core::RunRecord> {
    use sfumato_core::Device;
    let mut dev = sfumato_wgpu::test_device()?;
    let opts = sfumato_zoo::models::default_options(model).unwrap();
    let (graph, _) = sfumato_zoo::models::by_name_with(model, &opts).unwrap();
    let inputs: Vec<_> = (graph.inputs().iter().enumerate())
        .map(|(i, &v)| {
            sfumato_core::Tensor::random(graph.dtype(v), graph.shape(v).clone(), 1 + i as u64)
        })
        .collect();
    dev.run(&graph, &inputs).unwrap();
    let out = dev.run(&graph, &inputs).unwrap();
    let explained = dev.explain(&graph).unwrap();
    Some(explained.record(model, out.profile, &out.outputs).unwrap())
}

/// How many pixels of each timed group's colour a screenshot shows: (group, in the graph's
/// boxes, in the timeline's bars).
type Drawn = Vec<(usize, usize, usize)>;

/// `model`'s measured run opened by the viewer binary in a window, `select` selected (and the
/// view zoomed to `zoom` on it), screenshot to `shot` in `output/screenshots/`.
fn screenshot(model: &str, select: &str, zoom: Option<f32>, shot: &str) -> Option<Drawn> {
    // One window at a time: each test process starts one X server number of its own (from its
    // pid), so two tests at once would share it, and the first to finish would close it.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let d = display()?;
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../output/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let record = measured_record(model)?;
    assert!(
        (record.profile.entries.iter())
            .all(|e| e.source == sfumato_core::TimingSource::GpuTimestamp && e.duration_ns > 0),
        "every dispatch timed by the GPU"
    );
    let run_file = out.join(format!("{model}-run.json"));
    std::fs::write(&run_file, record.to_json().unwrap()).unwrap();
    let shot = out.join(shot);
    let _ = std::fs::remove_file(&shot);
    let mut viewer = Command::new(env!("CARGO_BIN_EXE_sfumato-viewer"));
    viewer.arg(&run_file).args(["--select", select]);
    if let Some(z) = zoom {
        viewer.args(["--zoom", &z.to_string()]);
    }
    let status = (viewer.arg("--screenshot").arg(&shot))
        .env("DISPLAY", &d.name)
        .env_remove("WAYLAND_DISPLAY")
        .status()
        .expect("starting the viewer");
    assert!(status.success(), "the viewer exited with {status}");
    let img = image::open(&shot).expect("the screenshot").to_rgba8();
    assert!(
        img.width() >= 1000 && img.height() >= 600,
        "{:?}",
        img.dimensions()
    );
    let run = sfumato_viewer::Loaded::new(record, "test");
    let count = |want: egui::Color32, y0: u32, y1: u32| {
        (y0..y1.min(img.height()))
            .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let p = img.get_pixel(x, y).0;
                [
                    p[0].abs_diff(want.r()),
                    p[1].abs_diff(want.g()),
                    p[2].abs_diff(want.b()),
                ]
                .iter()
                .all(|&e| e <= 4)
            })
            .count()
    };
    let h = img.height();
    let drawn = (run.times.iter().enumerate())
        .filter(|(_, t)| t.entries > 0)
        .map(|(g, t)| {
            let heat = (t.ns as f32 / run.max_group_ns as f32).sqrt();
            let in_graph = count(group_fill(g, heat, true), 0, h * 7 / 10);
            let in_timeline = count(group_fill(g, heat.max(0.4), true), h * 7 / 10, h);
            (g, in_graph, in_timeline)
        })
        .collect();
    eprintln!("{model}: screenshot {}", shot.display());
    Some(drawn)
}

/// Every group of a ResNet-50 stage (the zoo's resnet-bottleneck) in its colour, in the graph
/// and the timeline.
#[test]
fn the_viewer_draws_a_saved_run_in_a_real_window() {
    let Some(drawn) = screenshot("resnet-bottleneck", "conv2d_1", None, "viewer-window.png") else {
        return;
    };
    assert!(!drawn.is_empty());
    for (g, in_graph, in_timeline) in drawn {
        assert!(in_graph > 50, "group {g}'s boxes: {in_graph} pixels");
        assert!(
            in_timeline > 100,
            "group {g}'s timeline bar: {in_timeline} pixels"
        );
    }
}

/// A whole model: ResNet-50 at 224x224 (443 nodes, 252 dispatches), opened zoomed on its stem.
/// The top of the graph shows its first groups' boxes in their colours; the timeline holds
/// every dispatch, most of them wide enough to see (the shortest are under a pixel).
#[test]
fn the_viewer_draws_a_whole_resnet50_run() {
    let Some(drawn) = screenshot("resnet50", "conv2d_1", Some(0.8), "viewer-resnet50.png") else {
        return;
    };
    let boxes = drawn.iter().filter(|d| d.1 > 50).count();
    let bars = drawn.iter().filter(|d| d.2 > 20).count();
    assert!(boxes >= 5, "{boxes} groups' boxes drawn: {drawn:?}");
    assert!(
        2 * bars >= drawn.len(),
        "{bars} of {} groups' bars drawn: {drawn:?}",
        drawn.len()
    );
}
