//! The native viewer: `sfumato-viewer [MODEL|FILE] [--compare FILE] [--screenshot OUT.png]`.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
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
    }

    fn parse() -> Result<Args, String> {
        let mut a = Args {
            targets: vec![],
            screenshot: None,
            select: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(x) = it.next() {
            match x.as_str() {
                "--compare" => a.targets.push(it.next().ok_or("--compare needs a file")?),
                "--screenshot" => {
                    a.screenshot = Some(it.next().ok_or("--screenshot needs a file")?.into())
                }
                "--select" => a.select = Some(it.next().ok_or("--select needs a node name")?),
                "-h" | "--help" => {
                    return Err("usage: sfumato-viewer [MODEL|FILE] [--compare FILE] \
                                [--select NODE] [--screenshot OUT.png]"
                        .into())
                }
                s if s.starts_with("--") => return Err(format!("unknown option {s}")),
                _ => a.targets.insert(0, x),
            }
        }
        Ok(a)
    }

    struct App {
        viewer: Viewer,
        screenshot: Option<PathBuf>,
        frames: u32,
        shot: Arc<Mutex<Option<Result<(), String>>>>,
        requested: bool,
    }

    impl eframe::App for App {
        fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
            self.viewer.ui(ui);
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
        if let Some(n) = &args.select {
            if !viewer.select_by_name(n) {
                eprintln!("error: no node '{n}' in the run");
                return ExitCode::FAILURE;
            }
        }
        let options = eframe::NativeOptions {
            viewport: egui::ViewportBuilder::default()
                .with_inner_size([1280.0, 800.0])
                .with_title("Sfumato viewer"),
            ..Default::default()
        };
        let app = App {
            viewer,
            screenshot: args.screenshot,
            frames: 0,
            shot: Arc::new(Mutex::new(None)),
            requested: false,
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
