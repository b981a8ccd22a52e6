//! A layered (Sugiyama-style) layout of a DAG, top to bottom, after Sugiyama, Tagawa and Toda
//! (1981) and the barycenter heuristic for crossings:
//!
//! 1. **Layers**: each box on the layer after its deepest predecessor (longest path from the
//!    sources), so every edge points down.
//! 2. **Dummies**: an edge that spans several layers passes through a dummy point on each layer
//!    between, so it can bend around boxes and take part in crossing reduction.
//! 3. **Order**: boxes within a layer sorted by the barycenter (mean position) of their
//!    neighbours on the layer above, then below, alternating sweeps; the order with the fewest
//!    crossings seen is kept.
//! 4. **Coordinates**: boxes packed left to right in that order, then pulled towards the mean
//!    x of their neighbours in a few alternating sweeps, never closer than their widths allow.
//!
//! It is linear in boxes plus dummies per sweep: a BERT-large graph (thousands of boxes) lays
//! out in milliseconds.

/// What to lay out: box widths and directed edges `(from, to)` between box indices.
#[derive(Clone, Debug, Default)]
pub struct Dag {
    pub widths: Vec<f32>,
    pub edges: Vec<(usize, usize)>,
}

/// Where everything went: box centres, each edge's polyline (from the bottom of its source to
/// the top of its target, through its dummies), and the whole drawing's size.
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub centers: Vec<[f32; 2]>,
    pub layer_of: Vec<usize>,
    pub edge_paths: Vec<Vec<[f32; 2]>>,
    pub width: f32,
    pub height: f32,
    /// Edge crossings between adjacent layers in the final order.
    pub crossings: usize,
}

/// Spacing of the drawing.
#[derive(Clone, Copy, Debug)]
pub struct Spacing {
    pub layer_gap: f32,
    pub box_height: f32,
    pub gap: f32,
    /// Width a dummy point takes in its layer.
    pub dummy_width: f32,
}

impl Default for Spacing {
    fn default() -> Self {
        Spacing {
            layer_gap: 70.0,
            box_height: 28.0,
            gap: 14.0,
            dummy_width: 6.0,
        }
    }
}

/// One slot of a layer: a box or a dummy point of a long edge.
#[derive(Clone, Copy, Debug)]
struct Slot {
    width: f32,
}

/// The layered layout of `dag`. Edges that point backwards (not a DAG) or to themselves are
/// drawn but do not constrain layers.
pub fn layout(dag: &Dag, sp: Spacing) -> Layout {
    let n = dag.widths.len();
    if n == 0 {
        return Layout::default();
    }
    let edges: Vec<(usize, usize)> = dag
        .edges
        .iter()
        .copied()
        .filter(|&(a, b)| a < n && b < n && a != b)
        .collect();
    let layer_of = assign_layers(n, &edges);
    let layers_n = layer_of.iter().max().map_or(1, |m| m + 1);

    // Slots: boxes first (index = box), then dummies.
    let mut slots: Vec<Slot> = dag.widths.iter().map(|&w| Slot { width: w }).collect();
    let mut slot_layer = layer_of.clone();
    // Each edge as a chain of slots from source to target.
    let mut chains: Vec<Vec<usize>> = Vec::with_capacity(edges.len());
    for &(a, b) in &edges {
        let (la, lb) = (layer_of[a], layer_of[b]);
        let mut chain = vec![a];
        if lb > la + 1 {
            for l in la + 1..lb {
                slots.push(Slot {
                    width: sp.dummy_width,
                });
                slot_layer.push(l);
                chain.push(slots.len() - 1);
            }
        }
        chain.push(b);
        chains.push(chain);
    }
    // Adjacent-layer links between slots (only downward ones: from layer l to l + 1).
    let mut up: Vec<Vec<usize>> = vec![vec![]; slots.len()];
    let mut down: Vec<Vec<usize>> = vec![vec![]; slots.len()];
    for c in &chains {
        for w in c.windows(2) {
            if slot_layer[w[1]] == slot_layer[w[0]] + 1 {
                down[w[0]].push(w[1]);
                up[w[1]].push(w[0]);
            }
        }
    }
    let mut order: Vec<Vec<usize>> = vec![vec![]; layers_n];
    for (s, &l) in slot_layer.iter().enumerate() {
        order[l].push(s);
    }
    let mut pos = vec![0usize; slots.len()];
    let set_pos = |order: &Vec<Vec<usize>>, pos: &mut Vec<usize>| {
        for layer in order {
            for (i, &s) in layer.iter().enumerate() {
                pos[s] = i;
            }
        }
    };
    set_pos(&order, &mut pos);
    let mut best = order.clone();
    let mut best_cross = count_crossings(&order, &down, &pos);
    for sweep in 0..8 {
        let downward = sweep % 2 == 0;
        let layers: Vec<usize> = if downward {
            (1..layers_n).collect()
        } else {
            (0..layers_n.saturating_sub(1)).rev().collect()
        };
        for l in layers {
            let nbrs = if downward { &up } else { &down };
            let mut keyed: Vec<(f32, usize, usize)> = order[l]
                .iter()
                .enumerate()
                .map(|(i, &s)| {
                    let ns = &nbrs[s];
                    let key = if ns.is_empty() {
                        i as f32
                    } else {
                        ns.iter().map(|&t| pos[t] as f32).sum::<f32>() / ns.len() as f32
                    };
                    (key, i, s)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            order[l] = keyed.into_iter().map(|k| k.2).collect();
            for (i, &s) in order[l].iter().enumerate() {
                pos[s] = i;
            }
        }
        let c = count_crossings(&order, &down, &pos);
        if c < best_cross {
            best_cross = c;
            best = order.clone();
        }
    }
    let order = best;
    set_pos(&order, &mut pos);

    // Coordinates: pack, then relax towards neighbours' mean, keeping the order and the gaps.
    let mut x = vec![0f32; slots.len()];
    for layer in &order {
        let mut at = 0.0;
        for &s in layer {
            x[s] = at + slots[s].width / 2.0;
            at += slots[s].width + sp.gap;
        }
    }
    for sweep in 0..6 {
        let nbrs = if sweep % 2 == 0 { &up } else { &down };
        for layer in &order {
            let want: Vec<f32> = layer
                .iter()
                .map(|&s| {
                    let ns = &nbrs[s];
                    if ns.is_empty() {
                        x[s]
                    } else {
                        ns.iter().map(|&t| x[t]).sum::<f32>() / ns.len() as f32
                    }
                })
                .collect();
            place_in_order(layer, &want, &slots, sp.gap, &mut x);
        }
    }
    let min_x = (0..slots.len())
        .map(|s| x[s] - slots[s].width / 2.0)
        .fold(f32::INFINITY, f32::min);
    for v in &mut x {
        *v -= min_x;
    }
    let width = (0..slots.len())
        .map(|s| x[s] + slots[s].width / 2.0)
        .fold(0.0, f32::max);
    let y = |l: usize| l as f32 * (sp.box_height + sp.layer_gap) + sp.box_height / 2.0;
    let centers: Vec<[f32; 2]> = (0..n).map(|b| [x[b], y(layer_of[b])]).collect();
    let edge_paths = chains
        .iter()
        .map(|c| {
            let mut p = Vec::with_capacity(c.len());
            for (i, &s) in c.iter().enumerate() {
                let yy = y(slot_layer[s]);
                if i == 0 {
                    p.push([x[s], yy + sp.box_height / 2.0]);
                } else if i == c.len() - 1 {
                    p.push([x[s], yy - sp.box_height / 2.0]);
                } else {
                    p.push([x[s], yy]);
                }
            }
            p
        })
        .collect();
    Layout {
        centers,
        layer_of,
        edge_paths,
        width,
        height: y(layers_n - 1) + sp.box_height / 2.0,
        crossings: best_cross,
    }
}

/// Layer = longest path from a source, over edges that go forward in a topological order
/// (Kahn's); edges closing a cycle are left out.
fn assign_layers(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut outs: Vec<Vec<usize>> = vec![vec![]; n];
    let mut indeg = vec![0usize; n];
    for &(a, b) in edges {
        outs[a].push(b);
        indeg[b] += 1;
    }
    let mut layer = vec![0usize; n];
    let mut queued = vec![false; n];
    let mut queue: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    for v in 0..n {
        if indeg[v] == 0 {
            queued[v] = true;
            queue.push_back(v);
        }
    }
    loop {
        while let Some(v) = queue.pop_front() {
            for &w in &outs[v] {
                if queued[w] {
                    continue; // an edge closing a cycle
                }
                layer[w] = layer[w].max(layer[v] + 1);
                indeg[w] -= 1;
                if indeg[w] == 0 {
                    queued[w] = true;
                    queue.push_back(w);
                }
            }
        }
        // A cycle: release its first box as if its remaining in-edges were not there.
        match (0..n).find(|&v| !queued[v]) {
            Some(v) => {
                queued[v] = true;
                queue.push_back(v);
            }
            None => break,
        }
    }
    layer
}

/// Crossings between each pair of adjacent layers: pairs of links whose ends are in opposite
/// orders (counted by sorting, O(E log E) a layer would do; this is O(E^2) per layer pair but
/// only over links between those two layers, small in practice).
fn count_crossings(order: &[Vec<usize>], down: &[Vec<usize>], pos: &[usize]) -> usize {
    let mut total = 0;
    for layer in order {
        let mut links: Vec<(usize, usize)> = layer
            .iter()
            .flat_map(|&s| down[s].iter().map(move |&t| (pos[s], pos[t])))
            .collect();
        links.sort_unstable();
        // Count inversions of the targets (merge sort).
        let mut targets: Vec<usize> = links.iter().map(|l| l.1).collect();
        total += inversions(&mut targets);
    }
    total
}

fn inversions(v: &mut [usize]) -> usize {
    let n = v.len();
    if n < 2 {
        return 0;
    }
    let mid = n / 2;
    let mut count = inversions(&mut v[..mid]) + inversions(&mut v[mid..]);
    let mut merged = Vec::with_capacity(n);
    let (mut i, mut j) = (0, mid);
    while i < mid && j < n {
        if v[i] <= v[j] {
            merged.push(v[i]);
            i += 1;
        } else {
            merged.push(v[j]);
            count += mid - i;
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..mid]);
    merged.extend_from_slice(&v[j..]);
    v.copy_from_slice(&merged);
    count
}

/// Moves the layer's slots towards `want` while keeping their order and gaps: each slot at its
/// wish or pushed right of its left neighbour, then a right-to-left pass that pulls slots that
/// were pushed past their wish back where the right neighbour allows.
fn place_in_order(layer: &[usize], want: &[f32], slots: &[Slot], gap: f32, x: &mut [f32]) {
    let k = layer.len();
    if k == 0 {
        return;
    }
    let half = |i: usize| slots[layer[i]].width / 2.0;
    let mut nx: Vec<f32> = want.to_vec();
    for i in 1..k {
        let min = nx[i - 1] + half(i - 1) + gap + half(i);
        if nx[i] < min {
            nx[i] = min;
        }
    }
    // Centre the overflow: shift the whole layer so its mean error is zero.
    let shift = (0..k).map(|i| want[i] - nx[i]).sum::<f32>() / k as f32;
    if shift < 0.0 {
        for v in &mut nx {
            *v += shift;
        }
        for i in 1..k {
            let min = nx[i - 1] + half(i - 1) + gap + half(i);
            if nx[i] < min {
                nx[i] = min;
            }
        }
    }
    for (i, &s) in layer.iter().enumerate() {
        x[s] = nx[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_overlaps(l: &Layout, widths: &[f32]) {
        for a in 0..widths.len() {
            for b in a + 1..widths.len() {
                if l.layer_of[a] == l.layer_of[b] {
                    let d = (l.centers[a][0] - l.centers[b][0]).abs();
                    assert!(
                        d + 1e-3 >= (widths[a] + widths[b]) / 2.0,
                        "boxes {a} and {b} overlap: {d} apart"
                    );
                }
            }
        }
    }

    #[test]
    fn edges_point_down_and_boxes_never_overlap() {
        // A diamond with a long skip edge (a residual), as a ResNet block draws.
        let dag = Dag {
            widths: vec![80.0, 60.0, 60.0, 90.0, 70.0, 50.0],
            edges: vec![(0, 1), (0, 2), (1, 3), (2, 3), (3, 4), (0, 4), (4, 5)],
        };
        let l = layout(&dag, Spacing::default());
        for &(a, b) in &dag.edges {
            assert!(l.layer_of[b] > l.layer_of[a], "edge {a}->{b} points down");
        }
        assert_eq!(l.layer_of, vec![0, 1, 1, 2, 3, 4]);
        // The skip edge 0 -> 4 bends through dummies on layers 1 and 2.
        assert_eq!(l.edge_paths[5].len(), 4);
        no_overlaps(&l, &dag.widths);
        assert!(l.width > 0.0 && l.height > 0.0);
    }

    #[test]
    fn barycenter_ordering_removes_crossings_a_naive_order_has() {
        // Two columns listed crossed: a0 -> b1, a1 -> b0.
        let dag = Dag {
            widths: vec![40.0; 4],
            edges: vec![(0, 3), (1, 2)],
        };
        let l = layout(&dag, Spacing::default());
        assert_eq!(l.crossings, 0);
        // Each target sits under its source.
        assert!(
            (l.centers[3][0] - l.centers[0][0]).abs() < (l.centers[2][0] - l.centers[0][0]).abs()
        );
    }

    #[test]
    fn a_cycle_or_bad_edge_does_not_hang_or_panic() {
        let dag = Dag {
            widths: vec![10.0; 3],
            edges: vec![(0, 1), (1, 2), (2, 0), (1, 1), (0, 99)],
        };
        let l = layout(&dag, Spacing::default());
        assert_eq!(l.centers.len(), 3);
        assert!(layout(&Dag::default(), Spacing::default())
            .centers
            .is_empty());
    }

    #[test]
    fn a_long_chain_with_skips_lays_out_fast_and_flat() {
        // 3,000 boxes: a transformer's worth of nodes, each with a skip two ahead.
        let n = 3000;
        let mut edges: Vec<(usize, usize)> = (1..n).map(|i| (i - 1, i)).collect();
        edges.extend((2..n).step_by(3).map(|i| (i - 2, i)));
        let dag = Dag {
            widths: vec![60.0; n],
            edges,
        };
        let l = layout(&dag, Spacing::default());
        assert_eq!(*l.layer_of.iter().max().unwrap(), n - 1);
        assert_eq!(l.crossings, 0);
    }
}
