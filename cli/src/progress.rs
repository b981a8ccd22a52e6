//! Progress bars (indicatif, on stderr) for the library's [`Progress`] reports: building kernels,
//! uploading weights, tuning. indicatif hides them where stderr is not a terminal (pipes, CI,
//! tests), and notes go to stderr above any bar.

use indicatif::{ProgressBar, ProgressStyle};
use sfumato_core::Progress;
use std::sync::Mutex;

/// One bar at a time, one per stage.
#[derive(Debug, Default)]
pub(crate) struct Bars {
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    fn with_bar(&self, f: impl FnOnce(&ProgressBar)) {
        if let Ok(b) = self.bar.lock() {
            if let Some(b) = b.as_ref() {
                f(b)
            }
        }
    }
}

impl Progress for Bars {
    fn stage(&self, name: &str, total: u64) {
        let bar = if total > 0 {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        } else {
            let b = ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(120));
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {elapsed_precise} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        };
        bar.set_prefix(name.to_string());
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(old) = slot.replace(bar) {
                old.finish_and_clear();
            }
        }
    }

    fn step(&self, detail: &str) {
        self.with_bar(|b| {
            b.inc(1);
            b.set_message(detail.to_string());
        });
    }

    fn done(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(b) = slot.take() {
                b.finish_and_clear();
            }
        }
    }

    fn note(&self, line: &str) {
        let mut shown = false;
        self.with_bar(|b| {
            b.suspend(|| eprintln!("{line}"));
            shown = true;
        });
        if !shown {
            eprintln!("{line}");
        }
    }
}
