//! sfumato-wasm: the browser page. The viewer ([`sfumato_viewer::Viewer`]) is drawn with
//! eframe's WebGL2 (glow) renderer, and models run on the browser's WebGPU through
//! `sfumato-wgpu`, in the same page (headless Chromium does not capture a WebGPU canvas, so the
//! UI stays on WebGL2).
//!
//! `scripts/build-web.sh` builds it with wasm-bindgen (pinned to Cargo.lock's version) into
//! `target/web/`, beside `wasm/www/`'s pages. The page's JavaScript API (`Page`, wasm32 only)
//! runs models, opens files and answers the browser tests' questions (which node is selected,
//! where a node is drawn).

#[cfg(target_arch = "wasm32")]
mod web;

#[cfg(target_arch = "wasm32")]
pub use web::Page;

/// The zoo models the page offers, at the sizes [`shrink`] gives them.
pub const WEB_MODELS: &[&str] = &[
    "resnet-bottleneck",
    "mlp",
    "bert-base",
    "resnet18",
    "efficientnet-lite0",
    "vit-b16",
];

/// A model's (batch, layers, seq, size) in the page: batch 1, one layer or block, at most 32
/// tokens and 64x64 images, so a browser tab runs it in seconds.
pub fn shrink(
    batch: usize,
    layers: usize,
    seq: usize,
    size: usize,
) -> (usize, usize, usize, usize) {
    (batch.min(1), layers.min(1), seq.min(32), size.min(64))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pages_sizes_are_small() {
        assert_eq!(super::shrink(4, 12, 128, 224), (1, 1, 32, 64));
        assert_eq!(super::shrink(1, 1, 8, 32), (1, 1, 8, 32));
    }
}
