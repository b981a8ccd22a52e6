//! Chips as data: one [`Chip`] per Ascend part, read from TOML (the built-in ones are
//! `device-npu-sim/chips/*.toml`) and checked before use, so no figure of the hardware is a
//! constant in the code. The crate's documentation gives each figure's source.

use crate::error::{Result, SimError};
use serde::{Deserialize, Serialize};

/// One Ascend part as the simulator models it: its AI cores (all alike), their buffers and
/// engines, and the chip's memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chip {
    /// The name `--chip` takes (`ascend910`).
    pub name: String,
    /// What it is, for tables (`Ascend 910 (Da Vinci Max)`).
    pub description: String,
    /// AI cores (cube units) on the chip.
    pub cores: u32,
    /// Core clock, MHz.
    pub clock_mhz: f64,
    /// The cube's fractal per dtype: `[m, n, k]` multiply-accumulates per cycle.
    pub cube_f16: [u32; 3],
    pub cube_i8: [u32; 3],
    /// Per-core buffers, bytes.
    pub l1_bytes: u64,
    pub l0a_bytes: u64,
    pub l0b_bytes: u64,
    pub l0c_bytes: u64,
    pub ub_bytes: u64,
    /// The chip's L2 cache, bytes (shared by the cores).
    pub l2_bytes: u64,
    /// Off-chip memory (HBM or DDR), GB/s.
    pub memory_gbps: f64,
    /// L2 to the cores, all cores together, bytes per cycle (on chip: it scales with the clock).
    pub l2_bytes_per_cycle: f64,
    /// Engines, bytes per cycle of one core.
    pub mte2_bytes_per_cycle: f64,
    /// MTE1's ports: L1 to L0A, L1 to L0B.
    pub mte1_l0a_bytes_per_cycle: f64,
    pub mte1_l0b_bytes_per_cycle: f64,
    /// L0C out (FixPipe where the chip has one, else through the UB and MTE3), bytes per cycle.
    pub fixpipe_bytes_per_cycle: f64,
    /// UB to global memory.
    pub mte3_bytes_per_cycle: f64,
    /// The vector unit: bytes it processes per cycle (256: 128 fp16 or 64 fp32 lanes).
    pub vector_bytes_per_cycle: f64,
    /// Whether L0C drains through a FixPipe (910B) rather than through the UB (910, 310).
    pub fixpipe: bool,
    /// Fixed cost of one MMAD instruction, cycles, before its one cycle per fractal.
    pub mmad_issue_cycles: u32,
    /// Fixed cost of one DMA (MTE2/MTE3) transfer, cycles: its latency from global memory.
    pub dma_latency_cycles: u32,
}

impl Chip {
    /// Parse and check a chip file.
    pub fn from_toml(text: &str) -> Result<Chip> {
        let chip: Chip = toml::from_str(text).map_err(|e| SimError::Chip {
            chip: "(file)".into(),
            msg: e.to_string(),
        })?;
        chip.validate()?;
        Ok(chip)
    }

    /// Read a chip file from disk.
    pub fn from_file(path: &std::path::Path) -> Result<Chip> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::Chip {
            chip: path.display().to_string(),
            msg: format!("could not read it: {e}"),
        })?;
        Chip::from_toml(&text).map_err(|e| match e {
            SimError::Chip { chip, msg } if chip == "(file)" => SimError::Chip {
                chip: path.display().to_string(),
                msg,
            },
            e => e,
        })
    }

    /// A built-in chip by name (see [`BUILTIN`]), or a path to a chip file.
    pub fn by_name(name: &str) -> Result<Chip> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) {
            return Chip::from_toml(text);
        }
        if name.ends_with(".toml") {
            return Chip::from_file(std::path::Path::new(name));
        }
        Err(SimError::Chip {
            chip: name.into(),
            msg: format!(
                "no such chip; built in: {} (or a path to a chip .toml)",
                BUILTIN
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// Cube multiply-accumulates per cycle of one core in fp16.
    pub fn macs_per_cycle(&self) -> u64 {
        self.cube_f16.iter().map(|&d| d as u64).product()
    }

    /// Peak fp16 FLOP/s of the whole chip (2 per multiply-accumulate).
    pub fn peak_flops(&self) -> f64 {
        2.0 * self.macs_per_cycle() as f64 * self.cores as f64 * self.clock_mhz * 1e6
    }

    /// Bytes of one fp16 fractal of the A operand (m x k), of B (k x n), of C in fp32 (m x n).
    pub fn fractal_bytes(&self) -> (u64, u64, u64) {
        let [m, n, k] = self.cube_f16.map(|d| d as u64);
        (m * k * 2, k * n * 2, m * n * 4)
    }

    /// Off-chip memory bytes per core cycle, all cores together.
    pub fn memory_bytes_per_cycle(&self) -> f64 {
        self.memory_gbps * 1e3 / self.clock_mhz
    }

    /// Check that the chip could exist: every size positive, every buffer holding at least one
    /// fractal (two for the ping-pong buffers), the clock and bandwidths finite and positive.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| {
            Err(SimError::Chip {
                chip: self.name.clone(),
                msg,
            })
        };
        if self.name.trim().is_empty() {
            return bad("the name is empty".into());
        }
        if self.cores == 0 {
            return bad("cores is 0".into());
        }
        for (what, dims) in [("cube_f16", self.cube_f16), ("cube_i8", self.cube_i8)] {
            if dims.iter().any(|&d| d == 0 || d % 16 != 0 || d > 1024) {
                return bad(format!(
                    "{what} {dims:?}: each side must be a multiple of 16 from 16 to 1,024 (a \
                     fractal row is 16 elements)"
                ));
            }
        }
        for (what, v) in [
            ("clock_mhz", self.clock_mhz),
            ("memory_gbps", self.memory_gbps),
            ("l2_bytes_per_cycle", self.l2_bytes_per_cycle),
            ("mte2_bytes_per_cycle", self.mte2_bytes_per_cycle),
            ("mte1_l0a_bytes_per_cycle", self.mte1_l0a_bytes_per_cycle),
            ("mte1_l0b_bytes_per_cycle", self.mte1_l0b_bytes_per_cycle),
            ("fixpipe_bytes_per_cycle", self.fixpipe_bytes_per_cycle),
            ("mte3_bytes_per_cycle", self.mte3_bytes_per_cycle),
            ("vector_bytes_per_cycle", self.vector_bytes_per_cycle),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{what} is {v}: it must be a positive number"));
            }
        }
        let (a, b, c) = self.fractal_bytes();
        for (what, have, need) in [
            ("l0a_bytes", self.l0a_bytes, 2 * a),
            ("l0b_bytes", self.l0b_bytes, 2 * b),
            ("l0c_bytes", self.l0c_bytes, 2 * c),
            ("l1_bytes", self.l1_bytes, 2 * (a + b)),
            ("ub_bytes", self.ub_bytes, 2 * c),
        ] {
            if have < need {
                return bad(format!(
                    "{what} = {have} is too small: one {:?} fp16 fractal needs {} bytes, and \
                     ping-pong buffering two of them ({need} bytes)",
                    self.cube_f16,
                    need / 2
                ));
            }
        }
        if self.l0a_bytes > self.l1_bytes || self.l0b_bytes > self.l1_bytes {
            return bad(format!(
                "L0A ({}) or L0B ({}) is larger than L1 ({}), which feeds them",
                self.l0a_bytes, self.l0b_bytes, self.l1_bytes
            ));
        }
        Ok(())
    }
}

/// The built-in chips: name and TOML.
pub const BUILTIN: &[(&str, &str)] = &[
    ("ascend910", include_str!("../chips/ascend910.toml")),
    ("ascend910b2", include_str!("../chips/ascend910b2.toml")),
    ("ascend910b4", include_str!("../chips/ascend910b4.toml")),
    ("ascend310", include_str!("../chips/ascend310.toml")),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_chips_load_and_check() {
        for (name, _) in BUILTIN {
            let c = Chip::by_name(name).unwrap();
            assert_eq!(&c.name, name);
        }
    }

    /// A buffer too small for one fractal, an unknown key, a zero clock: each an error that
    /// names the chip and the field.
    #[test]
    fn a_bad_chip_file_is_a_clear_error() {
        let good = BUILTIN[0].1;
        let small = good.replace("l0a_bytes = 65536", "l0a_bytes = 256");
        assert_ne!(small, good);
        let e = Chip::from_toml(&small).unwrap_err().to_string();
        assert!(
            e.contains("ascend910") && e.contains("l0a_bytes = 256") && e.contains("fractal"),
            "{e}"
        );
        let typo = good.replace("cores =", "coers =");
        let e = Chip::from_toml(&typo).unwrap_err().to_string();
        assert!(e.contains("coers"), "{e}");
        let zero = good.replace("clock_mhz = ", "clock_mhz = 0.0 #");
        let e = Chip::from_toml(&zero).unwrap_err().to_string();
        assert!(e.contains("clock_mhz"), "{e}");
        let e = Chip::by_name("ascend999").unwrap_err().to_string();
        assert!(e.contains("ascend999") && e.contains("ascend910b2"), "{e}");
    }
}
