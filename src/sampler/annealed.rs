//! Annealed Langevin dynamics (Song & Ermon 2019, *Generative Modeling by Estimating Gradients of
//! the Data Distribution*), run on any SDE's model through its VE view.

use super::{Denoiser, Progress, Role, Run, SamplerOptions};
use crate::backend::Backend;
use crate::error::Result;

/// Annealed Langevin dynamics (Song & Ermon 2019) on the VE view `x_ve = x / alpha`: at level
/// `sigma_i = sigma(t_i) / alpha(t_i)` the score of `x_ve` is `-eps(alpha x_ve, t_i) / sigma_i`.
/// Levels are geometric from `sigma(1)/alpha(1)` down to `sigma(t_eps)/alpha(t_eps)`, or to NCSN's
/// smallest level 0.01 where the SDE's is below it (sub-VP's is 1e-4: `step_lr` is tuned for a
/// ladder ending at 0.01, and a step of `step_lr / sigma_min^2` noise variances diverges); the step
/// size is `step_lr sigma_i^2 / sigma_min^2`; the result is denoised at the last level.
pub(super) async fn annealed<B: Backend, D: Denoiser<B>, P: Progress>(
    run: &mut Run<'_, B, D, P>,
    z: B::Tensor,
    opts: &SamplerOptions,
) -> Result<B::Tensor> {
    let s = run.s;
    let levels = opts.steps();
    let (hi, lo) = (s.noise_ratio(1.0), s.noise_ratio(s.t_eps).max(0.01));
    let sigmas: Vec<f64> = (0..levels)
        .map(|i| {
            if levels == 1 {
                lo
            } else {
                hi * (lo / hi).powf(i as f64 / (levels - 1) as f64)
            }
        })
        .collect();
    // z is a prior draw (std prior_std); x_ve ~ N(0, sigma_max^2).
    let mut x = run.be.axpby(&z, &z, (hi / s.prior_std()) as f32, 0.0)?;
    for (i, &sig) in sigmas.iter().enumerate() {
        let t = s.t_from_noise_ratio(sig);
        let a = s.alpha(t);
        let step = opts.step_lr * (sig / lo).powi(2);
        for j in 0..opts.langevin_steps {
            let xv = run.be.axpby(&x, &x, a as f32, 0.0)?;
            let e = run.eps(&xv, t).await?;
            let z = run.noise(Role::Langevin, i, j)?;
            // x + (step / 2) score + sqrt(step) z, score = -eps / sig
            x = run.be.combine3(
                &x,
                &e,
                Some(&z),
                [1.0, (-0.5 * step / sig) as f32, step.sqrt() as f32],
            )?;
        }
        run.end_step(t, (i + 1) as f64 / levels as f64, &x).await?;
    }
    // Tweedie at the last level: x0 = x_ve + sigma^2 score = x_ve - sigma eps.
    let t = s.t_from_noise_ratio(lo);
    let xv = run.be.axpby(&x, &x, s.alpha(t) as f32, 0.0)?;
    let e = run.eps(&xv, t).await?;
    run.be.axpby(&x, &e, 1.0, -lo as f32)
}
