//! A progress bar on stderr.

use std::io::Write;
use std::time::Instant;

use scorelab::sampler::{Control, Progress, StepInfo};

/// A progress bar on stderr.
pub(super) struct Bar {
    start: Instant,
}

impl Bar {
    pub(super) fn new() -> Bar {
        Bar {
            start: Instant::now(),
        }
    }

    pub(super) fn done(&self, what: &str) {
        eprintln!("\n{what} in {:.2} s", self.start.elapsed().as_secs_f64());
    }
}

impl Progress for Bar {
    fn step(&mut self, info: &StepInfo) -> Control {
        let width = 30;
        let filled = (info.fraction * width as f64).round() as usize;
        let secs = self.start.elapsed().as_secs_f64();
        eprint!(
            "\r[{}{}] step {}/{} t={:.3} {} evals {:.1} steps/s ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            info.step,
            info.total,
            info.t,
            info.evals,
            info.step as f64 / secs.max(1e-9)
        );
        let _ = std::io::stderr().flush();
        Control::Continue
    }
}
