//! The viewer: the panels arranged in one UI that both shells (native eframe, the web page)
//! show, and the runs it has open.

use crate::graph_panel::GraphPanel;
use crate::panels::{self, DetailAction, Timeline};
use crate::run::Loaded;
use sfumato_core::RunRecord;

/// Runs a model live for the viewer: on a thread natively, as a future in the browser.
pub trait Runner {
    /// Models it can run by name.
    fn models(&self) -> Vec<String>;
    /// Devices it can run on.
    fn devices(&self) -> Vec<String>;
    /// Starts a run; [`Runner::poll`] reports on it.
    fn start(&mut self, model: &str, device: &str, fused: bool);
    /// What the run is doing, or its result once (then `Idle`).
    fn poll(&mut self) -> RunState;
}

/// What a live run is doing.
pub enum RunState {
    Idle,
    Running(String),
    Done(Result<Box<RunRecord>, String>),
}

/// Opens what a path field names (a file, a model name) as a record.
pub type Opener = Box<dyn Fn(&str) -> Result<RunRecord, String>>;

/// Named results waiting to be opened: a record, or why it could not be made.
pub type Inbox = std::sync::Arc<std::sync::Mutex<Vec<(String, Result<RunRecord, String>)>>>;

/// Which tab the bottom panel shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Timeline,
    Table,
    Compare,
    Outputs,
    Schedule,
}

/// The whole viewer.
pub struct Viewer {
    pub runs: Vec<Loaded>,
    pub current: usize,
    /// The run compared against the current one.
    pub other: Option<usize>,
    pub selected: Option<usize>,
    pub tab: Tab,
    pub graph: GraphPanel,
    pub timeline: Timeline,
    pub status: String,
    pub path: String,
    runner: Option<Box<dyn Runner>>,
    run_model: String,
    run_device: String,
    run_fused: bool,
    running: Option<String>,
    inbox: Inbox,
    /// Opens what the path field names (natively: files and model names).
    opener: Option<Opener>,
}

impl Default for Viewer {
    fn default() -> Self {
        Viewer {
            runs: vec![],
            current: 0,
            other: None,
            selected: None,
            tab: Tab::Timeline,
            graph: GraphPanel::default(),
            timeline: Timeline::default(),
            status: String::new(),
            path: String::new(),
            runner: None,
            run_model: "resnet-bottleneck".into(),
            run_device: String::new(),
            run_fused: true,
            running: None,
            inbox: Inbox::default(),
            opener: None,
        }
    }
}

impl Viewer {
    /// A viewer that can run models live with `runner`.
    pub fn with_runner(mut self, runner: Box<dyn Runner>) -> Self {
        if let Some(d) = runner.devices().first() {
            self.run_device = d.clone();
        }
        if let Some(m) = runner.models().first() {
            if !runner.models().contains(&self.run_model) {
                self.run_model = m.clone();
            }
        }
        self.runner = Some(runner);
        self
    }

    /// A viewer that opens what the path field names with `opener` (native: files and model
    /// names).
    pub fn with_opener(mut self, opener: Opener) -> Self {
        self.opener = Some(opener);
        self
    }

    /// Opens a run and shows it; returns its index.
    pub fn open(&mut self, record: RunRecord, source: impl Into<String>) -> usize {
        let l = Loaded::new(record, source);
        self.status = format!("opened {}", l.title());
        self.runs.push(l);
        self.show(self.runs.len() - 1);
        self.runs.len() - 1
    }

    /// Shows run `i` (the previous one becomes the comparison run).
    pub fn show(&mut self, i: usize) {
        if i >= self.runs.len() {
            return;
        }
        if i != self.current && !self.runs.is_empty() {
            self.other = Some(self.current).filter(|&o| o < self.runs.len() && o != i);
        }
        self.current = i;
        self.selected = None;
        self.graph.reset();
    }

    /// Selects a node by name (tests, the web page).
    pub fn select_by_name(&mut self, name: &str) -> bool {
        let found = self
            .runs
            .get(self.current)
            .and_then(|r| r.node_by_name.get(name).copied());
        if found.is_some() {
            self.selected = found;
        }
        found.is_some()
    }

    fn open_path(&mut self) {
        let p = self.path.trim().to_string();
        if p.is_empty() {
            return;
        }
        let Some(opener) = &self.opener else {
            self.status = "this build opens files by dropping them on the window".into();
            return;
        };
        match opener(&p) {
            Ok(r) => {
                self.open(r, p);
            }
            Err(e) => self.status = format!("cannot open {p}: {e}"),
        }
    }

    /// Files dropped on the window: read and opened (natively; the web shell reads them
    /// asynchronously and posts them to [`Viewer::inbox`]).
    #[cfg(not(target_arch = "wasm32"))]
    fn dropped_files(&mut self, ctx: &egui::Context) {
        let files = ctx.input(|i| i.raw.dropped_files.clone());
        for f in files {
            let name = f.path().display().to_string();
            let short = f
                .path()
                .file_name()
                .map_or(name.clone(), |n| n.to_string_lossy().into_owned());
            let result = f
                .bytes()
                .and_then(|b| crate::source::open_bytes(&short, &b).map_err(|e| e.to_string()));
            self.inbox
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((name, result));
        }
    }

    #[cfg(target_arch = "wasm32")]
    fn dropped_files(&mut self, _ctx: &egui::Context) {}

    /// Where results to open arrive from elsewhere (a web page's file reads, its runs).
    pub fn inbox(&self) -> Inbox {
        self.inbox.clone()
    }

    fn drain_inbox(&mut self) {
        let items: Vec<_> =
            std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()));
        for (name, result) in items {
            match result {
                Ok(r) => {
                    self.open(r, name);
                }
                Err(e) => self.status = format!("cannot open {name}: {e}"),
            }
        }
    }

    fn poll_runner(&mut self, ctx: &egui::Context) {
        let Some(runner) = &mut self.runner else {
            return;
        };
        match runner.poll() {
            RunState::Idle => self.running = None,
            RunState::Running(s) => {
                self.running = Some(s);
                ctx.request_repaint_after(std::time::Duration::from_millis(100));
            }
            RunState::Done(Ok(r)) => {
                self.running = None;
                let src = format!("live run of {} on {}", r.model, r.device);
                self.open(*r, src);
            }
            RunState::Done(Err(e)) => {
                self.running = None;
                self.status = format!("run failed: {e}");
            }
        }
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            ui.strong("Sfumato");
            if self.opener.is_some() {
                let label = ui.label("Open:");
                let resp = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.path)
                            .hint_text("model name, .onnx, run .json or trace")
                            .desired_width(220.0),
                    )
                    .labelled_by(label.id);
                let enter = resp.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Open").clicked() || enter {
                    self.open_path();
                }
            } else {
                ui.weak("drop an .onnx, a saved run or a trace here");
            }
            if !self.runs.is_empty() {
                ui.separator();
                let mut cur = self.current;
                egui::ComboBox::new("run_pick", "run")
                    .selected_text(sfumato_core::device::truncate(&self.runs[cur].title(), 48))
                    .show_ui(ui, |ui| {
                        for (i, r) in self.runs.iter().enumerate() {
                            ui.selectable_value(&mut cur, i, format!("{i}: {}", r.title()));
                        }
                    });
                if cur != self.current {
                    self.show(cur);
                }
            }
            if let Some(runner) = &self.runner {
                ui.separator();
                let (models, devices) = (runner.models(), runner.devices());
                egui::ComboBox::new("model_pick", "model")
                    .selected_text(&self.run_model)
                    .show_ui(ui, |ui| {
                        for m in &models {
                            ui.selectable_value(&mut self.run_model, m.clone(), m);
                        }
                    });
                egui::ComboBox::new("device_pick", "device")
                    .selected_text(&self.run_device)
                    .show_ui(ui, |ui| {
                        for d in &devices {
                            ui.selectable_value(&mut self.run_device, d.clone(), d);
                        }
                    });
                ui.checkbox(&mut self.run_fused, "fused");
                let busy = self.running.is_some();
                if ui.add_enabled(!busy, egui::Button::new("Run")).clicked() {
                    let (m, d, f) = (
                        self.run_model.clone(),
                        self.run_device.clone(),
                        self.run_fused,
                    );
                    if let Some(r) = &mut self.runner {
                        r.start(&m, &d, f);
                        self.running = Some(format!("starting {m} on {d}"));
                    }
                }
                if let Some(s) = &self.running {
                    ui.spinner();
                    ui.label(s);
                }
            }
        });
        if !self.status.is_empty() {
            ui.weak(&self.status);
        }
    }

    /// The whole UI, in `ui` (an eframe app's root, or a test harness's).
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.poll_runner(&ctx);
        self.dropped_files(&ctx);
        self.drain_inbox();
        egui::Panel::top("top").show(ui, |ui| self.top_bar(ui));
        if self.runs.is_empty() {
            egui::CentralPanel::default().show(ui, |ui| {
                ui.centered_and_justified(|ui| {
                    ui.label(
                        "Open a model (a zoo name or an .onnx file), a saved run \
                         (`sfumato run MODEL --save-run FILE`) or a Chrome trace, or run one.",
                    );
                });
            });
            return;
        }
        let cur = self.current;
        let mut action = DetailAction::None;
        egui::Panel::right("details")
            .default_size(380.0)
            .resizable(true)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("details_scroll")
                    .show(ui, |ui| match self.selected {
                        Some(n) => {
                            let g = self.runs[cur].record.nodes.get(n).and_then(|x| x.group);
                            let coll = g.is_some_and(|g| self.graph.is_collapsed(g));
                            action = panels::details(ui, &self.runs[cur], n, coll);
                        }
                        None => {
                            let r = &self.runs[cur];
                            ui.heading(&r.record.model);
                            ui.label(format!("device: {}", r.record.device));
                            ui.label(format!(
                                "{} nodes, {} groups, {} kernels",
                                r.record.nodes.len(),
                                r.record.groups.len(),
                                r.record.profile.entries.len()
                            ));
                            if r.timed() {
                                ui.label(format!(
                                    "kernel time {}",
                                    sfumato_core::device::fmt_ns(r.total_ns)
                                ));
                            }
                            ui.label(format!("from {}", r.source));
                            ui.weak("Click a node to see its op, shapes, group and WGSL.");
                        }
                    });
            });
        egui::Panel::bottom("bottom")
            .resizable(true)
            .default_size(210.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    for (t, name) in [
                        (Tab::Timeline, "Timeline"),
                        (Tab::Table, "Ops by time"),
                        (Tab::Compare, "Compare"),
                        (Tab::Outputs, "Outputs"),
                        (Tab::Schedule, "NPU schedule"),
                    ] {
                        ui.selectable_value(&mut self.tab, t, name);
                    }
                });
                ui.separator();
                let run = &self.runs[cur];
                match self.tab {
                    Tab::Timeline => self.timeline.ui(ui, run, &mut self.selected),
                    Tab::Table => panels::op_table(ui, run, &mut self.selected),
                    Tab::Outputs => panels::outputs(ui, run),
                    Tab::Schedule => panels::schedule(ui, run, self.selected),
                    Tab::Compare => {
                        let mut other = self.other;
                        ui.horizontal(|ui| {
                            egui::ComboBox::new("other_pick", "compared against")
                                .selected_text(
                                    other
                                        .and_then(|o| self.runs.get(o))
                                        .map_or("(open a second run)".into(), |r| r.title()),
                                )
                                .show_ui(ui, |ui| {
                                    for (i, r) in self.runs.iter().enumerate() {
                                        if i != cur {
                                            ui.selectable_value(&mut other, Some(i), r.title());
                                        }
                                    }
                                });
                        });
                        self.other = other;
                        match other.and_then(|o| self.runs.get(o)) {
                            Some(b) => panels::compare(ui, run, b, &mut self.selected),
                            None => {
                                ui.label(
                                    "Open or run a second run (the same model unfused, another \
                                     device or commit) to compare it op by op.",
                                );
                            }
                        }
                    }
                }
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.graph.ui(ui, cur, &self.runs[cur], &mut self.selected);
        });
        match action {
            DetailAction::None => {}
            DetailAction::Select(n) => self.selected = Some(n),
            DetailAction::ToggleGroup(g) => self.graph.toggle_group(g),
        }
    }
}
