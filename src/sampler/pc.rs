//! Predictor–corrector sampling (Song et al. 2021, §4.2, Algorithms 2 and 3): a step of a
//! single-step predictor, then Langevin corrector steps at the new time.

use super::{time_grid, Denoiser, Progress, Role, Run, SamplerOptions};
use crate::backend::Backend;
use crate::error::Result;

impl<B: Backend, D: Denoiser<B>, P: Progress> Run<'_, B, D, P> {
    /// Langevin corrector steps at time t: `x + e score + sqrt(2 e) z` with `score = -eps / sigma`.
    /// The step size is Song et al.'s `2 alpha (snr |z| / |score|)^2` (alpha = 1 - beta(t) / N on
    /// VP and sub-VP, 1 on VE: `1 + 2 f(t) / N`) with
    /// the norms replaced by their expected values (`|z|^2 = d`, `|score|^2 = d / sigma^2`), i.e.
    /// `e = 2 alpha (snr sigma)^2`: per-sample norms are unstable in low dimension, and batch-mean
    /// norms would make a sample depend on the rest of its batch.
    pub(super) async fn correct(
        &mut self,
        x: B::Tensor,
        t: f64,
        snr: f64,
        steps: usize,
        k: usize,
    ) -> Result<B::Tensor> {
        let mut x = x;
        let sigma = self.s.sigma(t);
        let alpha = 1.0 + 2.0 * self.s.drift_coef(t) / self.s.discrete_steps as f64;
        let e = 2.0 * alpha * (snr * sigma).powi(2);
        for j in 0..steps {
            let eps = self.eps(&x, t).await?;
            let z = self.noise(Role::Corrector, k, j)?;
            x = self.be.combine3(
                &x,
                &eps,
                Some(&z),
                [1.0, (-e / sigma) as f32, (2.0 * e).sqrt() as f32],
            )?;
        }
        Ok(x)
    }
}

/// The predictor–corrector loop over `steps` from `t0`, then the final denoising.
pub(super) async fn predictor_corrector<B: Backend, D: Denoiser<B>, P: Progress>(
    run: &mut Run<'_, B, D, P>,
    x: B::Tensor,
    opts: &SamplerOptions,
    steps: usize,
    t0: f64,
) -> Result<B::Tensor> {
    let s = run.s;
    let grid = time_grid(&s, opts.predictor, steps, t0)?;
    let mut x = x;
    for k in 0..steps {
        x = run
            .single_step(opts.predictor, opts.eta, &x, grid[k], grid[k + 1], k)
            .await?;
        x = run
            .correct(x, grid[k + 1], opts.snr, opts.corrector_steps, k)
            .await?;
        run.end_step(grid[k + 1], (k + 1) as f64 / steps as f64, &x)
            .await?;
    }
    run.denoise(&x, s.t_eps).await
}
