//! What a user asks the lab for, as the serde structs the wasm API and the CLI fill in (every
//! field has a default; unknown fields are refused), and the samples it answers with.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sampler::inverse::{Enforce, Operator};
use crate::sampler::{self, OdeSolver, SamplerOptions};

/// A sampling request; every field has a default.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SampleRequest {
    pub sampler: SamplerOptions,
    /// Seed of the first sample; sample i uses seed + i.
    pub seed: u32,
    pub n: usize,
    /// Class index, or None for unconditional.
    pub class: Option<usize>,
    /// Classifier-free guidance scale (1 = plain conditional).
    pub guidance: f32,
    /// Classifier guidance towards `class` (with `guidance` 0 the score model is unconditional).
    pub classifier: Option<ClassifierGuidance>,
}

/// Which loaded classifier guides a run, and how strongly.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierGuidance {
    pub model: String,
    /// The scale s of `s grad log p(y | x_t, t)` (0 = off).
    pub scale: f64,
}

impl Default for SampleRequest {
    fn default() -> Self {
        SampleRequest {
            sampler: SamplerOptions::default(),
            seed: 0,
            n: 4,
            class: None,
            guidance: 1.0,
            classifier: None,
        }
    }
}

/// An inpainting or colorization request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EditRequest {
    pub sampler: SamplerOptions,
    pub method: Enforce,
    pub seed: u32,
    pub class: Option<usize>,
    pub guidance: f32,
}

impl Default for EditRequest {
    fn default() -> Self {
        EditRequest {
            sampler: SamplerOptions {
                method: sampler::Method::Ddpm,
                steps: Some(100),
                ..Default::default()
            },
            method: Enforce::Replace,
            seed: 0,
            class: None,
            guidance: 1.0,
        }
    }
}

/// Settings of the deterministic probability-flow transport (encode, decode, interpolate).
/// An image-to-image task: what was measured, or how far to noise the image (SDEdit).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Task {
    /// The measurement is the image averaged over `factor x factor` blocks (2 or 4).
    Superres { factor: usize },
    /// The measurement is the image plus Gaussian noise of std `noise` (model units, [-1, 1]).
    Denoise { noise: f64 },
    /// The measurement is the image blurred by a Gaussian of std `width` pixels (0.5 to 2).
    Deblur { width: f64 },
    /// SDEdit: the image (a sketch, say) noised to time `strength` in (0, 1] and denoised.
    Sdedit { strength: f64 },
}

impl Task {
    /// The measurement operator (SDEdit has none; its mask, if any, is a mask measurement).
    pub(super) fn operator(self) -> Option<Operator> {
        match self {
            Task::Superres { factor } => Some(Operator::Downsample { factor }),
            Task::Denoise { .. } => Some(Operator::Identity),
            Task::Deblur { width } => Some(Operator::Blur { width }),
            Task::Sdedit { .. } => None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RestoreRequest {
    pub task: Task,
    pub sampler: SamplerOptions,
    /// How the measurement is kept; `None` is the task's default: super-resolution `replace`,
    /// deblurring `gradient`, denoising a start at the time whose noise matches (no projection),
    /// SDEdit nothing (or `replace` of the kept region when a mask is given).
    pub method: Option<Enforce>,
    /// The measurement's noise std for super-resolution and deblurring (denoising's is the task's).
    pub noise: f64,
    pub seed: u32,
    pub class: Option<usize>,
    pub guidance: f32,
}

impl Default for RestoreRequest {
    fn default() -> Self {
        RestoreRequest {
            task: Task::Superres { factor: 2 },
            sampler: SamplerOptions {
                method: sampler::Method::Ddpm,
                steps: Some(100),
                ..Default::default()
            },
            method: None,
            noise: 0.0,
            seed: 0,
            class: None,
            guidance: 1.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OdeRequest {
    /// "rk45", "heun" or "euler" (Euler on the ODE is DDIM inversion in the limit).
    pub solver: String,
    pub steps: usize,
    pub rtol: f64,
    pub atol: f64,
    pub class: Option<usize>,
    pub guidance: f32,
}

impl Default for OdeRequest {
    fn default() -> Self {
        OdeRequest {
            solver: "rk45".into(),
            steps: 500,
            rtol: 1e-3,
            atol: 1e-3,
            class: None,
            guidance: 1.0,
        }
    }
}

impl OdeRequest {
    pub(super) fn solver(&self) -> Result<OdeSolver> {
        if !(1..=10_000).contains(&self.steps) {
            return Err(Error::Param {
                name: "steps".into(),
                detail: format!("{} must be 1..=10000", self.steps),
            });
        }
        match self.solver.as_str() {
            "rk45" => sampler::check_tolerances(self.rtol, self.atol).map(|_| OdeSolver::Rk45 {
                rtol: self.rtol,
                atol: self.atol,
                max_steps: self.steps,
            }),
            "heun" => Ok(OdeSolver::Heun { steps: self.steps }),
            "euler" => Ok(OdeSolver::Euler { steps: self.steps }),
            other => Err(Error::Param {
                name: "solver".into(),
                detail: format!("{other:?}: use rk45, heun or euler"),
            }),
        }
    }
}

/// Samples as model values, `[n, ..sample_shape]` row-major.
#[derive(Clone, Debug, Serialize)]
pub struct Samples {
    pub values: Vec<f32>,
    pub n: usize,
    pub shape: Vec<usize>,
}

impl Samples {
    /// `values` laid out as `shape`, `[n, ..sample_shape]`.
    pub(super) fn batch(values: Vec<f32>, shape: &[usize]) -> Samples {
        Samples {
            values,
            n: shape[0],
            shape: shape[1..].to_vec(),
        }
    }
}
