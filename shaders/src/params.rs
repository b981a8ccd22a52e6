//! Named params layouts: one per kernel family, defined once and used both by the Rust that
//! fills a kernel's `params` and by the template that reads them.
//!
//! A [`Layout`] lists its fields in order: one u32 ([`one`]), or an array of `k` times the value
//! of an earlier count field ([`per`], e.g. a rank's dims or a batch's offsets). The Rust side
//! fills params by name ([`Layout::fill`], which refuses a name the layout lacks, a field set
//! twice or left unset, and an array of the wrong length); the template gets the layout's WGSL
//! ([`Layout::wgsl`], through its `{{layout}}`-style placeholder): a constant
//! `const PREFIX_FIELD: u32 = i;` for every field at a fixed index, and for a field after an
//! array a function of the counts, `fn prefix_field(count: u32) -> u32`, so a template reads
//! `params[MM_TILES_N]` or `params[mm_end(batch) + CV_KH]`, never a number kept in step by hand.
//! `PREFIX_END` (`prefix_end(..)`) is where what follows the layout starts (a splice's view block,
//! `EV`, or a second layout such as the conv params after the matmul's).
//!
//! A record ([`Layout::record`]) is a layout repeated per item: a view's block (strides, offset),
//! a batch's offsets (A, B, Bias), a fused read's slot. Its size is `PREFIX_LEN` (`prefix_len(..)`)
//! rather than `PREFIX_END`, so a template steps through the items by name:
//! `params[MM_OFFSETS + OFF_LEN * b + OFF_B]`. A record's arrays may be sized by a count of the
//! layout it follows (a view block's strides by the view's `rank`): [`Fill::given`] supplies it.

use crate::Error;

/// How many u32 a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Len {
    One,
    /// `k` times the value of the (earlier, one-u32) field named.
    Per(u32, &'static str),
}

/// A field of a layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub len: Len,
}

/// A one-u32 field.
pub const fn one(name: &'static str) -> Field {
    Field {
        name,
        len: Len::One,
    }
}

/// An array field of `k * count` u32, `count` an earlier field's value.
pub const fn per(name: &'static str, k: u32, count: &'static str) -> Field {
    Field {
        name,
        len: Len::Per(k, count),
    }
}

/// A kernel family's params layout.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The family, for errors and the WGSL comment.
    pub name: &'static str,
    /// The prefix of the WGSL names (`MM` gives `MM_M`, `mm_end`).
    pub prefix: &'static str,
    pub fields: &'static [Field],
    /// Repeated per item ([`Layout::record`]): its end is named `len`, not `end`.
    pub record: bool,
}

/// A field's index: a constant plus `k` times each count (by count field name).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Index {
    base: u32,
    terms: Vec<(u32, &'static str)>,
}

impl Layout {
    pub const fn new(name: &'static str, prefix: &'static str, fields: &'static [Field]) -> Self {
        Layout {
            name,
            prefix,
            fields,
            record: false,
        }
    }

    /// A record: a layout repeated per item, whose size the WGSL names `PREFIX_LEN`.
    pub const fn record(
        name: &'static str,
        prefix: &'static str,
        fields: &'static [Field],
    ) -> Self {
        Layout {
            name,
            prefix,
            fields,
            record: true,
        }
    }

    /// The number of u32 of a layout without arrays (at compile time: a layout with an array
    /// does not build), e.g. a record's size as the `k` of the array that repeats it.
    pub const fn size(&self) -> u32 {
        let mut i = 0;
        while i < self.fields.len() {
            if !matches!(self.fields[i].len, Len::One) {
                panic!("params layout: size() of a layout with an array");
            }
            i += 1;
        }
        i as u32
    }

    /// What the end is named: `len` for a record, `end` otherwise.
    fn end_name(&self) -> &'static str {
        if self.record {
            "len"
        } else {
            "end"
        }
    }

    /// The index of field `i` (`fields.len()`: the end).
    fn index(&self, i: usize) -> Index {
        let mut ix = Index {
            base: 0,
            terms: Vec::new(),
        };
        for f in &self.fields[..i] {
            match f.len {
                Len::One => ix.base += 1,
                Len::Per(k, c) => match ix.terms.iter_mut().find(|t| t.1 == c) {
                    Some(t) => t.0 += k,
                    None => ix.terms.push((k, c)),
                },
            }
        }
        ix
    }

    fn position(&self, name: &str) -> Result<usize, Error> {
        if name == self.end_name() {
            return Ok(self.fields.len());
        }
        self.fields
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| {
                Error::Template(format!("params layout {}: no field '{name}'", self.name))
            })
    }

    /// The index of a field at a fixed place (before any array), or the end (`"end"`, or `"len"`
    /// for a record) when there is none.
    pub fn at(&self, name: &str) -> Result<usize, Error> {
        let ix = self.index(self.position(name)?);
        if !ix.terms.is_empty() {
            return Err(Error::Template(format!(
                "params layout {}: '{name}' moves with the counts; use index_in",
                self.name
            )));
        }
        Ok(ix.base as usize)
    }

    /// The index of a field (or `"end"`) in `params` filled by this layout (its counts read
    /// from them).
    pub fn index_in(&self, name: &str, params: &[u32]) -> Result<usize, Error> {
        let ix = self.index(self.position(name)?);
        let mut at = ix.base as usize;
        for (k, c) in ix.terms {
            let ci = self.at(c)?;
            let v = params.get(ci).copied().ok_or_else(|| {
                Error::Template(format!("params layout {}: params too short", self.name))
            })?;
            at += k as usize * v as usize;
        }
        Ok(at)
    }

    /// The value of the one-u32 field `name` in `params` filled by this layout.
    pub fn get(&self, params: &[u32], name: &str) -> Result<u32, Error> {
        let f = self.position(name)?;
        if self.fields.get(f).map(|f| f.len) != Some(Len::One) {
            return Err(Error::Template(format!(
                "params layout {}: '{name}' is not a one-u32 field",
                self.name
            )));
        }
        params
            .get(self.index_in(name, params)?)
            .copied()
            .ok_or_else(|| {
                Error::Template(format!("params layout {}: params too short", self.name))
            })
    }

    /// Start filling params by name.
    pub fn fill(&self) -> Fill<'_> {
        Fill {
            layout: self,
            vals: vec![None; self.fields.len()],
            given: Vec::new(),
            err: None,
        }
    }

    /// The WGSL that names the layout: a comment listing the fields, then a constant for every
    /// field at a fixed index and a function of the counts for every other (and the end).
    pub fn wgsl(&self) -> String {
        let names: Vec<String> = self
            .fields
            .iter()
            .map(|f| match f.len {
                Len::One => f.name.to_string(),
                Len::Per(1, c) => format!("{}[{c}]", f.name),
                Len::Per(k, c) => format!("{}[{k} * {c}]", f.name),
            })
            .collect();
        let mut s = format!("// params ({}): {}\n", self.name, names.join(", "));
        let names = self.fields.iter().map(|f| f.name).chain([self.end_name()]);
        for (i, name) in names.enumerate() {
            let ix = self.index(i);
            if ix.terms.is_empty() {
                s += &format!(
                    "const {}_{}: u32 = {}u;\n",
                    self.prefix,
                    name.to_uppercase(),
                    ix.base
                );
            } else {
                let args: Vec<String> = ix.terms.iter().map(|t| format!("{}: u32", t.1)).collect();
                let mut terms: Vec<String> = ix
                    .terms
                    .iter()
                    .map(|(k, c)| match k {
                        1 => c.to_string(),
                        k => format!("{k}u * {c}"),
                    })
                    .collect();
                if ix.base != 0 {
                    terms.insert(0, format!("{}u", ix.base));
                }
                let e = terms.join(" + ");
                s += &format!(
                    "fn {}_{name}({}) -> u32 {{\n    return {e};\n}}\n",
                    self.prefix.to_lowercase(),
                    args.join(", ")
                );
            }
        }
        s
    }
}

/// Params being filled by name ([`Layout::fill`]).
pub struct Fill<'a> {
    layout: &'a Layout,
    vals: Vec<Option<Vec<u32>>>,
    /// Counts the layout's arrays are sized by that are not its fields ([`Fill::given`]).
    given: Vec<(String, u32)>,
    err: Option<Error>,
}

impl Fill<'_> {
    /// Set a one-u32 field.
    pub fn set(self, name: &str, v: u32) -> Self {
        self.put(name, vec![v], false)
    }

    /// Set the window fields that the conv and pool layouts name alike: the kernel (`kh`,
    /// `kw`), strides (`sh`, `sw`), the top and left pads (`pt`, `pl`) and dilations (`dh`,
    /// `dw`).
    pub fn window(
        self,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 4],
        dilation: [usize; 2],
    ) -> Self {
        self.set("kh", kernel[0] as u32)
            .set("kw", kernel[1] as u32)
            .set("sh", stride[0] as u32)
            .set("sw", stride[1] as u32)
            .set("pt", padding[0] as u32)
            .set("pl", padding[1] as u32)
            .set("dh", dilation[0] as u32)
            .set("dw", dilation[1] as u32)
    }

    /// The value of a count that sizes an array of this layout but is a field of the layout it
    /// follows (a view block's strides: the view's `rank`).
    pub fn given(mut self, count: &str, v: u32) -> Self {
        if self.layout.fields.iter().any(|f| f.name == count) {
            self.err.get_or_insert(Error::Template(format!(
                "params layout {}: '{count}' is a field, not a given count",
                self.layout.name
            )));
        }
        self.given.push((count.to_string(), v));
        self
    }

    /// Set an array field.
    pub fn set_all(self, name: &str, v: impl IntoIterator<Item = u32>) -> Self {
        self.put(name, v.into_iter().collect(), true)
    }

    fn put(mut self, name: &str, v: Vec<u32>, array: bool) -> Self {
        if self.err.is_some() {
            return self;
        }
        let l = self.layout;
        let r = l.position(name).and_then(|i| {
            let f = self.vals.get(i).ok_or_else(|| {
                Error::Template(format!("params layout {}: 'end' is not a field", l.name))
            })?;
            if f.is_some() {
                return Err(Error::Template(format!(
                    "params layout {}: '{name}' set twice",
                    l.name
                )));
            }
            if array != matches!(l.fields[i].len, Len::Per(..)) {
                return Err(Error::Template(format!(
                    "params layout {}: '{name}' set as the wrong kind (one u32 or an array)",
                    l.name
                )));
            }
            Ok(i)
        });
        match r {
            Ok(i) => self.vals[i] = Some(v),
            Err(e) => self.err = Some(e),
        }
        self
    }

    /// The params, in the layout's order: an error if a field was left unset, a name was not
    /// the layout's, or an array's length is not its count times `k`.
    pub fn finish(self) -> Result<Vec<u32>, Error> {
        if let Some(e) = self.err {
            return Err(e);
        }
        let l = self.layout;
        let mut out = Vec::new();
        for (f, v) in l.fields.iter().zip(&self.vals) {
            let v = v.as_ref().ok_or_else(|| {
                Error::Template(format!("params layout {}: '{}' not set", l.name, f.name))
            })?;
            if let Len::Per(k, c) = f.len {
                let count = match l.fields.iter().position(|f| f.name == c) {
                    Some(ci) => self.vals[ci].as_ref().and_then(|c| c.first()).copied(),
                    None => self.given.iter().find(|g| g.0 == c).map(|g| g.1),
                }
                .ok_or_else(|| {
                    Error::Template(format!(
                        "params layout {}: count '{c}' of '{}' neither a field nor given",
                        l.name, f.name
                    ))
                })?;
                if v.len() != k as usize * count as usize {
                    return Err(Error::Template(format!(
                        "params layout {}: '{}' has {} values, not {k} * {c} = {}",
                        l.name,
                        f.name,
                        v.len(),
                        k * count
                    )));
                }
            }
            out.extend(v);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Layout = Layout::new(
        "test",
        "T",
        &[one("n"), one("rank"), per("dims", 1, "rank"), one("mode")],
    );

    #[test]
    fn fills_by_name_and_refuses_unknown_or_missing_names() {
        let p = T
            .fill()
            .set("n", 6)
            .set("rank", 2)
            .set_all("dims", [2, 3])
            .set("mode", 1)
            .finish()
            .unwrap();
        assert_eq!(p, vec![6, 2, 2, 3, 1]);
        assert_eq!(T.index_in("mode", &p).unwrap(), 4);
        assert_eq!(T.index_in("end", &p).unwrap(), 5);
        assert_eq!(T.at("dims").unwrap(), 2);
        assert!(T.at("mode").is_err());
        // An unknown name, a missing one, one set twice, an array of the wrong length.
        let base = || T.fill().set("n", 6).set("rank", 2).set_all("dims", [2, 3]);
        assert!(base().set("mode", 1).set("nope", 0).finish().is_err());
        assert!(base().finish().is_err());
        assert!(base().set("mode", 1).set("mode", 1).finish().is_err());
        assert!(T
            .fill()
            .set("n", 6)
            .set("rank", 2)
            .set_all("dims", [2])
            .set("mode", 1)
            .finish()
            .is_err());
        assert!(T.fill().set("dims", 1).finish().is_err());
    }

    /// A record sized by a count of the layout it follows, and one of fixed size.
    const R: Layout = Layout::record("rec", "R", &[per("strides", 1, "rank"), one("offset")]);
    const F: Layout = Layout::record("fixed", "F", &[one("a"), one("b"), one("bias")]);

    #[test]
    fn records_take_given_counts_and_name_their_len() {
        let p = R
            .fill()
            .given("rank", 2)
            .set_all("strides", [3, 1])
            .set("offset", 7)
            .finish()
            .unwrap();
        assert_eq!(p, vec![3, 1, 7]);
        // The count neither given nor a field; given twice over a field; a wrong length.
        assert!(R
            .fill()
            .set_all("strides", [3, 1])
            .set("offset", 7)
            .finish()
            .is_err());
        assert!(T.fill().given("rank", 2).finish().is_err());
        assert!(R
            .fill()
            .given("rank", 3)
            .set_all("strides", [3, 1])
            .set("offset", 7)
            .finish()
            .is_err());
        let w = R.wgsl();
        assert!(w.contains("const R_STRIDES: u32 = 0u;\n"));
        assert!(w.contains("fn r_offset(rank: u32) -> u32 {\n    return rank;\n}\n"));
        assert!(w.contains("fn r_len(rank: u32) -> u32 {\n    return 1u + rank;\n}\n"));
        assert!(!w.contains("END"));
        assert_eq!(F.size(), 3);
        assert_eq!(F.at("len").unwrap(), 3);
        assert!(F.at("end").is_err());
        assert!(F
            .wgsl()
            .contains("const F_BIAS: u32 = 2u;\nconst F_LEN: u32 = 3u;\n"));
    }

    #[test]
    fn gets_one_field_by_name() {
        let p = vec![6, 2, 2, 3, 1];
        assert_eq!(T.get(&p, "n").unwrap(), 6);
        assert_eq!(T.get(&p, "mode").unwrap(), 1);
        assert!(T.get(&p, "dims").is_err());
        assert!(T.get(&p, "end").is_err());
        assert!(T.get(&p[..4], "mode").is_err());
    }

    #[test]
    fn names_the_fields_in_wgsl() {
        let w = T.wgsl();
        assert!(w.contains("const T_N: u32 = 0u;\n"));
        assert!(w.contains("const T_DIMS: u32 = 2u;\n"));
        assert!(w.contains("fn t_mode(rank: u32) -> u32 {\n    return 2u + rank;\n}\n"));
        assert!(w.contains("fn t_end(rank: u32) -> u32 {\n    return 3u + rank;\n}\n"));
        assert!(crate::validate(
            "t",
            &format!(
                "{w}@group(0) @binding(0) var<storage, read> params: array<u32>;\n@compute @workgroup_size(1)\nfn main() {{\n    let m = params[t_mode(params[T_RANK])];\n}}\n"
            )
        )
        .is_ok());
    }
}
