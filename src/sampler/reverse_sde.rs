//! The reverse-time SDE (Song et al. 2021, *Score-Based Generative Modeling through Stochastic
//! Differential Equations*, eq. 6) by Euler–Maruyama.

use super::{Denoiser, Progress, Role, Run};
use crate::backend::Backend;
use crate::error::Result;

impl<B: Backend, D: Denoiser<B>, P: Progress> Run<'_, B, D, P> {
    /// One Euler–Maruyama step of the reverse SDE from t to s (< t).
    pub(super) async fn sde_step(
        &mut self,
        x: &B::Tensor,
        t: f64,
        s: f64,
        k: usize,
    ) -> Result<B::Tensor> {
        let sc = self.s;
        // x + (f x - g^2 score) h + g sqrt(|h|) z with score = -eps / sigma.
        let e = self.eps(x, t).await?;
        let (g2, h) = (sc.diffusion_sq(t), s - t);
        let cx = 1.0 + sc.drift_coef(t) * h;
        let ce = g2 * h / sc.sigma(t);
        if s <= sc.t_eps {
            // The step onto t_eps returns its mean (score_sde's noise removal): its noise
            // sqrt(g^2 h) is far above sigma(t_eps), and the final denoising at t_eps
            // cannot take it out (20 steps left a third of digit backgrounds speckled).
            return self.be.combine3(x, &e, None, [cx as f32, ce as f32, 0.0]);
        }
        let z = self.noise(Role::Step, k, 0)?;
        self.be.combine3(
            x,
            &e,
            Some(&z),
            [cx as f32, ce as f32, (g2 * -h).sqrt() as f32],
        )
    }
}
