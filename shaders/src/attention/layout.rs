//! The attention params, shared by `attention.wgsl` and the uniform-block kernel.

use crate::params::{one, Fill, Layout};
use crate::Error;

/// The attention params: batch, heads, query and key rows, the head dims of Q/K and V, the
/// scale's f32 bits, whether there is a mask, `rows` = B * H * Sq, then per operand its strides
/// and offset (elements).
pub const ATTENTION_PARAMS: Layout = Layout::new(
    "attention",
    "AT",
    &[
        one("b"),
        one("h"),
        one("sq"),
        one("sk"),
        one("d"),
        one("dv"),
        one("scale"),
        one("has_mask"),
        one("rows"),
        // Q's strides: batch, head, query row, dim; its offset.
        one("q_sb"),
        one("q_sh"),
        one("q_si"),
        one("q_sd"),
        one("q_off"),
        // K's: batch, head, key, dim; offset.
        one("k_sb"),
        one("k_sh"),
        one("k_sj"),
        one("k_sd"),
        one("k_off"),
        // V's: batch, head, key, dim; offset.
        one("v_sb"),
        one("v_sh"),
        one("v_sj"),
        one("v_sd"),
        one("v_off"),
        // the mask's (zeros when none): batch, head, query, key; offset.
        one("m_sb"),
        one("m_sh"),
        one("m_si"),
        one("m_sj"),
        one("m_off"),
        // the output's: batch, head, query, dim; offset.
        one("o_sb"),
        one("o_sh"),
        one("o_si"),
        one("o_sd"),
        one("o_off"),
    ],
);

/// One operand's block of [`ATTENTION_PARAMS`]: its strides along batch, head, row (query or
/// key) and column (dim, or key for the mask), and its offset, in elements. Filled into and read
/// back from the params by the field names of the operand (`q`, `k`, `v`, `m`, `o`):
/// `k_sb`, `k_sh`, `k_sj`, `k_sd`, `k_off`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Operand {
    pub sb: u32,
    pub sh: u32,
    pub row: u32,
    pub col: u32,
    pub off: u32,
}

/// A field of [`Operand`].
type OperandField = fn(&mut Operand) -> &mut u32;

impl Operand {
    /// The names of operand `o`'s fields, paired with their values.
    fn fields(o: char) -> [(String, OperandField); 5] {
        let (row, col) = match o {
            'q' | 'o' => ("si", "sd"),
            'm' => ("si", "sj"),
            _ => ("sj", "sd"),
        };
        [
            (format!("{o}_sb"), |x| &mut x.sb),
            (format!("{o}_sh"), |x| &mut x.sh),
            (format!("{o}_{row}"), |x| &mut x.row),
            (format!("{o}_{col}"), |x| &mut x.col),
            (format!("{o}_off"), |x| &mut x.off),
        ]
    }

    /// Set operand `o`'s fields.
    pub fn set<'a>(mut self, mut fill: Fill<'a>, o: char) -> Fill<'a> {
        for (name, field) in Self::fields(o) {
            fill = fill.set(&name, *field(&mut self));
        }
        fill
    }

    /// Operand `o`'s block, read from attention params by name.
    pub fn read(params: &[u32], o: char) -> Result<Operand, Error> {
        let mut x = Operand::default();
        for (name, field) in Self::fields(o) {
            *field(&mut x) = ATTENTION_PARAMS.get(params, &name)?;
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operand_blocks_fill_and_read_back_by_name() {
        let blocks = [('q', 1), ('k', 10), ('v', 20), ('m', 30), ('o', 40)].map(|(o, x)| {
            let b = Operand {
                sb: x,
                sh: x + 1,
                row: x + 2,
                col: x + 3,
                off: x + 4,
            };
            (o, b)
        });
        let mut fill = ATTENTION_PARAMS.fill();
        for (f, v) in ["b", "h", "sq", "sk", "d", "dv", "scale", "has_mask", "rows"]
            .iter()
            .zip(100..)
        {
            fill = fill.set(f, v);
        }
        for (o, b) in blocks {
            fill = b.set(fill, o);
        }
        let p = fill.finish().unwrap();
        for (o, b) in blocks {
            assert_eq!(Operand::read(&p, o).unwrap(), b);
        }
        // K's key stride is `k_sj`, the mask's key stride its column, `m_sj`.
        assert_eq!(p[ATTENTION_PARAMS.at("k_sj").unwrap()], 12);
        assert_eq!(p[ATTENTION_PARAMS.at("m_sj").unwrap()], 33);
    }
}
