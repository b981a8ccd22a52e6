//! `sfumato view [MODEL|FILE]`: opens the viewer (the `sfumato-viewer` binary, built with the
//! workspace) on a zoo model, an ONNX file, a saved run or a Chrome trace.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct ViewArgs {
    /// What to open: a zoo or built-in model name, an .onnx file, a saved run (`sfumato run
    /// --save-run FILE`) or a Chrome trace (`--trace FILE`). Without it the viewer starts empty.
    pub(crate) target: Option<String>,
    /// A second saved run to compare against the first, op by op.
    #[arg(long)]
    pub(crate) compare: Option<PathBuf>,
    /// Render one frame to this PNG and exit, instead of opening a window (needs no display).
    #[arg(long)]
    pub(crate) screenshot: Option<PathBuf>,
    /// Measure N frames (the view panned and zoomed each frame), print the frame times and the
    /// graph's layout time, and exit.
    #[arg(long)]
    pub(crate) bench_frames: Option<usize>,
    /// The UI's renderer: OpenGL (`glow`, the default) or `wgpu` (the model's compute runs on
    /// wgpu either way).
    #[arg(long, value_parser = ["glow", "wgpu"])]
    pub(crate) renderer: Option<String>,
}

/// The viewer binary: beside this one (as cargo builds and installs them), else on PATH.
fn viewer_binary() -> PathBuf {
    let name = format!("sfumato-viewer{}", std::env::consts::EXE_SUFFIX);
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
    {
        let beside = dir.join(&name);
        if beside.is_file() {
            return beside;
        }
    }
    PathBuf::from(name)
}

pub(crate) fn view(a: &ViewArgs) -> Result<()> {
    let bin = viewer_binary();
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(a.target.iter());
    if let Some(c) = &a.compare {
        cmd.arg("--compare").arg(c);
    }
    if let Some(s) = &a.screenshot {
        cmd.arg("--screenshot").arg(s);
    }
    if let Some(n) = a.bench_frames {
        cmd.arg("--bench-frames").arg(n.to_string());
    }
    if let Some(r) = &a.renderer {
        cmd.arg("--renderer").arg(r);
    }
    let status = cmd.status().with_context(|| {
        format!(
            "starting the viewer ({}): build it with `cargo build --release -p sfumato-viewer` \
             (it is installed beside `sfumato`)",
            bin.display()
        )
    })?;
    if !status.success() {
        bail!("the viewer exited with {status}");
    }
    Ok(())
}
