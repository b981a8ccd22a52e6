//! The graph panel: the run's graph laid out as a layered DAG ([`crate::layout`]), nodes
//! coloured by fused group and shaded by time, pan (drag) and zoom (wheel), search, and fused
//! groups collapsed into one box (double-click a box, or collapse them all).

use crate::layout::{layout, Dag, Layout, Spacing};
use crate::run::{group_fill, text_on, Loaded};
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, StrokeKind, Vec2};
use std::collections::HashSet;

/// What one box of the drawing stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BoxItem {
    /// A graph node.
    Node(usize),
    /// A fused group drawn as one box.
    Group(usize),
    /// A graph input (a value index).
    Input(usize),
}

/// The boxes and edges drawn for a run under the panel's settings.
pub struct Drawing {
    pub items: Vec<BoxItem>,
    pub labels: Vec<String>,
    pub layout: Layout,
    /// Per node, its box (none for hidden constants).
    pub node_box: Vec<Option<usize>>,
}

/// The panel's state.
pub struct GraphPanel {
    pub collapsed: HashSet<usize>,
    pub collapse_all: bool,
    pub show_constants: bool,
    pub search: String,
    search_hit: usize,
    offset: Vec2,
    zoom: f32,
    fit: bool,
    /// A zoom to set at the next frame, centred on the selected node ([`Self::zoom_on_selection`]).
    pending_zoom: Option<f32>,
    cache_key: Option<(usize, bool, bool, Vec<usize>)>,
    drawing: Option<Drawing>,
    /// Where each box was painted last frame (boxes off screen are left out).
    painted: Vec<(BoxItem, Rect)>,
}

impl Default for GraphPanel {
    fn default() -> Self {
        GraphPanel {
            collapsed: HashSet::new(),
            collapse_all: false,
            show_constants: false,
            search: String::new(),
            search_hit: 0,
            offset: Vec2::ZERO,
            zoom: 1.0,
            fit: true,
            pending_zoom: None,
            cache_key: None,
            drawing: None,
            painted: vec![],
        }
    }
}

const CHAR_W: f32 = 7.0;
const MAX_LABEL: usize = 28;

/// The drawing of `run`: constants hidden unless asked for, collapsed groups as one box.
pub fn drawing(run: &Loaded, collapsed: &dyn Fn(usize) -> bool, show_constants: bool) -> Drawing {
    let r = &run.record;
    let mut items = Vec::new();
    let mut labels = Vec::new();
    let mut node_box = vec![None; r.nodes.len()];
    let mut group_box = vec![None; r.groups.len()];
    let mut input_box = std::collections::HashMap::new();
    for &v in &r.inputs {
        input_box.insert(v, items.len());
        items.push(BoxItem::Input(v));
        labels.push(format!("input {}", r.values[v].name));
    }
    for (i, n) in r.nodes.iter().enumerate() {
        if n.op == "Constant" && !show_constants {
            continue;
        }
        match n.group {
            Some(g) if collapsed(g) && r.groups[g].nodes.len() > 1 => {
                let b = *group_box[g].get_or_insert_with(|| {
                    items.push(BoxItem::Group(g));
                    labels.push(format!("[{}] {}", g, r.groups[g].label));
                    items.len() - 1
                });
                node_box[i] = Some(b);
            }
            _ => {
                node_box[i] = Some(items.len());
                items.push(BoxItem::Node(i));
                labels.push(n.op.clone());
            }
        }
    }
    let mut edges = HashSet::new();
    for (i, n) in r.nodes.iter().enumerate() {
        let Some(to) = node_box[i] else { continue };
        for &v in &n.inputs {
            let from = match r.values[v].producer {
                Some(p) => node_box[p],
                None => input_box.get(&v).copied(),
            };
            if let Some(from) = from.filter(|&f| f != to) {
                edges.insert((from, to));
            }
        }
    }
    let mut edges: Vec<(usize, usize)> = edges.into_iter().collect();
    edges.sort_unstable();
    let labels: Vec<String> = labels
        .into_iter()
        .map(|l| sfumato_core::device::truncate(&l, MAX_LABEL))
        .collect();
    let widths = labels
        .iter()
        .map(|l| 20.0 + CHAR_W * l.chars().count() as f32)
        .collect();
    let layout = layout(&Dag { widths, edges }, Spacing::default());
    Drawing {
        items,
        labels,
        layout,
        node_box,
    }
}

impl GraphPanel {
    /// Forget the layout and view (a new run was opened).
    pub fn reset(&mut self) {
        self.collapsed.clear();
        self.cache_key = None;
        self.drawing = None;
        self.fit = true;
    }

    /// Centre the view on `node` at the next frame.
    pub fn focus(&mut self, node: usize, rect: Rect) {
        if let Some(d) = &self.drawing {
            if let Some(b) = d.node_box.get(node).copied().flatten() {
                let c = d.layout.centers[b];
                self.offset = rect.size() / 2.0 - Vec2::new(c[0], c[1]) * self.zoom;
            }
        }
    }

    /// At the next frame, zoom to `zoom` (clamped as the wheel's) centred on the selected node
    /// (`sfumato-viewer --select NODE --zoom Z`: a large graph opened where it matters).
    pub fn zoom_on_selection(&mut self, zoom: f32) {
        self.pending_zoom = Some(zoom.clamp(0.02, 4.0));
    }

    /// Pans by `by` points and zooms by `factor` about the view's origin (the frame benchmark
    /// moves the view this way each frame).
    pub fn nudge(&mut self, by: Vec2, factor: f32) {
        self.offset += by;
        self.zoom = (self.zoom * factor).clamp(0.02, 4.0);
    }

    /// The drawing as last laid out (for tests and the web page's checks).
    pub fn current(&self) -> Option<&Drawing> {
        self.drawing.as_ref()
    }

    fn ensure(&mut self, run_id: usize, run: &Loaded) {
        let mut coll: Vec<usize> = self.collapsed.iter().copied().collect();
        coll.sort_unstable();
        let key = (run_id, self.collapse_all, self.show_constants, coll);
        if self.cache_key.as_ref() != Some(&key) {
            let all = self.collapse_all;
            let set = &self.collapsed;
            // With "collapse all", the set lists the groups opened again.
            let is_collapsed = |g: usize| all != set.contains(&g);
            self.drawing = Some(drawing(run, &is_collapsed, self.show_constants));
            self.cache_key = Some(key);
        }
    }

    /// Where `node`'s box (or its collapsed group's) was painted last frame, in screen points.
    pub fn painted_rect(&self, run: &Loaded, node: usize) -> Option<Rect> {
        let group = run.record.nodes.get(node)?.group;
        self.painted.iter().find_map(|(item, r)| match *item {
            BoxItem::Node(n) if n == node => Some(*r),
            BoxItem::Group(g) if Some(g) == group => Some(*r),
            _ => None,
        })
    }

    /// Toggles whether `group` is drawn as one box.
    pub fn toggle_group(&mut self, group: usize) {
        if !self.collapsed.remove(&group) {
            self.collapsed.insert(group);
        }
    }

    /// Whether `group` is drawn as one box.
    pub fn is_collapsed(&self, group: usize) -> bool {
        self.collapse_all != self.collapsed.contains(&group)
    }

    /// The toolbar and the drawing. `selected` is the selected node, changed by a click.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        run_id: usize,
        run: &Loaded,
        selected: &mut Option<usize>,
    ) {
        let mut focus_on: Option<usize> = None;
        // The search's hits, found once a frame: the toolbar counts them, the drawing marks them.
        let hits = ui
            .horizontal(|ui| {
                if ui.button("Fit").clicked() {
                    self.fit = true;
                }
                if ui
                    .checkbox(&mut self.collapse_all, "Collapse fused groups")
                    .changed()
                {
                    self.collapsed.clear();
                }
                ui.checkbox(&mut self.show_constants, "Constants");
                let label = ui.label("Search:");
                let resp = ui
                    .add(egui::TextEdit::singleline(&mut self.search).desired_width(140.0))
                    .labelled_by(label.id);
                let hits = self.hits(run);
                if !self.search.is_empty() {
                    ui.label(format!("{} found", hits.len()));
                    let next = ui.button("Next").clicked()
                        || (resp.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)));
                    if next && !hits.is_empty() {
                        self.search_hit = (self.search_hit + 1) % hits.len();
                        let n = hits[self.search_hit];
                        *selected = Some(n);
                        focus_on = Some(n);
                    }
                }
                hits
            })
            .inner;
        self.ensure(run_id, run);
        let (rect, resp) = ui.allocate_exact_size(ui.available_size(), Sense::click_and_drag());
        let Some(d) = &self.drawing else { return };
        if self.fit {
            let size = Vec2::new(d.layout.width.max(1.0), d.layout.height.max(1.0));
            let z = ((rect.width() - 20.0) / size.x)
                .min((rect.height() - 20.0) / size.y)
                .clamp(0.05, 1.5);
            self.zoom = z;
            self.offset = (rect.size() - size * z) / 2.0;
            self.fit = false;
        }
        if let Some(z) = self.pending_zoom.take() {
            self.zoom = z;
            focus_on = focus_on.or(*selected);
        }
        if let Some(n) = focus_on {
            self.focus(n, rect);
        }
        let Some(d) = &self.drawing else { return };
        if resp.dragged() {
            self.offset += resp.drag_delta();
        }
        if let Some(p) = resp.hover_pos() {
            let (scroll, pinch) = ui.input(|i| (i.smooth_scroll_delta.y, i.zoom_delta()));
            let factor = pinch * (scroll * 0.002).exp();
            if (factor - 1.0).abs() > 1e-4 {
                let new = (self.zoom * factor).clamp(0.02, 4.0);
                let at = p - rect.min;
                self.offset = at - (at - self.offset) * (new / self.zoom);
                self.zoom = new;
            }
        }
        let (zoom, off) = (self.zoom, rect.min.to_vec2() + self.offset);
        let to_screen = |p: [f32; 2]| Pos2::new(p[0] * zoom + off.x, p[1] * zoom + off.y);
        let painter = ui.painter_at(rect);
        let dark = ui.visuals().dark_mode;
        painter.rect_filled(rect, 0.0, ui.visuals().extreme_bg_color);
        let edge_color = if dark {
            Color32::from_gray(120)
        } else {
            Color32::from_gray(150)
        };
        for path in &d.layout.edge_paths {
            let pts: Vec<Pos2> = path.iter().map(|&p| to_screen(p)).collect();
            let bb = Rect::from_points(&pts);
            if !bb.intersects(rect) {
                continue;
            }
            painter.line(pts.clone(), Stroke::new(1.0, edge_color));
            if let [.., a, b] = pts[..] {
                let dir = (b - a).normalized() * 6.0 * zoom.clamp(0.4, 1.0);
                let side = Vec2::new(-dir.y, dir.x) * 0.5;
                painter.add(egui::Shape::convex_polygon(
                    vec![b, b - dir + side, b - dir - side],
                    edge_color,
                    Stroke::NONE,
                ));
            }
        }
        let hits: HashSet<usize> = hits.into_iter().collect();
        let sel_box = selected.and_then(|n| d.node_box.get(n).copied().flatten());
        let r = &run.record;
        let mut clicked_box = None;
        let mut toggle = None;
        let mut painted = Vec::new();
        let pointer = resp.interact_pointer_pos();
        for (b, item) in d.items.iter().enumerate() {
            let c = d.layout.centers[b];
            let w = 20.0 + CHAR_W * d.labels[b].chars().count() as f32;
            let brect = Rect::from_center_size(to_screen(c), Vec2::new(w, 28.0) * zoom);
            if !brect.intersects(rect) {
                continue;
            }
            let (group, dashed) = match *item {
                BoxItem::Node(n) => (r.nodes[n].group, false),
                BoxItem::Group(g) => (Some(g), true),
                BoxItem::Input(_) => (None, false),
            };
            let fill = match group {
                Some(g) if r.groups[g].kind == crate::source::UNSUPPORTED => {
                    Color32::from_rgb(200, 40, 40)
                }
                Some(g) if r.groups[g].kind != "constant" => {
                    let heat = if run.max_group_ns > 0 {
                        (run.times[g].ns as f32 / run.max_group_ns as f32).sqrt()
                    } else {
                        0.0
                    };
                    group_fill(g, heat, dark)
                }
                _ => {
                    if dark {
                        Color32::from_gray(70)
                    } else {
                        Color32::from_gray(225)
                    }
                }
            };
            let stroke = if Some(b) == sel_box {
                Stroke::new(3.0, Color32::from_rgb(255, 200, 0))
            } else if matches!(item, BoxItem::Node(n) if hits.contains(n)) {
                Stroke::new(2.5, Color32::from_rgb(255, 110, 40))
            } else if dashed {
                Stroke::new(2.0, text_on(fill))
            } else {
                Stroke::new(1.0, edge_color)
            };
            painter.rect(brect, 4.0 * zoom, fill, stroke, StrokeKind::Inside);
            painted.push((*item, brect));
            // Time bar along the bottom: the group's share of the run.
            if let Some(g) = group {
                let share = run.share(g) as f32;
                if share > 0.0 {
                    let bar = Rect::from_min_size(
                        Pos2::new(brect.min.x, brect.max.y - 3.0 * zoom),
                        Vec2::new(brect.width() * (share * 4.0).min(1.0), 3.0 * zoom),
                    );
                    painter.rect_filled(bar, 0.0, Color32::from_rgb(220, 50, 40));
                }
            }
            if zoom > 0.35 {
                painter.text(
                    brect.center(),
                    Align2::CENTER_CENTER,
                    &d.labels[b],
                    FontId::proportional(12.0 * zoom.min(1.5)),
                    text_on(fill),
                );
            }
            if let Some(p) = pointer {
                if brect.contains(p) {
                    clicked_box = Some(b);
                }
            }
        }
        if let (Some(b), true) = (clicked_box, resp.clicked() || resp.double_clicked()) {
            let node = match d.items[b] {
                BoxItem::Node(n) => Some(n),
                BoxItem::Group(g) => r.groups[g].nodes.first().copied(),
                BoxItem::Input(_) => None,
            };
            if resp.double_clicked() {
                toggle = node.and_then(|n| r.nodes[n].group);
            }
            *selected = node;
        }
        if d.items.is_empty() {
            painter.text(
                rect.center(),
                Align2::CENTER_CENTER,
                "no graph: open a model, a saved run or a trace",
                FontId::proportional(14.0),
                ui.visuals().weak_text_color(),
            );
        }
        self.painted = painted;
        if let Some(g) = toggle {
            self.toggle_group(g);
        }
    }

    /// Nodes whose name, op or group label contains the search text (case-insensitive).
    pub fn hits(&self, run: &Loaded) -> Vec<usize> {
        let q = self.search.trim().to_lowercase();
        if q.is_empty() {
            return vec![];
        }
        run.record
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.name.to_lowercase().contains(&q) || n.op.to_lowercase().contains(&q))
            .map(|(i, _)| i)
            .collect()
    }
}
