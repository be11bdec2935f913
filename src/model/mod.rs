//! Score networks loaded from weights files: the config decides the architecture (U-Net or MLP);
//! nothing is hard-coded per model.

pub mod classifier;
pub mod config;
pub mod file;
pub mod layers;
pub mod mlp;
pub mod unet;

pub use config::{Arch, ModelConfig};
pub use file::WeightsFile;

use crate::backend::Backend;
use crate::error::{Error, Result};

/// Named intermediate activations, for comparing with the training code's golden taps.
pub type Taps<B> = Vec<(String, <B as Backend>::Tensor)>;

#[allow(clippy::large_enum_variant)] // one per loaded model, never moved in a loop
enum Net<B: Backend> {
    UNet(unet::UNet<B>),
    Mlp(mlp::Mlp<B>),
}

/// A score network on one backend: predicts eps (the noise) for x, t and class labels.
pub struct Network<B: Backend> {
    pub config: ModelConfig,
    net: Net<B>,
    /// Names this network to the backend for recorded evaluations ([`Backend::replayed`]).
    pub id: u64,
}

/// Source of [`Network::id`]: unique for the life of the process.
static NEXT_NETWORK_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl<B: Backend> Network<B> {
    /// Parses a weights file, checks every tensor against the config, and uploads the weights.
    pub fn load(be: &mut B, bytes: &[u8]) -> Result<Self> {
        Self::build(be, WeightsFile::parse(bytes)?)
    }

    pub fn build(be: &mut B, file: WeightsFile) -> Result<Self> {
        let config = file.config;
        let mut src = layers::TensorSource::new(file.tensors);
        let net = match &config.arch {
            Arch::Unet {
                in_ch,
                base,
                mults,
                num_res,
                attn_res,
                image_size,
                num_classes,
                groups,
                norm_eps,
                time_scale,
            } => {
                let shape = unet::UNetShape {
                    in_ch: *in_ch,
                    base: *base,
                    mults,
                    num_res: *num_res,
                    attn_res,
                    image_size: *image_size,
                    num_classes: *num_classes,
                    groups: *groups,
                    norm_eps: *norm_eps,
                    time_scale: *time_scale,
                };
                Net::UNet(unet::UNet::load(be, &mut src, &shape)?)
            }
            &Arch::Mlp {
                dim,
                width,
                depth,
                num_classes,
                time_base,
                time_scale,
            } => Net::Mlp(mlp::Mlp::load(
                be,
                &mut src,
                dim,
                width,
                depth,
                num_classes,
                time_base,
                time_scale,
            )?),
            Arch::Classifier { .. } => {
                return Err(Error::Weights {
                    what: "config field arch".into(),
                    detail: format!(
                        "{:?} is a classifier, not a score network: load it as a classifier (for classifier guidance)",
                        config.name
                    ),
                })
            }
        };
        src.finish()?;
        Ok(Network {
            config,
            net,
            id: NEXT_NETWORK_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// eps for a batch: x `[n, ..sample_shape]`, t `[n]` in (0, 1], labels `[n]` (integer values,
    /// `null_index` for no class). Recorded once per batch shape and replayed where the backend can.
    pub fn forward(
        &self,
        be: &mut B,
        x: &B::Tensor,
        t: &B::Tensor,
        labels: &B::Tensor,
    ) -> Result<B::Tensor> {
        be.replayed(self.id, &[x, t, labels], |be, ins| {
            self.forward_with_taps(be, ins[0], ins[1], ins[2], None)
        })
    }

    pub fn forward_with_taps(
        &self,
        be: &mut B,
        x: &B::Tensor,
        t: &B::Tensor,
        labels: &B::Tensor,
        taps: Option<&mut Taps<B>>,
    ) -> Result<B::Tensor> {
        let xs = B::shape(x);
        let n = xs.first().copied().unwrap_or(0);
        if xs.len() != 1 + self.config.sample_shape().len()
            || xs[1..] != self.config.sample_shape()[..]
            || n == 0
        {
            return Err(Error::Shape {
                op: "network",
                detail: format!(
                    "x must be [n, {:?}], got {xs:?}",
                    self.config.sample_shape()
                ),
            });
        }
        if B::shape(t) != [n] || B::shape(labels) != [n] {
            return Err(Error::Shape {
                op: "network",
                detail: format!(
                    "t and labels must be [{n}], got {:?} and {:?}",
                    B::shape(t),
                    B::shape(labels)
                ),
            });
        }
        match &self.net {
            Net::UNet(u) => u.forward(be, x, t, labels, taps),
            Net::Mlp(m) => m.forward(be, x, t, labels, taps),
        }
    }
}
