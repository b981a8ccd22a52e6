//! NonZero, Unique and NonMaxSuppression: their outputs' shapes depend on their input values, so
//! they are computed on the host ([`crate::hostops`]). Where every input is known at import they
//! fold to constants; otherwise the node needs run-time values and the model runs staged
//! ([`crate::staged`]).

use super::Converter::{self, Tensors};
use super::{Fail, Importer, R};
use sfumato_core::ValueId;

pub(super) const OPS: &[(&str, Converter)] = &[
    ("NonZero", Tensors(|c| c.host_op())),
    ("Unique", Tensors(|c| c.host_op())),
    ("NonMaxSuppression", Tensors(|c| c.host_op())),
];

impl Importer<'_> {
    fn host_op(&mut self) -> R<Vec<ValueId>> {
        let mut ins = Vec::with_capacity(self.ins.len());
        for i in 0..self.ins.len() {
            if !self.has(i) {
                ins.push(None);
                continue;
            }
            let v = self.inp(i)?;
            match self.const_of(v) {
                Some(t) => ins.push(Some(t)),
                None => {
                    return Err(Fail::RunTime(format!(
                        "the shape of its output depends on the values of input {i} ('{}'), so it runs on the host between device stages",
                        self.ins[i]
                    )))
                }
            }
        }
        let outs = crate::hostops::run(&self.op, &self.attrs, &ins, self.n_outputs)?;
        outs.into_iter().map(|t| self.konst(t)).collect()
    }
}
