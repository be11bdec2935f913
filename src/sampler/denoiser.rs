//! The denoiser interface samplers are written against: given x at time t, return eps. Implemented
//! by a score network (with classifier-free guidance) and by exact Gaussian-mixture scores.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::model::Network;

#[allow(async_fn_in_trait)]
pub trait Denoiser<B: Backend> {
    /// The noise prediction for a batch x (`[n, ..]`) at time t (the same for every sample).
    async fn eps(&mut self, be: &mut B, x: &B::Tensor, t: f64) -> Result<B::Tensor>;
}

/// A network with class labels and classifier-free guidance:
/// `eps = eps(x, null) + w (eps(x, label) - eps(x, null))`; w = 1 is plain conditional sampling,
/// w = 0 unconditional.
pub struct Guided<'a, B: Backend> {
    net: &'a Network<B>,
    labels: B::Tensor,
    null_labels: Option<B::Tensor>,
    scale: f32,
}

impl<'a, B: Backend> Guided<'a, B> {
    /// `labels[i]` is sample i's class, or `None` for unconditional. Unknown classes are errors.
    pub fn new(
        be: &mut B,
        net: &'a Network<B>,
        labels: &[Option<usize>],
        scale: f32,
    ) -> Result<Self> {
        let classes = &net.config.classes;
        if !scale.is_finite() || !(0.0..=20.0).contains(&scale) {
            return Err(Error::Param {
                name: "guidance".into(),
                detail: format!("{scale} is outside [0, 20]"),
            });
        }
        let mut values = Vec::with_capacity(labels.len());
        for l in labels {
            match *l {
                Some(c) if c < classes.names.len() => values.push(c as f32),
                Some(c) => {
                    let known = if classes.names.is_empty() {
                        "the model has no classes".to_string()
                    } else {
                        format!(
                            "classes are 0..{} ({})",
                            classes.names.len() - 1,
                            classes.names.join(", ")
                        )
                    };
                    return Err(Error::Param {
                        name: "class".into(),
                        detail: format!("{c} is not a class of {}: {known}", net.config.name),
                    });
                }
                None => values.push(classes.null_index as f32),
            }
        }
        let n = values.len();
        // Scale 0 is the unconditional model: one pass with the null label.
        if scale == 0.0 {
            values
                .iter_mut()
                .for_each(|v| *v = classes.null_index as f32);
        }
        let conditional = values.iter().any(|&v| v != classes.null_index as f32);
        let null_labels = if conditional && scale != 1.0 {
            Some(be.upload(&vec![classes.null_index as f32; n], &[n])?)
        } else {
            None
        };
        Ok(Guided {
            net,
            labels: be.upload(&values, &[n])?,
            null_labels,
            scale,
        })
    }
}

impl<B: Backend> Denoiser<B> for Guided<'_, B> {
    async fn eps(&mut self, be: &mut B, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let n = B::shape(x)[0];
        let t = be.upload(&vec![t as f32; n], &[n])?;
        let cond = self.net.forward(be, x, &t, &self.labels)?;
        match &self.null_labels {
            None => Ok(cond),
            Some(null) => {
                let uncond = self.net.forward(be, x, &t, null)?;
                be.combine3(&uncond, &cond, None, [1.0 - self.scale, self.scale, 0.0])
            }
        }
    }
}
