//! The probability-flow ODE by the adaptive Dormand–Prince 5(4) method (Dormand & Prince 1980,
//! *A family of embedded Runge-Kutta formulae*), with step-size control on the per-sample error.

use super::{param, Denoiser, Progress, Run};
use crate::backend::Backend;
use crate::error::{Error, Result};

/// rk45's tolerances: in [1e-7, 1), as f32 arithmetic resolves no finer (a smaller tolerance
/// could never be met, or would vanish to 0 in the kernel).
pub fn check_tolerances(rtol: f64, atol: f64) -> Result<()> {
    for (name, v) in [("rtol", rtol), ("atol", atol)] {
        if !(1e-7..1.0).contains(&v) {
            return param(
                name,
                format!("{v:e} must be in [1e-7, 1) (the arithmetic is f32)"),
            );
        }
    }
    Ok(())
}

/// Dormand–Prince 5(4) tableau.
const DP_C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const DP_A: [&[f64]; 7] = [
    &[],
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// Fifth-order weights minus fourth-order weights: the local error estimate.
const DP_E: [f64; 7] = [
    71.0 / 57600.0,
    0.0,
    -71.0 / 16695.0,
    71.0 / 1920.0,
    -17253.0 / 339200.0,
    22.0 / 525.0,
    -1.0 / 40.0,
];

/// `base + h sum_i c_i k_i` (base optional), as a chain of three-term combinations.
fn lincomb<B: Backend>(
    be: &mut B,
    base: Option<&B::Tensor>,
    h: f64,
    coeffs: &[f64],
    ks: &[B::Tensor],
) -> Result<B::Tensor> {
    let mut terms: Vec<(f64, &B::Tensor)> = coeffs
        .iter()
        .zip(ks)
        .filter(|(c, _)| **c != 0.0)
        .map(|(c, k)| (c * h, k))
        .collect();
    let mut acc = match base {
        Some(b) => b.clone(),
        None => {
            let (a, ka) = terms.remove(0);
            let (b, kb) = if terms.is_empty() {
                (0.0, ka)
            } else {
                terms.remove(0)
            };
            be.axpby(ka, kb, a as f32, b as f32)?
        }
    };
    for pair in terms.chunks(2) {
        acc = match pair {
            [(a, ka), (b, kb)] => be.combine3(&acc, ka, Some(kb), [1.0, *a as f32, *b as f32])?,
            [(a, ka)] => be.axpby(&acc, ka, 1.0, *a as f32)?,
            _ => unreachable!(),
        };
    }
    Ok(acc)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn rk45<B: Backend, D: Denoiser<B>, P: Progress>(
    run: &mut Run<'_, B, D, P>,
    x: B::Tensor,
    t0: f64,
    t1: f64,
    rtol: f64,
    atol: f64,
    max_steps: usize,
    fraction: impl Fn(f64) -> f64,
) -> Result<B::Tensor> {
    let dir = (t1 - t0).signum();
    let len: usize = run.shape[1..].iter().product();
    let mut x = x;
    let mut t = t0;
    let mut h = dir * (t1 - t0).abs() * 0.02;
    let mut k1 = run.drift(&x, t).await?;
    let (mut accepted, mut tried) = (0, 0);
    while (t1 - t) * dir > 1e-12 {
        // Stop, saying why, rather than return a result short of the tolerance: too many
        // accepted steps, too many rejected ones, or a step too small to move t.
        if accepted >= max_steps || tried >= 4 * max_steps {
            return param("steps", format!("rk45 needed more than {max_steps} steps at t = {t:.4} ({} rejected) before meeting rtol/atol; raise steps or loosen rtol/atol", tried - accepted));
        }
        if h.abs() < 1e-9 * (t1 - t0).abs() {
            return param("rtol", format!("rk45's step fell below 1e-9 of the interval at t = {t:.4}: the tolerances cannot be met; loosen rtol/atol"));
        }
        tried += 1;
        if (t + h - t1) * dir > 0.0 {
            h = t1 - t;
        }
        let mut ks = vec![k1.clone()];
        for i in 1..7 {
            let xi = lincomb(run.be, Some(&x), h, DP_A[i], &ks)?;
            ks.push(run.drift(&xi, t + DP_C[i] * h).await?);
        }
        let x_new = lincomb(run.be, Some(&x), h, DP_A[6], &ks[..6])?;
        let err = lincomb(run.be, None, h, &DP_E, &ks)?;
        let ratio = run
            .be
            .error_ratio(&err, &x, &x_new, rtol as f32, atol as f32)?;
        let sq = run.be.row_dot(&ratio, &ratio)?;
        let norm = run
            .be
            .read(&sq)
            .await?
            .into_iter()
            .map(|v| (v as f64 / len as f64).sqrt())
            .fold(0.0, f64::max);
        if !norm.is_finite() {
            return Err(Error::Gpu(format!(
                "rk45: the error estimate at t = {t:.4} is not finite"
            )));
        }
        if norm <= 1.0 {
            t += h;
            x = x_new;
            k1 = ks.pop().expect("seven stages"); // first same as last
            accepted += 1;
            run.end_step(t, fraction(t), &x).await?;
        } else {
            run.rejected_step(t, fraction(t))?;
        }
        h *= (0.9 * norm.max(1e-10).powf(-0.2)).clamp(0.2, 5.0);
    }
    Ok(x)
}
