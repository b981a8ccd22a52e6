//! The timeline, the op table, the node details, the comparison of two runs, the outputs and a
//! simulated cube op's tile schedule.

use crate::run::{group_fill, Loaded};
use egui::{Align2, Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, StrokeKind, Vec2};
use sfumato_core::device::fmt_ns;
use sfumato_core::TileSchedule;

/// Timeline state: horizontal zoom and pan.
pub struct Timeline {
    zoom: f32,
    offset: f32,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            zoom: 1.0,
            offset: 0.0,
        }
    }
}

impl Timeline {
    /// Per-dispatch bars on a time axis; hover for details, click to select the node.
    pub fn ui(&mut self, ui: &mut egui::Ui, run: &Loaded, selected: &mut Option<usize>) {
        let r = &run.record;
        if !run.timed() {
            ui.label(if r.profile.entries.is_empty() {
                "No timings: this model was planned, not run. Run it (Run) or open a saved run."
                    .to_string()
            } else {
                format!(
                    "{} kernels ran as one submission without per-kernel timestamps: the whole \
                     run took {}.",
                    r.profile.entries.len(),
                    fmt_ns(r.profile.wall_ns)
                )
            });
            return;
        }
        let end = r
            .profile
            .entries
            .iter()
            .map(|e| e.start_ns + e.duration_ns)
            .max()
            .unwrap_or(1)
            .max(1) as f32;
        ui.horizontal(|ui| {
            ui.label(format!(
                "{} dispatches, kernel time {}, wall {} — wheel to zoom, drag to pan",
                r.profile.entries.len(),
                fmt_ns(run.total_ns),
                fmt_ns(r.profile.wall_ns)
            ));
            if ui.small_button("Reset").clicked() {
                *self = Timeline::default();
            }
        });
        let height = 64.0_f32.min(ui.available_height().max(40.0));
        let (rect, resp) = ui.allocate_exact_size(
            Vec2::new(ui.available_width(), height),
            Sense::click_and_drag(),
        );
        let painter = ui.painter_at(rect);
        let dark = ui.visuals().dark_mode;
        painter.rect_filled(rect, 0.0, ui.visuals().extreme_bg_color);
        if resp.dragged() {
            self.offset += resp.drag_delta().x;
        }
        if let Some(p) = resp.hover_pos() {
            let scroll = ui.input(|i| i.smooth_scroll_delta.y + i.smooth_scroll_delta.x);
            let factor = (scroll * 0.003).exp();
            if (factor - 1.0).abs() > 1e-4 {
                let new = (self.zoom * factor).clamp(1.0, 10_000.0);
                let at = p.x - rect.min.x;
                self.offset = at - (at - self.offset) * (new / self.zoom);
                self.zoom = new;
            }
        }
        let px_per_ns = rect.width() * self.zoom / end;
        let x_of = |ns: f32| rect.min.x + self.offset + ns * px_per_ns;
        // Axis: about 8 ticks at round times.
        let visible_ns = rect.width() / px_per_ns;
        let step = nice_step(visible_ns / 8.0);
        let first = ((-self.offset / px_per_ns) / step).floor().max(0.0) * step;
        let mut t = first;
        while t <= end && x_of(t) <= rect.max.x {
            let x = x_of(t);
            painter.line_segment(
                [Pos2::new(x, rect.min.y), Pos2::new(x, rect.max.y)],
                Stroke::new(1.0, ui.visuals().faint_bg_color),
            );
            painter.text(
                Pos2::new(x + 2.0, rect.min.y + 1.0),
                Align2::LEFT_TOP,
                fmt_ns(t as u64),
                FontId::proportional(10.0),
                ui.visuals().weak_text_color(),
            );
            t += step;
        }
        let bar_top = rect.min.y + 16.0;
        let bar_h = rect.height() - 20.0;
        let mut hovered = None;
        for (i, e) in r.profile.entries.iter().enumerate() {
            let x0 = x_of(e.start_ns as f32);
            let x1 = x_of((e.start_ns + e.duration_ns) as f32).max(x0 + 1.0);
            if x1 < rect.min.x || x0 > rect.max.x {
                continue;
            }
            let node = run.entry_node[i];
            let group = node.and_then(|n| r.nodes[n].group);
            let heat = group.map_or(0.5, |g| {
                (run.times[g].ns as f32 / run.max_group_ns.max(1) as f32).sqrt()
            });
            let fill = group.map_or(Color32::GRAY, |g| group_fill(g, heat.max(0.4), dark));
            let bar = Rect::from_min_max(Pos2::new(x0, bar_top), Pos2::new(x1, bar_top + bar_h));
            let is_sel = node.is_some() && node == *selected;
            let stroke = if is_sel {
                Stroke::new(2.0, Color32::from_rgb(255, 200, 0))
            } else {
                Stroke::new(0.5, ui.visuals().weak_text_color())
            };
            painter.rect(bar, 0.0, fill, stroke, StrokeKind::Inside);
            if let Some(p) = resp.hover_pos() {
                if bar.contains(p) {
                    hovered = Some(i);
                }
            }
        }
        if let Some(i) = hovered {
            let e = &r.profile.entries[i];
            let resp = resp.clone().on_hover_ui_at_pointer(|ui| {
                ui.strong(e.nodes.join(" + "));
                ui.label(format!("ops: {}", e.ops.join(" + ")));
                ui.label(format!("kernel: {}", e.kernel));
                ui.label(format!(
                    "{} at {} ({:.1}% of kernel time)",
                    fmt_ns(e.duration_ns),
                    fmt_ns(e.start_ns),
                    100.0 * e.duration_ns as f64 / run.total_ns.max(1) as f64
                ));
                if let Some(s) = &e.simulated {
                    ui.label(format!(
                        "{} cycles, cube {:.1}%, {}-bound",
                        s.cycles,
                        100.0 * s.cube_utilization,
                        s.bound
                    ));
                }
            });
            if resp.clicked() {
                if let Some(n) = run.entry_node[i] {
                    *selected = Some(n);
                }
            }
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `x`.
fn nice_step(x: f32) -> f32 {
    let x = x.max(1.0);
    let p = 10f32.powf(x.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if p * m >= x {
            return p * m;
        }
    }
    p * 10.0
}

/// The op table: every entry, sorted by time, with its share; click a row to select.
pub fn op_table(ui: &mut egui::Ui, run: &Loaded, selected: &mut Option<usize>) {
    let r = &run.record;
    if r.profile.entries.is_empty() {
        ui.label("No profile: run the model to time its kernels.");
        return;
    }
    let mut order: Vec<usize> = (0..r.profile.entries.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(r.profile.entries[i].duration_ns));
    let sim = r.profile.entries.iter().any(|e| e.simulated.is_some());
    egui::ScrollArea::both()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("op_table").striped(true).show(ui, |ui| {
                for h in ["#", "nodes", "ops", "kernel", "time", "share"] {
                    ui.strong(h);
                }
                if sim {
                    ui.strong("cycles");
                    ui.strong("cube");
                    ui.strong("bound");
                }
                ui.end_row();
                let mut cum = 0.0;
                for (rank, &i) in order.iter().enumerate() {
                    let e = &r.profile.entries[i];
                    let share = e.duration_ns as f64 / run.total_ns.max(1) as f64;
                    cum += share;
                    let node = run.entry_node[i];
                    ui.label(format!("{}", rank + 1));
                    let text = sfumato_core::device::truncate(&e.nodes.join("+"), 40);
                    if ui
                        .selectable_label(node.is_some() && node == *selected, text)
                        .clicked()
                    {
                        *selected = node;
                    }
                    ui.label(sfumato_core::device::truncate(&e.ops.join("+"), 32));
                    ui.label(&e.kernel);
                    ui.label(fmt_ns(e.duration_ns));
                    ui.label(format!("{:.1}% (Σ {:.0}%)", 100.0 * share, 100.0 * cum));
                    if sim {
                        match &e.simulated {
                            Some(s) => {
                                ui.label(s.cycles.to_string());
                                ui.label(format!("{:.1}%", 100.0 * s.cube_utilization));
                                ui.label(&s.bound);
                            }
                            None => {
                                ui.label("-");
                                ui.label("-");
                                ui.label("-");
                            }
                        }
                    }
                    ui.end_row();
                }
            });
        });
}

/// What the detail panel asks the app to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetailAction {
    None,
    Select(usize),
    ToggleGroup(usize),
}

/// The selected node: op, attributes, inputs and outputs, its group (members, kernels with
/// highlighted WGSL, bytes, time).
pub fn details(
    ui: &mut egui::Ui,
    run: &Loaded,
    node: usize,
    group_collapsed: bool,
) -> DetailAction {
    let r = &run.record;
    let mut action = DetailAction::None;
    let Some(n) = r.nodes.get(node) else {
        return action;
    };
    ui.heading(&n.name);
    egui::Grid::new("node_facts").num_columns(2).show(ui, |ui| {
        ui.label("op");
        ui.strong(&n.op);
        ui.end_row();
        if !n.attributes.is_empty() {
            ui.label("attributes");
            ui.add(egui::Label::new(&n.attributes).wrap());
            ui.end_row();
        }
        for (what, vs) in [("input", &n.inputs), ("output", &n.outputs)] {
            for &v in vs {
                let val = &r.values[v];
                ui.label(what);
                ui.label(format!("{} {} {:?}", val.name, val.dtype, val.shape));
                ui.end_row();
            }
        }
    });
    let Some(g) = n.group else { return action };
    let gr = &r.groups[g];
    ui.separator();
    ui.horizontal(|ui| {
        ui.strong(format!("group {g}: {} ({})", gr.label, gr.kind));
        if gr.nodes.len() > 1
            && ui
                .small_button(if group_collapsed {
                    "expand"
                } else {
                    "collapse"
                })
                .clicked()
        {
            action = DetailAction::ToggleGroup(g);
        }
    });
    let t = run.times[g];
    egui::Grid::new("group_facts")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("time");
            ui.label(if run.timed() {
                format!(
                    "{} ({:.1}% of the run, {} entr{})",
                    fmt_ns(t.ns),
                    100.0 * run.share(g),
                    t.entries,
                    if t.entries == 1 { "y" } else { "ies" }
                )
            } else {
                "not timed".into()
            });
            ui.end_row();
            if let Some(c) = t.cycles {
                ui.label("simulated");
                ui.label(format!(
                    "{c} cycles, cube {:.1}%",
                    100.0 * t.cube_utilization.unwrap_or(0.0)
                ));
                ui.end_row();
            }
            ui.label("bytes read");
            ui.label(mib(gr.bytes_read));
            ui.end_row();
            ui.label("bytes written");
            ui.label(mib(gr.bytes_written));
            ui.end_row();
            ui.label("dispatches");
            ui.label(gr.dispatches.to_string());
            ui.end_row();
        });
    if gr.nodes.len() > 1 {
        ui.label("members:");
        ui.horizontal_wrapped(|ui| {
            for &m in &gr.nodes {
                if ui
                    .selectable_label(
                        m == node,
                        format!("{} ({})", r.nodes[m].name, r.nodes[m].op),
                    )
                    .clicked()
                {
                    action = DetailAction::Select(m);
                }
            }
        });
    }
    let dark = ui.visuals().dark_mode;
    for k in &gr.kernels {
        egui::CollapsingHeader::new(format!("WGSL: {}", k.name))
            .id_salt(("wgsl", g, &k.name))
            .default_open(true)
            .show(ui, |ui| {
                egui::ScrollArea::both()
                    .id_salt(("wgsl_scroll", g, &k.name))
                    .max_height(360.0)
                    .show(ui, |ui| {
                        ui.add(
                            egui::Label::new(crate::wgsl::highlight(&k.source, dark, 11.0))
                                .selectable(true)
                                .extend(),
                        );
                    });
            });
    }
    if gr.kernels.is_empty() && gr.dispatches == 0 && r.profile.entries.is_empty() {
        ui.weak("no kernel: a view or a constant");
    }
    action
}

fn mib(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// One row of a comparison: a group of run A against the groups of run B that compute the same
/// nodes (by name).
#[derive(Clone, Debug, PartialEq)]
pub struct CompareRow {
    pub group: usize,
    pub label: String,
    pub a_ns: u64,
    pub b_ns: Option<u64>,
    pub a_cycles: Option<u64>,
    pub b_cycles: Option<u64>,
    pub b_cube: Option<f64>,
    pub a_cube: Option<f64>,
    pub anchor: Option<usize>,
}

/// Run A's groups (with a kernel or a time) beside run B's time for the same nodes: B's groups
/// that hold any of A's group's nodes, each counted once. A fused run against an unfused one
/// gives a fused kernel against the sum of its ops' kernels.
pub fn compare_rows(a: &Loaded, b: &Loaded) -> Vec<CompareRow> {
    let ra = &a.record;
    let mut rows = Vec::new();
    for (g, gr) in ra.groups.iter().enumerate() {
        let ta = a.times[g];
        if ta.entries == 0 && gr.dispatches == 0 {
            continue;
        }
        let mut bgroups: Vec<usize> = gr
            .nodes
            .iter()
            .filter_map(|&n| b.node_by_name.get(&ra.nodes[n].name))
            .filter_map(|&bn| b.record.nodes[bn].group)
            .collect();
        bgroups.sort_unstable();
        bgroups.dedup();
        let found = !bgroups.is_empty();
        let sum = |f: &dyn Fn(usize) -> Option<u64>| -> Option<u64> {
            let v: Vec<u64> = bgroups.iter().filter_map(|&x| f(x)).collect();
            (!v.is_empty()).then(|| v.iter().sum())
        };
        rows.push(CompareRow {
            group: g,
            label: gr.label.clone(),
            a_ns: ta.ns,
            b_ns: found.then(|| bgroups.iter().map(|&x| b.times[x].ns).sum()),
            a_cycles: ta.cycles,
            b_cycles: sum(&|x| b.times[x].cycles),
            a_cube: ta.cube_utilization,
            b_cube: bgroups.iter().find_map(|&x| b.times[x].cube_utilization),
            anchor: gr.nodes.first().copied(),
        });
    }
    rows
}

/// The comparison table of `a` against `b`.
pub fn compare(ui: &mut egui::Ui, a: &Loaded, b: &Loaded, selected: &mut Option<usize>) {
    let rows = compare_rows(a, b);
    let (ta, tb) = (a.total_ns, b.total_ns);
    ui.label(format!(
        "A: {} — {}    B: {} — {}    B/A: {}",
        a.title(),
        fmt_ns(ta),
        b.title(),
        fmt_ns(tb),
        if ta > 0 {
            fmt_ratio(tb as f64 / ta as f64)
        } else {
            "-".into()
        }
    ));
    let sim = rows
        .iter()
        .any(|r| r.a_cycles.is_some() || r.b_cycles.is_some());
    egui::ScrollArea::both()
        .id_salt("compare_scroll")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            egui::Grid::new("compare").striped(true).show(ui, |ui| {
                for h in ["group", "A time", "B time", "B/A"] {
                    ui.strong(h);
                }
                if sim {
                    for h in ["A cycles", "A cube", "B cycles", "B cube"] {
                        ui.strong(h);
                    }
                }
                ui.end_row();
                for row in &rows {
                    let text = format!(
                        "[{}] {}",
                        row.group,
                        sfumato_core::device::truncate(&row.label, 36)
                    );
                    if ui
                        .selectable_label(row.anchor.is_some() && row.anchor == *selected, text)
                        .clicked()
                    {
                        *selected = row.anchor;
                    }
                    ui.label(fmt_ns(row.a_ns));
                    ui.label(row.b_ns.map_or("-".into(), fmt_ns));
                    let ratio = match row.b_ns {
                        Some(b) if row.a_ns > 0 => {
                            let x = b as f64 / row.a_ns as f64;
                            let c = if x > 1.05 {
                                Color32::from_rgb(60, 170, 60)
                            } else if x < 0.95 {
                                Color32::from_rgb(210, 70, 60)
                            } else {
                                ui.visuals().text_color()
                            };
                            RichText::new(fmt_ratio(x)).color(c)
                        }
                        _ => RichText::new("-"),
                    };
                    ui.label(ratio);
                    if sim {
                        let cyc = |c: Option<u64>| c.map_or("-".into(), |c| c.to_string());
                        let cube =
                            |c: Option<f64>| c.map_or("-".into(), |c| format!("{:.1}%", 100.0 * c));
                        ui.label(cyc(row.a_cycles));
                        ui.label(cube(row.a_cube));
                        ui.label(cyc(row.b_cycles));
                        ui.label(cube(row.b_cube));
                    }
                    ui.end_row();
                }
            });
        });
}

/// A ratio readable at any size: `1.23x`, `0.0042x`, `3.1e-6x`.
pub fn fmt_ratio(x: f64) -> String {
    if x >= 0.1 || x == 0.0 {
        format!("{x:.2}x")
    } else if x >= 1e-3 {
        format!("{x:.4}x")
    } else {
        format!("{x:.1e}x")
    }
}

/// The run's outputs: shape, range and first values.
pub fn outputs(ui: &mut egui::Ui, run: &Loaded) {
    let r = &run.record;
    if r.results.is_empty() {
        ui.label("No outputs: the model was planned, not run (or the run computed none).");
        return;
    }
    egui::Grid::new("outputs").striped(true).show(ui, |ui| {
        for h in [
            "output",
            "dtype",
            "shape",
            "min",
            "max",
            "mean",
            "first values",
        ] {
            ui.strong(h);
        }
        ui.end_row();
        for o in &r.results {
            ui.label(&o.name);
            ui.label(&o.dtype);
            ui.label(format!("{:?}", o.shape));
            ui.label(format!("{:.5}", o.min));
            ui.label(format!("{:.5}", o.max));
            ui.label(format!("{:.5}", o.mean));
            let head: Vec<String> = o.head.iter().map(|x| format!("{x:.4}")).collect();
            ui.label(head.join(", "));
            ui.end_row();
        }
    });
}

/// The tile schedules of the selected node's simulated entry, if it ran on the simulated cube.
pub fn schedules_of(run: &Loaded, node: Option<usize>) -> Vec<TileSchedule> {
    let Some(n) = node else { return vec![] };
    let r = &run.record;
    r.profile
        .entries
        .iter()
        .zip(&run.entry_node)
        .filter(|(_, en)| en.is_some() && en.and_then(|x| r.nodes[x].group) == r.nodes[n].group)
        .filter_map(|(e, _)| e.simulated.as_ref())
        .flat_map(|s| s.tiles.iter().cloned())
        .collect()
}

/// A cube op's tiles: the M x N grid of base blocks, each coloured by the core it is dealt to.
pub fn schedule(ui: &mut egui::Ui, run: &Loaded, node: Option<usize>) {
    let scheds = schedules_of(run, node);
    if scheds.is_empty() {
        ui.label(
            "Select a matmul or conv of a run on the simulated NPU (`--device npu-sim`) to see \
             how its blocks are tiled and dealt over the cores.",
        );
        return;
    }
    for s in &scheds {
        ui.label(&s.text);
        let (mb, nb) = (s.m_blocks.max(1), s.n_blocks.max(1));
        let cores = s.cores.max(1) as u64;
        let avail = Vec2::new(ui.available_width().min(700.0), 150.0);
        let (shown_m, shown_n) = (mb.min(512), nb.min(512));
        let cw = (avail.x / shown_n as f32).clamp(2.0, 48.0);
        let ch = (avail.y / shown_m as f32).clamp(2.0, 28.0);
        let (rect, _) = ui.allocate_exact_size(
            Vec2::new(cw * shown_n as f32, ch * shown_m as f32),
            Sense::hover(),
        );
        let painter = ui.painter_at(rect);
        for i in 0..shown_m {
            for j in 0..shown_n {
                let core = (i * nb + j) % cores;
                let fill: Color32 =
                    egui::ecolor::Hsva::new(crate::run::group_hue(core as usize), 0.6, 0.85, 1.0)
                        .into();
                let r = Rect::from_min_size(
                    rect.min + Vec2::new(j as f32 * cw, i as f32 * ch),
                    Vec2::new(cw, ch),
                );
                painter.rect(
                    r,
                    0.0,
                    fill,
                    Stroke::new(0.5, Color32::from_gray(40)),
                    StrokeKind::Inside,
                );
                if cw >= 16.0 && ch >= 12.0 {
                    painter.text(
                        r.center(),
                        Align2::CENTER_CENTER,
                        core.to_string(),
                        FontId::monospace(9.0),
                        Color32::BLACK,
                    );
                }
            }
        }
        ui.label(format!(
            "{} x {} blocks of {}x{} (k {} in {} steps) over {} cores; the number is the core",
            mb, nb, s.base_m, s.base_n, s.base_k, s.k_steps, cores
        ));
    }
}
