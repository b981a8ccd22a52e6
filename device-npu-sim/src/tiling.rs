//! The tiling scheduler for the cube: a matmul (or a conv through img2col) cut into base
//! blocks that fit L0A/L0B/L0C, fed from L1 in steps, split over the cores, double-buffered;
//! and the cycle model of one such schedule, engine by engine.
//!
//! One output block of `base_m x base_n` accumulates in L0C over `ceil(K / base_k)` k-steps.
//! A k-step is three stages on three engines: MTE2 brings the A and B slices from global memory
//! (L2, then HBM or DDR) into L1, `step_k` k-steps per transfer; MTE1 moves a `base_m x base_k`
//! slice into L0A and a `base_k x base_n` one into L0B (img2col happens here for a conv); the
//! cube runs one MMAD over them: [`Chip::mmad_issue_cycles`] plus one cycle per 16x16x16
//! fractal. With ping-pong buffers the stages of consecutive k-steps overlap and a k-step costs
//! its slowest stage; without, their sum. When the block is done, L0C drains to global memory
//! (FixPipe, or through the UB and MTE3), overlapping the next block's k-steps where L0C holds
//! two blocks. The blocks are dealt over the cores; the op takes as long as the busiest core,
//! and never less than its unique bytes over the memory's bandwidth (the roofline).

use crate::chip::Chip;
use crate::error::{Result, SimError};
use serde::Serialize;
use std::fmt;

/// One cube problem: `batch` independent `[m, k] x [k, n]` products in fp16, fp32 out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub batch: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    /// How many times img2col repeats each input element in A (a 3x3 stride-1 conv: 9); 1 for
    /// a matmul. MTE2 reads A's bytes over this from global memory, MTE1 expands them.
    pub a_expand: u64,
}

impl Problem {
    pub fn matmul(batch: u64, m: u64, n: u64, k: u64) -> Problem {
        Problem {
            batch,
            m,
            n,
            k,
            a_expand: 1,
        }
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// Whether the product is empty (a zero dimension): nothing to schedule.
    pub fn is_empty(&self) -> bool {
        self.batch == 0 || self.m == 0 || self.n == 0 || self.k == 0
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.batch > 1 {
            write!(f, "{} x ", self.batch)?;
        }
        write!(f, "M {} N {} K {}", self.m, self.n, self.k)
    }
}

/// How one cube op is cut: the base block in L0, the L1 step, the buffering and the cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Tiling {
    pub base_m: u32,
    pub base_n: u32,
    pub base_k: u32,
    /// k-steps one MTE2 transfer brings into L1 (L1's depth).
    pub step_k: u32,
    /// Ping-pong buffers in L1, L0A/L0B and L0C: each engine works on one while the next
    /// engine works on the other.
    pub double_buffer: bool,
    /// Cores the blocks are dealt over.
    pub cores: u32,
}

/// Cores a product's blocks can use: one block a core at most.
fn cores_for(chip: &Chip, p: &Problem, base_m: u32, base_n: u32) -> u32 {
    let blocks =
        p.m.div_ceil(base_m.max(1) as u64)
            .saturating_mul(p.n.div_ceil(base_n.max(1) as u64))
            .saturating_mul(p.batch);
    (chip.cores as u64).min(blocks).max(1) as u32
}

impl Tiling {
    /// The tiling with `cores` 0 ("as many as there are blocks", as `--tiling` gives it)
    /// resolved for `p` on `chip`.
    pub fn resolved(mut self, chip: &Chip, p: &Problem) -> Tiling {
        if self.cores == 0 {
            self.cores = cores_for(chip, p, self.base_m, self.base_n);
        }
        self
    }
}

impl fmt::Display for Tiling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "base {}x{}x{} step_k {} {} on {} core{}",
            self.base_m,
            self.base_n,
            self.base_k,
            self.step_k,
            if self.double_buffer {
                "ping-pong"
            } else {
                "single-buffered"
            },
            self.cores,
            if self.cores == 1 { "" } else { "s" }
        )
    }
}

impl std::str::FromStr for Tiling {
    type Err = String;
    /// `MxNxK[,step_k=S][,single][,cores=C]`, e.g. `128x256x64,step_k=4`.
    fn from_str(s: &str) -> Result<Tiling, String> {
        let mut parts = s.split(',');
        let base: Vec<u32> = parts
            .next()
            .unwrap_or("")
            .split('x')
            .map(|d| d.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("tiling '{s}': expected MxNxK[,step_k=S][,single][,cores=C]"))?;
        let [m, n, k] = base[..] else {
            return Err(format!("tiling '{s}': the base block is MxNxK"));
        };
        let mut t = Tiling {
            base_m: m,
            base_n: n,
            base_k: k,
            step_k: 1,
            double_buffer: true,
            cores: 0,
        };
        for p in parts {
            match p.trim().split_once('=') {
                Some(("step_k", v)) => t.step_k = v.parse().map_err(|_| format!("step_k '{v}'"))?,
                Some(("cores", v)) => t.cores = v.parse().map_err(|_| format!("cores '{v}'"))?,
                None if p.trim() == "single" => t.double_buffer = false,
                _ => return Err(format!("tiling '{s}': unknown part '{p}'")),
            }
        }
        Ok(t)
    }
}

/// Busy cycles of each engine on the busiest core (engines overlap, so they do not add up to
/// [`Cost::cycles`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Engines {
    pub mte2: f64,
    pub mte1: f64,
    pub cube: f64,
    /// L0C out: FixPipe, or the UB and MTE3.
    pub fixpipe: f64,
    pub vector: f64,
    pub mte3: f64,
}

impl Engines {
    pub fn add(&mut self, o: &Engines) {
        self.mte2 += o.mte2;
        self.mte1 += o.mte1;
        self.cube += o.cube;
        self.fixpipe += o.fixpipe;
        self.vector += o.vector;
        self.mte3 += o.mte3;
    }

    /// Name and busy cycles, in pipeline order.
    pub fn named(&self) -> [(&'static str, f64); 6] {
        [
            ("MTE2", self.mte2),
            ("MTE1", self.mte1),
            ("Cube", self.cube),
            ("FixPipe", self.fixpipe),
            ("Vector", self.vector),
            ("MTE3", self.mte3),
        ]
    }
}

/// What a schedule costs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Cycles of the chip's clock from the op's start to its end.
    pub cycles: f64,
    pub engines: Engines,
    /// Cube cycles the op's multiply-accumulates need on all the chip's cores at one fractal a
    /// cycle, over [`Self::cycles`].
    pub utilization: f64,
    /// Bytes the op moves to and from global memory (L2 and beyond).
    pub global_bytes: f64,
    /// What bounds it: "cube", "MTE2", "MTE1", "FixPipe", "MTE3", "memory", "vector" ("nothing"
    /// for an empty op).
    pub bound: &'static str,
}

/// A cube op's schedule: the tiling, the block grid it makes and what it costs.
#[derive(Clone, Debug, Serialize)]
pub struct Schedule {
    pub chip: String,
    pub problem: Problem,
    pub tiling: Tiling,
    pub m_blocks: u64,
    pub n_blocks: u64,
    pub k_steps: u64,
    pub cost: Cost,
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {} x {} blocks x {} k-steps, {:.0} cycles, cube {:.1}% ({}-bound)",
            self.problem,
            self.tiling,
            self.m_blocks,
            self.n_blocks,
            self.k_steps,
            self.cost.cycles,
            100.0 * self.cost.utilization,
            self.cost.bound
        )
    }
}

fn up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

/// Check that `t` fits `chip`'s buffers: an error names the chip, the op, the tiling and the
/// buffer that overflows with its sizes.
pub fn check_fits(chip: &Chip, op: &str, t: &Tiling) -> Result<()> {
    let bad = |msg: String| {
        Err(SimError::Tiling {
            chip: chip.name.clone(),
            op: op.into(),
            tiling: t.to_string(),
            msg,
        })
    };
    let [fm, fn_, fk] = chip.cube_f16;
    for (what, v, f) in [
        ("base_m", t.base_m, fm),
        ("base_n", t.base_n, fn_),
        ("base_k", t.base_k, fk),
    ] {
        if v == 0 || v % f != 0 {
            return bad(format!("{what} = {v} is not a positive multiple of {f}"));
        }
    }
    if t.step_k == 0 {
        return bad("step_k is 0".into());
    }
    if t.cores == 0 || t.cores > chip.cores {
        return bad(format!("cores = {} (the chip has {})", t.cores, chip.cores));
    }
    let bufs: u64 = if t.double_buffer { 2 } else { 1 };
    let (m, n, k) = (t.base_m as u64, t.base_n as u64, t.base_k as u64);
    for (what, need, have) in [
        ("L0A", m * k * 2 * bufs, chip.l0a_bytes),
        ("L0B", k * n * 2 * bufs, chip.l0b_bytes),
        // L0C and the UB hold one block; L0C a second (to drain one while the next
        // accumulates) where it fits.
        ("L0C", m * n * 4, chip.l0c_bytes),
        (
            "L1",
            (m * k + k * n)
                .saturating_mul(2 * t.step_k as u64)
                .saturating_mul(bufs),
            chip.l1_bytes,
        ),
        ("UB", m * n * 4, chip.ub_bytes),
    ] {
        if need > have {
            return bad(format!(
                "{what} needs {need} bytes, the chip has {have} ({bufs} buffer{})",
                if bufs == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(())
}

/// A fused epilogue's work per output element: vector-unit bytes (its passes over the block in
/// the UB) and bytes read from global memory (a residual, a bias row), both while the block
/// drains, overlapping the next block's k-steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Epilogue {
    pub vector_bytes_per_elem: f64,
    pub read_bytes_per_elem: f64,
}

impl Epilogue {
    /// No epilogue: the product alone.
    pub const NONE: Epilogue = Epilogue {
        vector_bytes_per_elem: 0.0,
        read_bytes_per_elem: 0.0,
    };
}

/// The cost of running `p` with tiling `t` on `chip` (the tiling is assumed to fit: see
/// [`check_fits`]), with a fused epilogue `epi` on each block.
pub fn cost(chip: &Chip, p: &Problem, t: &Tiling, epi: &Epilogue) -> Schedule {
    let [fm, fn_, fk] = chip.cube_f16.map(|d| d as u64);
    if p.is_empty() {
        return Schedule {
            chip: chip.name.clone(),
            problem: *p,
            tiling: *t,
            m_blocks: 0,
            n_blocks: 0,
            k_steps: 0,
            cost: Cost {
                bound: "nothing",
                ..Cost::default()
            },
        };
    }
    let (bm, bn, bk) = (t.base_m as u64, t.base_n as u64, t.base_k as u64);
    let m_blocks = p.m.div_ceil(bm).max(1);
    let n_blocks = p.n.div_ceil(bn).max(1);
    let k_steps = p.k.div_ceil(bk).max(1);
    let cores = t.cores.max(1) as f64;
    // Global-memory bandwidth one core gets: its MTE2 port, or its share of L2's.
    let blocks = (m_blocks * n_blocks * p.batch) as f64;
    let used = cores.min(blocks);
    let mte2_rate = chip
        .mte2_bytes_per_cycle
        .min(chip.l2_bytes_per_cycle / used);
    let lat = chip.dma_latency_cycles as f64;
    // The blocks' sizes: full ones and the ragged last row and column of blocks (padded to
    // whole fractals, as the cube computes them).
    let sizes = |total: u64, base: u64, frac: u64| -> Vec<(u64, u64)> {
        let full = total / base;
        let tail = total % base;
        let mut v = vec![];
        if full > 0 {
            v.push((base, full));
        }
        if tail > 0 {
            v.push((up(tail, frac), 1));
        }
        if v.is_empty() {
            v.push((frac, 1));
        }
        v
    };
    let ks = {
        let tail = p.k % bk;
        let full = p.k / bk;
        (full, if tail > 0 { up(tail, fk) } else { 0 })
    };
    let mut total = Engines::default();
    let mut busy = 0.0; // summed over all blocks
    let mut last_out = 0.0;
    for &(m, mc) in &sizes(p.m, bm, fm) {
        for &(n, nc) in &sizes(p.n, bn, fn_) {
            let count = (mc * nc) as f64;
            let mut e = Engines::default();
            let mut block = 0.0;
            let mut first = true;
            for (k, kc) in [(bk, ks.0), (ks.1, 1)] {
                if kc == 0 || k == 0 {
                    continue;
                }
                let a_bytes = (m * k * 2) as f64 / p.a_expand as f64;
                let b_bytes = (k * n * 2) as f64;
                let mte2 = (a_bytes + b_bytes) / mte2_rate + 2.0 * lat / t.step_k as f64;
                let mte1 = (m * k * 2) as f64 / chip.mte1_l0a_bytes_per_cycle
                    + (k * n * 2) as f64 / chip.mte1_l0b_bytes_per_cycle;
                let cube = chip.mmad_issue_cycles as f64 + ((m / fm) * (n / fn_) * (k / fk)) as f64;
                let steps = kc as f64;
                e.mte2 += mte2 * steps;
                e.mte1 += mte1 * steps;
                e.cube += cube * steps;
                if t.double_buffer {
                    let slowest = mte2.max(mte1).max(cube);
                    // The first k-step fills the pipeline; later ones cost the slowest stage.
                    if first {
                        block += mte2 + mte1 + cube + slowest * (steps - 1.0);
                    } else {
                        block += slowest * steps;
                    }
                } else {
                    block += (mte2 + mte1 + cube) * steps;
                }
                first = false;
            }
            // L0C out: FixPipe straight to global memory, or through the UB and MTE3.
            let c_elems = (m * n) as f64;
            let (fix, mte3) = if chip.fixpipe {
                (c_elems * 2.0 / chip.fixpipe_bytes_per_cycle + lat, 0.0)
            } else {
                (
                    c_elems * 4.0 / chip.fixpipe_bytes_per_cycle,
                    c_elems * 2.0 / chip.mte3_bytes_per_cycle + lat,
                )
            };
            let vector = c_elems * epi.vector_bytes_per_elem / chip.vector_bytes_per_cycle;
            let read = c_elems * epi.read_bytes_per_elem / mte2_rate;
            let out = fix + mte3 + vector + read;
            e.fixpipe += fix;
            e.mte3 += mte3;
            e.vector += vector;
            e.mte2 += read;
            last_out = out;
            // The drain overlaps the next block's k-steps where L0C holds two blocks.
            let per_block = if t.double_buffer && 2 * m * n * 4 <= chip.l0c_bytes {
                block.max(out)
            } else {
                block + out
            };
            busy += per_block * count;
            for x in [
                &mut e.mte2,
                &mut e.mte1,
                &mut e.cube,
                &mut e.fixpipe,
                &mut e.vector,
                &mut e.mte3,
            ] {
                *x *= count;
            }
            total.add(&e);
        }
    }
    busy *= p.batch as f64;
    // The busiest core: blocks dealt round-robin, so ceil(blocks / cores) of the average.
    let share = (blocks / used).ceil() / blocks;
    let mut core_cycles = busy * share;
    // The last block's drain overlaps nothing (where drains overlap the next block at all).
    if t.double_buffer {
        core_cycles += last_out;
    }
    let per_core = |x: f64| x * p.batch as f64 * share;
    let engines = Engines {
        mte2: per_core(total.mte2),
        mte1: per_core(total.mte1),
        cube: per_core(total.cube),
        fixpipe: per_core(total.fixpipe),
        vector: per_core(total.vector),
        mte3: per_core(total.mte3),
    };
    // Roofline: the unique bytes (A, B, C once each) from and to off-chip memory, plus the
    // re-reads L2 cannot hold.
    let (batch, m, n, k) = (p.batch as f64, p.m as f64, p.n as f64, p.k as f64);
    let a = batch * m * k * 2.0 / p.a_expand.max(1) as f64;
    let b = batch * k * n * 2.0;
    let c = batch * m * n * (2.0 + epi.read_bytes_per_elem);
    // Where A and B do not both fit L2, each wave of blocks (one per core, dealt row by row)
    // reads its rows of A and columns of B from memory again.
    // (Batched products have a B of their own per batch, read by that batch's blocks alone.)
    let rereads = if a + b > chip.l2_bytes as f64 && p.batch == 1 {
        let (rows, cols) = (m_blocks as f64, n_blocks as f64);
        let per_wave = used.min(rows * cols);
        let waves = (rows * cols / per_wave).ceil();
        let wave_rows = (per_wave / cols).ceil().min(rows);
        let wave_cols = per_wave.min(cols);
        waves * (a * wave_rows / rows + b * wave_cols / cols) - (a + b)
    } else {
        0.0
    };
    let global_bytes = a * n_blocks as f64 + b * m_blocks as f64 + c;
    let memory = (a + b + c + rereads) / chip.memory_bytes_per_cycle();
    let cycles = core_cycles.max(memory);
    let bound = if memory >= core_cycles {
        "memory"
    } else {
        let mut best = ("cube", engines.cube);
        for (name, v) in [
            ("MTE2", engines.mte2),
            ("MTE1", engines.mte1),
            ("FixPipe", engines.fixpipe + engines.mte3),
            ("vector", engines.vector),
        ] {
            if v > best.1 {
                best = (name, v);
            }
        }
        best.0
    };
    let ideal = p.flops() / 2.0 / chip.macs_per_cycle() as f64 / chip.cores as f64;
    Schedule {
        chip: chip.name.clone(),
        problem: *p,
        tiling: *t,
        m_blocks,
        n_blocks,
        k_steps,
        cost: Cost {
            cycles,
            engines,
            utilization: ideal / cycles.max(1.0),
            global_bytes,
            bound,
        },
    }
}

/// The candidate base sizes of one dimension: multiples of the fractal up to `max`, no larger
/// than the dimension padded to a fractal.
fn bases(dim: u64, frac: u64, max: u64) -> Vec<u32> {
    let cap = up(dim.max(1), frac).min(max);
    let mut v: Vec<u32> = (1..)
        .map(|i| i * frac)
        .take_while(|&b| b <= cap)
        .filter(|&b| b.is_power_of_two() || b % 64 == 0 || b == cap)
        .map(|b| b as u32)
        .collect();
    if v.is_empty() {
        v.push(frac as u32);
    }
    v
}

/// Choose the tiling of `p` on `chip` that the cycle model says is fastest: every base block
/// that fits L0A/L0B/L0C and the UB with ping-pong buffers, every L1 depth that fits L1, the
/// blocks over as many cores as there are blocks.
pub fn choose(chip: &Chip, p: &Problem, epi: &Epilogue) -> Schedule {
    let [fm, fn_, fk] = chip.cube_f16.map(|d| d as u64);
    let mut best: Option<Schedule> = None;
    for &bm in &bases(p.m, fm, 512) {
        for &bn in &bases(p.n, fn_, 512) {
            let cores = cores_for(chip, p, bm, bn);
            for &bk in &bases(p.k, fk, 512) {
                for step_k in [1u32, 2, 4, 8] {
                    if step_k > 1 && (step_k as u64 / 2) * bk as u64 >= p.k {
                        continue;
                    }
                    let t = Tiling {
                        base_m: bm,
                        base_n: bn,
                        base_k: bk,
                        step_k,
                        double_buffer: true,
                        cores,
                    };
                    if check_fits(chip, "", &t).is_err() {
                        continue;
                    }
                    let s = cost(chip, p, &t, epi);
                    if best.as_ref().is_none_or(|b| s.cost.cycles < b.cost.cycles) {
                        best = Some(s);
                    }
                }
            }
        }
    }
    best.unwrap_or_else(|| cost(chip, p, &naive(chip, p), epi))
}

/// The naive tiling: one fractal at a time, no double buffering, the blocks over every core
/// they can use. What the scheduler is measured against.
pub fn naive(chip: &Chip, p: &Problem) -> Tiling {
    let [fm, fn_, fk] = chip.cube_f16;
    Tiling {
        base_m: fm,
        base_n: fn_,
        base_k: fk,
        step_k: 1,
        double_buffer: false,
        cores: cores_for(chip, p, fm, fn_),
    }
}

/// A basic tiling, as Huawei's catlass matmul example starts: 128x256 blocks with 64-deep
/// k-steps, four k-steps per L1 transfer (an L1 tile of 128x256x256), ping-pong buffers, every
/// core (64x64x64 where that does not fit the chip).
pub fn basic(chip: &Chip, p: &Problem) -> Tiling {
    let t = |m: u32, n: u32, k: u32, step_k: u32| Tiling {
        base_m: m,
        base_n: n,
        base_k: k,
        step_k,
        double_buffer: true,
        cores: cores_for(chip, p, m, n),
    };
    let first = t(128, 256, 64, 4);
    if check_fits(chip, "", &first).is_ok() {
        first
    } else {
        t(64, 64, 64, 1)
    }
}
