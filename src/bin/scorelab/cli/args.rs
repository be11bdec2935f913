//! The flags several commands share: the model and backend, the class and guidance, the sampler,
//! the editing and ODE settings, a restoring command's input.

use std::path::PathBuf;

use scorelab::lab::{EditRequest, OdeRequest, RestoreRequest, Task};
use scorelab::model::ModelConfig;
use scorelab::sampler::inverse::Enforce;
use scorelab::sampler::{Method, SamplerOptions};
use scorelab::{Error, Result};

use super::BackendChoice;

#[derive(clap::Args)]
pub(super) struct Common {
    /// Weights file (models/*.safetensors)
    #[arg(long, default_value = "models/digits.safetensors")]
    pub(super) model: PathBuf,
    /// Where to run
    #[arg(long, value_enum, default_value = "auto")]
    pub(super) backend: BackendChoice,
    /// Threads for the CPU backend (1 to 4; default: the cores, at most 4): `sample` splits its batch
    /// over them (the same samples as one thread, bit for bit), other commands its matrix products
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub(super) threads: Option<u8>,
}

#[derive(clap::Args)]
pub(super) struct Condition {
    /// Class index or name (omit for unconditional)
    #[arg(long)]
    pub(super) class: Option<String>,
    /// Classifier-free guidance scale (1 = plain conditional, 0 = unconditional)
    #[arg(long, default_value_t = 1.0)]
    pub(super) guidance: f32,
}

#[derive(clap::Args)]
pub(super) struct SamplerArgs {
    /// Sampling method (see the list below) [default: ddim; inpaint and colorize: ddpm]
    #[arg(long)]
    pub(super) sampler: Option<String>,
    /// Steps [default: the sampler's own; inpaint and colorize: 100] (rk45: the step cap; annealed: noise levels)
    #[arg(long)]
    pub(super) steps: Option<usize>,
    /// ddim: 0 = deterministic .. 1 = DDPM variance
    #[arg(long, default_value_t = 0.0)]
    pub(super) eta: f64,
    /// rk45 relative tolerance
    #[arg(long, default_value_t = 1e-3)]
    pub(super) rtol: f64,
    /// rk45 absolute tolerance
    #[arg(long, default_value_t = 1e-3)]
    pub(super) atol: f64,
    /// pc: predictor (ddpm, ddim, euler, heun, sde)
    #[arg(long, default_value = "sde")]
    pub(super) predictor: String,
    /// pc: corrector signal-to-noise ratio
    #[arg(long, default_value_t = 0.16)]
    pub(super) snr: f64,
    /// pc: Langevin corrector steps per step
    #[arg(long, default_value_t = 1)]
    pub(super) corrector_steps: usize,
    /// annealed: Langevin steps per noise level
    #[arg(long, default_value_t = 3)]
    pub(super) langevin_steps: usize,
    /// annealed: base step size (scaled by sigma_i^2 / sigma_min^2)
    #[arg(long, default_value_t = 2e-4)]
    pub(super) step_lr: f64,
}

impl SamplerArgs {
    pub(super) fn options(
        &self,
        default_method: &str,
        default_steps: Option<usize>,
    ) -> Result<SamplerOptions> {
        Ok(SamplerOptions {
            method: Method::parse(self.sampler.as_deref().unwrap_or(default_method))?,
            steps: self.steps.or(default_steps),
            eta: self.eta,
            rtol: self.rtol,
            atol: self.atol,
            predictor: Method::parse(&self.predictor)?,
            snr: self.snr,
            corrector_steps: self.corrector_steps,
            langevin_steps: self.langevin_steps,
            step_lr: self.step_lr,
        })
    }
}

#[derive(clap::Args)]
pub(super) struct EditArgs {
    #[command(flatten)]
    pub(super) sampler: SamplerArgs,
    #[command(flatten)]
    pub(super) condition: Condition,
    /// How the measurement is kept: replace (projection: exact), repaint (projection with
    /// resampling that harmonises the boundary) or gradient (likelihood gradient, any sampler,
    /// approximate) [default: replace; deblur: gradient; denoise: start at the matching noise level]
    #[arg(long)]
    pub(super) method: Option<String>,
    /// repaint: jump length in steps
    #[arg(long, default_value_t = 10)]
    pub(super) jump: usize,
    /// repaint: resamplings per jump
    #[arg(long, default_value_t = 5)]
    pub(super) resample: usize,
    /// gradient: scale of the likelihood gradient in (0, 2) (1 = exact for unit-variance
    /// Gaussian data); given alone, it selects the gradient method
    #[arg(long)]
    pub(super) scale: Option<f64>,
    /// Seed of the first variation
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u32,
}

impl EditArgs {
    /// The chosen method, `None` when not given.
    pub(super) fn method(&self) -> Result<Option<Enforce>> {
        let Some(name) = &self.method else {
            return Ok(self.scale.map(|scale| Enforce::Gradient { scale }));
        };
        Ok(Some(match name.as_str() {
            "replace" => Enforce::Replace,
            "repaint" => Enforce::Repaint {
                jump: self.jump,
                resample: self.resample,
            },
            "gradient" => Enforce::Gradient {
                scale: self.scale.unwrap_or(1.0),
            },
            other => {
                return Err(Error::Param {
                    name: "method".into(),
                    detail: format!("{other:?}: use replace, repaint or gradient"),
                })
            }
        }))
    }

    pub(super) fn request(&self, cfg: &ModelConfig) -> Result<EditRequest> {
        Ok(EditRequest {
            sampler: self.sampler.options("ddpm", Some(100))?,
            method: self.method()?.unwrap_or(Enforce::Replace),
            seed: self.seed,
            class: parse_class(cfg, &self.condition.class)?,
            guidance: self.condition.guidance,
        })
    }

    pub(super) fn restore_request(
        &self,
        cfg: &ModelConfig,
        task: Task,
        noise: f64,
    ) -> Result<RestoreRequest> {
        Ok(RestoreRequest {
            task,
            sampler: self.sampler.options("ddpm", Some(100))?,
            method: self.method()?,
            noise,
            seed: self.seed,
            class: parse_class(cfg, &self.condition.class)?,
            guidance: self.condition.guidance,
        })
    }
}

#[derive(clap::Args)]
pub(super) struct OdeArgs {
    /// Probability-flow ODE solver: rk45, heun or euler
    #[arg(long, default_value = "rk45")]
    pub(super) solver: String,
    /// Steps (heun, euler) or the step cap (rk45)
    #[arg(long, default_value_t = 500)]
    pub(super) ode_steps: usize,
    /// rk45 relative tolerance
    #[arg(long, default_value_t = 1e-4)]
    pub(super) rtol: f64,
    /// rk45 absolute tolerance
    #[arg(long, default_value_t = 1e-4)]
    pub(super) atol: f64,
    #[command(flatten)]
    pub(super) condition: Condition,
}

impl OdeArgs {
    pub(super) fn request(&self, cfg: &ModelConfig) -> Result<OdeRequest> {
        Ok(OdeRequest {
            solver: self.solver.clone(),
            steps: self.ode_steps,
            rtol: self.rtol,
            atol: self.atol,
            class: parse_class(cfg, &self.condition.class)?,
            guidance: self.condition.guidance,
        })
    }
}

#[derive(clap::Args)]
pub(super) struct RestoreInput {
    /// The images: a PNG at the model's size, a grid written by `sample`, or a float32 .npy
    /// `[k, h, w, c]` (values in [-1, 1]); measured by the command unless --measured
    #[arg(long)]
    pub(super) image: PathBuf,
    /// The image is the measurement itself (super-resolution: a PNG of the model's size / factor
    /// or a .npy `[k, h / f, w / f, c]`; denoising: a noisy image; deblurring: a blurred one)
    #[arg(long)]
    pub(super) measured: bool,
    /// Variations of each image
    #[arg(long, default_value_t = 4)]
    pub(super) n: usize,
    /// Output: a PNG of rows [image, measurement, variations...], or a .npy of the variations
    #[arg(long, default_value = "restored.png")]
    pub(super) out: PathBuf,
}

pub(super) fn sampler_list() -> String {
    let mut s = String::from("Samplers:\n");
    for m in Method::ALL {
        s += &format!("  {:<9} {}\n", m.name(), m.describe());
    }
    s
}

pub(super) fn parse_class(cfg: &ModelConfig, class: &Option<String>) -> Result<Option<usize>> {
    let Some(c) = class else { return Ok(None) };
    if let Ok(i) = c.parse::<usize>() {
        return Ok(Some(i)); // range-checked by the denoiser
    }
    let names = &cfg.classes.names;
    names
        .iter()
        .position(|n| n == c)
        .map(Some)
        .ok_or_else(|| Error::Param {
            name: "class".into(),
            detail: format!("unknown class {c:?}; classes: {}", names.join(", ")),
        })
}

/// A lowercase name of one of the library's option enums (its serde name).
pub(super) fn parse_name<T: serde::de::DeserializeOwned>(
    s: &str,
) -> std::result::Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|e| e.to_string())
}
