//! The native viewer: `sfumato-viewer [MODEL|FILE] [--compare FILE] [--screenshot OUT.png]`.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    // SAFETY: first thing in main, before any other thread starts. LP_NUM_THREADS wins where
    // the user set it.
    unsafe {
        sfumato_wgpu::set_lavapipe_threads();
    }
    native_main::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native_main {
    use sfumato_viewer::native::{open_target, ThreadRunner};
    use sfumato_viewer::Viewer;
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::sync::{Arc, Mutex};

    struct Args {
        targets: Vec<String>,
        screenshot: Option<PathBuf>,
        select: Option<String>,
        zoom: Option<f32>,
        bench_frames: Option<usize>,
        renderer: eframe::Renderer,
    }

    fn parse() -> Result<Args, String> {
        let mut a = Args {
            targets: vec![],
            screenshot: None,
            select: None,
            zoom: None,
            bench_frames: None,
            renderer: renderer_from(
                std::env::var("SFUMATO_VIEWER_RENDERER")
                    .as_deref()
                    .unwrap_or("glow"),
            )?,
        };
        let mut it = std::env::args().skip(1);
        while let Some(x) = it.next() {
            match x.as_str() {
                "--compare" => a.targets.push(it.next().ok_or("--compare needs a file")?),
                "--screenshot" => {
                    a.screenshot = Some(it.next().ok_or("--screenshot needs a file")?.into())
                }
                "--select" => a.select = Some(it.next().ok_or("--select needs a node name")?),
                "--zoom" => {
                    let z = it.next().ok_or("--zoom needs a factor")?;
                    a.zoom = Some(
                        z.parse()
                            .ok()
                            .filter(|&z: &f32| z > 0.0 && z.is_finite())
                            .ok_or(format!("--zoom {z}: not a positive factor"))?,
                    );
                }
                "--bench-frames" => {
                    let n = it.next().ok_or("--bench-frames needs a count")?;
                    a.bench_frames = Some(
                        n.parse()
                            .ok()
                            .filter(|&n| n > 0)
                            .ok_or(format!("--bench-frames {n}: not a positive count"))?,
                    );
                }
                "--renderer" => {
                    a.renderer = renderer_from(&it.next().ok_or("--renderer needs glow or wgpu")?)?
                }
                "-h" | "--help" => {
                    return Err("usage: sfumato-viewer [MODEL|FILE] [--compare FILE] \
                                [--select NODE [--zoom Z]] [--screenshot OUT.png] \
                                [--bench-frames N] [--renderer glow|wgpu]"
                        .into())
                }
                s if s.starts_with("--") => return Err(format!("unknown option {s}")),
                _ => a.targets.insert(0, x),
            }
        }
        Ok(a)
    }

    /// The UI's renderer: OpenGL (glow, the default) or wgpu. The model's compute always runs on
    /// sfumato's own wgpu device; this only draws the window. On a software adapter (llvmpipe
    /// under Xvfb) GL presents a frame far sooner than Vulkan's X11 swapchain does.
    fn renderer_from(name: &str) -> Result<eframe::Renderer, String> {
        match name {
            "glow" | "gl" => Ok(eframe::Renderer::Glow),
            "wgpu" => Ok(eframe::Renderer::Wgpu),
            other => Err(format!("unknown renderer '{other}' (glow or wgpu)")),
        }
    }

    struct App {
        viewer: Viewer,
        screenshot: Option<PathBuf>,
        frames: u32,
        shot: Arc<Mutex<Option<Result<(), String>>>>,
        requested: bool,
        bench: Option<FrameBench>,
    }

    /// `--bench-frames N`: the time between frames (the whole frame: the viewer's UI, egui's
    /// tessellation and wgpu's rendering, repainting continuously) and the UI pass alone, over N
    /// frames after 10 to settle, while the graph is panned and zoomed every frame.
    struct FrameBench {
        frames: usize,
        last: Option<std::time::Instant>,
        intervals_ms: Vec<f64>,
        ui_ms: Vec<f64>,
        /// eframe's CPU time of each frame: the UI pass, tessellation and the render's
        /// submission, without waiting for the driver to present.
        cpu_ms: Vec<f64>,
    }

    fn stats(v: &mut [f64]) -> String {
        if v.is_empty() {
            return "-".into();
        }
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
        let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
        format!(
            "mean {mean:.1} ms, median {:.1}, p95 {:.1}, max {:.1}",
            pct(0.5),
            pct(0.95),
            pct(1.0)
        )
    }

    impl eframe::App for App {
        fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
            let t0 = std::time::Instant::now();
            if let Some(b) = &self.bench {
                // Move the view each frame, as a user dragging and zooming would.
                let zoom = if b.intervals_ms.len() % 20 < 10 {
                    1.02
                } else {
                    0.98
                };
                self.viewer.graph.nudge(egui::vec2(3.0, 1.0), zoom);
            }
            self.viewer.ui(ui);
            if let Some(b) = &mut self.bench {
                let now = std::time::Instant::now();
                b.ui_ms.push((now - t0).as_secs_f64() * 1e3);
                if let Some(c) = frame.info().cpu_usage {
                    b.cpu_ms.push(c as f64 * 1e3);
                }
                if let Some(last) = b.last {
                    b.intervals_ms.push((now - last).as_secs_f64() * 1e3);
                }
                b.last = Some(now);
                if b.intervals_ms.len() == b.frames + 10 {
                    let mut iv = b.intervals_ms[10..].to_vec();
                    let mut us = b.ui_ms[11..].to_vec();
                    let mut cpu = b.cpu_ms[b.cpu_ms.len().min(11)..].to_vec();
                    let (model, nodes) = self
                        .viewer
                        .runs
                        .get(self.viewer.current)
                        .map_or(("(nothing open)".to_string(), 0), |r| {
                            (r.record.model.clone(), r.record.nodes.len())
                        });
                    let screen = ui.ctx().content_rect();
                    println!(
                        "{}: {} nodes ({} drawn); {} frames at {}x{}: frame time {}; eframe's \
                         CPU time {}; UI pass {}",
                        model,
                        nodes,
                        self.viewer.graph.current().map_or(0, |d| d.items.len()),
                        iv.len(),
                        screen.width(),
                        screen.height(),
                        stats(&mut iv),
                        stats(&mut cpu),
                        stats(&mut us)
                    );
                    ui.ctx().send_viewport_cmd(egui::ViewportCommand::Close);
                }
                ui.ctx().request_repaint();
            }
            let Some(path) = self.screenshot.clone() else {
                return;
            };
            self.frames += 1;
            let ctx = ui.ctx().clone();
            // A few frames first, so the layout has settled and fonts are in the atlas.
            if self.frames == 5 && !self.requested {
                self.requested = true;
                let shot = self.shot.clone();
                let ctx2 = ctx.clone();
                ctx.request_screenshot(move |img| {
                    let [w, h] = img.size;
                    let bytes: Vec<u8> = img.pixels.iter().flat_map(|c| c.to_array()).collect();
                    let r = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
                        .ok_or_else(|| "bad screenshot size".to_string())
                        .and_then(|i| i.save(&path).map_err(|e| e.to_string()));
                    *shot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    ctx2.request_repaint();
                });
            }
            let done = self.shot.lock().unwrap_or_else(|p| p.into_inner()).take();
            match done {
                Some(Ok(())) => {
                    println!(
                        "screenshot written to {}",
                        self.screenshot
                            .as_ref()
                            .map_or(String::new(), |p| p.display().to_string())
                    );
                    ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                }
                Some(Err(e)) => {
                    eprintln!("error: the screenshot failed: {e}");
                    std::process::exit(1);
                }
                None => ctx.request_repaint(),
            }
        }
    }

    pub fn main() -> ExitCode {
        let args = match parse() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(2);
            }
        };
        let mut viewer = Viewer::default()
            .with_runner(Box::new(ThreadRunner::default()))
            .with_opener(Box::new(open_target));
        for t in &args.targets {
            match open_target(t) {
                Ok(r) => {
                    viewer.open(r, t.clone());
                }
                Err(e) => {
                    eprintln!("error: cannot open {t}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        if args.targets.len() > 1 {
            // The first named is shown, the second compared against it.
            viewer.show(0);
            viewer.other = Some(1);
            viewer.tab = sfumato_viewer::Tab::Compare;
        }
        if args.bench_frames.is_some() {
            // The layout alone, timed apart from drawing.
            if let Some(run) = viewer.runs.get(viewer.current) {
                let t0 = std::time::Instant::now();
                let d = sfumato_viewer::graph_panel::drawing(run, &|_| false, false);
                println!(
                    "{}: layout of {} boxes ({} layers) in {:.1} ms",
                    run.record.model,
                    d.items.len(),
                    d.layout.layer_of.iter().max().map_or(0, |m| m + 1),
                    t0.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        if let Some(n) = &args.select {
            if !viewer.select_by_name(n) {
                eprintln!("error: no node '{n}' in the run");
                return ExitCode::FAILURE;
            }
        }
        if let Some(z) = args.zoom {
            // Centred on the selection, where one is given.
            viewer.graph.zoom_on_selection(z);
        }
        let mut options = eframe::NativeOptions {
            viewport: egui::ViewportBuilder::default()
                .with_inner_size([1280.0, 800.0])
                .with_title("Sfumato viewer"),
            renderer: args.renderer,
            ..Default::default()
        };
        if std::env::var("SFUMATO_VIEWER_NO_VSYNC").as_deref() == Ok("1") {
            options.wgpu_options.surface.present_mode = wgpu::PresentMode::AutoNoVsync;
            options.glow_options.vsync = false;
        }
        let app = App {
            viewer,
            screenshot: args.screenshot,
            frames: 0,
            shot: Arc::new(Mutex::new(None)),
            requested: false,
            bench: args.bench_frames.map(|frames| FrameBench {
                frames,
                last: None,
                intervals_ms: vec![],
                ui_ms: vec![],
                cpu_ms: vec![],
            }),
        };
        match eframe::run_native("Sfumato viewer", options, Box::new(|_cc| Ok(Box::new(app)))) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: the viewer could not start: {e}");
                ExitCode::FAILURE
            }
        }
    }
}
