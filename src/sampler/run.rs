//! The state every sampler is written against: the backend, the denoiser and the caller's
//! progress, with the evaluation count, the last prediction (for previews) and the noise streams.

use super::{Control, Denoiser, NoiseKey, Progress, Role, Schedule, StepInfo};
use crate::backend::Backend;
use crate::error::{finite, Error, Result};

/// Shared state of one run: counts evaluations, keeps the last prediction for previews, reports.
pub(super) struct Run<'a, B: Backend, D, P> {
    pub(super) be: &'a mut B,
    pub(super) den: &'a mut D,
    pub(super) progress: &'a mut P,
    pub(super) s: Schedule,
    pub(super) shape: Vec<usize>,
    pub(super) seed: u32,
    pub(super) evals: usize,
    pub(super) step: usize,
    pub(super) total: usize,
    /// (x, eps, t) of the last evaluation.
    pub(super) last: Option<(B::Tensor, B::Tensor, f64)>,
}

impl<'a, B: Backend, D: Denoiser<B>, P: Progress> Run<'a, B, D, P> {
    /// A run of `total` steps on samples of `shape` seeded from `seed`.
    pub(super) fn new(
        be: &'a mut B,
        den: &'a mut D,
        progress: &'a mut P,
        s: Schedule,
        shape: Vec<usize>,
        seed: u32,
        total: usize,
    ) -> Self {
        Run {
            be,
            den,
            progress,
            s,
            shape,
            seed,
            evals: 0,
            step: 0,
            total,
            last: None,
        }
    }

    pub(super) async fn eps(&mut self, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let e = self.den.eps(self.be, x, t).await?;
        self.evals += 1;
        self.last = Some((x.clone(), e.clone(), t));
        Ok(e)
    }

    pub(super) fn noise(&mut self, role: Role, step: usize, k: usize) -> Result<B::Tensor> {
        self.be.randn(
            &self.shape,
            self.seed,
            NoiseKey::new(role, step, k).stream()?,
        )
    }

    pub(super) fn x0(&mut self, x: &B::Tensor, eps: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let (a, s) = (self.s.alpha(t), self.s.sigma(t));
        self.be
            .combine3(x, eps, None, [(1.0 / a) as f32, (-s / a) as f32, 0.0])
    }

    /// The probability-flow drift `dx/dt = f x - g^2 score / 2 = f x + g^2 eps / (2 sigma)`.
    pub(super) async fn drift(&mut self, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let e = self.eps(x, t).await?;
        let (f, g2) = (self.s.drift_coef(t), self.s.diffusion_sq(t));
        self.be.combine3(
            x,
            &e,
            None,
            [f as f32, (0.5 * g2 / self.s.sigma(t)) as f32, 0.0],
        )
    }

    pub(super) fn info(&self, t: f64, fraction: f64, rejected: bool) -> StepInfo {
        StepInfo {
            step: self.step,
            total: self.total,
            fraction,
            t,
            evals: self.evals,
            rejected,
        }
    }

    /// Reports a rejected try (rk45) and honours a cancel; previews wait for an accepted step.
    pub(super) fn rejected_step(&mut self, t: f64, fraction: f64) -> Result<()> {
        match self.progress.step(&self.info(t, fraction, true)) {
            Control::Cancel => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    /// Reports a finished step; previews and cancels as the caller asks; paces the device.
    pub(super) async fn end_step(&mut self, t: f64, fraction: f64, x: &B::Tensor) -> Result<()> {
        self.step += 1;
        let info = self.info(t, fraction, false);
        match self.progress.step(&info) {
            Control::Cancel => return Err(Error::Cancelled),
            Control::Preview => {
                if let Some((x, e, t)) = self.last.clone() {
                    let x0 = self.x0(&x, &e, t)?;
                    let values = finite(self.be.read(&x0).await?, || {
                        format!("the preview of step {}", info.step)
                    })?;
                    self.progress.preview(&info, &values);
                }
            }
            Control::Trace => {
                let values = finite(self.be.read(x).await?, || format!("step {}", info.step))?;
                self.progress.trace(&info, &values);
            }
            Control::Continue => {}
        }
        self.be.pace().await
    }

    /// Final denoising at `t`.
    pub(super) async fn denoise(&mut self, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let e = self.eps(x, t).await?;
        self.x0(x, &e, t)
    }
}
