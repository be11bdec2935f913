//! Training a 2-D score model on the engine itself (any backend): denoising or sliced score
//! matching (Vincent 2011; Song et al. 2019), under the VP, sub-VP or VE SDE, with Adam, gradient
//! clipping and an EMA of the weights. The result is a weights file like the shipped ones.
//!
//! Both losses are weighted by `sigma(t)^2` and written for the eps parameterisation
//! (`score = -eps / sigma`), so they differ only by a constant (Hyvarinen's identity):
//! - DSM: `1/2 |eps_theta(x_t, t) - eps|^2` with `x_t = alpha x_0 + sigma eps`;
//! - SSM (the variance-reduced form): `1/2 |eps_theta|^2 - sigma v^T (d eps_theta / dx) v` with
//!   random projections v (Rademacher or Gaussian), which never sees eps, only samples of `x_t`.
//!
//! The gradients are explicit backward passes ([`net`]); the Jacobian-vector product of SSM is a
//! forward-mode tangent carried through the network, and its gradient the backward pass of both.

pub mod net;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{finite, param_err, Error, Result};
use crate::model::config::{Arch, Classes, DataInfo, ModelConfig, TimeInput, FORMAT_VERSION};
use crate::model::file;
use crate::ops::Pointwise;
use crate::rng::Rng;
use crate::sampler::{Schedule, Sde};

pub use net::ScoreMlp;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// Denoising score matching.
    Dsm,
    /// Sliced score matching.
    Ssm,
}

/// The random directions of sliced score matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Projection {
    Rademacher,
    Gaussian,
}

/// The forward SDE to train under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdeChoice {
    Vp,
    Subvp,
    Ve,
}

/// Training settings; every field has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    pub loss: Loss,
    pub projection: Projection,
    pub sde: SdeChoice,
    /// Hidden width and residual blocks of the MLP.
    pub width: usize,
    pub depth: usize,
    pub batch: usize,
    /// Adam's learning rate, reached by a linear warm-up over `warmup` steps and decayed along a
    /// cosine to a tenth of it at `steps` (constant after).
    pub lr: f64,
    pub warmup: usize,
    /// The planned length of the run (for the learning-rate decay; training may go on past it).
    pub steps: usize,
    /// The EMA's decay (with the warm-up `min(decay, (1 + n) / (10 + n))`).
    pub ema_decay: f64,
    /// The largest global gradient norm; larger gradients are scaled down to it.
    pub clip: f64,
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            loss: Loss::Dsm,
            projection: Projection::Rademacher,
            sde: SdeChoice::Vp,
            width: 64,
            depth: 2,
            batch: 256,
            lr: 3e-3,
            warmup: 100,
            steps: 3000,
            ema_decay: 0.999,
            clip: 1.0,
            seed: 0,
        }
    }
}

const TIME_BASE: usize = 32;
const TIME_SCALE: f32 = 1000.0;
const BETAS: (f64, f64) = (0.1, 20.0);
const ADAM: (f64, f64, f64) = (0.9, 0.999, 1e-8);

impl TrainOptions {
    pub fn validate(&self) -> Result<()> {
        if !(8..=512).contains(&self.width) {
            return param_err("width", format!("{} must be 8..=512", self.width));
        }
        if !(1..=8).contains(&self.depth) {
            return param_err("depth", format!("{} must be 1..=8", self.depth));
        }
        if !(2..=8192).contains(&self.batch) {
            return param_err("batch", format!("{} must be 2..=8192", self.batch));
        }
        if !(self.lr > 0.0 && self.lr <= 0.1) {
            return param_err("lr", format!("{} must be in (0, 0.1]", self.lr));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return param_err("ema_decay", format!("{} must be in [0, 1)", self.ema_decay));
        }
        if !(self.clip > 0.0 && self.clip.is_finite()) {
            return param_err("clip", format!("{} must be positive", self.clip));
        }
        Ok(())
    }

    /// The SDE for data `points` (`[n, 2]`): VP and sub-VP with beta 0.1..20; VE from
    /// sigma_min 0.01 to the largest distance between two points (Song & Ermon 2020, technique 1),
    /// here the diagonal of the data's bounding box.
    pub fn schedule(&self, points: &[f32]) -> Schedule {
        let (beta_min, beta_max) = BETAS;
        let sde = match self.sde {
            SdeChoice::Vp => Sde::Vp { beta_min, beta_max },
            SdeChoice::Subvp => Sde::SubVp { beta_min, beta_max },
            SdeChoice::Ve => {
                let span = |j: usize| {
                    let v = points.iter().skip(j).step_by(2);
                    let (lo, hi) =
                        v.fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                    (hi - lo) as f64
                };
                Sde::Ve {
                    sigma_min: 0.01,
                    sigma_max: span(0).hypot(span(1)).max(1.0),
                }
            }
        };
        Schedule {
            sde,
            t_eps: if self.sde == SdeChoice::Ve {
                1e-5
            } else {
                1e-3
            },
            discrete_steps: 1000,
        }
    }
}

/// One parameter's optimizer state.
struct Moments<B: Backend> {
    m: B::Tensor,
    v: B::Tensor,
    ema: B::Tensor,
}

/// A training run: the data, the network, Adam's moments and the EMA, and the random stream
/// (all host-side draws: batches, times, noise, projections), so a run is a pure function of its
/// options and data.
pub struct Trainer<B: Backend> {
    pub opts: TrainOptions,
    pub schedule: Schedule,
    data: Vec<f32>,
    net: ScoreMlp<B>,
    state: Vec<Moments<B>>,
    rng: Rng,
    /// Optimizer steps taken.
    pub steps: usize,
    /// The loss of every step.
    pub losses: Vec<f32>,
}

/// The batch of one step, drawn on the host.
pub struct Batch {
    /// `x_t`, `[n, 2]`.
    pub x: Vec<f32>,
    pub t: Vec<f32>,
    /// DSM: the noise in x_t. SSM: the projections v.
    pub target: Vec<f32>,
    /// sigma(t) per row.
    pub sigma: Vec<f32>,
}

impl<B: Backend> Trainer<B> {
    /// A fresh run on `points` (`[n, 2]`, at least 2 points, finite).
    pub fn new(be: &mut B, points: &[f32], opts: &TrainOptions) -> Result<Self> {
        opts.validate()?;
        if points.len() < 4 || !points.len().is_multiple_of(2) {
            return param_err(
                "data",
                format!("{} values are not 2 or more 2-D points", points.len()),
            );
        }
        if let Some(i) = points.iter().position(|v| !v.is_finite()) {
            return param_err("data", format!("point {} is not finite", i / 2));
        }
        let mut rng = Rng::new(opts.seed);
        let net = ScoreMlp::init(
            be, &mut rng, 2, opts.width, opts.depth, TIME_BASE, TIME_SCALE,
        )?;
        let state = net
            .params
            .iter()
            .map(|p| {
                let shape = B::shape(&p.value).to_vec();
                let zeros = vec![0.0; shape.iter().product()];
                Ok(Moments {
                    m: be.upload(&zeros, &shape)?,
                    v: be.upload(&zeros, &shape)?,
                    ema: p.value.clone(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Trainer {
            opts: opts.clone(),
            schedule: opts.schedule(points),
            data: points.to_vec(),
            net,
            state,
            rng,
            steps: 0,
            losses: Vec::new(),
        })
    }

    pub fn net(&self) -> &ScoreMlp<B> {
        &self.net
    }

    /// The network, to set parameters (a gradient check perturbs them).
    pub fn net_mut(&mut self) -> &mut ScoreMlp<B> {
        &mut self.net
    }

    /// Draws the next batch: points, times uniform in [t_eps, 1], noise, and for SSM the
    /// projections.
    pub fn draw_batch(&mut self) -> Batch {
        let (n, s) = (self.opts.batch, self.schedule);
        let count = self.data.len() / 2;
        let mut b = Batch {
            x: Vec::with_capacity(2 * n),
            t: Vec::with_capacity(n),
            target: Vec::with_capacity(2 * n),
            sigma: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let i = self.rng.below(count);
            let t = s.t_eps + (1.0 - s.t_eps) * self.rng.uniform();
            let (alpha, sigma) = (s.alpha(t), s.sigma(t));
            for j in 0..2 {
                let eps = self.rng.normal();
                b.x.push((alpha * self.data[2 * i + j] as f64 + sigma * eps) as f32);
                b.target.push(match (self.opts.loss, self.opts.projection) {
                    (Loss::Dsm, _) => eps as f32,
                    (Loss::Ssm, Projection::Gaussian) => self.rng.normal() as f32,
                    (Loss::Ssm, Projection::Rademacher) => {
                        if self.rng.uniform() < 0.5 {
                            -1.0
                        } else {
                            1.0
                        }
                    }
                });
            }
            b.t.push(t as f32);
            b.sigma.push(sigma as f32);
        }
        b
    }

    /// The learning rate of step `k` (from 1) relative to `opts.lr`.
    pub fn lr_factor(&self, k: usize) -> f64 {
        let (w, n) = (self.opts.warmup, self.opts.steps.max(self.opts.warmup + 1));
        if k <= w {
            k as f64 / w.max(1) as f64
        } else {
            let u = ((k - w) as f64 / (n - w) as f64).min(1.0);
            0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * u).cos())
        }
    }

    /// One optimizer step; returns its loss.
    pub async fn step(&mut self, be: &mut B) -> Result<f64> {
        let batch = self.draw_batch();
        let (loss, grads) = loss_and_grads(be, &self.net, self.opts.loss, &batch).await?;
        // The global norm, summed on the device and read once.
        let mut sq: Option<B::Tensor> = None;
        for g in &grads {
            let len = B::shape(g).iter().product();
            let flat = be.reshape(g, &[1, len])?;
            let d = be.row_dot(&flat, &flat)?;
            sq = Some(match sq {
                None => d,
                Some(acc) => be.add(&acc, &d)?,
            });
        }
        let sq = be.read(&sq.expect("the network has parameters")).await?[0] as f64;
        let norm = finite(vec![sq as f32], || "the gradient norm".into())?[0] as f64;
        let scale = if norm.sqrt() > self.opts.clip {
            self.opts.clip / norm.sqrt()
        } else {
            1.0
        };
        self.steps += 1;
        let k = self.steps as f64;
        let (b1, b2, eps) = ADAM;
        let (bc1, bc2) = (1.0 - b1.powf(k), 1.0 - b2.powf(k));
        let lr = self.opts.lr * self.lr_factor(self.steps);
        let apply = Pointwise::AdamApply {
            lr: (lr * bc2.sqrt() / bc1) as f32,
            eps: (eps * bc2.sqrt()) as f32,
        };
        let decay = self.opts.ema_decay.min((1.0 + k) / (10.0 + k));
        for ((p, st), g) in self.net.params.iter_mut().zip(&mut self.state).zip(&grads) {
            st.m = be.axpby(&st.m, g, b1 as f32, ((1.0 - b1) * scale) as f32)?;
            st.v = be.pointwise(
                Pointwise::SquareMix {
                    a: b2 as f32,
                    b: ((1.0 - b2) * scale * scale) as f32,
                },
                &st.v,
                g,
                None,
            )?;
            p.value = be.pointwise(apply, &p.value, &st.m, Some(&st.v))?;
            st.ema = be.axpby(&st.ema, &p.value, decay as f32, (1.0 - decay) as f32)?;
        }
        self.losses.push(loss as f32);
        Ok(loss)
    }

    /// The EMA weights as a weights file (f32) that loads like a shipped model.
    pub async fn export(&self, be: &mut B, name: &str) -> Result<Vec<u8>> {
        let mut tensors = Vec::with_capacity(self.state.len());
        for (p, st) in self.net.params.iter().zip(&self.state) {
            let shape = B::shape(&st.ema).to_vec();
            let values = be.read(&st.ema).await?;
            tensors.push(match shape[..] {
                // [in, out] -> PyTorch's [out, in]
                [cin, cout] => {
                    let mut wt = vec![0f32; cin * cout];
                    for i in 0..cin {
                        for o in 0..cout {
                            wt[o * cin + i] = values[i * cout + o];
                        }
                    }
                    (p.name.clone(), vec![cout, cin], wt)
                }
                _ => (p.name.clone(), shape, values),
            });
        }
        Ok(file::write(&tensors, &self.config(name)))
    }

    fn config(&self, name: &str) -> ModelConfig {
        let o = &self.opts;
        ModelConfig {
            format_version: FORMAT_VERSION,
            name: name.into(),
            arch: Arch::Mlp {
                dim: 2,
                width: o.width,
                depth: o.depth,
                num_classes: 0,
                time_base: TIME_BASE,
                time_scale: TIME_SCALE,
            },
            parameterization: "eps".into(),
            time_input: TimeInput {
                kind: "continuous".into(),
                scale: TIME_SCALE,
                embedding: "sinusoidal: [sin(s f_i), cos(s f_i)], s = t * scale, f_i = exp(-ln(10000) i / half), i < half".into(),
            },
            sde: self.schedule.to_config(),
            data: DataInfo {
                kind: "points".into(),
                height: 0,
                width: 0,
                channels: 0,
                dim: 2,
                value_range: None,
                layout: None,
                dataset: format!("{} drawn points", self.data.len() / 2),
                source: "drawn by the user".into(),
                license: "the user's own".into(),
            },
            classes: Classes {
                names: vec![],
                null_index: 0,
            },
            training: serde_json::json!({
                "trainer": "scorelab (in the engine)",
                "loss": o.loss,
                "projection": o.projection,
                "steps": self.steps,
                "batch": o.batch,
                "lr": o.lr,
                "warmup": o.warmup,
                "planned_steps": o.steps,
                "ema_decay": o.ema_decay,
                "clip": o.clip,
                "seed": o.seed,
                "final_loss": self.losses.last(),
            }),
        }
    }
}

/// The loss of a batch under `net` and its gradients for every parameter (in
/// [`ScoreMlp::params`] order).
pub async fn loss_and_grads<B: Backend>(
    be: &mut B,
    net: &ScoreMlp<B>,
    loss: Loss,
    batch: &Batch,
) -> Result<(f64, Vec<B::Tensor>)> {
    let n = batch.t.len();
    let x = be.upload(&batch.x, &[n, 2])?;
    let t = be.upload(&batch.t, &[n])?;
    let target = be.upload(&batch.target, &[n, 2])?;
    let ssm = loss == Loss::Ssm;
    let fwd = net.forward(be, &x, &t, ssm.then_some(&target))?;
    let eps = be.read(&fwd.eps).await?;
    let inv = 1.0 / n as f64;
    let (value, g, gdot) = if ssm {
        // 1/n sum 1/2 |eps|^2 - sigma v . (d eps/dx v)
        let jv = be
            .read(fwd.eps_dot.as_ref().expect("a tangent was given"))
            .await?;
        let mut value = 0.0;
        let mut gdot = vec![0f32; 2 * n];
        for i in 0..2 * n {
            let (e, v, sig) = (
                eps[i] as f64,
                batch.target[i] as f64,
                batch.sigma[i / 2] as f64,
            );
            value += 0.5 * e * e - sig * v * jv[i] as f64;
            gdot[i] = (-sig * v * inv) as f32;
        }
        let g = be.axpby(&fwd.eps, &fwd.eps, inv as f32, 0.0)?;
        (value * inv, g, Some(be.upload(&gdot, &[n, 2])?))
    } else {
        // 1/n sum 1/2 |eps_theta - eps|^2
        let value: f64 = eps
            .iter()
            .zip(&batch.target)
            .map(|(a, b)| 0.5 * (*a as f64 - *b as f64).powi(2))
            .sum();
        let g = be.axpby(&fwd.eps, &target, inv as f32, -inv as f32)?;
        (value * inv, g, None)
    };
    if !value.is_finite() {
        return Err(Error::NonFinite {
            what: "the training loss".into(),
        });
    }
    let grads = net.backward(be, &fwd, &g, gdot.as_ref())?;
    Ok((value, grads))
}
