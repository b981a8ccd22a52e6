//! Einsum as device ops: diagonals by Gather, sums by ReduceSum, each pair of operands as one
//! batched MatMul between transposes and reshapes.

use super::Converter::{self, Tensors};
use super::{bad, unsup, Importer, R};
use sfumato_core::{DType, Op, Tensor, ValueId};

/// The ops of this family, by ONNX op type (default domain).
pub(super) const OPS: &[(&str, Converter)] = &[("Einsum", Tensors(|c| c.einsum()))];

/// One operand in flight: its value and one label per dim.
struct Term {
    v: ValueId,
    labels: Vec<char>,
}

/// An equation's terms with the ellipsis spelled out: `...` becomes labels that no letter
/// uses (counted from `'\u{100}'`), as many as the dims it stands for, right-aligned across
/// operands as numpy broadcasts them.
pub(crate) fn parse_equation(
    eq: &str,
    ranks: &[usize],
) -> std::result::Result<(Vec<Vec<char>>, Vec<char>), String> {
    let eq: String = eq.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l.to_string(), Some(r.to_string())),
        None => (eq.clone(), None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return Err(format!(
            "equation '{eq}' has {} operands, the node {}",
            terms.len(),
            ranks.len()
        ));
    }
    let ell = |i: usize| char::from_u32(0x100 + i as u32).unwrap_or('?');
    let mut widest = 0;
    let mut out_terms = Vec::new();
    for (t, &rank) in terms.iter().zip(ranks) {
        let letters = t.replace("...", "");
        if letters.chars().any(|c| !c.is_ascii_alphabetic()) {
            return Err(format!(
                "term '{t}' of '{eq}' has a character that is not a letter"
            ));
        }
        let named = letters.chars().count();
        let labels: Vec<char> = if t.contains("...") {
            if rank < named {
                return Err(format!(
                    "term '{t}' names {named} dims of a rank-{rank} operand"
                ));
            }
            let k = rank - named;
            widest = widest.max(k);
            let (pre, post) = t.split_once("...").unwrap_or((t, ""));
            let mut v: Vec<char> = pre.chars().collect();
            // The dims right-aligned: the last ellipsis dim is the widest's last.
            v.extend((0..k).map(|i| ell(i + 64 - k)));
            v.extend(post.chars());
            v
        } else {
            if named != rank {
                return Err(format!(
                    "term '{t}' names {named} dims of a rank-{rank} operand"
                ));
            }
            letters.chars().collect()
        };
        out_terms.push(labels);
    }
    let ells: Vec<char> = (0..widest).map(|i| ell(i + 64 - widest)).collect();
    let out = match rhs {
        Some(r) => {
            let letters = r.replace("...", "");
            let (pre, post) = r.split_once("...").unwrap_or((&r, ""));
            let mut v: Vec<char> = pre.chars().collect();
            if r.contains("...") {
                v.extend(&ells);
                v.extend(post.chars());
            } else if letters.len() != r.len() {
                return Err(format!("bad output '{r}'"));
            }
            v
        }
        None => {
            // Implicit: the ellipsis dims, then each letter used once, in alphabetical order.
            let mut count = std::collections::BTreeMap::new();
            for l in out_terms
                .iter()
                .flatten()
                .filter(|c| c.is_ascii_alphabetic())
            {
                *count.entry(*l).or_insert(0) += 1;
            }
            let mut v = ells.clone();
            v.extend(count.into_iter().filter(|&(_, n)| n == 1).map(|(c, _)| c));
            v
        }
    };
    for (i, c) in out.iter().enumerate() {
        if out[..i].contains(c) || !out_terms.iter().flatten().any(|l| l == c) {
            return Err(format!("output label '{c}' is repeated or in no operand"));
        }
    }
    Ok((out_terms, out))
}

impl Importer<'_> {
    /// `Einsum`.
    fn einsum(&mut self) -> R<Vec<ValueId>> {
        let eq = self.astr("equation", "");
        let n = self.ins.len();
        let vals: Vec<ValueId> = (0..n).map(|i| self.inp(i)).collect::<R<_>>()?;
        let ranks: Vec<usize> = vals.iter().map(|&v| self.g.shape(v).rank()).collect();
        let (terms, out) = parse_equation(&eq, &ranks).map_err(super::Fail::Bad)?;
        let dt = self.g.dtype(vals[0]);
        if !dt.is_float() {
            return unsup(format!("Einsum of {dt} (floats only)"));
        }
        let mut terms: Vec<Term> = vals
            .into_iter()
            .zip(terms)
            .map(|(v, labels)| Term { v, labels })
            .collect();
        for t in terms.iter_mut() {
            self.take_diagonals(t)?;
        }
        // Fold the operands left to right.
        let mut rest = terms.split_off(1);
        let mut acc = terms.remove(0);
        while !rest.is_empty() {
            let next = rest.remove(0);
            // Labels still needed after this pair: the output's and the later operands'.
            let mut keep = out.clone();
            keep.extend(rest.iter().flat_map(|t| t.labels.iter().copied()));
            acc = self.contract(acc, next, &keep)?;
        }
        // Sum what the output drops, then order the rest as the output.
        let drop: Vec<usize> = (0..acc.labels.len())
            .filter(|&d| !out.contains(&acc.labels[d]))
            .collect();
        self.sum_dims(&mut acc, &drop)?;
        let perm: Vec<usize> = out
            .iter()
            .map(|c| acc.labels.iter().position(|l| l == c))
            .collect::<Option<_>>()
            .ok_or_else(|| super::Fail::Bad(format!("equation '{eq}': output label missing")))?;
        if perm.iter().enumerate().any(|(i, &p)| i != p) {
            acc.v = self.add1(Op::Transpose { perm }, &[acc.v])?;
        }
        Ok(vec![acc.v])
    }

    /// A label repeated within one operand (`ii`) keeps its diagonal: the two dims moved last,
    /// merged, and every `(n + 1)`-th element gathered.
    fn take_diagonals(&mut self, t: &mut Term) -> R<()> {
        loop {
            let dup = (0..t.labels.len()).find_map(|i| {
                (i + 1..t.labels.len())
                    .find(|&j| t.labels[j] == t.labels[i])
                    .map(|j| (i, j))
            });
            let Some((i, j)) = dup else {
                return Ok(());
            };
            let dims = self.shape(t.v);
            if dims[i] != dims[j] {
                return bad(format!(
                    "label '{}' spans dims of {} and {}",
                    t.labels[i], dims[i], dims[j]
                ));
            }
            let r = dims.len();
            let mut perm: Vec<usize> = (0..r).filter(|&d| d != i && d != j).collect();
            perm.extend([i, j]);
            let moved = self.add1(Op::Transpose { perm: perm.clone() }, &[t.v])?;
            let nd = dims[i];
            let mut flat: Vec<usize> = perm[..r - 2].iter().map(|&d| dims[d]).collect();
            flat.push(nd * nd);
            let merged = self.reshape(moved, flat)?;
            let idx: Vec<f64> = (0..nd).map(|k| (k * (nd + 1)) as f64).collect();
            let idx = self.konst(Tensor::from_f64(DType::I64, [nd], &idx))?;
            t.v = self.add1(Op::Gather { axis: r - 2 }, &[merged, idx])?;
            let mut labels: Vec<char> = perm[..r - 2].iter().map(|&d| t.labels[d]).collect();
            labels.push(t.labels[i]);
            t.labels = labels;
        }
    }

    /// Two operands as one batched MatMul: labels in both and kept are the batch, in both and
    /// not kept are contracted, the rest belong to one side (summed first if not kept).
    fn contract(&mut self, mut a: Term, mut b: Term, keep: &[char]) -> R<Term> {
        let (la, lb) = (a.labels.clone(), b.labels.clone());
        for (t, other) in [(&mut a, lb), (&mut b, la)] {
            let drop: Vec<usize> = (0..t.labels.len())
                .filter(|&d| !keep.contains(&t.labels[d]) && !other.contains(&t.labels[d]))
                .collect();
            self.sum_dims(t, &drop)?;
        }
        let (da, db) = (self.shape(a.v), self.shape(b.v));
        let dim_a = |c: char| da[a.labels.iter().position(|&l| l == c).unwrap_or(0)];
        let dim_b = |c: char| db[b.labels.iter().position(|&l| l == c).unwrap_or(0)];
        let both: Vec<char> = a
            .labels
            .iter()
            .copied()
            .filter(|c| b.labels.contains(c))
            .collect();
        for &c in &both {
            if dim_a(c) != dim_b(c) {
                return unsup(format!(
                    "label '{c}' has sizes {} and {} (broadcast dims in Einsum)",
                    dim_a(c),
                    dim_b(c)
                ));
            }
        }
        let batch: Vec<char> = both.iter().copied().filter(|c| keep.contains(c)).collect();
        let sum: Vec<char> = both.iter().copied().filter(|c| !keep.contains(c)).collect();
        let left: Vec<char> = a
            .labels
            .iter()
            .copied()
            .filter(|c| !both.contains(c))
            .collect();
        let right: Vec<char> = b
            .labels
            .iter()
            .copied()
            .filter(|c| !both.contains(c))
            .collect();
        let size =
            |cs: &[char], f: &dyn Fn(char) -> usize| cs.iter().map(|&c| f(c)).product::<usize>();
        let (nb, nk) = (size(&batch, &dim_a), size(&sum, &dim_a));
        let (nl, nr) = (size(&left, &dim_a), size(&right, &dim_b));
        let order = |t: &Term, cs: &[&[char]]| -> Vec<usize> {
            cs.iter()
                .flat_map(|g| g.iter())
                .map(|c| t.labels.iter().position(|l| l == c).unwrap_or(0))
                .collect()
        };
        let pa = order(&a, &[&batch, &left, &sum]);
        let pb = order(&b, &[&batch, &sum, &right]);
        let ta = self.permute(a.v, pa)?;
        let ta = self.reshape(ta, vec![nb, nl, nk])?;
        let tb = self.permute(b.v, pb)?;
        let tb = self.reshape(tb, vec![nb, nk, nr])?;
        let prod = self.add1(Op::MatMul, &[ta, tb])?;
        let mut dims: Vec<usize> = batch.iter().map(|&c| dim_a(c)).collect();
        dims.extend(left.iter().map(|&c| dim_a(c)));
        dims.extend(right.iter().map(|&c| dim_b(c)));
        let v = self.reshape(prod, dims)?;
        let mut labels = batch;
        labels.extend(left);
        labels.extend(right);
        Ok(Term { v, labels })
    }

    /// The dims `drop` of a term summed away, with their labels.
    fn sum_dims(&mut self, t: &mut Term, drop: &[usize]) -> R<()> {
        if drop.is_empty() {
            return Ok(());
        }
        t.v = self.sum_over(t.v, drop.to_vec(), false)?;
        t.labels = t
            .labels
            .iter()
            .enumerate()
            .filter(|(d, _)| !drop.contains(d))
            .map(|(_, &c)| c)
            .collect();
        Ok(())
    }

    /// A transpose, left out where `perm` is the identity.
    fn permute(&mut self, v: ValueId, perm: Vec<usize>) -> R<ValueId> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) {
            return Ok(v);
        }
        self.add1(Op::Transpose { perm }, &[v])
    }
}

#[cfg(test)]
mod tests {
    use super::parse_equation;

    #[test]
    fn equations_parse() {
        let (t, o) = parse_equation("bij, bjk -> bik", &[3, 3]).unwrap();
        assert_eq!(t, vec![vec!['b', 'i', 'j'], vec!['b', 'j', 'k']]);
        assert_eq!(o, vec!['b', 'i', 'k']);
        // Implicit output: letters used once, sorted.
        let (_, o) = parse_equation("ji,ik", &[2, 2]).unwrap();
        assert_eq!(o, vec!['j', 'k']);
        let (_, o) = parse_equation("i,i", &[1, 1]).unwrap();
        assert!(o.is_empty());
        // The ellipsis stands for the leading dims.
        let (t, o) = parse_equation("...ii->...i", &[3]).unwrap();
        assert_eq!(t[0].len(), 3);
        assert_eq!(o.len(), 2);
        assert_eq!(o[0], t[0][0]);
        assert!(parse_equation("ij->k", &[2]).is_err());
        assert!(parse_equation("ij", &[3]).is_err());
        assert!(parse_equation("ij,jk", &[2]).is_err());
    }
}
