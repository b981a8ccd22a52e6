//! One opened run, with what the panels derive from it: per-group times, colours, which node
//! each profile entry belongs to.

use egui::Color32;
use sfumato_core::record::GroupTime;
use sfumato_core::RunRecord;
use std::collections::HashMap;

/// A run the viewer has open.
pub struct Loaded {
    pub record: RunRecord,
    /// Where it came from (a path, a model name and device).
    pub source: String,
    pub times: Vec<GroupTime>,
    /// The profile's kernel time (sum of entries), ns.
    pub total_ns: u64,
    /// The largest group time, ns (shading scale).
    pub max_group_ns: u64,
    /// Per profile entry, the node it belongs to (its first node the record knows).
    pub entry_node: Vec<Option<usize>>,
    pub node_by_name: HashMap<String, usize>,
}

impl Loaded {
    pub fn new(record: RunRecord, source: impl Into<String>) -> Loaded {
        let times = record.group_times();
        let node_by_name: HashMap<String, usize> = record
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        let entry_node = record
            .profile
            .entries
            .iter()
            .map(|e| e.nodes.iter().find_map(|n| node_by_name.get(n).copied()))
            .collect();
        Loaded {
            total_ns: record.profile.kernel_ns(),
            max_group_ns: times.iter().map(|t| t.ns).max().unwrap_or(0),
            times,
            entry_node,
            node_by_name,
            record,
            source: source.into(),
        }
    }

    /// A short title: model, device, fused or not.
    pub fn title(&self) -> String {
        format!(
            "{} on {}{}",
            self.record.model,
            self.record.device,
            if self.record.fused { "" } else { " (unfused)" }
        )
    }

    /// The group's time as a share of the run's kernel time (0 where the run has no times).
    pub fn share(&self, group: usize) -> f64 {
        if self.total_ns == 0 {
            return 0.0;
        }
        self.times
            .get(group)
            .map_or(0.0, |t| t.ns as f64 / self.total_ns as f64)
    }

    /// Whether the profile has per-entry times to draw.
    pub fn timed(&self) -> bool {
        self.record.profile.per_entry_times() && self.total_ns > 0
    }
}

/// A group's hue: the golden angle apart, so neighbouring groups differ.
pub fn group_hue(group: usize) -> f32 {
    (group as f32 * 0.618_034).fract()
}

/// A group's fill: its hue, more saturated and darker the more of the run's time it takes
/// (`heat` 0..1; a run without times draws every group at the same light shade).
pub fn group_fill(group: usize, heat: f32, dark: bool) -> Color32 {
    let heat = heat.clamp(0.0, 1.0);
    let (s, v) = if dark {
        (0.30 + 0.60 * heat, 0.45 + 0.40 * heat)
    } else {
        (0.18 + 0.72 * heat, 0.97 - 0.25 * heat)
    };
    egui::ecolor::Hsva::new(group_hue(group), s, v, 1.0).into()
}

/// Readable text on a fill.
pub fn text_on(fill: Color32) -> Color32 {
    let l = 0.299 * fill.r() as f32 + 0.587 * fill.g() as f32 + 0.114 * fill.b() as f32;
    if l > 140.0 {
        Color32::from_gray(20)
    } else {
        Color32::from_gray(235)
    }
}
