//! Gaussian mixtures with diagonal covariances: every noised marginal is again a mixture, so its
//! score, eps and log-density are exact. The samplers are verified against these without any
//! trained model.

use crate::backend::Backend;
use crate::error::Result;
use crate::rng::Rng;

use super::denoiser::Denoiser;
use crate::schedule::Schedule;

#[derive(Clone, Debug)]
pub struct GaussianMixture {
    pub weights: Vec<f64>,
    pub means: Vec<Vec<f64>>,
    /// Per-dimension variances of each component.
    pub vars: Vec<Vec<f64>>,
    pub schedule: Schedule,
}

impl GaussianMixture {
    pub fn dim(&self) -> usize {
        self.means[0].len()
    }

    /// Log-densities of each component of the marginal at time t, weighted (`log w_k + log N_k(x)`),
    /// and the per-component variances `alpha^2 var + sigma^2`.
    fn weighted_logs(&self, x: &[f64], t: f64) -> (Vec<f64>, Vec<Vec<f64>>) {
        let (a, s) = (self.schedule.alpha(t), self.schedule.sigma(t));
        let mut logs = Vec::with_capacity(self.weights.len());
        let mut covs = Vec::with_capacity(self.weights.len());
        for k in 0..self.weights.len() {
            let c: Vec<f64> = self.vars[k].iter().map(|v| a * a * v + s * s).collect();
            let mut lp = self.weights[k].ln();
            for j in 0..x.len() {
                let d = x[j] - a * self.means[k][j];
                lp -= 0.5 * (d * d / c[j] + (2.0 * std::f64::consts::PI * c[j]).ln());
            }
            logs.push(lp);
            covs.push(c);
        }
        (logs, covs)
    }

    /// `log p_t(x)`.
    pub fn log_density(&self, x: &[f64], t: f64) -> f64 {
        let (logs, _) = self.weighted_logs(x, t);
        let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + logs.iter().map(|l| (l - m).exp()).sum::<f64>().ln()
    }

    /// `grad log p_t(x)`.
    pub fn score(&self, x: &[f64], t: f64) -> Vec<f64> {
        let a = self.schedule.alpha(t);
        let (logs, covs) = self.weighted_logs(x, t);
        let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let r: Vec<f64> = logs.iter().map(|l| (l - m).exp()).collect();
        let total: f64 = r.iter().sum();
        (0..x.len())
            .map(|j| {
                -(0..r.len())
                    .map(|k| r[k] / total * (x[j] - a * self.means[k][j]) / covs[k][j])
                    .sum::<f64>()
            })
            .collect()
    }

    /// The exact eps-prediction, `-sigma(t) score`.
    pub fn eps(&self, x: &[f64], t: f64) -> Vec<f64> {
        let s = self.schedule.sigma(t);
        self.score(x, t).into_iter().map(|g| -s * g).collect()
    }

    /// Posterior probabilities of the components at t = 0 (which mode a sample belongs to).
    pub fn responsibilities(&self, x: &[f64]) -> Vec<f64> {
        let (logs, _) = self.weighted_logs(x, 0.0);
        let m = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let r: Vec<f64> = logs.iter().map(|l| (l - m).exp()).collect();
        let total: f64 = r.iter().sum();
        r.into_iter().map(|v| v / total).collect()
    }

    /// `n` samples from the data distribution, row-major `[n, dim]`.
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Vec<f64> {
        let mut out = Vec::with_capacity(n * self.dim());
        for _ in 0..n {
            let u = rng.uniform();
            let mut acc = 0.0;
            let k = self.weights.iter().position(|w| {
                acc += w;
                u < acc
            });
            let k = k.unwrap_or(self.weights.len() - 1);
            for j in 0..self.dim() {
                out.push(self.means[k][j] + self.vars[k][j].sqrt() * rng.normal());
            }
        }
        out
    }
}

/// The mixture as a denoiser on any backend (reads x back, computes eps on the host).
impl<B: Backend> Denoiser<B> for GaussianMixture {
    async fn eps(&mut self, be: &mut B, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let shape = B::shape(x).to_vec();
        let values = be.read(x).await?;
        let d = self.dim();
        let mut out = Vec::with_capacity(values.len());
        for row in values.chunks(d) {
            let xr: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            out.extend(
                GaussianMixture::eps(self, &xr, t)
                    .into_iter()
                    .map(|v| v as f32),
            );
        }
        be.upload(&out, &shape)
    }
}
