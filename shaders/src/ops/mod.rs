//! Per-op-family lowering.

pub mod conv;
pub mod elementwise;
pub mod reduce;
pub mod rnn;
pub mod tensor;

use sfumato_core::{DType, Shape};

/// A tensor's dtype and shape, as `lower` takes them.
pub type Io<'a> = (DType, &'a Shape);
