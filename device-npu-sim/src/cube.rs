//! Functional simulation of the cube: a schedule executed tile by tile. Operands are rounded to
//! fp16 (round to nearest even) on their way into L1; each MMAD multiplies a `base_m x base_k`
//! slice in L0A by a `base_k x base_n` slice in L0B fractal by fractal (16 products summed in
//! fp32, the sum added to the fp32 accumulator in L0C), in the schedule's k order, from the
//! ping-pong buffer the schedule names. So an answer comes from the tiles scheduled: a block
//! left out, a k-step added twice or a buffer overwritten before the cube read it changes it
//! ([`Fault`] breaks a schedule on purpose, for the tests that show the validation catches it).

use crate::tiling::{Problem, Tiling};

/// A schedule broken on purpose.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    #[default]
    None,
    /// The output block with this index (over batch, m blocks, n blocks) is never computed.
    SkipBlock(u64),
    /// Every block's first k-step is accumulated twice.
    KStepTwice,
    /// The next k-step's slices are loaded into the buffer the cube is about to read (one
    /// buffer where the pipeline needs two).
    EarlyReuse,
}

/// Round to fp16 and back (round to nearest even), as MTE2 converts operands for the cube.
pub fn to_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// Operands of one cube op, already in fp16 values: `a` is `[batch, m, k]` and `b` `[batch,
/// k, n]` (or `[k, n]` for every batch where `b_shared`), row-major.
pub struct Operands<'a> {
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub b_shared: bool,
}

/// Run `p` with tiling `t`: `[batch, m, n]` in fp32.
pub fn run(p: &Problem, t: &Tiling, ops: &Operands<'_>, fault: Fault) -> Vec<f32> {
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (bm, bn, bk) = (t.base_m as usize, t.base_n as usize, t.base_k as usize);
    let mut out = vec![0f32; p.batch as usize * m * n];
    let k_steps = k.div_ceil(bk).max(1);
    let (mb, nb) = (m.div_ceil(bm), n.div_ceil(bn));
    let slots = if t.double_buffer { 2 } else { 1 };
    let mut l0a = vec![vec![0f32; bm * bk]; slots];
    let mut l0b = vec![vec![0f32; bk * bn]; slots];
    let mut l0c = vec![0f32; bm * bn];
    let mut partial = vec![0f32; bn];
    let mut block = 0u64;
    for bi in 0..p.batch as usize {
        let a = &ops.a[bi * m * k..(bi + 1) * m * k];
        let b = if ops.b_shared {
            ops.b
        } else {
            &ops.b[bi * k * n..(bi + 1) * k * n]
        };
        for i0 in (0..mb).map(|i| i * bm) {
            for j0 in (0..nb).map(|j| j * bn) {
                let this = block;
                block += 1;
                if fault == Fault::SkipBlock(this) {
                    continue;
                }
                let (rows, cols) = ((m - i0).min(bm), (n - j0).min(bn));
                l0c.fill(0.0);
                let slot = |s: usize| match fault {
                    Fault::EarlyReuse => 0,
                    _ => s % slots,
                };
                // MTE2 + MTE1: the k-step's slices into its L0A/L0B buffer (zero-padded).
                let load = |s: usize, l0a: &mut [Vec<f32>], l0b: &mut [Vec<f32>]| {
                    let (ka, kb) = (s * bk, (s * bk + bk).min(k));
                    let la = &mut l0a[slot(s)];
                    la.fill(0.0);
                    for r in 0..rows {
                        let src = &a[(i0 + r) * k + ka..(i0 + r) * k + kb];
                        la[r * bk..r * bk + src.len()].copy_from_slice(src);
                    }
                    let lb = &mut l0b[slot(s)];
                    lb.fill(0.0);
                    for (q, kk) in (ka..kb).enumerate() {
                        lb[q * bn..q * bn + cols]
                            .copy_from_slice(&b[kk * n + j0..kk * n + j0 + cols]);
                    }
                };
                // The cube: one MMAD over the k-step's buffer, fractal by fractal.
                let mut mmad = |s: usize, l0a: &[Vec<f32>], l0b: &[Vec<f32>]| {
                    let (la, lb) = (&l0a[slot(s)], &l0b[slot(s)]);
                    let depth = ((s * bk + bk).min(k) - s * bk).div_ceil(16) * 16;
                    for r in 0..rows {
                        let arow = &la[r * bk..r * bk + bk];
                        let crow = &mut l0c[r * bn..r * bn + bn];
                        for f in (0..depth).step_by(16) {
                            let part = &mut partial[..cols];
                            part.fill(0.0);
                            for q in f..f + 16 {
                                let av = arow[q];
                                let brow = &lb[q * bn..q * bn + cols];
                                for (p, &bv) in part.iter_mut().zip(brow) {
                                    *p += av * bv;
                                }
                            }
                            for (c, &p) in crow.iter_mut().zip(part.iter()) {
                                *c += p;
                            }
                        }
                    }
                };
                load(0, &mut l0a, &mut l0b);
                for s in 0..k_steps {
                    if t.double_buffer && s + 1 < k_steps {
                        load(s + 1, &mut l0a, &mut l0b);
                    }
                    mmad(s, &l0a, &l0b);
                    if s == 0 && fault == Fault::KStepTwice {
                        mmad(s, &l0a, &l0b);
                    }
                    if !t.double_buffer && s + 1 < k_steps {
                        load(s + 1, &mut l0a, &mut l0b);
                    }
                }
                // FixPipe / UB: the block out of L0C.
                let o = &mut out[bi * m * n..];
                for r in 0..rows {
                    o[(i0 + r) * n + j0..(i0 + r) * n + j0 + cols]
                        .copy_from_slice(&l0c[r * bn..r * bn + cols]);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(p: &Problem, a: &[f32], b: &[f32]) -> Vec<f64> {
        let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k)
                    .map(|q| a[i * k + q] as f64 * b[q * n + j] as f64)
                    .sum();
            }
        }
        c
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        to_f16(
            &(0..len)
                .map(|i| {
                    ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32
                        / 500.0
                        - 1.0
                })
                .collect::<Vec<_>>(),
        )
    }

    /// Ragged sizes, every buffering: the tiles add up to the product; each fault changes it.
    #[test]
    fn tiles_add_up_and_faults_show() {
        let p = Problem::matmul(1, 37, 45, 70);
        let (a, b) = (data(37 * 70, 1), data(70 * 45, 2));
        let want = reference(&p, &a, &b);
        let ops = Operands {
            a: &a,
            b: &b,
            b_shared: true,
        };
        for db in [false, true] {
            let t = Tiling {
                base_m: 16,
                base_n: 32,
                base_k: 16,
                step_k: 1,
                double_buffer: db,
                cores: 1,
            };
            let got = run(&p, &t, &ops, Fault::None);
            let worst = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (*g as f64 - w).abs())
                .fold(0.0, f64::max);
            assert!(worst < 1e-4, "{worst}");
            for fault in [Fault::SkipBlock(3), Fault::KStepTwice, Fault::EarlyReuse] {
                if fault == Fault::EarlyReuse && !db {
                    continue;
                }
                let bad = run(&p, &t, &ops, fault);
                let worst = bad
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (*g as f64 - w).abs())
                    .fold(0.0, f64::max);
                assert!(worst > 0.1, "{fault:?} went unnoticed: {worst}");
            }
        }
    }
}
