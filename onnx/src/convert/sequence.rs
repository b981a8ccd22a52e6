//! ONNX sequences and optionals. Their structure (how many elements, which are present) is
//! fixed when the model loads, so they exist only in the importer: each op below rearranges
//! tensors it already has, and only the tensors reach the graph. A sequence whose length would
//! depend on run-time values cannot be built this way; positions and split sizes must be known
//! at import.

use super::Converter::{self, Values};
use super::{bad, unsup, Importer, Val, R};
use sfumato_core::{DType, Op, Shape, Tensor, ValueId};

/// At most this many tensors in one sequence or optional (nested ones counted through).
pub const MAX_LEAVES: usize = 65_536;

/// The ops that take or make sequences and optionals (Identity too: its input may be one).
pub(super) const OPS: &[(&str, Converter)] = &[
    ("Identity", Values(|c| Ok(vec![c.val(0)?]))),
    ("SequenceEmpty", Values(|_| Ok(vec![Val::Seq(Vec::new())]))),
    (
        "SequenceConstruct",
        Values(|c| Ok(vec![c.sequence_construct()?])),
    ),
    ("SequenceInsert", Values(|c| Ok(vec![c.sequence_insert()?]))),
    ("SequenceAt", Values(|c| Ok(vec![c.sequence_at()?]))),
    ("SequenceErase", Values(|c| Ok(vec![c.sequence_erase()?]))),
    ("SequenceLength", Values(|c| Ok(vec![c.sequence_length()?]))),
    (
        "ConcatFromSequence",
        Values(|c| Ok(vec![c.concat_from_sequence()?])),
    ),
    (
        "SplitToSequence",
        Values(|c| Ok(vec![c.split_to_sequence()?])),
    ),
    ("Optional", Values(|c| Ok(vec![c.optional()?]))),
    (
        "OptionalHasElement",
        Values(|c| Ok(vec![c.optional_has_element()?])),
    ),
    (
        "OptionalGetElement",
        Values(|c| Ok(vec![c.optional_get_element()?])),
    ),
];

impl Importer<'_> {
    /// Input `i` as a value of any kind.
    pub(super) fn val(&self, i: usize) -> R<Val> {
        let name = match self.ins.get(i).filter(|s| !s.is_empty()) {
            Some(s) => s,
            None => return bad(format!("input {i} is missing")),
        };
        if let Some(v) = self.others.get(name) {
            return Ok(v.clone());
        }
        Ok(Val::T(self.inp(i)?))
    }

    /// Input `i` as a sequence's elements.
    fn seq_in(&self, i: usize) -> R<Vec<Val>> {
        match self.val(i)? {
            Val::Seq(s) => Ok(s),
            _ => bad(format!("input {i} must be a sequence")),
        }
    }

    /// A position into a sequence of `len` (`insert`: `len` itself allowed), negative from the
    /// end, known at import.
    fn position(&mut self, i: usize, len: usize, insert: bool) -> R<usize> {
        let p = match self.const_ints(i)?.as_slice() {
            [p] => *p,
            other => return bad(format!("a position must be one integer, got {other:?}")),
        };
        let n = len as i64;
        let q = if p < 0 { p + n } else { p };
        let hi = if insert { n } else { n - 1 };
        if q < 0 || q > hi {
            return bad(format!(
                "position {p} is out of range for a sequence of {len}"
            ));
        }
        Ok(q as usize)
    }

    fn tensor_of(&self, v: &Val, what: &str) -> R<ValueId> {
        match v {
            Val::T(t) => Ok(*t),
            _ => unsup(format!("{what} that is not a tensor")),
        }
    }

    /// A Values converter's outputs, each at most [`MAX_LEAVES`] tensors.
    pub(super) fn convert_structured(
        &mut self,
        f: fn(&mut Importer<'_>) -> R<Vec<Val>>,
    ) -> R<Vec<Val>> {
        let outs = f(self)?;
        for v in &outs {
            let n = v.leaf_count();
            if n > MAX_LEAVES {
                return unsup(format!(
                    "a sequence or optional of {n} tensors (at most {MAX_LEAVES})"
                ));
            }
        }
        Ok(outs)
    }

    /// `SequenceConstruct`.
    fn sequence_construct(&mut self) -> R<Val> {
        Ok(Val::Seq(
            (0..self.ins.len())
                .map(|i| self.inp(i).map(Val::T))
                .collect::<R<_>>()?,
        ))
    }

    /// `SequenceInsert`.
    fn sequence_insert(&mut self) -> R<Val> {
        let mut s = self.seq_in(0)?;
        let t = self.inp(1)?;
        let at = if self.has(2) {
            self.position(2, s.len(), true)?
        } else {
            s.len()
        };
        s.insert(at, Val::T(t));
        Ok(Val::Seq(s))
    }

    /// `SequenceErase`.
    fn sequence_erase(&mut self) -> R<Val> {
        let mut s = self.seq_in(0)?;
        if s.is_empty() {
            return bad("erasing from an empty sequence");
        }
        let at = if self.has(1) {
            self.position(1, s.len(), false)?
        } else {
            s.len() - 1
        };
        s.remove(at);
        Ok(Val::Seq(s))
    }

    /// `SequenceAt`.
    fn sequence_at(&mut self) -> R<Val> {
        let s = self.seq_in(0)?;
        let at = self.position(1, s.len(), false)?;
        Ok(s[at].clone())
    }

    /// `SequenceLength`.
    fn sequence_length(&mut self) -> R<Val> {
        let n = self.seq_in(0)?.len();
        Ok(Val::T(self.konst(Tensor::from_f64(
            DType::I64,
            Shape::scalar(),
            &[n as f64],
        ))?))
    }

    /// `ConcatFromSequence`.
    fn concat_from_sequence(&mut self) -> R<Val> {
        let s = self.seq_in(0)?;
        let ts: Vec<ValueId> = s
            .iter()
            .map(|v| self.tensor_of(v, "ConcatFromSequence of an element"))
            .collect::<R<_>>()?;
        let Some(&first) = ts.first() else {
            return bad("ConcatFromSequence of an empty sequence");
        };
        let rank = self.shape(first).len();
        let new_axis = self.ai("new_axis", 0) != 0;
        let axis = self.ai("axis", 0);
        let axis = self.axis(axis, rank + new_axis as usize)?;
        let parts: Vec<ValueId> = if new_axis {
            ts.iter()
                .map(|&t| {
                    let mut d = self.shape(t);
                    d.insert(axis, 1);
                    self.reshape(t, d)
                })
                .collect::<R<_>>()?
        } else {
            ts
        };
        Ok(Val::T(self.add1(Op::Concat { axis }, &parts)?))
    }

    /// `Optional`.
    fn optional(&mut self) -> R<Val> {
        Ok(Val::Opt(if self.has(0) {
            Some(Box::new(self.val(0)?))
        } else {
            None
        }))
    }

    /// `OptionalHasElement`.
    fn optional_has_element(&mut self) -> R<Val> {
        let present = self.has(0) && !matches!(self.val(0)?, Val::Opt(None));
        Ok(Val::T(self.konst(Tensor::from_f64(
            DType::Bool,
            Shape::scalar(),
            &[present as u8 as f64],
        ))?))
    }

    /// `OptionalGetElement`.
    fn optional_get_element(&mut self) -> R<Val> {
        Ok(match self.val(0)? {
            Val::Opt(Some(v)) => *v,
            Val::Opt(None) => return bad("OptionalGetElement of an empty optional"),
            other => other,
        })
    }

    /// SplitToSequence: pieces of `split` (one size: equal pieces, the last shorter; a list: those
    /// sizes), or without it pieces of 1, whose axis `keepdims = 0` drops.
    fn split_to_sequence(&mut self) -> R<Val> {
        let x = self.inp(0)?;
        let dims = self.shape(x);
        let axis = self.axis_in(self.ai("axis", 0), dims.len())?;
        let len = dims[axis];
        let (sizes, squeeze) = if self.has(1) {
            let t = self.const_in(1)?;
            let v = t.to_i64_vec();
            if v.iter().any(|&s| s < 0) {
                return bad(format!("split sizes {v:?} must not be negative"));
            }
            if t.shape().rank() == 0 {
                let s = v[0] as usize;
                if s == 0 {
                    return bad("a split size of 0");
                }
                if len.div_ceil(s) > MAX_LEAVES {
                    return unsup(format!("a sequence of over {MAX_LEAVES} pieces"));
                }
                let mut sizes = vec![s; len / s];
                if !len.is_multiple_of(s) {
                    sizes.push(len % s);
                }
                (sizes, false)
            } else {
                let sizes: Vec<usize> = v.iter().map(|&s| s as usize).collect();
                let total = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s));
                if total != Some(len) {
                    return bad(format!("split sizes {sizes:?} do not add up to {len}"));
                }
                (sizes, false)
            }
        } else {
            if len > MAX_LEAVES {
                return unsup(format!("a sequence of over {MAX_LEAVES} pieces"));
            }
            (vec![1; len], self.ai("keepdims", 1) == 0)
        };
        if sizes.len() > MAX_LEAVES {
            return unsup(format!(
                "a sequence of {} pieces (at most {MAX_LEAVES})",
                sizes.len()
            ));
        }
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for s in sizes {
            let mut piece = self.slice_axis(x, axis, start, s, 1)?;
            start += s;
            if squeeze {
                let mut d = dims.clone();
                d.remove(axis);
                piece = self.reshape(piece, d)?;
            }
            out.push(Val::T(piece));
        }
        Ok(Val::Seq(out))
    }
}

#[cfg(test)]
mod tests {
    use crate::proto::*;
    use crate::testutil::*;
    use crate::{import, tensor, ImportOptions};
    use sfumato_core::{DType, Tensor};

    #[test]
    fn sequences_are_rearranged_at_import_and_their_leaves_are_graph_values() {
        let (bytes, opts) = sequence_model();
        // Without the sequence input's value its structure is unknown: unsupported, saying why.
        let e = import(&bytes, &ImportOptions::default()).unwrap_err();
        assert!(e.to_string().contains("structured_inputs"), "{e}");
        let s0 = Tensor::from_f32([1, 3], vec![7., 8., 9.]).unwrap();
        let m = import(&bytes, &opts).unwrap();
        assert_eq!(m.inputs, ["x", "s.0"]);
        assert_eq!(m.outputs, ["n", "cat", "s2.0", "s2.1"]);
        let x = Tensor::from_f32([2, 5], (0..10).map(|v| v as f32).collect()).unwrap();
        let out = run_cpu(&m.graph, &[x, s0]);
        assert_eq!(out[0].to_i64_vec(), vec![2]);
        assert_eq!(out[1].dims(), &[3, 3]);
        assert_eq!(
            out[1].to_f32_vec(),
            vec![7., 8., 9., 2., 3., 4., 7., 8., 9.]
        );
        assert_eq!(out[3].to_f32_vec(), vec![2., 3., 4., 7., 8., 9.]);
    }

    #[test]
    fn misused_sequences_are_errors_not_panics() {
        let pos = |v: i64| tensor::to_proto(&Tensor::from_f64(DType::I64, [], &[v as f64]), "p");
        // A position past the end; a sequence where a tensor is expected.
        for (nodes, init) in [
            (
                vec![
                    node("SplitToSequence", &["x"], &["s"], vec![]),
                    node("SequenceAt", &["s", "p"], &["y"], vec![]),
                ],
                pos(5),
            ),
            (
                vec![
                    node("SplitToSequence", &["x"], &["s"], vec![]),
                    node("Relu", &["s"], &["y"], vec![]),
                ],
                pos(0),
            ),
        ] {
            let b = model(
                nodes,
                vec![init],
                vec![vi("x", data_type::FLOAT, &[Ok(2), Ok(2)])],
                vec![vi("y", data_type::FLOAT, &[])],
            );
            assert!(import(&b, &ImportOptions::default()).is_err());
        }
    }

    #[test]
    fn sequence_map_empty_sequences_and_empty_optionals() {
        // SequenceMap over a split of x [3, 2]: each row times the whole tensor `k`; an empty
        // sequence's length; an empty optional as a graph output has no tensors.
        let body = GraphProto {
            name: "body".into(),
            node: vec![node("Mul", &["row", "k"], &["out"], vec![])],
            input: vec![
                vi("row", data_type::FLOAT, &[]),
                vi("k", data_type::FLOAT, &[]),
            ],
            output: vec![vi("out", data_type::FLOAT, &[])],
            ..Default::default()
        };
        let opt_type = TypeProto {
            optional_type: Some(vec![]),
            ..Default::default()
        };
        let b = model(
            vec![
                node("SplitToSequence", &["x"], &["rows"], vec![]),
                node(
                    "SequenceMap",
                    &["rows", "k"],
                    &["scaled"],
                    vec![graph_attr("body", body)],
                ),
                node("SequenceEmpty", &[], &["none"], vec![]),
                node("SequenceLength", &["none"], &["zero"], vec![]),
                node("Optional", &[], &["nothing"], vec![]),
                node("OptionalHasElement", &["nothing"], &["has"], vec![]),
            ],
            vec![tensor::to_proto(
                &Tensor::from_f32([], vec![2.0]).unwrap(),
                "k",
            )],
            vec![vi("x", data_type::FLOAT, &[Ok(3), Ok(2)])],
            vec![
                ValueInfoProto {
                    name: "scaled".into(),
                    r#type: Some(seq_type()),
                },
                vi("zero", data_type::INT64, &[]),
                ValueInfoProto {
                    name: "nothing".into(),
                    r#type: Some(opt_type),
                },
                vi("has", data_type::BOOL, &[]),
            ],
        );
        let m = import(&b, &ImportOptions::default()).unwrap();
        assert_eq!(
            m.outputs,
            ["scaled.0", "scaled.1", "scaled.2", "zero", "has"]
        );
        let x = Tensor::from_f32([3, 2], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let out = run_cpu(&m.graph, &[x]);
        assert_eq!(out[1].dims(), &[1, 2]);
        assert_eq!(out[1].to_f32_vec(), vec![6.0, 8.0]);
        assert_eq!(out[3].to_i64_vec(), vec![0]);
        assert_eq!(out[4].to_f64_vec(), vec![0.0]);
    }
}
