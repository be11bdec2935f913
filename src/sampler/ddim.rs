//! DDPM ancestral sampling (Ho et al. 2020) and DDIM (Song et al. 2021, *Denoising Diffusion
//! Implicit Models*) on a strided subset of the model's discrete chain: one formula, DDPM being
//! DDIM with eta 1.

use super::{Denoiser, Progress, Role, Run};
use crate::backend::Backend;
use crate::error::Result;

impl<B: Backend, D: Denoiser<B>, P: Progress> Run<'_, B, D, P> {
    /// One DDIM step from t to s (< t) with noise scale `eta` (1: DDPM's posterior variance).
    pub(super) async fn ddim_step(
        &mut self,
        eta: f64,
        x: &B::Tensor,
        t: f64,
        s: f64,
        k: usize,
    ) -> Result<B::Tensor> {
        let sc = self.s;
        let e = self.eps(x, t).await?;
        // DDIM (Song et al. 2021, eq. 12) for marginals alpha x0 + sigma eps:
        // x_s = alpha_s x0 + sqrt(sigma_s^2 - var) eps + sqrt(var) z with var = eta^2 times
        // the DDPM posterior variance (sigma_s / sigma_t)^2 (sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2)
        // (on VP: eta^2 (1 - ab_s)/(1 - ab_t) (1 - ab_t/ab_s)). The DDPM posterior mean
        // equals the eta = 1 DDIM mean, so one formula serves both.
        let (a_t, s_t, a_s, s_s) = (sc.alpha(t), sc.sigma(t), sc.alpha(s), sc.sigma(s));
        let var = (eta * s_s / s_t).powi(2) * (s_t * s_t - (a_t / a_s * s_s).powi(2)).max(0.0);
        let dir = (s_s * s_s - var).max(0.0).sqrt();
        // x0 = (x - s_t eps) / a_t
        let cx = a_s / a_t;
        let ce = dir - a_s * s_t / a_t;
        if var > 0.0 {
            let z = self.noise(Role::Step, k, 0)?;
            self.be
                .combine3(x, &e, Some(&z), [cx as f32, ce as f32, var.sqrt() as f32])
        } else {
            self.be.combine3(x, &e, None, [cx as f32, ce as f32, 0.0])
        }
    }
}
