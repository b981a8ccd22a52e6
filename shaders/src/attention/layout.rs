//! The attention params, shared by `attention.wgsl` and the uniform-block kernel.

use crate::params::{one, Layout};

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

/// The five fields of operand `o` (`q`, `k`, `v`, `m`, `o`): its strides and offset.
pub(crate) fn operand_fields(o: char) -> [String; 5] {
    let names: [&str; 5] = match o {
        'q' | 'o' => ["sb", "sh", "si", "sd", "off"],
        'm' => ["sb", "sh", "si", "sj", "off"],
        _ => ["sb", "sh", "sj", "sd", "off"],
    };
    names.map(|n| format!("{o}_{n}"))
}
