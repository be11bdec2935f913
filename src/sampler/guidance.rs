//! Classifier guidance (Song et al. 2021, §I; Dhariwal & Nichol 2021): sampling `p(x | y)` with
//! an unconditional (or conditional) score and a classifier of noisy inputs,
//! `score(x | y) = score(x) + s grad_x log p(y | x_t, t)`, i.e. `eps -= s sigma(t) grad`.
//! Any sampler takes it: it is a [`Denoiser`] around another.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::classifier::Classifier;

use super::{Denoiser, GaussianMixture, Schedule};

/// `grad_x log p(y | x_t, t)` for the labels of one run.
#[allow(async_fn_in_trait)]
pub trait ClassGradient<B: Backend> {
    async fn grad_log_p(&mut self, be: &mut B, x: &B::Tensor, t: f64) -> Result<B::Tensor>;
}

/// A trained classifier and the one-hot labels of a batch.
pub struct NetworkClass<'a, B: Backend> {
    classifier: &'a Classifier<B>,
    onehot: B::Tensor,
}

impl<'a, B: Backend> NetworkClass<'a, B> {
    /// `labels[i]`: the class sample i is guided towards.
    pub fn new(be: &mut B, classifier: &'a Classifier<B>, labels: &[usize]) -> Result<Self> {
        let k = classifier.config.num_classes();
        if let Some(&c) = labels.iter().find(|&&c| c >= k) {
            return Err(Error::Param {
                name: "class".into(),
                detail: format!(
                    "{c} is not a class of the classifier {} (0..{})",
                    classifier.config.name,
                    k - 1
                ),
            });
        }
        let mut onehot = vec![0f32; labels.len() * k];
        for (i, &c) in labels.iter().enumerate() {
            onehot[i * k + c] = 1.0;
        }
        Ok(NetworkClass {
            classifier,
            onehot: be.upload(&onehot, &[labels.len(), k])?,
        })
    }
}

impl<B: Backend> ClassGradient<B> for NetworkClass<'_, B> {
    async fn grad_log_p(&mut self, be: &mut B, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let n = B::shape(x)[0];
        let t = be.upload(&vec![t as f32; n], &[n])?;
        self.classifier.grad_log_p(be, x, &t, &self.onehot)
    }
}

/// The exact `grad log p(component | x_t)` of a Gaussian mixture (for tests): the component's
/// score minus the mixture's.
pub struct MixtureClass {
    pub mixture: GaussianMixture,
    pub component: usize,
}

impl<B: Backend> ClassGradient<B> for MixtureClass {
    async fn grad_log_p(&mut self, be: &mut B, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let shape = B::shape(x).to_vec();
        let values = be.read(x).await?;
        let one = GaussianMixture {
            weights: vec![1.0],
            means: vec![self.mixture.means[self.component].clone()],
            vars: vec![self.mixture.vars[self.component].clone()],
            schedule: self.mixture.schedule,
        };
        let d = self.mixture.dim();
        let mut out = Vec::with_capacity(values.len());
        for row in values.chunks(d) {
            let xr: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let (a, b) = (one.score(&xr, t), self.mixture.score(&xr, t));
            out.extend(a.iter().zip(&b).map(|(a, b)| (a - b) as f32));
        }
        be.upload(&out, &shape)
    }
}

/// A denoiser guided by a class gradient: `eps - scale sigma(t) grad log p(y | x_t, t)`; without
/// a class gradient (or at scale 0), the inner denoiser as it is.
pub struct ClassifierGuided<'a, D, C> {
    pub inner: &'a mut D,
    pub class: Option<C>,
    pub scale: f64,
    pub schedule: Schedule,
}

impl<B: Backend, D: Denoiser<B>, C: ClassGradient<B>> Denoiser<B> for ClassifierGuided<'_, D, C> {
    async fn eps(&mut self, be: &mut B, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let e = self.inner.eps(be, x, t).await?;
        match &mut self.class {
            Some(class) if self.scale != 0.0 => {
                let g = class.grad_log_p(be, x, t).await?;
                be.axpby(&e, &g, 1.0, (-self.scale * self.schedule.sigma(t)) as f32)
            }
            _ => Ok(e),
        }
    }
}
