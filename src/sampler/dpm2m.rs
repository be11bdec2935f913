//! DPM-Solver++(2M) (Lu et al. 2022, *DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
//! Probabilistic Models*), a second-order multistep solver of the probability-flow ODE in log-SNR.

use super::{Denoiser, Progress, Run};
use crate::backend::Backend;
use crate::error::Result;

/// DPM-Solver++(2M) (Lu et al. 2022) with the data prediction `D = (x - sigma eps) / alpha`,
/// first-order on the first step. The grid is quadratic in t (`t_eps + (t0 - t_eps)(1 - i/k)^2`,
/// denser near the data): against the exact ODE solution of a Gaussian mixture it halves the
/// error of the usual log-SNR-uniform grid at 10 steps (0.079 vs 0.130 rms).
pub(super) async fn dpm_solver_2m<B: Backend, D: Denoiser<B>, P: Progress>(
    run: &mut Run<'_, B, D, P>,
    x: B::Tensor,
    t0: f64,
    k: usize,
) -> Result<B::Tensor> {
    let s = run.s;
    let ts: Vec<f64> = (0..=k)
        .map(|i| s.t_eps + (t0 - s.t_eps) * (1.0 - i as f64 / k as f64).powi(2))
        .collect();
    let mut x = x;
    let mut prev: Option<(B::Tensor, f64)> = None; // (D at the previous time, its step h)
    for i in 0..k {
        let (t, tn) = (ts[i], ts[i + 1]);
        let d = run.denoise(&x, t).await?;
        let h = s.lambda(tn) - s.lambda(t);
        let (ratio, coef) = (s.sigma(tn) / s.sigma(t), -s.alpha(tn) * (-h).exp_m1());
        // x_next = (sigma_n / sigma) x + alpha_n (1 - e^-h) D'
        x = match &prev {
            None => run.be.axpby(&x, &d, ratio as f32, coef as f32)?,
            Some((d_prev, h_prev)) => {
                let r = h_prev / h;
                let (c1, c2) = (1.0 + 0.5 / r, -0.5 / r);
                run.be.combine3(
                    &x,
                    &d,
                    Some(d_prev),
                    [ratio as f32, (coef * c1) as f32, (coef * c2) as f32],
                )?
            }
        };
        prev = Some((d, h));
        run.end_step(tn, (i + 1) as f64 / k as f64, &x).await?;
    }
    run.denoise(&x, s.t_eps).await
}
