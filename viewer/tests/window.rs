//! The native viewer in a real window: the `sfumato-viewer` binary opens a saved run under X
//! (Xvfb where no display is set), renders through wgpu (lavapipe here and in CI) and writes a
//! screenshot of its window, which must show the graph's groups in their colours and the
//! timeline. The screenshot is kept in `output/screenshots/` (not committed) for CI's
//! artefacts.

mod common;

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

#[test]
fn the_viewer_draws_a_saved_run_in_a_real_window() {
    let Some(d) = display() else { return };
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../output/screenshots");
    std::fs::create_dir_all(&out).unwrap();
    let record = common::timed_record();
    let run_file = out.join("window-run.json");
    std::fs::write(&run_file, record.to_json().unwrap()).unwrap();
    let shot = out.join("viewer-window.png");
    let _ = std::fs::remove_file(&shot);
    let status = Command::new(env!("CARGO_BIN_EXE_sfumato-viewer"))
        .arg(&run_file)
        .args(["--select", "conv2d_1", "--screenshot"])
        .arg(&shot)
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
    for (g, t) in run.times.iter().enumerate() {
        if t.entries == 0 {
            continue;
        }
        let heat = (t.ns as f32 / run.max_group_ns as f32).sqrt();
        let in_graph = count(group_fill(g, heat, true), 0, h * 7 / 10);
        let in_timeline = count(group_fill(g, heat.max(0.4), true), h * 7 / 10, h);
        assert!(in_graph > 50, "group {g}'s boxes: {in_graph} pixels");
        assert!(
            in_timeline > 100,
            "group {g}'s timeline bar: {in_timeline} pixels"
        );
    }
    eprintln!("screenshot: {}", shot.display());
}
