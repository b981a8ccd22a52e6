//! WGSL syntax highlighting for the detail panel: a small tokenizer (comments, numbers,
//! keywords, types, attributes, builtin functions) into an egui [`LayoutJob`].

use egui::text::{LayoutJob, TextFormat};
use egui::{Color32, FontId};

/// What a span of WGSL is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token {
    Comment,
    Keyword,
    Type,
    Attribute,
    Number,
    Builtin,
    Punct,
    Ident,
    Space,
}

const KEYWORDS: &[&str] = &[
    "fn",
    "let",
    "var",
    "const",
    "override",
    "struct",
    "return",
    "if",
    "else",
    "for",
    "loop",
    "while",
    "break",
    "continue",
    "switch",
    "case",
    "default",
    "enable",
    "alias",
    "discard",
    "true",
    "false",
    "uniform",
    "storage",
    "read",
    "read_write",
    "workgroup",
    "private",
    "function",
];
const TYPES: &[&str] = &[
    "f32",
    "f16",
    "i32",
    "u32",
    "bool",
    "vec2",
    "vec3",
    "vec4",
    "vec2f",
    "vec3f",
    "vec4f",
    "vec2u",
    "vec4u",
    "vec2i",
    "vec4i",
    "mat2x2",
    "mat3x3",
    "mat4x4",
    "array",
    "atomic",
    "ptr",
    "texture_2d",
    "texture_2d_array",
    "sampler",
];
const BUILTINS: &[&str] = &[
    "max",
    "min",
    "exp",
    "log",
    "sqrt",
    "inverseSqrt",
    "abs",
    "tanh",
    "select",
    "dot",
    "fma",
    "clamp",
    "floor",
    "ceil",
    "round",
    "pow",
    "sin",
    "cos",
    "bitcast",
    "arrayLength",
    "workgroupBarrier",
    "storageBarrier",
    "textureLoad",
    "atomicAdd",
    "subgroupAdd",
];

/// The tokens of `src`, as (kind, byte range) in order, covering it all.
pub fn tokens(src: &str) -> Vec<(Token, std::ops::Range<usize>)> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            Token::Comment
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i = (i + 2).min(b.len());
            Token::Comment
        } else if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            Token::Space
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            Token::Number
        } else if c == b'@' {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            Token::Attribute
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            let w = &src[start..i];
            if KEYWORDS.contains(&w) {
                Token::Keyword
            } else if TYPES.contains(&w) {
                Token::Type
            } else if BUILTINS.contains(&w) {
                Token::Builtin
            } else {
                Token::Ident
            }
        } else {
            // One character (UTF-8 aware).
            i += src[i..].chars().next().map_or(1, char::len_utf8);
            Token::Punct
        };
        out.push((kind, start..i));
    }
    out
}

/// The colour of a token, for a dark or a light theme.
pub fn color(t: Token, dark: bool) -> Color32 {
    match (t, dark) {
        (Token::Comment, true) => Color32::from_rgb(110, 140, 110),
        (Token::Comment, false) => Color32::from_rgb(60, 120, 60),
        (Token::Keyword, true) => Color32::from_rgb(200, 140, 230),
        (Token::Keyword, false) => Color32::from_rgb(140, 40, 170),
        (Token::Type, true) => Color32::from_rgb(90, 190, 220),
        (Token::Type, false) => Color32::from_rgb(20, 110, 150),
        (Token::Attribute, true) => Color32::from_rgb(230, 190, 100),
        (Token::Attribute, false) => Color32::from_rgb(150, 100, 0),
        (Token::Number, true) => Color32::from_rgb(180, 210, 140),
        (Token::Number, false) => Color32::from_rgb(30, 120, 90),
        (Token::Builtin, true) => Color32::from_rgb(230, 220, 150),
        (Token::Builtin, false) => Color32::from_rgb(120, 90, 20),
        (_, true) => Color32::from_gray(215),
        (_, false) => Color32::from_gray(30),
    }
}

/// `src` as a monospace, coloured layout job.
pub fn highlight(src: &str, dark: bool, size: f32) -> LayoutJob {
    let mut job = LayoutJob::default();
    for (kind, r) in tokens(src) {
        job.append(
            &src[r],
            0.0,
            TextFormat {
                font_id: FontId::monospace(size),
                color: color(kind, dark),
                ..Default::default()
            },
        );
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_cover_the_source_and_classify_it() {
        let src =
            "@compute @workgroup_size(8) // hi\nfn main() { let x: f32 = max(1.5, 2u); } /* é */";
        let t = tokens(src);
        let joined: String = t.iter().map(|(_, r)| &src[r.clone()]).collect();
        assert_eq!(joined, src);
        let kind_of = |w: &str| t.iter().find(|(_, r)| &src[r.clone()] == w).map(|x| x.0);
        assert_eq!(kind_of("@compute"), Some(Token::Attribute));
        assert_eq!(kind_of("// hi"), Some(Token::Comment));
        assert_eq!(kind_of("fn"), Some(Token::Keyword));
        assert_eq!(kind_of("f32"), Some(Token::Type));
        assert_eq!(kind_of("max"), Some(Token::Builtin));
        assert_eq!(kind_of("1.5"), Some(Token::Number));
        assert_eq!(kind_of("main"), Some(Token::Ident));
        assert_eq!(kind_of("/* é */"), Some(Token::Comment));
        assert_eq!(highlight(src, true, 12.0).text, src);
    }
}
