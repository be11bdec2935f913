//! The operations a user asks for (sample, and the editing and measuring tools), on one backend
//! with the models loaded into it. The CLI and the wasm API are thin layers over this.

mod requests;

use std::collections::HashMap;

use serde::Serialize;

use crate::backend::Backend;
use crate::error::{finite, Error, Result};
use crate::model::classifier::Classifier;
use crate::model::WeightsFile;
use crate::model::{ModelConfig, Network};
use crate::sampler::edit::{self, DensityGrid, Likelihood, LikelihoodOptions};
use crate::sampler::guidance::{ClassifierGuided, NetworkClass};
use crate::sampler::inverse::{self, Enforce, Measurement, Operator, Start};
use crate::sampler::{self, Guided, Progress};
use crate::train::{TrainOptions, Trainer};
pub use requests::{
    ClassifierGuidance, EditRequest, OdeRequest, RestoreRequest, SampleRequest, Samples, Task,
};

/// Largest batch of images accepted in one request (keeps one request's memory and time bounded);
/// small samples (points) may come in larger batches, up to `MAX_VALUES` values in all.
pub const MAX_BATCH: usize = 256;
pub const MAX_VALUES: usize = 1 << 18;

fn no_training_run() -> Error {
    Error::Param {
        name: "training".into(),
        detail: "no training run: start one first".into(),
    }
}

pub struct Session<B: Backend> {
    pub be: B,
    models: HashMap<String, Network<B>>,
    classifiers: HashMap<String, Classifier<B>>,
    /// The 2-D model being trained, if any ([`Session::train_start`]).
    trainer: Option<Trainer<B>>,
}

/// Where a training run stands.
#[derive(Clone, Debug, Serialize)]
pub struct TrainStatus {
    /// Optimizer steps so far.
    pub steps: usize,
    /// The losses of the steps just run.
    pub losses: Vec<f32>,
    /// The learning rate of the last step.
    pub lr: f64,
}

impl<B: Backend> Session<B> {
    pub fn new(be: B) -> Session<B> {
        Session {
            be,
            models: HashMap::new(),
            classifiers: HashMap::new(),
            trainer: None,
        }
    }

    /// Reads a finished batch back; a non-finite value is an error naming `what` ran.
    async fn read_samples(
        &mut self,
        x: &B::Tensor,
        what: impl FnOnce() -> String,
    ) -> Result<Samples> {
        let values = finite(self.be.read(x).await?, what)?;
        Ok(Samples::batch(values, B::shape(x)))
    }

    /// Loads (or replaces) a model under `name`; returns its config.
    /// A classifier (for classifier guidance) is kept apart from the score networks.
    pub fn load_model(&mut self, name: &str, bytes: &[u8]) -> Result<&ModelConfig> {
        let file = WeightsFile::parse(bytes)?;
        if file.config.is_classifier() {
            let c = Classifier::build(&mut self.be, file)?;
            self.classifiers.insert(name.to_string(), c);
            return Ok(&self.classifiers[name].config);
        }
        let net = Network::build(&mut self.be, file)?;
        if let Some(old) = self.models.insert(name.to_string(), net) {
            self.be.forget(old.id);
        }
        Ok(&self.models[name].config)
    }

    /// Starts training a 2-D model on `points` (`[n, 2]`), replacing any run in progress.
    pub fn train_start(&mut self, points: &[f32], opts: &TrainOptions) -> Result<()> {
        self.trainer = Some(Trainer::new(&mut self.be, points, opts)?);
        Ok(())
    }

    /// Runs `steps` more optimizer steps of the current run.
    pub async fn train_steps(&mut self, steps: usize) -> Result<TrainStatus> {
        if !(1..=10_000).contains(&steps) {
            return Err(Error::Param {
                name: "steps".into(),
                detail: format!("{steps} must be 1..=10000"),
            });
        }
        let tr = self.trainer.as_mut().ok_or_else(no_training_run)?;
        let mut losses = Vec::with_capacity(steps);
        for _ in 0..steps {
            losses.push(tr.step(&mut self.be).await? as f32);
        }
        Ok(TrainStatus {
            steps: tr.steps,
            losses,
            lr: tr.opts.lr * tr.lr_factor(tr.steps),
        })
    }

    /// The run's EMA weights as a weights file, also loaded as model `name` (so every sampler,
    /// the trajectories and the density map work with it).
    pub async fn train_export(&mut self, name: &str) -> Result<Vec<u8>> {
        let tr = self.trainer.as_ref().ok_or_else(no_training_run)?;
        let bytes = tr.export(&mut self.be, name).await?;
        self.load_model(name, &bytes)?;
        Ok(bytes)
    }

    pub fn model(&self, name: &str) -> Result<&Network<B>> {
        Self::find(&self.models, name)
    }

    /// The model by name, borrowing only the model table (so the backend stays free to use).
    fn find<'m>(models: &'m HashMap<String, Network<B>>, name: &str) -> Result<&'m Network<B>> {
        models.get(name).ok_or_else(|| Error::Param {
            name: "model".into(),
            detail: format!(
                "{name:?} is not loaded (loaded: {})",
                models.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })
    }

    fn batch_shape(net: &Network<B>, n: usize) -> Result<Vec<usize>> {
        let max = MAX_BATCH.max(MAX_VALUES / net.config.sample_len());
        if !(1..=max).contains(&n) {
            return Err(Error::Param {
                name: "n".into(),
                detail: format!("{n} samples: choose 1..={max}"),
            });
        }
        let mut shape = vec![n];
        shape.extend(net.config.sample_shape());
        Ok(shape)
    }

    /// Draws `req.n` samples.
    pub async fn sample(
        &mut self,
        model: &str,
        req: &SampleRequest,
        progress: &mut impl Progress,
    ) -> Result<Samples> {
        let net = Self::find(&self.models, model)?;
        let shape = Self::batch_shape(net, req.n)?;
        let schedule = net.config.schedule();
        let mut den = Guided::new(&mut self.be, net, &vec![req.class; req.n], req.guidance)?;
        let class = match &req.classifier {
            Some(cg) if cg.scale != 0.0 => {
                let clf = self
                    .classifiers
                    .get(&cg.model)
                    .ok_or_else(|| Error::Param {
                        name: "classifier.model".into(),
                        detail: if self.models.contains_key(&cg.model) {
                            format!("{:?} is a score network, not a classifier", cg.model)
                        } else {
                            format!("{:?} is not a loaded classifier", cg.model)
                        },
                    })?;
                if !(cg.scale.is_finite() && (0.0..=100.0).contains(&cg.scale)) {
                    return Err(Error::Param {
                        name: "classifier.scale".into(),
                        detail: format!("{} is outside [0, 100]", cg.scale),
                    });
                }
                if clf.config.sample_shape() != net.config.sample_shape() {
                    return Err(Error::Param {
                        name: "classifier.model".into(),
                        detail: format!(
                            "{} classifies {:?} inputs, the model makes {:?}",
                            clf.config.name,
                            clf.config.sample_shape(),
                            net.config.sample_shape()
                        ),
                    });
                }
                let class = req.class.ok_or_else(|| Error::Param {
                    name: "class".into(),
                    detail: "classifier guidance needs a class to guide towards".into(),
                })?;
                Some(NetworkClass::new(&mut self.be, clf, &vec![class; req.n])?)
            }
            _ => None,
        };
        let mut guided = ClassifierGuided {
            inner: &mut den,
            class,
            scale: req.classifier.as_ref().map_or(0.0, |c| c.scale),
            schedule,
        };
        let x = sampler::sample(
            &mut self.be,
            &mut guided,
            &schedule,
            &req.sampler,
            &shape,
            req.seed,
            progress,
        )
        .await?;
        self.read_samples(&x, || {
            format!(
                "{} with {} steps",
                req.sampler.method.name(),
                req.sampler.steps()
            )
        })
        .await
    }

    /// The network's noise prediction at time t for `x` (`n` samples), e.g. to draw a score field
    /// (`score = -eps / sigma(t)`).
    pub async fn eps(
        &mut self,
        model: &str,
        x: &[f32],
        t: f64,
        class: Option<usize>,
        guidance: f32,
    ) -> Result<Vec<f32>> {
        let net = Self::find(&self.models, model)?;
        let per = net.config.sample_len();
        if x.is_empty() || !x.len().is_multiple_of(per) {
            return Err(Error::Param {
                name: "x".into(),
                detail: format!(
                    "{} values are not a whole number of {per}-value samples",
                    x.len()
                ),
            });
        }
        let s = net.config.schedule();
        if !(t >= s.t_eps && t <= 1.0) {
            return Err(Error::Param {
                name: "t".into(),
                detail: format!("{t} is outside [{}, 1]", s.t_eps),
            });
        }
        let n = x.len() / per;
        let mut shape = vec![n];
        shape.extend(net.config.sample_shape());
        let xt = self.be.upload(x, &shape)?;
        let mut den = Guided::new(&mut self.be, net, &vec![class; n], guidance)?;
        use crate::sampler::Denoiser;
        let e = den.eps(&mut self.be, &xt, t).await?;
        finite(self.be.read(&e).await?, || {
            format!("the noise prediction at t = {t}")
        })
    }

    /// The model and the batch shape of `values` (whole samples), which the caller calls `name`.
    fn checked_batch<'m>(
        models: &'m HashMap<String, Network<B>>,
        model: &str,
        name: &str,
        values: &[f32],
    ) -> Result<(&'m Network<B>, Vec<usize>)> {
        let net = Self::find(models, model)?;
        let per = net.config.sample_len();
        if values.is_empty() || !values.len().is_multiple_of(per) {
            return Err(Error::Param {
                name: name.into(),
                detail: format!(
                    "{} values are not a whole number of {:?} samples",
                    values.len(),
                    net.config.sample_shape()
                ),
            });
        }
        let shape = Self::batch_shape(net, values.len() / per)?;
        Ok((net, shape))
    }

    /// Fills the unknown part of each image; `mask` is one sample's shape (1 = keep, 0 = fill).
    pub async fn inpaint(
        &mut self,
        model: &str,
        req: &EditRequest,
        images: &[f32],
        mask: &[f32],
        progress: &mut impl Progress,
    ) -> Result<Samples> {
        let (net, shape) = Self::checked_batch(&self.models, model, "images", images)?;
        check_mask(net, mask)?;
        let s = net.config.schedule();
        let known = self.be.upload(images, &shape)?;
        let m = self.be.upload(mask, &shape[1..])?;
        let mut den = Guided::new(&mut self.be, net, &vec![req.class; shape[0]], req.guidance)?;
        let x = edit::inpaint(
            &mut self.be,
            &mut den,
            &s,
            &req.sampler,
            req.method,
            &known,
            &m,
            req.seed,
            progress,
        )
        .await?;
        self.read_samples(&x, || "the edit".into()).await
    }

    /// The measurement a task takes of clean `images`: `A x` plus Gaussian noise drawn from
    /// `seed` (denoising: the task's; super-resolution and deblurring: `noise`). SDEdit's is the
    /// image itself.
    pub async fn measure(
        &mut self,
        model: &str,
        task: Task,
        noise: f64,
        images: &[f32],
        seed: u32,
    ) -> Result<Samples> {
        let (_, shape) = Self::checked_batch(&self.models, model, "images", images)?;
        let x = self.be.upload(images, &shape)?;
        let noise = match task {
            Task::Denoise { noise } => noise,
            Task::Sdedit { .. } => 0.0,
            _ => noise,
        };
        let y = match task.operator() {
            None => x,
            Some(op) => {
                let m = Measurement::new(&mut self.be, op, &shape[1..], None, noise)?;
                m.apply(&mut self.be, &x)?
            }
        };
        let shape_y = B::shape(&y).to_vec();
        let mut rng = crate::rng::Rng::new(seed as u64 ^ 0x00be_a5ed);
        let values = self
            .be
            .read(&y)
            .await?
            .into_iter()
            .map(|v| (v as f64 + noise * rng.normal()) as f32)
            .collect();
        Ok(Samples::batch(values, &shape_y))
    }

    /// Restores images from their measurement `y` (super-resolution: `[n, h / f, w / f, c]`,
    /// otherwise the model's image shape), or turns images into samples by SDEdit. `mask` (one
    /// sample, 1 = keep) is for SDEdit only.
    pub async fn restore(
        &mut self,
        model: &str,
        req: &RestoreRequest,
        y: &[f32],
        mask: Option<&[f32]>,
        progress: &mut impl Progress,
    ) -> Result<Samples> {
        let net = Self::find(&self.models, model)?;
        let sample = net.config.sample_shape();
        let [h, w, c] = sample[..] else {
            return Err(Error::Param {
                name: "model".into(),
                detail: format!("{model} is not an image model: restoring works on images"),
            });
        };
        let (mh, mw) = match req.task {
            Task::Superres { factor } if factor == 2 || factor == 4 => (h / factor, w / factor),
            Task::Superres { factor } => {
                return Err(Error::Param {
                    name: "factor".into(),
                    detail: format!("{factor} must be 2 or 4"),
                })
            }
            _ => (h, w),
        };
        let per = mh * mw * c;
        if y.is_empty() || !y.len().is_multiple_of(per) {
            return Err(Error::Param {
                name: "y".into(),
                detail: format!(
                    "{} values are not a whole number of {mh}x{mw}x{c} measurements",
                    y.len()
                ),
            });
        }
        let shape = Self::batch_shape(net, y.len() / per)?;
        let n = shape[0];
        let yt = self.be.upload(y, &[n, mh, mw, c])?;
        let s = net.config.schedule();
        let mask_t = match mask {
            Some(m) if matches!(req.task, Task::Sdedit { .. }) => {
                check_mask(net, m)?;
                Some(self.be.upload(m, &shape[1..])?)
            }
            Some(_) => {
                return Err(Error::Param {
                    name: "mask".into(),
                    detail: "only SDEdit keeps a painted region".into(),
                })
            }
            None => None,
        };
        let (start, operator, noise, default) = match req.task {
            Task::Sdedit { strength } => (
                Start::Noised {
                    t: strength,
                    image: &yt,
                },
                mask_t.as_ref().map(|_| Operator::Mask),
                0.0,
                Enforce::Replace,
            ),
            Task::Denoise { noise } => match req.method {
                None => (Start::Noisy { noise, image: &yt }, None, noise, Enforce::Replace),
                Some(Enforce::Gradient { .. }) => {
                    (Start::Noise, Some(Operator::Identity), noise, Enforce::Replace)
                }
                Some(_) => {
                    return Err(Error::Param {
                        name: "method".into(),
                        detail: "denoising has nothing to project onto (the measurement is the whole noisy image): leave the method unset to start at the matching noise level, or use gradient".into(),
                    })
                }
            },
            Task::Superres { factor } => (
                Start::Noise,
                Some(Operator::Downsample { factor }),
                req.noise,
                Enforce::Replace,
            ),
            Task::Deblur { width } => (
                Start::Noise,
                Some(Operator::Blur { width }),
                req.noise,
                Enforce::Gradient { scale: 1.0 },
            ),
        };
        let measurement = match operator {
            Some(op) => Some(Measurement::new(
                &mut self.be,
                op,
                &shape[1..],
                mask_t.as_ref(),
                noise,
            )?),
            None => None,
        };
        // SDEdit's kept region is measured from the image itself.
        let kept = match (&measurement, req.task) {
            (Some(m), Task::Sdedit { .. }) => Some(m.apply(&mut self.be, &yt)?),
            _ => None,
        };
        let measured = measurement.as_ref().map(|m| {
            (
                m,
                kept.as_ref().unwrap_or(&yt),
                req.method.unwrap_or(default),
            )
        });
        let mut den = Guided::new(&mut self.be, net, &vec![req.class; n], req.guidance)?;
        let x = inverse::solve(
            &mut self.be,
            &mut den,
            &s,
            &req.sampler,
            start,
            measured,
            &shape,
            req.seed,
            progress,
        )
        .await?;
        self.read_samples(&x, || "the restoration".into()).await
    }

    /// Colours images keeping their luminance (rgb models only).
    pub async fn colorize(
        &mut self,
        model: &str,
        req: &EditRequest,
        images: &[f32],
        progress: &mut impl Progress,
    ) -> Result<Samples> {
        let (net, shape) = Self::checked_batch(&self.models, model, "images", images)?;
        let s = net.config.schedule();
        let gray = self.be.upload(images, &shape)?;
        let mut den = Guided::new(&mut self.be, net, &vec![req.class; shape[0]], req.guidance)?;
        let x = edit::colorize(
            &mut self.be,
            &mut den,
            &s,
            &req.sampler,
            req.method,
            &gray,
            req.seed,
            progress,
        )
        .await?;
        self.read_samples(&x, || "the edit".into()).await
    }

    /// Probability-flow encoding (`encode = true`: data to latent) or decoding; returns the
    /// result and the number of evaluations.
    pub async fn transport(
        &mut self,
        model: &str,
        req: &OdeRequest,
        values: &[f32],
        encode: bool,
        progress: &mut impl Progress,
    ) -> Result<(Samples, usize)> {
        let (net, shape) = Self::checked_batch(&self.models, model, "values", values)?;
        let solver = req.solver()?;
        let s = net.config.schedule();
        let x = self.be.upload(values, &shape)?;
        let mut den = Guided::new(&mut self.be, net, &vec![req.class; shape[0]], req.guidance)?;
        let (y, evals) =
            edit::ode_transport(&mut self.be, &mut den, &s, x, encode, solver, progress).await?;
        let what = if encode { "encoding" } else { "decoding" };
        Ok((self.read_samples(&y, || what.into()).await?, evals))
    }

    /// Decodes the spherical interpolations of two latents at the given positions in [0, 1].
    pub async fn interpolate(
        &mut self,
        model: &str,
        req: &OdeRequest,
        a: &[f32],
        b: &[f32],
        positions: &[f64],
        progress: &mut impl Progress,
    ) -> Result<(Samples, usize)> {
        let per = self.model(model)?.config.sample_len();
        for (name, latent) in [("a", a), ("b", b)] {
            if latent.len() != per {
                return Err(Error::Param {
                    name: name.into(),
                    detail: format!("{} values; a latent of {model} has {per}", latent.len()),
                });
            }
        }
        if positions.is_empty() || positions.iter().any(|u| !(0.0..=1.0).contains(u)) {
            return Err(Error::Param {
                name: "positions".into(),
                detail: "give one or more positions in [0, 1]".into(),
            });
        }
        let latents: Vec<f32> = positions
            .iter()
            .flat_map(|&u| edit::slerp(a, b, u))
            .collect();
        self.transport(model, req, &latents, false, progress).await
    }

    /// The starting noise of a seed (the latent a sample with that seed starts from), computed
    /// by the CPU twin of the noise kernel.
    pub fn seed_latent(&self, model: &str, seed: u32) -> Result<Vec<f32>> {
        let per = self.model(model)?.config.sample_len();
        Ok(crate::reference::randn(
            1,
            per,
            seed,
            crate::sampler::NoiseKey::START.stream()?,
        ))
    }

    /// `log p(x)` and bits/dim per sample.
    pub async fn likelihood(
        &mut self,
        model: &str,
        opts: &LikelihoodOptions,
        values: &[f32],
        class: Option<usize>,
        seed: u32,
        progress: &mut impl Progress,
    ) -> Result<Likelihood> {
        let (net, shape) = Self::checked_batch(&self.models, model, "values", values)?;
        let s = net.config.schedule();
        let x = self.be.upload(values, &shape)?;
        let mut den = Guided::new(&mut self.be, net, &vec![class; shape[0]], 1.0)?;
        edit::log_likelihood(&mut self.be, &mut den, &s, opts, &x, seed, progress).await
    }

    /// `log p` of a 2-D model on a grid of points (the playground's density map).
    pub async fn density_grid(
        &mut self,
        model: &str,
        grid: &DensityGrid,
        class: Option<usize>,
        progress: &mut impl Progress,
    ) -> Result<Likelihood> {
        let net = Self::find(&self.models, model)?;
        if net.config.sample_len() != 2 {
            return Err(Error::Param {
                name: "model".into(),
                detail: format!(
                    "{model:?} is not a 2-D model (samples of {:?})",
                    net.config.sample_shape()
                ),
            });
        }
        let s = net.config.schedule();
        let mut den = Guided::new(&mut self.be, net, &vec![class; grid.size * grid.size], 1.0)?;
        grid.log_density(&mut self.be, &mut den, &s, progress).await
    }
}

/// A mask of one sample's shape with values in [0, 1].
fn check_mask<B: Backend>(net: &Network<B>, mask: &[f32]) -> Result<()> {
    if mask.len() != net.config.sample_len() || mask.iter().any(|m| !(0.0..=1.0).contains(m)) {
        return Err(Error::Param {
            name: "mask".into(),
            detail: format!(
                "needs {} values in [0, 1] (one sample)",
                net.config.sample_len()
            ),
        });
    }
    Ok(())
}
