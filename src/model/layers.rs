//! Layers built from stored tensors: each takes its PyTorch-named tensors, checks their shapes,
//! converts them once to the runtime layout (NHWC convolutions, `[in, out]` matrices) and uploads them.

use std::collections::BTreeMap;

use crate::backend::{Backend, Channels};
use crate::error::{Error, Result};
use crate::ops::{Conv2d, GroupNorm};

use super::file::StoredTensor;

/// Hands out a file's tensors by name and shape; whatever is left at the end is an error.
pub struct TensorSource {
    tensors: BTreeMap<String, StoredTensor>,
}

impl TensorSource {
    pub fn new(tensors: BTreeMap<String, StoredTensor>) -> TensorSource {
        TensorSource { tensors }
    }

    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let t = self.tensors.remove(name).ok_or_else(|| Error::Weights {
            what: format!("tensor {name}"),
            detail: format!("missing (expected shape {shape:?})"),
        })?;
        if t.shape != shape {
            return Err(Error::Weights {
                what: format!("tensor {name}"),
                detail: format!("has shape {:?}, the config needs {shape:?}", t.shape),
            });
        }
        Ok(t.data)
    }

    /// Fails if the file holds tensors the config does not use.
    pub fn finish(self) -> Result<()> {
        match self.tensors.keys().next() {
            None => Ok(()),
            Some(name) => Err(Error::Weights {
                what: format!("tensor {name}"),
                detail: format!(
                    "is not part of the configured network ({} unused tensors)",
                    self.tensors.len()
                ),
            }),
        }
    }
}

/// A linear layer's weight, transposed to `[cin, cout]`, and its bias, on the host.
pub fn read_linear(
    src: &mut TensorSource,
    name: &str,
    cin: usize,
    cout: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let w = src.take(&format!("{name}.weight"), &[cout, cin])?;
    let mut wt = vec![0f32; cin * cout];
    for o in 0..cout {
        for i in 0..cin {
            wt[i * cout + o] = w[o * cin + i];
        }
    }
    Ok((wt, src.take(&format!("{name}.bias"), &[cout])?))
}

/// A convolution kernel from PyTorch's `[cout, cin, k, k]` to the runtime's `[k * k * cin, cout]`
/// (rows ordered ky, kx, ci).
pub fn conv_to_runtime(w: &[f32], cin: usize, cout: usize, ksize: usize) -> Vec<f32> {
    let mut wt = vec![0f32; w.len()];
    for o in 0..cout {
        for i in 0..cin {
            for ky in 0..ksize {
                for kx in 0..ksize {
                    wt[((ky * ksize + kx) * cin + i) * cout + o] =
                        w[((o * cin + i) * ksize + ky) * ksize + kx];
                }
            }
        }
    }
    wt
}

pub struct Linear<B: Backend> {
    w: B::Tensor,
    b: B::Tensor,
}

impl<B: Backend> Linear<B> {
    pub fn load(
        be: &mut B,
        src: &mut TensorSource,
        name: &str,
        cin: usize,
        cout: usize,
    ) -> Result<Self> {
        let (wt, b) = read_linear(src, name, cin, cout)?;
        Self::upload(be, &wt, &b, cin, cout)
    }

    pub fn upload(be: &mut B, wt: &[f32], b: &[f32], cin: usize, cout: usize) -> Result<Self> {
        Ok(Linear {
            w: be.upload_weights(wt, &[cin, cout])?,
            b: be.upload(b, &[cout])?,
        })
    }

    pub fn forward(&self, be: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        be.linear(x, &self.w, Some(&self.b))
    }

    /// `silu?(forward(x) + add)`, fused where the backend can.
    pub fn forward_fused(
        &self,
        be: &mut B,
        x: &B::Tensor,
        add: Option<&B::Tensor>,
        silu: bool,
    ) -> Result<B::Tensor> {
        be.linear_fused(x, &self.w, Some(&self.b), add, silu)
    }

    pub fn tensors(&self) -> (&B::Tensor, &B::Tensor) {
        (&self.w, &self.b)
    }
}

pub struct Conv<B: Backend> {
    w: B::Tensor,
    b: B::Tensor,
    spec: Conv2d,
}

impl<B: Backend> Conv<B> {
    pub fn load(
        be: &mut B,
        src: &mut TensorSource,
        name: &str,
        cin: usize,
        cout: usize,
        ksize: usize,
        stride: usize,
    ) -> Result<Self> {
        let w = src.take(&format!("{name}.weight"), &[cout, cin, ksize, ksize])?;
        let wt = conv_to_runtime(&w, cin, cout, ksize);
        let b = src.take(&format!("{name}.bias"), &[cout])?;
        Ok(Conv {
            w: be.upload_weights(&wt, &[ksize * ksize * cin, cout])?,
            b: be.upload(&b, &[cout])?,
            spec: Conv2d { ksize, stride },
        })
    }

    pub fn forward(&self, be: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        be.conv2d(x, &self.w, &self.b, self.spec)
    }

    /// `forward(x) + skip.forward(skip_x)` with `skip` a 1x1 convolution (a projected skip
    /// connection), fused where the backend can.
    pub fn forward_skip(
        &self,
        be: &mut B,
        x: &B::Tensor,
        skip_x: &Channels<B::Tensor>,
        skip: &Conv<B>,
    ) -> Result<B::Tensor> {
        be.conv2d_skip(x, &self.w, &self.b, skip_x, &skip.w, &skip.b, self.spec)
    }

    /// `forward(x) + add` (a residual connection).
    pub fn forward_add(&self, be: &mut B, x: &B::Tensor, add: &B::Tensor) -> Result<B::Tensor> {
        be.conv2d_add(x, &self.w, &self.b, add, self.spec)
    }
}

/// A 3x3 convolution of its input upsampled 2x (nearest): the U-Net's upsampling. Its weights
/// are stored in the layout the backend computes it in (see
/// [`Backend::upload_upsample_conv_weights`]).
pub struct UpsampleConv<B: Backend> {
    w: B::Tensor,
    b: B::Tensor,
}

impl<B: Backend> UpsampleConv<B> {
    pub fn load(be: &mut B, src: &mut TensorSource, name: &str, ch: usize) -> Result<Self> {
        let w = src.take(&format!("{name}.weight"), &[ch, ch, 3, 3])?;
        let wt = conv_to_runtime(&w, ch, ch, 3);
        let b = src.take(&format!("{name}.bias"), &[ch])?;
        Ok(UpsampleConv {
            w: be.upload_upsample_conv_weights(&wt, ch, ch)?,
            b: be.upload(&b, &[ch])?,
        })
    }

    pub fn forward(&self, be: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        be.upsample_conv2d(x, &self.w, &self.b)
    }
}

pub struct Norm<B: Backend> {
    gamma: B::Tensor,
    beta: B::Tensor,
    groups: usize,
    eps: f32,
}

impl<B: Backend> Norm<B> {
    pub fn load(
        be: &mut B,
        src: &mut TensorSource,
        name: &str,
        c: usize,
        groups: usize,
        eps: f32,
    ) -> Result<Self> {
        let g = src.take(&format!("{name}.weight"), &[c])?;
        let b = src.take(&format!("{name}.bias"), &[c])?;
        Ok(Norm {
            gamma: be.upload(&g, &[c])?,
            beta: be.upload(&b, &[c])?,
            groups,
            eps,
        })
    }

    /// GroupNorm of `x + add` (add is per (n, c): the columns from the given offset of an
    /// `[n, s]` tensor), optionally followed by SiLU.
    pub fn forward(
        &self,
        be: &mut B,
        x: &Channels<B::Tensor>,
        add: Option<(&B::Tensor, usize)>,
        silu: bool,
    ) -> Result<B::Tensor> {
        be.group_norm(
            x,
            &self.gamma,
            &self.beta,
            add.map(|(t, _)| t),
            GroupNorm {
                groups: self.groups,
                eps: self.eps,
                silu,
                add_offset: add.map_or(0, |(_, offset)| offset),
            },
        )
    }
}

/// `silu(fc2(silu(fc1(sinusoidal(t * scale)))) + class_emb[label])`: the activated time/class
/// embedding every block reads.
pub struct TimeClassEmbedding<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
    class_emb: Option<B::Tensor>,
    base: usize,
    scale: f32,
}

impl<B: Backend> TimeClassEmbedding<B> {
    pub fn load(
        be: &mut B,
        src: &mut TensorSource,
        base: usize,
        dim: usize,
        num_classes: usize,
        scale: f32,
    ) -> Result<Self> {
        let fc1 = Linear::load(be, src, "embed.fc1", base, dim)?;
        let fc2 = Linear::load(be, src, "embed.fc2", dim, dim)?;
        let class_emb = if num_classes > 0 {
            let table = src.take("embed.class_emb.weight", &[num_classes + 1, dim])?;
            Some(be.upload(&table, &[num_classes + 1, dim])?)
        } else {
            None
        };
        Ok(TimeClassEmbedding {
            fc1,
            fc2,
            class_emb,
            base,
            scale,
        })
    }

    pub fn forward(&self, be: &mut B, t: &B::Tensor, labels: &B::Tensor) -> Result<B::Tensor> {
        let s = be.timestep_embedding(t, self.base, self.scale)?;
        let h = self.fc1.forward_fused(be, &s, None, true)?;
        let class = match &self.class_emb {
            Some(table) => Some(be.embedding(labels, table)?),
            None => None,
        };
        self.fc2.forward_fused(be, &h, class.as_ref(), true)
    }
}
