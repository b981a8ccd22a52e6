//! COCO object-detection average precision for boxes, rule for rule pycocotools' `COCOeval`
//! (`iouType = "bbox"`, maxDets 100) — the numbers of its `summarize()` lines 1 to 6.
//!
//! The rules, in the order `COCOeval` applies them:
//! - Categories are those that appear in the ground truth; detections of other categories are
//!   dropped. Every image named by a ground truth or a detection is evaluated (pycocotools
//!   refuses detections on images missing from its ground-truth file; here such detections
//!   are simply false positives).
//! - Per image and category, detections are sorted by score, highest first (a stable sort; a
//!   NaN score sorts last), and only the first [`MAX_DETS`] are kept. As in pycocotools the cap
//!   is per image *and category*, not per image.
//! - For each area range ([`AREA_RANGES`]) a ground truth is ignored when it is a crowd or its
//!   annotation `area` lies outside the range (bounds inclusive). Ignored ground truth goes last.
//! - At each IoU threshold ([`iou_thresholds`]) each detection, in score order, takes the
//!   ground truth with the highest IoU that is at least the threshold (a later one wins a tie)
//!   and not already taken; a crowd can be taken any number of times, and once a detection
//!   holds a regular match it does not move on to an ignored one. IoU is [`iou`], or
//!   [`crowd_iou`] against a crowd.
//! - A detection matched to ignored ground truth is ignored; so is an unmatched detection whose
//!   box area `w * h` lies outside the range. The other matched detections are true positives,
//!   the other unmatched ones false positives.
//! - Per category, area range and threshold, the detections of all images are sorted by score
//!   again (stable, images in id order) and recall `tp / n` (n: the ground truth not ignored)
//!   and precision `tp / (tp + fp + ε)` are accumulated; precision is made non-increasing from
//!   the right and read at the 101 recalls 0, 0.01, …, 1, each at the first detection whose
//!   recall reaches it (NumPy's `searchsorted`, side left), 0 where none does. AP is the mean of
//!   those 101 values.
//! - A category with no ground truth left after ignoring has no AP and is left out of the means;
//!   a summary with no category left is -1, as in COCO.
//!
//! Degenerate input does not panic: a box with a non-finite coordinate, or with no positive
//! width or height, overlaps nothing (IoU 0). Areas are compared as pycocotools compares them,
//! so a NaN area is never out of range.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// One ground-truth annotation (COCO's `annotations` entry).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruth {
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`, as in COCO.
    pub bbox: [f64; 4],
    /// The annotation's `area` field (for COCO, the segmentation's area, not the box's): it
    /// alone decides the area range.
    pub area: f64,
    /// A crowd region: never a true positive nor a miss; detections on it are ignored.
    pub iscrowd: bool,
}

/// One detection (a COCO results-file entry).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub image_id: u64,
    pub category_id: u64,
    /// `[x, y, width, height]`; its area range is decided by `width * height`.
    pub bbox: [f64; 4],
    pub score: f64,
}

/// COCO's first six summary numbers, each a fraction in [0, 1], or -1 where no category has
/// ground truth in that area range. All use at most [`MAX_DETS`] detections per image and
/// category.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CocoScore {
    /// AP averaged over the IoU thresholds 0.50:0.05:0.95 and the categories (area all).
    pub map: f64,
    /// AP at IoU 0.50.
    pub map50: f64,
    /// AP at IoU 0.75.
    pub map75: f64,
    /// AP over 0.50:0.95, ground truth of area at most 32².
    pub map_small: f64,
    /// AP over 0.50:0.95, ground truth of area 32² to 96².
    pub map_medium: f64,
    /// AP over 0.50:0.95, ground truth of area at least 96².
    pub map_large: f64,
}

/// The most detections kept per image and category.
pub const MAX_DETS: usize = 100;

/// The area ranges all, small, medium and large, `(min, max)` with both bounds inclusive.
pub const AREA_RANGES: [(f64, f64); 4] = [
    (0.0, 1e10),
    (0.0, 32.0 * 32.0),
    (32.0 * 32.0, 96.0 * 96.0),
    (96.0 * 96.0, 1e10),
];

/// The number of IoU thresholds.
const T: usize = 10;
/// The number of recall points.
const R: usize = 101;

/// The IoU thresholds 0.50:0.05:0.95, computed as `np.linspace(.5, .95, 10)` computes them
/// (`i * step + 0.5`, the last exactly 0.95), so that IoUs on a threshold compare as in COCO:
/// the ninth is 0.8999999999999999, the others print as their decimals.
pub fn iou_thresholds() -> [f64; T] {
    let step = (0.95 - 0.5) / (T - 1) as f64;
    let mut t = [0.0; T];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as f64 * step + 0.5;
    }
    t[T - 1] = 0.95;
    t
}

/// The recall points 0:0.01:1 as `np.linspace(0, 1, 101)` computes them.
fn recall_thresholds() -> [f64; R] {
    let step = 1.0 / (R - 1) as f64;
    let mut r = [0.0; R];
    for (i, v) in r.iter_mut().enumerate() {
        *v = i as f64 * step;
    }
    r[R - 1] = 1.0;
    r
}

/// Intersection over union of two `[x, y, w, h]` boxes; 0 when they do not overlap (touching
/// edges included) or a coordinate is not finite.
pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    box_iou(a, b, false)
}

/// The IoU COCO uses against a crowd region: the intersection over the *detection's* area, so a
/// detection inside the region scores 1 however large the region is.
pub fn crowd_iou(det: &[f64; 4], crowd: &[f64; 4]) -> f64 {
    box_iou(det, crowd, true)
}

/// pycocotools' `bbIou`: the union is the detection's area when `crowd`.
fn box_iou(d: &[f64; 4], g: &[f64; 4], crowd: bool) -> f64 {
    if d.iter().chain(g).any(|v| !v.is_finite()) {
        return 0.0;
    }
    let w = (d[0] + d[2]).min(g[0] + g[2]) - d[0].max(g[0]);
    let h = (d[1] + d[3]).min(g[1] + g[3]) - d[1].max(g[1]);
    if w <= 0.0 || h <= 0.0 {
        return 0.0;
    }
    // A positive overlap implies positive widths and heights, so the union is positive.
    let inter = w * h;
    let det_area = d[2] * d[3];
    let union = if crowd {
        det_area
    } else {
        det_area + g[2] * g[3] - inter
    };
    let v = inter / union;
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// Highest score first, NaN last, equal scores equal (so a stable sort keeps input order) —
/// NumPy's `argsort(-scores, kind="mergesort")`.
fn by_score_desc(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

/// One detection's outcome at every IoU threshold, for one area range.
struct Outcome {
    score: f64,
    matched: [bool; T],
    ignored: [bool; T],
}

/// What one category and area range gathers over all images.
#[derive(Default)]
struct Gathered {
    outcomes: Vec<Outcome>,
    /// Ground truth not ignored.
    npig: usize,
}

/// The detections and ground truth of one image and category.
#[derive(Default)]
struct Cell<'a> {
    gts: Vec<&'a GroundTruth>,
    dets: Vec<&'a Detection>,
}

/// Score detections against ground truth by the COCO rules (see the module docs).
pub fn evaluate(gt: &[GroundTruth], dets: &[Detection]) -> CocoScore {
    let thresholds = iou_thresholds();
    let recalls = recall_thresholds();
    let categories: BTreeSet<u64> = gt.iter().map(|g| g.category_id).collect();
    // Keyed (category, image): a category's images come together, in id order.
    let mut cells: BTreeMap<(u64, u64), Cell> = BTreeMap::new();
    for g in gt {
        cells
            .entry((g.category_id, g.image_id))
            .or_default()
            .gts
            .push(g);
    }
    for d in dets.iter().filter(|d| categories.contains(&d.category_id)) {
        cells
            .entry((d.category_id, d.image_id))
            .or_default()
            .dets
            .push(d);
    }

    // ap[a] holds, per category with ground truth in area range a, the AP at each threshold.
    let mut ap: [Vec<[f64; T]>; 4] = Default::default();
    let mut gathered: [Gathered; 4] = Default::default();
    let mut cells = cells.into_iter().peekable();
    while let Some(((category, _), cell)) = cells.next() {
        match_cell(&cell, &thresholds, &mut gathered);
        let last_of_category = cells.peek().is_none_or(|((c, _), _)| *c != category);
        if last_of_category {
            for (g, ap) in gathered.iter_mut().zip(ap.iter_mut()) {
                ap.extend(average_precision(g, &recalls));
                *g = Gathered::default();
            }
        }
    }

    let [all, small, medium, large] = &ap;
    CocoScore {
        map: mean(all.iter().flatten().copied()),
        map50: mean(all.iter().map(|a| a[0])),
        map75: mean(all.iter().map(|a| a[5])),
        map_small: mean(small.iter().flatten().copied()),
        map_medium: mean(medium.iter().flatten().copied()),
        map_large: mean(large.iter().flatten().copied()),
    }
}

/// Match one image and category's detections to its ground truth at every threshold, for every
/// area range (`COCOeval.evaluateImg`), adding the outcomes to `gathered`.
fn match_cell(cell: &Cell, thresholds: &[f64; T], gathered: &mut [Gathered; 4]) {
    let mut dets = cell.dets.clone();
    dets.sort_by(|a, b| by_score_desc(a.score, b.score));
    dets.truncate(MAX_DETS);
    let gts = &cell.gts;
    // ious[d * gts.len() + g], ground truth in input order.
    let ious: Vec<f64> = dets
        .iter()
        .flat_map(|d| gts.iter().map(|g| box_iou(&d.bbox, &g.bbox, g.iscrowd)))
        .collect();

    for (&(lo, hi), gathered) in AREA_RANGES.iter().zip(gathered.iter_mut()) {
        let gt_ignored: Vec<bool> = gts
            .iter()
            .map(|g| g.iscrowd || g.area < lo || g.area > hi)
            .collect();
        gathered.npig += gt_ignored.iter().filter(|&&i| !i).count();
        // Regular ground truth first, ignored last, each in input order.
        let order: Vec<usize> = (0..gts.len())
            .filter(|&g| !gt_ignored[g])
            .chain((0..gts.len()).filter(|&g| gt_ignored[g]))
            .collect();
        let mut taken = vec![[false; T]; gts.len()];
        for (d, det) in dets.iter().enumerate() {
            let row = &ious[d * gts.len()..(d + 1) * gts.len()];
            let area = det.bbox[2] * det.bbox[3];
            let out_of_range = area < lo || area > hi;
            let mut outcome = Outcome {
                score: det.score,
                matched: [false; T],
                ignored: [false; T],
            };
            for (t, &threshold) in thresholds.iter().enumerate() {
                let mut best = threshold.min(1.0 - 1e-10);
                let mut matched: Option<usize> = None;
                for &g in &order {
                    if taken[g][t] && !gts[g].iscrowd {
                        continue;
                    }
                    if matched.is_some_and(|m| !gt_ignored[m]) && gt_ignored[g] {
                        break;
                    }
                    if row[g] < best {
                        continue;
                    }
                    best = row[g];
                    matched = Some(g);
                }
                match matched {
                    Some(g) => {
                        outcome.matched[t] = true;
                        outcome.ignored[t] = gt_ignored[g];
                        taken[g][t] = true;
                    }
                    None => outcome.ignored[t] = out_of_range,
                }
            }
            gathered.outcomes.push(outcome);
        }
    }
}

/// AP at each threshold for one category and area range (`COCOeval.accumulate`); None when no
/// ground truth is left after ignoring.
fn average_precision(gathered: &Gathered, recalls: &[f64; R]) -> Option<[f64; T]> {
    if gathered.npig == 0 {
        return None;
    }
    let npig = gathered.npig as f64;
    let mut sorted: Vec<&Outcome> = gathered.outcomes.iter().collect();
    sorted.sort_by(|a, b| by_score_desc(a.score, b.score));
    let mut ap = [0.0; T];
    for (t, ap) in ap.iter_mut().enumerate() {
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        let mut recall = Vec::with_capacity(sorted.len());
        let mut precision = Vec::with_capacity(sorted.len());
        for o in &sorted {
            if !o.ignored[t] {
                if o.matched[t] {
                    tp += 1.0;
                } else {
                    fp += 1.0;
                }
            }
            recall.push(tp / npig);
            precision.push(tp / (fp + tp + f64::EPSILON));
        }
        // Non-increasing from the right: each point takes the best precision at or after it.
        let mut best = 0.0f64;
        for p in precision.iter_mut().rev() {
            best = best.max(*p);
            *p = best;
        }
        let mut sum = 0.0;
        for &r in recalls {
            match precision.get(recall.partition_point(|&x| x < r)) {
                Some(p) => sum += p,
                None => break,
            }
        }
        *ap = sum / R as f64;
    }
    Some(ap)
}

/// The mean, or -1 with nothing to average.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        -1.0
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    fn assert_score(s: CocoScore, want: [f64; 6]) {
        let got = [
            s.map,
            s.map50,
            s.map75,
            s.map_small,
            s.map_medium,
            s.map_large,
        ];
        let ok = got.iter().zip(want).all(|(g, w)| close(*g, w));
        assert!(ok, "got {got:?}, want {want:?}");
    }

    /// Category 1 ground truth whose area is its box's.
    fn gt(image_id: u64, bbox: [f64; 4]) -> GroundTruth {
        GroundTruth {
            image_id,
            category_id: 1,
            bbox,
            area: bbox[2] * bbox[3],
            iscrowd: false,
        }
    }

    fn det(image_id: u64, bbox: [f64; 4], score: f64) -> Detection {
        Detection {
            image_id,
            category_id: 1,
            bbox,
            score,
        }
    }

    const A: [f64; 4] = [0.0, 0.0, 10.0, 10.0];
    const B: [f64; 4] = [50.0, 0.0, 10.0, 10.0];
    const NOWHERE: [f64; 4] = [200.0, 200.0, 10.0, 10.0];

    #[test]
    fn iou_and_thresholds() {
        assert_eq!(iou(&A, &A), 1.0);
        // Overlap 5 x 10 = 50, union 100 + 100 - 50 = 150.
        assert!(close(iou(&A, &[5.0, 0.0, 10.0, 10.0]), 1.0 / 3.0));
        // Touching edges, zero width, non-finite coordinates: no overlap.
        assert_eq!(iou(&A, &[10.0, 0.0, 10.0, 10.0]), 0.0);
        assert_eq!(iou(&A, &[2.0, 2.0, 0.0, 5.0]), 0.0);
        assert_eq!(iou(&A, &[f64::NAN, 0.0, 10.0, 10.0]), 0.0);
        assert_eq!(iou(&A, &[0.0, 0.0, f64::INFINITY, 10.0]), 0.0);
        // A 10 x 10 detection inside a 20 x 20 crowd: 100 / 100 by the detection's area,
        // 100 / 400 as a plain IoU.
        let crowd = [20.0, 0.0, 20.0, 20.0];
        let inside = [20.0, 0.0, 10.0, 10.0];
        assert_eq!(crowd_iou(&inside, &crowd), 1.0);
        assert_eq!(iou(&inside, &crowd), 0.25);
        // np.linspace's values: 0.5, 0.6 and 0.75 exact, the ninth just under 0.9.
        let t = iou_thresholds();
        assert_eq!((t[0], t[2], t[5], t[9]), (0.5, 0.6, 0.75, 0.95));
        assert_eq!(t[8], 0.8999999999999999);
    }

    #[test]
    fn a_perfect_detection_scores_one_at_every_threshold() {
        // IoU 1 at every threshold: recall [1], precision [1 / (1 + ε)], read at all 101
        // recall points. Area 100 is small; medium and large have no ground truth: -1.
        let s = evaluate(&[gt(1, A)], &[det(1, A, 0.9)]);
        assert_score(s, [1.0, 1.0, 1.0, 1.0, -1.0, -1.0]);
    }

    #[test]
    fn a_partial_overlap_is_a_hit_up_to_its_iou() {
        // [0, 0, 10, 5.8] against A: IoU 58 / 100 = 0.58, a hit at 0.50 and 0.55 (AP 1), a
        // miss at the 8 thresholds from 0.60 (AP 0): mAP 2/10, AP50 1, AP75 0.
        let s = evaluate(&[gt(1, A)], &[det(1, [0.0, 0.0, 10.0, 5.8], 0.9)]);
        assert_score(s, [0.2, 1.0, 0.0, 0.2, -1.0, -1.0]);
        // IoU exactly 0.6 meets the threshold 0.6 (a match needs IoU >= threshold): 3/10.
        let s = evaluate(&[gt(1, A)], &[det(1, [0.0, 0.0, 10.0, 6.0], 0.9)]);
        assert_score(s, [0.3, 1.0, 0.0, 0.3, -1.0, -1.0]);
    }

    #[test]
    fn precision_is_interpolated_at_101_recall_points() {
        // A false positive above the true positive: tp [0, 1], fp [1, 1], recall [0, 1],
        // precision [0, 1/2] → made non-increasing [1/2, 1/2]: AP 1/2.
        let s = evaluate(&[gt(1, A)], &[det(1, NOWHERE, 0.9), det(1, A, 0.8)]);
        assert_score(s, [0.5, 0.5, 0.5, 0.5, -1.0, -1.0]);
        // The same false positive below it costs nothing: recall [1, 1], precision [1, 1/2],
        // and every recall point reads the first.
        let s = evaluate(&[gt(1, A)], &[det(1, A, 0.9), det(1, NOWHERE, 0.8)]);
        assert_score(s, [1.0, 1.0, 1.0, 1.0, -1.0, -1.0]);
        // Two ground truths; hit, false positive, hit: recall [1/2, 1/2, 1], precision
        // [1, 1/2, 2/3] → [1, 2/3, 2/3]. Recall points 0..=0.50 (51) read index 0 (1; 0.50
        // itself included, searchsorted left), 0.51..=1 (50) read index 2 (2/3):
        // AP = (51 + 50 * 2/3) / 101 = 253/303.
        let s = evaluate(
            &[gt(1, A), gt(1, B)],
            &[det(1, A, 0.9), det(1, NOWHERE, 0.8), det(1, B, 0.7)],
        );
        let ap = 253.0 / 303.0;
        assert_score(s, [ap, ap, ap, ap, -1.0, -1.0]);
        // Two ground truths, one found: recall [1/2], precision [1]. Points 0..=0.50 read 1,
        // the 50 above it find no detection and read 0: AP = 51/101.
        let s = evaluate(&[gt(1, A), gt(1, B)], &[det(1, A, 0.9)]);
        let ap = 51.0 / 101.0;
        assert_score(s, [ap, ap, ap, ap, -1.0, -1.0]);
    }

    #[test]
    fn a_second_detection_of_one_object_is_a_false_positive() {
        // Both hit A with IoU 1; the lower-scored one finds A taken: tp [1, 1], fp [0, 1]. With
        // a second object B found last: recall [1/2, 1/2, 1], precision [1, 1/2, 2/3]:
        // 253/303 as above.
        let s = evaluate(
            &[gt(1, A), gt(1, B)],
            &[det(1, A, 0.9), det(1, A, 0.8), det(1, B, 0.7)],
        );
        let ap = 253.0 / 303.0;
        assert_score(s, [ap, ap, ap, ap, -1.0, -1.0]);
    }

    #[test]
    fn a_crowd_absorbs_detections_without_false_positives() {
        // A regular object A and a 20 x 20 crowd. Two detections inside the crowd (crowd IoU
        // 1, plain IoU 0.25) outscore the hit on A. Both match the crowd — a crowd can be
        // matched again — and are ignored: recall [0, 0, 1], precision [0, 0, 1] → [1, 1, 1],
        // AP 1. Counted as false positives they would give precision 1/3: AP 1/3.
        let crowd = GroundTruth {
            iscrowd: true,
            ..gt(1, [20.0, 0.0, 20.0, 20.0])
        };
        let dets = [
            det(1, [20.0, 0.0, 10.0, 10.0], 0.95),
            det(1, [30.0, 10.0, 10.0, 10.0], 0.93),
            det(1, A, 0.9),
        ];
        let s = evaluate(&[gt(1, A), crowd], &dets);
        assert_score(s, [1.0, 1.0, 1.0, 1.0, -1.0, -1.0]);
        // A category whose only ground truth is a crowd has nothing to find: no AP at all.
        let s = evaluate(&[crowd], &dets);
        assert_score(s, [-1.0; 6]);
    }

    #[test]
    fn area_ranges_ignore_ground_truth_and_unmatched_detections() {
        // Ground truth S (area 100, small), M (1600, medium), L (10000, large); detections
        // 0.9 on S, 0.8 a 40 x 40 false positive (area 1600), 0.7 on M, 0.6 on L, all exact.
        let s_box = [0.0, 0.0, 10.0, 10.0];
        let m_box = [0.0, 200.0, 40.0, 40.0];
        let l_box = [100.0, 100.0, 100.0, 100.0];
        let gts = [gt(1, s_box), gt(1, m_box), gt(1, l_box)];
        let dets = [
            det(1, s_box, 0.9),
            det(1, [500.0, 500.0, 40.0, 40.0], 0.8),
            det(1, m_box, 0.7),
            det(1, l_box, 0.6),
        ];
        // all: hit, FP, hit, hit: recall [1/3, 1/3, 2/3, 1], precision [1, 1/2, 2/3, 3/4] →
        //   [1, 3/4, 3/4, 3/4]. Points 0..=0.33 (34) read 1, the other 67 read 3/4:
        //   AP = (34 + 67 * 3/4) / 101 = 337/404, at every threshold.
        // small: only S counts. M and L are ignored ground truth, so the hits on them are
        //   ignored; the FP is unmatched and its area 1600 is out of range: ignored. AP 1.
        // medium: only M counts. The hits on S and L are ignored; the FP is in range and
        //   counts: ignored, FP, hit, ignored → recall [0, 0, 1, 1], precision
        //   [0, 0, 1/2, 1/2] → all 1/2: AP 1/2.
        // large: only L counts; the FP (area 1600 < 96²) is ignored: AP 1.
        let all = 337.0 / 404.0;
        assert_score(evaluate(&gts, &dets), [all, all, all, 1.0, 0.5, 1.0]);
    }

    #[test]
    fn area_bounds_are_inclusive() {
        // Area exactly 32² is both small and medium.
        let b = [0.0, 0.0, 32.0, 32.0];
        let s = evaluate(&[gt(1, b)], &[det(1, b, 0.5)]);
        assert_score(s, [1.0, 1.0, 1.0, 1.0, 1.0, -1.0]);
        // The annotation's area, not the box's, picks the range: a 10 x 10 box of area 10000
        // is large.
        let big = GroundTruth {
            area: 10000.0,
            ..gt(1, A)
        };
        let s = evaluate(&[big], &[det(1, A, 0.5)]);
        assert_score(s, [1.0, 1.0, 1.0, -1.0, -1.0, 1.0]);
    }

    #[test]
    fn at_most_100_detections_per_image_and_category() {
        // 100 false positives outscore the hit: it is the 101st and is dropped. AP 0.
        let mut dets: Vec<Detection> = (0..100).map(|_| det(1, NOWHERE, 0.9)).collect();
        dets.push(det(1, A, 0.1));
        assert_score(
            evaluate(&[gt(1, A)], &dets),
            [0.0, 0.0, 0.0, 0.0, -1.0, -1.0],
        );
        // With 99 it is the 100th: recall [0, ..., 0, 1], precision [0, ..., 0, 1/100]
        // → all 1/100: AP 0.01.
        dets.remove(0);
        assert_score(
            evaluate(&[gt(1, A)], &dets),
            [0.01, 0.01, 0.01, 0.01, -1.0, -1.0],
        );
        // The cap is per category: 150 higher-scored detections of category 2 in the same
        // image leave category 1's hit in place. Category 1 AP 1, category 2 (one object,
        // missed by all 100 kept) AP 0: mean 1/2.
        let mut dets: Vec<Detection> = (0..150)
            .map(|_| Detection {
                category_id: 2,
                ..det(1, NOWHERE, 0.9)
            })
            .collect();
        dets.push(det(1, A, 0.1));
        let other = GroundTruth {
            category_id: 2,
            ..gt(1, B)
        };
        let s = evaluate(&[gt(1, A), other], &dets);
        assert_score(s, [0.5, 0.5, 0.5, 0.5, -1.0, -1.0]);
    }

    #[test]
    fn an_iou_tie_goes_to_the_later_ground_truth() {
        // G1 = [0, 0, 10, 10] and G2 = [5, 0, 10, 10]; D1 = [2.5, 0, 10, 10] (0.9) overlaps each
        // by 75 of 125: IoU 0.6 with both, and COCO gives it the later one, G2. D2 = G1 (0.8).
        // At 0.50, 0.55, 0.60: D1 takes G2, D2 takes G1: two hits, AP 1.
        // At the 7 thresholds above 0.6: D1 misses (FP), D2 hits: recall [0, 1/2], precision
        // [0, 1/2] → [1/2, 1/2]; points 0..=0.50 (51) read 1/2, the rest 0: AP 25.5/101.
        // mAP = (3 + 7 * 25.5/101) / 10 = 963/2020. (Were the tie given to G1, D2 would be left
        // with G2 at IoU 1/3 and miss.)
        let gts = [gt(1, A), gt(1, [5.0, 0.0, 10.0, 10.0])];
        let dets = [det(1, [2.5, 0.0, 10.0, 10.0], 0.9), det(1, A, 0.8)];
        let map = 963.0 / 2020.0;
        assert_score(
            evaluate(&gts, &dets),
            [map, 1.0, 25.5 / 101.0, map, -1.0, -1.0],
        );
    }

    #[test]
    fn categories_are_averaged_and_images_taken_in_id_order() {
        // Category 1: a hit (AP 1). Category 2: one object on image 2, a hit there and a false
        // positive on image 1 with the same score. Equal scores keep image order, image 1
        // first, whatever the input order: FP then hit, AP 1/2. Mean (1 + 1/2) / 2 = 3/4.
        // A detection of category 3, which has no ground truth, changes nothing.
        let cat2 = |d: Detection| Detection {
            category_id: 2,
            ..d
        };
        let gts = [
            gt(1, A),
            GroundTruth {
                category_id: 2,
                ..gt(2, B)
            },
        ];
        let dets = [
            cat2(det(2, B, 0.5)),
            cat2(det(1, B, 0.5)),
            det(1, A, 0.7),
            Detection {
                category_id: 3,
                ..det(1, A, 1.0)
            },
        ];
        assert_score(evaluate(&gts, &dets), [0.75, 0.75, 0.75, 0.75, -1.0, -1.0]);
    }

    #[test]
    fn degenerate_input_is_scored_without_panicking() {
        assert_score(evaluate(&[], &[]), [-1.0; 6]);
        assert_score(evaluate(&[], &[det(1, A, 0.5)]), [-1.0; 6]);
        // Ground truth with no detection: AP 0.
        assert_score(evaluate(&[gt(1, A)], &[]), [0.0, 0.0, 0.0, 0.0, -1.0, -1.0]);
        // A NaN score sorts last: the FP scored 0.1 comes first, the hit after it: AP 1/2.
        let s = evaluate(&[gt(1, A)], &[det(1, A, f64::NAN), det(1, NOWHERE, 0.1)]);
        assert_score(s, [0.5, 0.5, 0.5, 0.5, -1.0, -1.0]);
        // Boxes of zero or negative size and NaN coordinates match nothing. The NaN box's
        // area is NaN, never out of range, so it is a false positive in every range; the zero
        // box (area 0, small) too. The negative box (area 25, small) is also one. Each
        // outscores the hit: tp [0, 0, 0, 1], fp [1, 2, 3, 3] → precision 1/4: AP 1/4.
        let dets = [
            det(1, [f64::NAN, 0.0, 10.0, 10.0], 0.9),
            det(1, [0.0, 0.0, 0.0, 10.0], 0.8),
            det(1, [5.0, 5.0, -5.0, -5.0], 0.7),
            det(1, A, 0.6),
        ];
        let s = evaluate(&[gt(1, A)], &dets);
        assert_score(s, [0.25, 0.25, 0.25, 0.25, -1.0, -1.0]);
    }
}
