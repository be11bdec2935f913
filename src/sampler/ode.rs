//! The probability-flow ODE (Song et al. 2021, eq. 13) by Euler's and Heun's methods, and the
//! ODE solver choice that encoding, decoding and likelihoods share (rk45 in `rk45.rs`).

use super::rk45::rk45;
use super::{param, Denoiser, Method, Progress, Run, Schedule};
use crate::backend::Backend;
use crate::error::Result;

impl<B: Backend, D: Denoiser<B>, P: Progress> Run<'_, B, D, P> {
    /// One Euler step of the probability-flow ODE from t to s.
    pub(super) async fn euler_step(&mut self, x: &B::Tensor, t: f64, s: f64) -> Result<B::Tensor> {
        let d = self.drift(x, t).await?;
        self.be.axpby(x, &d, 1.0, (s - t) as f32)
    }

    /// One Heun step (2 evaluations) of the probability-flow ODE from t to s.
    pub(super) async fn heun_step(&mut self, x: &B::Tensor, t: f64, s: f64) -> Result<B::Tensor> {
        let h = s - t;
        let d1 = self.drift(x, t).await?;
        let xe = self.be.axpby(x, &d1, 1.0, h as f32)?;
        let d2 = self.drift(&xe, s).await?;
        self.be
            .combine3(x, &d1, Some(&d2), [1.0, (h / 2.0) as f32, (h / 2.0) as f32])
    }
}

/// How to integrate the probability-flow ODE.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OdeSolver {
    Euler {
        steps: usize,
    },
    Heun {
        steps: usize,
    },
    /// Dormand–Prince 5(4) with step-size control; fails past `max_steps` accepted steps.
    Rk45 {
        rtol: f64,
        atol: f64,
        max_steps: usize,
    },
}

/// Integrates the probability-flow ODE from t0 to t1 (either direction: t0 < t1 encodes data
/// into noise, t0 > t1 decodes). Returns x at t1 and the number of evaluations.
#[allow(clippy::too_many_arguments)]
pub async fn solve_ode<B: Backend, D: Denoiser<B>, P: Progress>(
    be: &mut B,
    den: &mut D,
    s: &Schedule,
    x: B::Tensor,
    t0: f64,
    t1: f64,
    solver: OdeSolver,
    seed: u32,
    progress: &mut P,
) -> Result<(B::Tensor, usize)> {
    let total = match solver {
        OdeSolver::Euler { steps } | OdeSolver::Heun { steps } => steps,
        OdeSolver::Rk45 { max_steps, .. } => max_steps,
    };
    let shape = B::shape(&x).to_vec();
    let mut run = Run::new(be, den, progress, *s, shape, seed, total);
    let x = solve_ode_in(&mut run, x, t0, t1, solver).await?;
    Ok((x, run.evals))
}

pub(super) async fn solve_ode_in<B: Backend, D: Denoiser<B>, P: Progress>(
    run: &mut Run<'_, B, D, P>,
    x: B::Tensor,
    t0: f64,
    t1: f64,
    solver: OdeSolver,
) -> Result<B::Tensor> {
    let fraction = |t: f64| ((t - t0) / (t1 - t0)).clamp(0.0, 1.0);
    match solver {
        OdeSolver::Euler { steps } | OdeSolver::Heun { steps } => {
            if steps == 0 {
                return param("steps", "must be at least 1".into());
            }
            let method = if matches!(solver, OdeSolver::Euler { .. }) {
                Method::Euler
            } else {
                Method::Heun
            };
            let mut x = x;
            for k in 0..steps {
                let (t, s) = (
                    t0 + (t1 - t0) * k as f64 / steps as f64,
                    t0 + (t1 - t0) * (k + 1) as f64 / steps as f64,
                );
                x = run.single_step(method, 0.0, &x, t, s, k).await?;
                run.end_step(s, fraction(s), &x).await?;
            }
            Ok(x)
        }
        OdeSolver::Rk45 {
            rtol,
            atol,
            max_steps,
        } => rk45(run, x, t0, t1, rtol, atol, max_steps, fraction).await,
    }
}
