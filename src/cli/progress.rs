//! Progress for long operations (import of a directory, checkout of a big tree,
//! root key generation): drawn on stderr when it is a terminal, never when
//! piped, with `-q` or `--json`, or inside the daemon.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::config::Config;

fn shown(cfg: &Config) -> bool {
    !cfg.quiet && !cfg.json && !cfg.remote() && std::io::stderr().is_terminal()
}

fn target(cfg: &Config) -> ProgressDrawTarget {
    if shown(cfg) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// A bar of `len` steps.
pub fn bar(cfg: &Config, len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target(cfg));
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// A spinner for work of unknown length.
pub fn spinner(cfg: &Config, what: &str) -> ProgressBar {
    ticking(cfg, "{spinner} {msg} {elapsed}", what)
}

/// A counter for work of unknown length (`pkfs fsck`: items checked).
pub fn counter(cfg: &Config, what: &str) -> ProgressBar {
    ticking(cfg, "{spinner} {msg} {pos} {elapsed}", what)
}

/// A bar drawn with `template` that ticks on its own.
fn ticking(cfg: &Config, template: &str, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target(cfg));
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}
