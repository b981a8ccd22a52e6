//! A kernel's `params` read from a uniform buffer instead of read-only storage, where they fit
//! one: every template declares `params` as storage and reads `params[i]`; [`apply`] rewrites a
//! finished kernel's module to read a uniform array of `vec4<u32>` through `prm(i)`.
//!
//! Why: almost every read of `params` has the same index in every invocation (a shape, a
//! stride, an offset), and on a CPU adapter that difference is large. lavapipe reads a storage
//! buffer with a loop over the SIMD lanes whatever the index, but reads a uniform buffer at an
//! index the same in every lane with one scalar load. A fused elementwise kernel that reads a
//! transposed view computes each element's offset from about ten params: the sigmoid over
//! YOLOv5's 3 x 85 x 6,400 transposed head took 62 ms reading them from storage and 20 ms from
//! a uniform buffer (a lab kernel of the same code). GPUs serve uniform reads from their
//! constant caches.
//!
//! The binding is always [`PARAMS_UNIFORM_BYTES`] (the device pads the run's params buffer so
//! that every kernel's window fits), so one pipeline serves every shape. A kernel whose params
//! are longer (a matmul over hundreds of batches) keeps the storage binding, and so does a
//! kernel that already binds uniform buffers (the `ubo` matmuls' row blocks, a depthwise
//! conv's weights): on lavapipe (Mesa 22.3.6) such kernels with their params in a uniform
//! buffer too corrupted the driver's heap during ResNet-18's run (`corrupted size vs.
//! prev_size` or `malloc(): smallbin double linked list corrupted`, in the queue thread), not
//! every time: allowing kernels with up to 8 or 11 other uniform bindings crashed in some runs
//! and not in others; up to 6 did not crash in the one run tried, which proves nothing. Those
//! kernels read their params once per invocation, not once per element, so they keep storage.

use crate::{Buf, Kernel, Lowered};

/// Words of params a uniform binding holds (4 KiB: well inside WebGPU's guaranteed 64 KiB).
pub const PARAMS_UNIFORM_WORDS: usize = 1024;

/// Bytes of a uniform params binding: the whole declared array, whatever the kernel's params.
pub const PARAMS_UNIFORM_BYTES: u64 = PARAMS_UNIFORM_WORDS as u64 * 4;

/// How every template declares its params (after its `@group(0) @binding(N)`).
const STORAGE_DECL: &str = "var<storage, read> params: array<u32>;";

/// The uniform declaration that replaces it, and the reader every `params[i]` becomes.
const UNIFORM_DECL: &str = "var<uniform> params_u: array<vec4<u32>, 256>;
// Params word i: the kernel's params live in a uniform buffer (one scalar load where every
// invocation reads the same word; see `uniform_params.rs`).
fn prm(i: u32) -> u32 {
    return params_u[i >> 2u][i & 3u];
}";

impl Kernel {
    /// Whether this kernel reads its params from a uniform buffer of
    /// [`PARAMS_UNIFORM_BYTES`] (else from a read-only storage buffer of its params' length).
    pub fn params_uniform(&self) -> bool {
        self.wgsl.contains("var<uniform> params_u:")
    }
}

/// Rewrite each kernel of `lowered` whose params fit [`PARAMS_UNIFORM_WORDS`] and that binds
/// no other uniform buffer to read its params from a uniform buffer.
pub fn apply(lowered: &mut Lowered) {
    if let Lowered::Kernels(ks) = lowered {
        for k in ks {
            apply_one(k);
        }
    }
}

/// [`apply`] for one kernel.
pub fn apply_one(k: &mut Kernel) {
    let other_uniforms = k.bindings.iter().any(|b| matches!(b, Buf::Uniform { .. }));
    if k.params.len() > PARAMS_UNIFORM_WORDS || other_uniforms || k.params_uniform() {
        return;
    }
    if let Some(w) = rewrite(&k.wgsl) {
        k.wgsl = w;
    }
}

/// The module with its params declaration made uniform and each `params[e]` made `prm(e)`;
/// `None` where it declares no storage params or a read's closing bracket is not on its line.
fn rewrite(wgsl: &str) -> Option<String> {
    let at = wgsl.find(STORAGE_DECL)?;
    let mut src = String::with_capacity(wgsl.len() + UNIFORM_DECL.len());
    src.push_str(&wgsl[..at]);
    src.push_str(UNIFORM_DECL);
    src.push_str(&wgsl[at + STORAGE_DECL.len()..]);
    reads(&src)
}

/// `text` with each `params[e]` made `prm(e)`, inner reads too.
fn reads(text: &str) -> Option<String> {
    const READ: &str = "params[";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(READ) {
        let word_start = rest[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        out.push_str(&rest[..i]);
        let after = &rest[i + READ.len()..];
        if !word_start {
            out.push_str(READ);
            rest = after;
            continue;
        }
        // The matching `]` on the same line.
        let mut depth = 1usize;
        let mut close = None;
        for (j, c) in after.char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(j);
                        break;
                    }
                }
                '\n' => break,
                _ => {}
            }
        }
        let close = close?;
        out.push_str("prm(");
        out.push_str(&reads(&after[..close])?);
        out.push(')');
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_become_uniform_reads() {
        let src = "@group(0) @binding(2) var<storage, read> params: array<u32>;
fn f(i: u32) -> u32 {
    return params[params[i] + a[2]] + my_params[3] + params[1u];
}";
        let w = rewrite(src).unwrap();
        assert!(w.contains("@group(0) @binding(2) var<uniform> params_u: array<vec4<u32>, 256>;"));
        assert!(
            w.contains("return prm(prm(i) + a[2]) + my_params[3] + prm(1u);"),
            "{w}"
        );
        assert!(!w.contains("var<storage, read> params"));
        crate::validate("t", &format!("{w}\n@group(0) @binding(0) var<storage, read> a: array<u32>;\n@group(0) @binding(1) var<storage, read> my_params: array<u32>;\n@compute @workgroup_size(1)\nfn main() {{ _ = f(0u); }}")).unwrap();
    }

    #[test]
    fn unmatched_or_missing_declarations_are_left_alone() {
        assert!(rewrite("fn f() {}").is_none());
        assert!(rewrite("var<storage, read> params: array<u32>;\nlet x = params[1\n];").is_none());
    }
}
