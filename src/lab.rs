//! The operations a user asks for (sample, and the editing and measuring tools), on one backend
//! with the models loaded into it. The CLI and the wasm API are thin layers over this.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::{ModelConfig, Network};
use crate::sampler::{self, Guided, Progress, SamplerOptions, VpSchedule};

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
}

impl Default for SampleRequest {
    fn default() -> Self {
        SampleRequest { sampler: SamplerOptions::default(), seed: 0, n: 4, class: None, guidance: 1.0 }
    }
}

/// Samples as model values, `[n, ..sample_shape]` row-major.
#[derive(Clone, Debug, Serialize)]
pub struct Samples {
    pub values: Vec<f32>,
    pub n: usize,
    pub shape: Vec<usize>,
}

/// Largest batch accepted in one request (device limits allow more for small models; this keeps
/// one request's memory and time bounded).
pub const MAX_BATCH: usize = 256;

pub struct Session<B: Backend> {
    pub be: B,
    models: HashMap<String, Network<B>>,
}

impl<B: Backend> Session<B> {
    pub fn new(be: B) -> Session<B> {
        Session { be, models: HashMap::new() }
    }

    /// Loads (or replaces) a model under `name`; returns its config.
    pub fn load_model(&mut self, name: &str, bytes: &[u8]) -> Result<&ModelConfig> {
        let net = Network::load(&mut self.be, bytes)?;
        self.models.insert(name.to_string(), net);
        Ok(&self.models[name].config)
    }

    pub fn model(&self, name: &str) -> Result<&Network<B>> {
        self.models.get(name).ok_or_else(|| Error::Param { name: "model".into(), detail: format!("{name:?} is not loaded (loaded: {})", self.models.keys().cloned().collect::<Vec<_>>().join(", ")) })
    }

    fn batch_shape(net: &Network<B>, n: usize) -> Result<Vec<usize>> {
        if !(1..=MAX_BATCH).contains(&n) {
            return Err(Error::Param { name: "n".into(), detail: format!("{n} samples: choose 1..={MAX_BATCH}") });
        }
        let mut shape = vec![n];
        shape.extend(net.config.sample_shape());
        Ok(shape)
    }

    /// Draws `req.n` samples.
    pub async fn sample(&mut self, model: &str, req: &SampleRequest, progress: &mut impl Progress) -> Result<Samples> {
        let net = self.models.get(model).ok_or_else(|| Error::Param { name: "model".into(), detail: format!("{model:?} is not loaded") })?;
        let shape = Self::batch_shape(net, req.n)?;
        let schedule = VpSchedule::from_config(&net.config.sde);
        let mut den = Guided::new(&mut self.be, net, &vec![req.class; req.n], req.guidance)?;
        let x = sampler::sample(&mut self.be, &mut den, &schedule, &req.sampler, &shape, req.seed, progress).await?;
        let values = self.be.read(&x).await?;
        Ok(Samples { values, n: req.n, shape: shape[1..].to_vec() })
    }

    /// The network's noise prediction at time t for `x` (`n` samples), e.g. to draw a score field
    /// (`score = -eps / sigma(t)`).
    pub async fn eps(&mut self, model: &str, x: &[f32], t: f64, class: Option<usize>, guidance: f32) -> Result<Vec<f32>> {
        let net = self.models.get(model).ok_or_else(|| Error::Param { name: "model".into(), detail: format!("{model:?} is not loaded") })?;
        let per = net.config.sample_len();
        if x.is_empty() || x.len() % per != 0 {
            return Err(Error::Param { name: "x".into(), detail: format!("{} values are not a whole number of {per}-value samples", x.len()) });
        }
        let s = VpSchedule::from_config(&net.config.sde);
        if !(t >= s.t_eps && t <= 1.0) {
            return Err(Error::Param { name: "t".into(), detail: format!("{t} is outside [{}, 1]", s.t_eps) });
        }
        let n = x.len() / per;
        let mut shape = vec![n];
        shape.extend(net.config.sample_shape());
        let xt = self.be.upload(x, &shape)?;
        let mut den = Guided::new(&mut self.be, net, &vec![class; n], guidance)?;
        use crate::sampler::Denoiser;
        let e = den.eps(&mut self.be, &xt, t).await?;
        self.be.read(&e).await
    }
}
