//! The continuous-time VP SDE (Song et al. 2021) every sampler uses, and the conversions between
//! the quantities a network can predict.
//!
//! Convention (one for all samplers): `x_t = alpha(t) x_0 + sigma(t) eps`, t in [t_eps, 1], with
//! `beta(t) = beta_min + t (beta_max - beta_min)`,
//! `log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2`, `sigma(t) = sqrt(1 - alpha(t)^2)`.
//! The discrete DDPM chain of N steps is this SDE at `t = i / N`, with `alpha_bar_i = alpha(i / N)^2`.
//! Conversions at time t: `score = -eps / sigma`, `x0 = (x - sigma eps) / alpha`,
//! `v = alpha eps - sigma x0`, hence `eps = sigma x + alpha v` and `x0 = alpha x - sigma v`.
//! The log signal-to-noise ratio is `lambda(t) = log(alpha / sigma)`.

use crate::model::config::SdeConfig;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VpSchedule {
    pub beta_min: f64,
    pub beta_max: f64,
    pub t_eps: f64,
    /// Steps of the discrete chain (for strided DDPM/DDIM grids and the corrector's alpha).
    pub discrete_steps: usize,
}

impl VpSchedule {
    pub fn from_config(sde: &SdeConfig) -> VpSchedule {
        VpSchedule {
            beta_min: sde.beta_min,
            beta_max: sde.beta_max,
            t_eps: sde.t_eps,
            discrete_steps: sde.discrete_steps,
        }
    }

    pub fn beta(&self, t: f64) -> f64 {
        self.beta_min + t * (self.beta_max - self.beta_min)
    }

    pub fn log_alpha(&self, t: f64) -> f64 {
        -t * t * (self.beta_max - self.beta_min) / 4.0 - t * self.beta_min / 2.0
    }

    pub fn alpha(&self, t: f64) -> f64 {
        self.log_alpha(t).exp()
    }

    pub fn sigma(&self, t: f64) -> f64 {
        (-(2.0 * self.log_alpha(t)).exp_m1()).sqrt()
    }

    /// `log(alpha / sigma)`, decreasing in t.
    pub fn lambda(&self, t: f64) -> f64 {
        self.log_alpha(t) - 0.5 * (-(2.0 * self.log_alpha(t)).exp_m1()).ln()
    }

    /// The t with the given `log alpha` (<= 0): the positive root of the quadratic.
    fn t_from_log_alpha(&self, log_alpha: f64) -> f64 {
        let (a, b, c) = (
            (self.beta_max - self.beta_min) / 4.0,
            self.beta_min / 2.0,
            -log_alpha,
        );
        2.0 * c / (b + (b * b + 4.0 * a * c).sqrt())
    }

    /// Inverse of `lambda`.
    pub fn t_from_lambda(&self, lambda: f64) -> f64 {
        // alpha^2 = 1 / (1 + exp(-2 lambda))
        let x = -2.0 * lambda;
        let softplus = if x > 0.0 {
            x + (-x).exp().ln_1p()
        } else {
            x.exp().ln_1p()
        };
        self.t_from_log_alpha(-0.5 * softplus)
    }

    /// The VE noise level `sigma / alpha` of time t (the VP-to-VE conversion: `x_t / alpha = x0 + (sigma/alpha) eps`).
    pub fn ve_sigma(&self, t: f64) -> f64 {
        self.sigma(t) / self.alpha(t)
    }

    /// Inverse of `ve_sigma`.
    pub fn t_from_ve_sigma(&self, s: f64) -> f64 {
        self.t_from_log_alpha(-0.5 * (s * s).ln_1p())
    }
}

/// Conversions between eps, score, x0 and v for one element at time t (the samplers apply the same
/// coefficients to whole tensors).
pub mod convert {
    use super::VpSchedule;

    pub fn score_from_eps(s: &VpSchedule, t: f64, eps: f64) -> f64 {
        -eps / s.sigma(t)
    }
    pub fn eps_from_score(s: &VpSchedule, t: f64, score: f64) -> f64 {
        -score * s.sigma(t)
    }
    pub fn x0_from_eps(s: &VpSchedule, t: f64, x: f64, eps: f64) -> f64 {
        (x - s.sigma(t) * eps) / s.alpha(t)
    }
    pub fn eps_from_x0(s: &VpSchedule, t: f64, x: f64, x0: f64) -> f64 {
        (x - s.alpha(t) * x0) / s.sigma(t)
    }
    pub fn v_from_eps(s: &VpSchedule, t: f64, x: f64, eps: f64) -> f64 {
        s.alpha(t) * eps - s.sigma(t) * x0_from_eps(s, t, x, eps)
    }
    pub fn eps_from_v(s: &VpSchedule, t: f64, x: f64, v: f64) -> f64 {
        s.sigma(t) * x + s.alpha(t) * v
    }
    pub fn x0_from_v(s: &VpSchedule, t: f64, x: f64, v: f64) -> f64 {
        s.alpha(t) * x - s.sigma(t) * v
    }
}

#[cfg(test)]
mod tests {
    use super::convert::*;
    use super::*;

    const S: VpSchedule = VpSchedule {
        beta_min: 0.1,
        beta_max: 20.0,
        t_eps: 1e-3,
        discrete_steps: 1000,
    };

    #[test]
    fn alpha_matches_the_sde() {
        // d log alpha / dt = -beta / 2 (the VP drift), checked by central differences.
        for t in [1e-3, 0.1, 0.5, 0.9, 1.0] {
            let h = 1e-6;
            let d = (S.log_alpha(t + h) - S.log_alpha(t - h)) / (2.0 * h);
            assert!(
                (d + S.beta(t) / 2.0).abs() < 1e-6,
                "t {t}: {d} vs {}",
                -S.beta(t) / 2.0
            );
            assert!((S.alpha(t).powi(2) + S.sigma(t).powi(2) - 1.0).abs() < 1e-12);
        }
        // The discrete chain: prod(1 - beta_i) over i <= k with beta_i = beta(i/N)/N tracks alpha(k/N)^2
        // to first order in 1/N: the log of the product misses sum(beta_i^2 / 2) plus the
        // right-endpoint Riemann error, under 1 % of log alpha^2 for N = 1000.
        let mut log_prod = 0.0;
        for i in 1..=1000 {
            log_prod += (1.0 - S.beta(i as f64 / 1000.0) / 1000.0).ln();
            if i % 250 == 0 {
                let want = 2.0 * S.log_alpha(i as f64 / 1000.0);
                assert!(
                    (log_prod - want).abs() < 1e-2 * want.abs(),
                    "i {i}: log {log_prod} vs {want}"
                );
            }
        }
    }

    #[test]
    fn inverses() {
        for t in [1e-3, 0.01, 0.3, 0.77, 1.0] {
            assert!(
                (S.t_from_lambda(S.lambda(t)) - t).abs() < 1e-9 * t.max(1e-3),
                "lambda at {t}"
            );
            assert!(
                (S.t_from_ve_sigma(S.ve_sigma(t)) - t).abs() < 1e-9,
                "ve sigma at {t}"
            );
        }
    }

    #[test]
    fn conversions_round_trip() {
        for (t, x0, eps) in [(0.01, 0.7, -1.3), (0.5, -0.2, 0.4), (1.0, 1.0, 2.0)] {
            let x = S.alpha(t) * x0 + S.sigma(t) * eps;
            let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * (1.0 + b.abs());
            assert!(close(x0_from_eps(&S, t, x, eps), x0));
            assert!(close(eps_from_x0(&S, t, x, x0), eps));
            assert!(close(
                eps_from_score(&S, t, score_from_eps(&S, t, eps)),
                eps
            ));
            // The score of N(alpha x0, sigma^2) at x, given x0, is -(x - alpha x0) / sigma^2.
            assert!(close(
                score_from_eps(&S, t, eps),
                -(x - S.alpha(t) * x0) / S.sigma(t).powi(2)
            ));
            let v = v_from_eps(&S, t, x, eps);
            assert!(close(v, S.alpha(t) * eps - S.sigma(t) * x0));
            assert!(close(eps_from_v(&S, t, x, v), eps));
            assert!(close(x0_from_v(&S, t, x, v), x0));
        }
    }
}
