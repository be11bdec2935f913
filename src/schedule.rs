//! The continuous-time SDEs (Song et al. 2021, §3.4) every sampler uses, and the conversions
//! between the quantities a network can predict.
//!
//! Each SDE has Gaussian marginals `x_t = alpha(t) x_0 + sigma(t) eps`, t in [t_eps, 1]; the
//! samplers are written against (alpha, sigma) and the SDE's drift `f(t) x` and diffusion `g(t)`,
//! so one implementation serves all three:
//! - VP: `beta(t) = beta_min + t (beta_max - beta_min)`,
//!   `log alpha(t) = -t^2 (beta_max - beta_min) / 4 - t beta_min / 2`, `sigma = sqrt(1 - alpha^2)`,
//!   `f = -beta / 2`, `g^2 = beta`; prior N(0, I).
//! - sub-VP: the same alpha, `sigma = 1 - alpha^2`, `f = -beta / 2`, `g^2 = beta (1 - alpha^4)`;
//!   prior N(0, I).
//! - VE: `alpha = 1`, `sigma(t) = sigma_min (sigma_max / sigma_min)^t`, `f = 0`,
//!   `g^2 = 2 sigma^2 ln(sigma_max / sigma_min)`; prior N(0, sigma_max^2 I).
//!
//! The discrete DDPM chain of N steps is the SDE at `t = i / N`.
//! Conversions at time t: `score = -eps / sigma`, `x0 = (x - sigma eps) / alpha`,
//! `v = alpha eps - sigma x0`, hence (VP, where alpha^2 + sigma^2 = 1) `eps = sigma x + alpha v`
//! and `x0 = alpha x - sigma v`. The log signal-to-noise ratio is `lambda(t) = log(alpha / sigma)`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The `sde` section of a weights file's config: plain data, read by [`Schedule::from_config`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SdeConfig {
    /// "vp", "subvp" or "ve".
    #[serde(rename = "type")]
    pub kind: String,
    /// VP and sub-VP: the linear beta schedule's ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_max: Option<f64>,
    /// VE: the geometric noise levels' ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigma_max: Option<f64>,
    pub t_eps: f64,
    /// Length of the discrete chain the model was trained to match (DDPM/DDIM walk it).
    pub discrete_steps: usize,
}

/// Which forward SDE, with its constants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sde {
    Vp { beta_min: f64, beta_max: f64 },
    SubVp { beta_min: f64, beta_max: f64 },
    Ve { sigma_min: f64, sigma_max: f64 },
}

impl Sde {
    pub fn name(&self) -> &'static str {
        match self {
            Sde::Vp { .. } => "vp",
            Sde::SubVp { .. } => "subvp",
            Sde::Ve { .. } => "ve",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    pub sde: Sde,
    pub t_eps: f64,
    /// Steps of the discrete chain (for strided DDPM/DDIM grids and the corrector's alpha).
    pub discrete_steps: usize,
}

impl Schedule {
    /// The VP SDE.
    pub const fn vp(beta_min: f64, beta_max: f64, t_eps: f64, discrete_steps: usize) -> Schedule {
        Schedule {
            sde: Sde::Vp { beta_min, beta_max },
            t_eps,
            discrete_steps,
        }
    }

    /// The schedule a model file declares (its config was validated at load).
    pub fn from_config(sde: &SdeConfig) -> Result<Schedule> {
        let pair = |a: Option<f64>, b: Option<f64>, what: &str| {
            a.zip(b).ok_or_else(|| Error::Weights {
                what: "config field sde".into(),
                detail: format!("type {:?} needs {what}", sde.kind),
            })
        };
        let kind = match sde.kind.as_str() {
            "vp" | "subvp" => {
                let (beta_min, beta_max) =
                    pair(sde.beta_min, sde.beta_max, "beta_min and beta_max")?;
                if sde.kind == "vp" {
                    Sde::Vp { beta_min, beta_max }
                } else {
                    Sde::SubVp { beta_min, beta_max }
                }
            }
            "ve" => {
                let (sigma_min, sigma_max) =
                    pair(sde.sigma_min, sde.sigma_max, "sigma_min and sigma_max")?;
                Sde::Ve {
                    sigma_min,
                    sigma_max,
                }
            }
            other => {
                return Err(Error::Weights {
                    what: "config field sde.type".into(),
                    detail: format!("{other:?} is not supported (vp, subvp or ve)"),
                })
            }
        };
        Ok(Schedule {
            sde: kind,
            t_eps: sde.t_eps,
            discrete_steps: sde.discrete_steps,
        })
    }

    /// The config section that describes this schedule.
    pub fn to_config(&self) -> SdeConfig {
        let (betas, sigmas) = match self.sde {
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                ((Some(beta_min), Some(beta_max)), (None, None))
            }
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => ((None, None), (Some(sigma_min), Some(sigma_max))),
        };
        SdeConfig {
            kind: self.sde.name().into(),
            beta_min: betas.0,
            beta_max: betas.1,
            sigma_min: sigmas.0,
            sigma_max: sigmas.1,
            t_eps: self.t_eps,
            discrete_steps: self.discrete_steps,
        }
    }

    /// `(beta_min, beta_max)` of the VP and sub-VP SDEs.
    fn betas(&self) -> Option<(f64, f64)> {
        match self.sde {
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                Some((beta_min, beta_max))
            }
            Sde::Ve { .. } => None,
        }
    }

    pub fn log_alpha(&self, t: f64) -> f64 {
        match self.betas() {
            Some((lo, hi)) => -t * t * (hi - lo) / 4.0 - t * lo / 2.0,
            None => 0.0,
        }
    }

    /// The mean coefficient of the marginal.
    pub fn alpha(&self, t: f64) -> f64 {
        self.log_alpha(t).exp()
    }

    /// `log sigma(t)`, computed without cancellation near t = 0.
    pub fn log_sigma(&self, t: f64) -> f64 {
        match self.sde {
            Sde::Vp { .. } => 0.5 * (-(2.0 * self.log_alpha(t)).exp_m1()).ln(),
            Sde::SubVp { .. } => (-(2.0 * self.log_alpha(t)).exp_m1()).ln(),
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => sigma_min.ln() + t * (sigma_max / sigma_min).ln(),
        }
    }

    /// The standard deviation of the marginal given x_0.
    pub fn sigma(&self, t: f64) -> f64 {
        self.log_sigma(t).exp()
    }

    /// The drift coefficient `f(t) = d log alpha / dt` (the SDE's drift is `f(t) x`).
    pub fn drift_coef(&self, t: f64) -> f64 {
        match self.betas() {
            Some((lo, hi)) => -0.5 * (lo + t * (hi - lo)),
            None => 0.0,
        }
    }

    /// The squared diffusion `g(t)^2 = d sigma^2 / dt - 2 f sigma^2`.
    pub fn diffusion_sq(&self, t: f64) -> f64 {
        let beta = -2.0 * self.drift_coef(t);
        match self.sde {
            Sde::Vp { .. } => beta,
            Sde::SubVp { .. } => beta * -(4.0 * self.log_alpha(t)).exp_m1(),
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => 2.0 * self.sigma(t).powi(2) * (sigma_max / sigma_min).ln(),
        }
    }

    /// The standard deviation of the prior the reverse process starts from at t = 1.
    pub fn prior_std(&self) -> f64 {
        match self.sde {
            Sde::Vp { .. } | Sde::SubVp { .. } => 1.0,
            Sde::Ve { sigma_max, .. } => sigma_max,
        }
    }

    /// `log(alpha / sigma)`, decreasing in t.
    pub fn lambda(&self, t: f64) -> f64 {
        self.log_alpha(t) - self.log_sigma(t)
    }

    /// The t with the given `log alpha` (<= 0) on the VP / sub-VP schedules: the positive root
    /// of the quadratic.
    fn t_from_log_alpha(&self, log_alpha: f64, (lo, hi): (f64, f64)) -> f64 {
        let (a, b, c) = ((hi - lo) / 4.0, lo / 2.0, -log_alpha);
        2.0 * c / (b + (b * b + 4.0 * a * c).sqrt())
    }

    /// The noise-to-signal ratio `sigma / alpha`: the noise level of the VE view
    /// `x_t / alpha = x0 + (sigma / alpha) eps`, increasing in t.
    pub fn noise_ratio(&self, t: f64) -> f64 {
        (-self.lambda(t)).exp()
    }

    /// Inverse of `noise_ratio`.
    pub fn t_from_noise_ratio(&self, r: f64) -> f64 {
        match self.sde {
            // alpha^2 = 1 / (1 + r^2)
            Sde::Vp { beta_min, beta_max } => {
                self.t_from_log_alpha(-0.5 * (r * r).ln_1p(), (beta_min, beta_max))
            }
            // (1 - alpha^2) / alpha = r: alpha = 2 / (r + sqrt(r^2 + 4))
            Sde::SubVp { beta_min, beta_max } => self.t_from_log_alpha(
                (2.0 / (r + (r * r + 4.0).sqrt())).ln(),
                (beta_min, beta_max),
            ),
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => (r / sigma_min).ln() / (sigma_max / sigma_min).ln(),
        }
    }
}

/// Conversions between eps, score, x0 and v for one element at time t (the samplers apply the same
/// coefficients to whole tensors).
pub mod convert {
    use super::Schedule;

    pub fn score_from_eps(s: &Schedule, t: f64, eps: f64) -> f64 {
        -eps / s.sigma(t)
    }
    pub fn eps_from_score(s: &Schedule, t: f64, score: f64) -> f64 {
        -score * s.sigma(t)
    }
    pub fn x0_from_eps(s: &Schedule, t: f64, x: f64, eps: f64) -> f64 {
        (x - s.sigma(t) * eps) / s.alpha(t)
    }
    pub fn eps_from_x0(s: &Schedule, t: f64, x: f64, x0: f64) -> f64 {
        (x - s.alpha(t) * x0) / s.sigma(t)
    }
    pub fn v_from_eps(s: &Schedule, t: f64, x: f64, eps: f64) -> f64 {
        s.alpha(t) * eps - s.sigma(t) * x0_from_eps(s, t, x, eps)
    }
    /// VP only (uses `alpha^2 + sigma^2 = 1`).
    pub fn eps_from_v(s: &Schedule, t: f64, x: f64, v: f64) -> f64 {
        s.sigma(t) * x + s.alpha(t) * v
    }
    /// VP only (uses `alpha^2 + sigma^2 = 1`).
    pub fn x0_from_v(s: &Schedule, t: f64, x: f64, v: f64) -> f64 {
        s.alpha(t) * x - s.sigma(t) * v
    }
}

#[cfg(test)]
mod tests {
    use super::convert::*;
    use super::*;

    const S: Schedule = Schedule::vp(0.1, 20.0, 1e-3, 1000);
    const ALL: [Schedule; 3] = [
        S,
        Schedule {
            sde: Sde::SubVp {
                beta_min: 0.1,
                beta_max: 20.0,
            },
            t_eps: 1e-3,
            discrete_steps: 1000,
        },
        Schedule {
            sde: Sde::Ve {
                sigma_min: 0.01,
                sigma_max: 50.0,
            },
            t_eps: 1e-5,
            discrete_steps: 1000,
        },
    ];

    #[test]
    fn coefficients_match_each_sde() {
        // The marginal of dx = f x dt + g dw from x_0: d log alpha / dt = f and
        // d sigma^2 / dt = 2 f sigma^2 + g^2, checked by central differences.
        for s in ALL {
            for t in [0.01, 0.1, 0.5, 0.9, 0.999] {
                let h = 1e-6;
                let d_log_alpha = (s.log_alpha(t + h) - s.log_alpha(t - h)) / (2.0 * h);
                let d_var = (s.sigma(t + h).powi(2) - s.sigma(t - h).powi(2)) / (2.0 * h);
                let (f, g2, var) = (s.drift_coef(t), s.diffusion_sq(t), s.sigma(t).powi(2));
                assert!(
                    (d_log_alpha - f).abs() < 1e-6,
                    "{s:?} t {t}: f {f} vs {d_log_alpha}"
                );
                assert!(
                    (d_var - (2.0 * f * var + g2)).abs() < 1e-6 * (1.0 + d_var.abs()),
                    "{s:?} t {t}: var' {d_var} vs {}",
                    2.0 * f * var + g2
                );
            }
        }
        // Closed forms named in the papers.
        for t in [1e-3, 0.1, 0.5, 1.0] {
            assert!((S.alpha(t).powi(2) + S.sigma(t).powi(2) - 1.0).abs() < 1e-12);
            assert!((ALL[1].sigma(t) - (1.0 - S.alpha(t).powi(2))).abs() < 1e-12);
            assert!((ALL[1].alpha(t) - S.alpha(t)).abs() < 1e-15);
            assert!((ALL[2].sigma(t) - 0.01 * 5000f64.powf(t)).abs() < 1e-9 * ALL[2].sigma(t));
        }
        assert_eq!(ALL.map(|s| s.prior_std()), [1.0, 1.0, 50.0]);
        // The discrete chain: prod(1 - beta_i) over i <= k with beta_i = beta(i/N)/N tracks alpha(k/N)^2
        // to first order in 1/N: the log of the product misses sum(beta_i^2 / 2) plus the
        // right-endpoint Riemann error, under 1 % of log alpha^2 for N = 1000.
        let mut log_prod = 0.0;
        for i in 1..=1000 {
            log_prod += (1.0 + 2.0 * S.drift_coef(i as f64 / 1000.0) / 1000.0).ln();
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
        for s in ALL {
            for t in [1e-3, 0.01, 0.3, 0.77, 1.0] {
                let back = s.t_from_noise_ratio(s.noise_ratio(t));
                assert!((back - t).abs() < 1e-9, "{s:?} noise ratio at {t}: {back}");
            }
        }
    }

    #[test]
    fn config_round_trip() {
        for s in ALL {
            assert_eq!(Schedule::from_config(&s.to_config()).unwrap(), s);
        }
    }

    #[test]
    fn conversions_round_trip() {
        for s in ALL {
            for (t, x0, eps) in [(0.01, 0.7, -1.3), (0.5, -0.2, 0.4), (1.0, 1.0, 2.0)] {
                let x = s.alpha(t) * x0 + s.sigma(t) * eps;
                let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * (1.0 + b.abs());
                assert!(close(x0_from_eps(&s, t, x, eps), x0));
                assert!(close(eps_from_x0(&s, t, x, x0), eps));
                assert!(close(
                    eps_from_score(&s, t, score_from_eps(&s, t, eps)),
                    eps
                ));
                // The score of N(alpha x0, sigma^2) at x, given x0, is -(x - alpha x0) / sigma^2.
                assert!(close(
                    score_from_eps(&s, t, eps),
                    -(x - s.alpha(t) * x0) / s.sigma(t).powi(2)
                ));
                let v = v_from_eps(&s, t, x, eps);
                assert!(close(v, s.alpha(t) * eps - s.sigma(t) * x0));
                if matches!(s.sde, Sde::Vp { .. }) {
                    assert!(close(eps_from_v(&s, t, x, v), eps));
                    assert!(close(x0_from_v(&s, t, x, v), x0));
                }
            }
        }
    }
}
