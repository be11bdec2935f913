//! The noise-conditional classifier of `train/classifier.py` (`p(y | x_t, t)`), and the gradient
//! of `log p(y | x_t, t)` with respect to the image that classifier guidance adds to the score.
//!
//! The gradient is an explicit backward pass built from ops every backend has: a convolution's
//! input gradient is a convolution of the output gradient with the kernel flipped and its channel
//! axes swapped (stride 2: of the gradient dilated with zeros, an upsampling masked to the even
//! positions); the mean over positions and the per-channel broadcast of the time embedding are
//! matrix products with a vector of ones.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::{Conv2d, Matmul, Pointwise, View};

use super::config::{Arch, ModelConfig};
use super::file::WeightsFile;
use super::layers::{conv_to_runtime, Linear, TensorSource};

/// A 3x3 convolution that also keeps what its input gradient needs.
struct GradConv<B: Backend> {
    w: B::Tensor,
    b: B::Tensor,
    /// `[9 * cout, cin]`: the kernel flipped in space, channels swapped.
    w_flip: B::Tensor,
    zero_bias: B::Tensor,
    /// Stride 2: 1 at even (y, x) of the input's size, `[h, w, cout]`.
    even: Option<B::Tensor>,
    /// One per output position: the broadcast of the time embedding and the mean pooling.
    ones: B::Tensor,
    stride: usize,
}

impl<B: Backend> GradConv<B> {
    #[allow(clippy::too_many_arguments)]
    fn load(
        be: &mut B,
        src: &mut TensorSource,
        name: &str,
        cin: usize,
        cout: usize,
        stride: usize,
        in_hw: usize,
    ) -> Result<Self> {
        let w = src.take(&format!("{name}.weight"), &[cout, cin, 3, 3])?;
        let b = src.take(&format!("{name}.bias"), &[cout])?;
        // The input gradient's kernel, in PyTorch's layout: a convolution from cout to cin
        // channels with the kernel turned by 180 degrees.
        let mut flipped = vec![0f32; w.len()];
        for o in 0..cout {
            for i in 0..cin {
                for k in 0..9 {
                    flipped[(i * cout + o) * 9 + 8 - k] = w[(o * cin + i) * 9 + k];
                }
            }
        }
        let wt = conv_to_runtime(&w, cin, cout, 3);
        let wf = conv_to_runtime(&flipped, cout, cin, 3);
        let even = if stride == 2 {
            let m: Vec<f32> = (0..in_hw * in_hw * cout)
                .map(|k| {
                    let (y, x) = (k / cout / in_hw, k / cout % in_hw);
                    if y % 2 == 0 && x % 2 == 0 {
                        1.0
                    } else {
                        0.0
                    }
                })
                .collect();
            Some(be.upload(&m, &[in_hw, in_hw, cout])?)
        } else {
            None
        };
        Ok(GradConv {
            w: be.upload_weights(&wt, &[9 * cin, cout])?,
            b: be.upload(&b, &[cout])?,
            w_flip: be.upload_weights(&wf, &[9 * cout, cin])?,
            zero_bias: be.upload(&vec![0.0; cin], &[cin])?,
            even,
            ones: be.upload(
                &vec![1.0; (in_hw / stride).pow(2)],
                &[(in_hw / stride).pow(2)],
            )?,
            stride,
        })
    }

    fn spec(&self) -> Conv2d {
        Conv2d {
            ksize: 3,
            stride: self.stride,
        }
    }

    /// The gradient with respect to the input, given the output's gradient `g`.
    fn input_grad(&self, be: &mut B, g: &B::Tensor) -> Result<B::Tensor> {
        let g = match &self.even {
            Some(even) => {
                let up = be.upsample2x(g)?;
                let zeros = be.axpby(&up, &up, 0.0, 0.0)?;
                be.blend(&zeros, &up, even)?
            }
            None => g.clone(),
        };
        be.conv2d(
            &g,
            &self.w_flip,
            &self.zero_bias,
            Conv2d {
                ksize: 3,
                stride: 1,
            },
        )
    }
}

pub struct Classifier<B: Backend> {
    pub config: ModelConfig,
    fc1: Linear<B>,
    fc2: Linear<B>,
    conv_in: GradConv<B>,
    down: Vec<(GradConv<B>, Linear<B>)>,
    head: Linear<B>,
    time_base: usize,
    time_scale: f32,
}

/// What the backward pass needs: every level's pre-activation.
struct Tape<B: Backend> {
    pre: Vec<B::Tensor>,
    logits: B::Tensor,
}

/// `[n, rows, c]` from `[n, 1, c]` (broadcast over rows, `scale` times) or the reverse (a sum
/// over rows): a product with a vector of ones read with batch stride 0.
fn ones_product<B: Backend>(
    be: &mut B,
    ones: &B::Tensor,
    x: &B::Tensor,
    (n, rows, c): (usize, usize, usize),
    spread: bool,
    scale: f32,
) -> Result<B::Tensor> {
    let (m, k) = if spread { (rows, 1) } else { (1, rows) };
    let spec = Matmul {
        batch: n,
        m,
        n: c,
        k,
        a: View {
            offset: 0,
            batch_stride: 0,
            row_stride: k,
            col_stride: 1,
        },
        b: View::row_major(k, c),
        scale,
    };
    be.matmul(ones, x, None, &spec)
}

impl<B: Backend> Classifier<B> {
    /// Parses and checks a classifier's weights file and uploads it.
    pub fn load(be: &mut B, bytes: &[u8]) -> Result<Self> {
        Self::build(be, WeightsFile::parse(bytes)?)
    }

    /// Checks a parsed classifier file against its config and uploads it.
    pub fn build(be: &mut B, file: WeightsFile) -> Result<Self> {
        let config = file.config;
        let Arch::Classifier {
            in_ch,
            image_size,
            ref channels,
            num_classes,
            time_base,
            temb,
            time_scale,
        } = config.arch
        else {
            return Err(Error::Weights {
                what: "config field arch".into(),
                detail: format!("{:?} is a score network, not a classifier", config.name),
            });
        };
        let mut src = TensorSource::new(file.tensors);
        let fc1 = Linear::load(be, &mut src, "fc1", time_base, temb)?;
        let fc2 = Linear::load(be, &mut src, "fc2", temb, temb)?;
        let conv_in = GradConv::load(be, &mut src, "conv_in", in_ch, channels[0], 1, image_size)?;
        let mut down = Vec::new();
        let mut hw = image_size;
        for (i, pair) in channels.windows(2).enumerate() {
            let conv = GradConv::load(be, &mut src, &format!("down.{i}"), pair[0], pair[1], 2, hw)?;
            let lin = Linear::load(be, &mut src, &format!("temb.{i}"), temb, pair[1])?;
            down.push((conv, lin));
            hw /= 2;
        }
        let head = Linear::load(be, &mut src, "head", *channels.last().unwrap(), num_classes)?;
        src.finish()?;
        Ok(Classifier {
            config: config.clone(),
            fc1,
            fc2,
            conv_in,
            down,
            head,
            time_base,
            time_scale,
        })
    }

    /// The convolution whose outputs are pooled.
    fn last_conv(&self) -> &GradConv<B> {
        self.down.last().map_or(&self.conv_in, |(conv, _)| conv)
    }

    fn run(&self, be: &mut B, x: &B::Tensor, t: &B::Tensor) -> Result<Tape<B>> {
        let n = B::shape(x)[0];
        let s = be.timestep_embedding(t, self.time_base, self.time_scale)?;
        let e = self.fc1.forward_fused(be, &s, None, true)?;
        let e = self.fc2.forward_fused(be, &e, None, true)?;
        let mut pre = Vec::new();
        let a = be.conv2d(x, &self.conv_in.w, &self.conv_in.b, self.conv_in.spec())?;
        let mut h = be.silu(&a)?;
        pre.push(a);
        for (conv, lin) in &self.down {
            let [_, ho, wo, c] =
                conv.spec()
                    .check(B::shape(&h), B::shape(&conv.w), B::shape(&conv.b))?;
            let te = lin.forward(be, &e)?;
            let spread = ones_product(be, &conv.ones, &te, (n, ho * wo, c), true, 1.0)?;
            let spread = be.reshape(&spread, &[n, ho, wo, c])?;
            let a = be.conv2d_add(&h, &conv.w, &conv.b, &spread, conv.spec())?;
            h = be.silu(&a)?;
            pre.push(a);
        }
        let [_, hh, ww, c] = [0, B::shape(&h)[1], B::shape(&h)[2], B::shape(&h)[3]];
        let pooled = ones_product(
            be,
            &self.last_conv().ones,
            &h,
            (n, hh * ww, c),
            false,
            1.0 / (hh * ww) as f32,
        )?;
        let pooled = be.reshape(&pooled, &[n, c])?;
        let logits = self.head.forward(be, &pooled)?;
        Ok(Tape { pre, logits })
    }

    /// Logits `[n, classes]` for images `x` `[n, h, w, c]` at times `t` `[n]`.
    pub fn logits(&self, be: &mut B, x: &B::Tensor, t: &B::Tensor) -> Result<B::Tensor> {
        Ok(self.run(be, x, t)?.logits)
    }

    /// `grad_x log p(y | x, t)` for labels `onehot` `[n, classes]` (one-hot rows).
    pub fn grad_log_p(
        &self,
        be: &mut B,
        x: &B::Tensor,
        t: &B::Tensor,
        onehot: &B::Tensor,
    ) -> Result<B::Tensor> {
        let n = B::shape(x)[0];
        let tape = self.run(be, x, t)?;
        // d log softmax_y / d logits = onehot - softmax
        let p = be.softmax_rows(&tape.logits)?;
        let g = be.axpby(onehot, &p, 1.0, -1.0)?;
        let (w, _) = self.head.tensors();
        let [cin, classes] = [B::shape(w)[0], B::shape(w)[1]];
        let back = Matmul {
            batch: 1,
            m: n,
            n: cin,
            k: classes,
            a: View::row_major(n, classes),
            b: View {
                offset: 0,
                batch_stride: cin * classes,
                row_stride: 1,
                col_stride: classes,
            },
            scale: 1.0,
        };
        let g_pooled = be.matmul(&g, w, None, &back)?;
        let last = tape.pre.last().expect("at least the input convolution");
        let [_, hh, ww, c] = [0, B::shape(last)[1], B::shape(last)[2], B::shape(last)[3]];
        let per = 1.0 / (hh * ww) as f32;
        let ones = &self.last_conv().ones;
        let g_h = ones_product(be, ones, &g_pooled, (n, hh * ww, c), true, per)?;
        let mut g_h = be.reshape(&g_h, &[n, hh, ww, c])?;
        for (k, (conv, _)) in self.down.iter().enumerate().rev() {
            let g_a = be.pointwise(Pointwise::SiluGrad, &tape.pre[k + 1], &g_h, None)?;
            g_h = conv.input_grad(be, &g_a)?;
        }
        let g_a = be.pointwise(Pointwise::SiluGrad, &tape.pre[0], &g_h, None)?;
        self.conv_in.input_grad(be, &g_a)
    }
}
