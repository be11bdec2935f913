//! The backend interface the networks and samplers are written against.
//!
//! A backend owns tensors and runs ops on them. The reference CPU backend ([`crate::cpu::Cpu`])
//! computes each op at once with the reference implementation; the GPU backend (`gpu::Gpu`)
//! records dispatches and submits them in order, so nothing is read back until [`Backend::read`]
//! is called.

use crate::error::{shape_err, Result};
use crate::ops::{self, Conv2d, GroupNorm, Matmul, Pointwise, View};

/// An op's input: one tensor, or two side by side along the last axis (`[a, b]`, the tensor
/// [`Backend::concat_channels`] makes; the U-Net's upsampling path reads `[h, skip]`). A backend
/// whose kernels read both in place takes the pair as it is (the GPU: no concatenation pass);
/// the others join it first ([`Backend::joined`]).
#[derive(Clone, Debug)]
pub enum Channels<T> {
    One(T),
    Pair(T, T),
}

#[allow(async_fn_in_trait)]
pub trait Backend {
    type Tensor: Clone;

    fn shape(t: &Self::Tensor) -> &[usize];
    fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<Self::Tensor>;
    /// A network's weights (convolution kernels, linear layers): only ever read as the `w` of
    /// [`Backend::conv2d`] and the `b` of [`Backend::matmul`]. A backend may store them more
    /// compactly (the GPU: f16 where the device has shader-f16; the shipped weights are f16, so
    /// nothing is lost).
    fn upload_weights(&mut self, data: &[f32], shape: &[usize]) -> Result<Self::Tensor> {
        self.upload(data, shape)
    }
    /// Copies a tensor's values to the host (waits for all recorded work).
    async fn read(&mut self, t: &Self::Tensor) -> Result<Vec<f32>>;
    /// Waits until the work recorded so far has run (on the web this yields to the event loop, so
    /// messages such as a cancel get through between sampler steps).
    async fn sync(&mut self) -> Result<()>;
    /// Marks the end of a sampler step. A backend that queues work (the GPU) keeps a bounded
    /// number of steps in flight instead of draining; every backend yields to the event loop on
    /// the web, so a cancel gets through between steps.
    async fn pace(&mut self) -> Result<()> {
        self.sync().await
    }
    /// Runs `f` on `inputs` as one unit that a backend may record once per (`owner`, input shapes)
    /// and replay afterwards (the GPU: a planned evaluation with its own buffers and bind groups).
    /// `f` must depend only on its inputs and on tensors that outlive `owner` (weights): no
    /// uploads or reads inside.
    fn replayed(
        &mut self,
        _owner: u64,
        inputs: &[&Self::Tensor],
        f: impl FnOnce(&mut Self, &[&Self::Tensor]) -> Result<Self::Tensor>,
    ) -> Result<Self::Tensor> {
        f(self, inputs)
    }
    /// Lets go of whatever [`Backend::replayed`] keeps for `owner` (a model being replaced).
    fn forget(&mut self, _owner: u64) {}
    /// The same data seen with another shape of equal size (no copy).
    fn reshape(&mut self, t: &Self::Tensor, shape: &[usize]) -> Result<Self::Tensor>;

    fn conv2d(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: &Self::Tensor,
        spec: Conv2d,
    ) -> Result<Self::Tensor>;
    /// `conv2d(x) + add` (a residual connection; add has the output's shape). Backends that can
    /// fuse the add into the convolution override this composition.
    fn conv2d_add(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: &Self::Tensor,
        add: &Self::Tensor,
        spec: Conv2d,
    ) -> Result<Self::Tensor> {
        let y = self.conv2d(x, w, bias, spec)?;
        self.add(&y, add)
    }
    /// `conv2d(x) + conv2d(skip_x, skip_w, skip_bias)` with the second a 1x1 convolution: a
    /// residual block's projected skip connection, fused where the backend can.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_skip(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: &Self::Tensor,
        skip_x: &Channels<Self::Tensor>,
        skip_w: &Self::Tensor,
        skip_bias: &Self::Tensor,
        spec: Conv2d,
    ) -> Result<Self::Tensor> {
        let skip_x = self.joined(skip_x)?;
        let skip = self.conv2d(
            &skip_x,
            skip_w,
            skip_bias,
            Conv2d {
                ksize: 1,
                stride: 1,
            },
        )?;
        self.conv2d_add(x, w, bias, &skip, spec)
    }
    /// A 3x3 convolution (stride 1) of x upsampled 2x, `conv2d(upsample2x(x))`, with `w` from
    /// [`Backend::upload_upsample_conv_weights`]; backends that compute it without the upsampled
    /// copy override both.
    fn upsample_conv2d(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: &Self::Tensor,
    ) -> Result<Self::Tensor> {
        let up = self.upsample2x(x)?;
        let spec = Conv2d {
            ksize: 3,
            stride: 1,
        };
        self.conv2d(&up, w, bias, spec)
    }
    /// The weights of [`Backend::upsample_conv2d`] from a 3x3 convolution's `[9 * cin, cout]`,
    /// in the layout this backend reads there: by default those weights as they are.
    fn upload_upsample_conv_weights(
        &mut self,
        w3: &[f32],
        cin: usize,
        cout: usize,
    ) -> Result<Self::Tensor> {
        self.upload_weights(w3, &[9 * cin, cout])
    }
    /// Output `[batch, m, n]`, see [`Matmul`].
    fn matmul(
        &mut self,
        a: &Self::Tensor,
        b: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        spec: &Matmul,
    ) -> Result<Self::Tensor>;
    fn group_norm(
        &mut self,
        x: &Channels<Self::Tensor>,
        gamma: &Self::Tensor,
        beta: &Self::Tensor,
        add: Option<&Self::Tensor>,
        spec: GroupNorm,
    ) -> Result<Self::Tensor>;
    fn silu(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `a * x + b * y`.
    fn axpby(&mut self, x: &Self::Tensor, y: &Self::Tensor, a: f32, b: f32)
        -> Result<Self::Tensor>;
    fn upsample2x(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    fn concat_channels(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// `[a, b]` along channels as the input of [`Backend::group_norm`] and
    /// [`Backend::conv2d_skip`]: concatenated once by default; a backend whose kernels read a
    /// pair in place keeps the two tensors.
    fn channel_pair(
        &mut self,
        a: &Self::Tensor,
        b: &Self::Tensor,
    ) -> Result<Channels<Self::Tensor>> {
        Ok(Channels::One(self.concat_channels(a, b)?))
    }
    /// `x` as one tensor: a pair concatenated.
    fn joined(&mut self, x: &Channels<Self::Tensor>) -> Result<Self::Tensor> {
        match x {
            Channels::One(t) => Ok(t.clone()),
            Channels::Pair(a, b) => self.concat_channels(a, b),
        }
    }
    /// Softmax over the last dimension.
    fn softmax_rows(&mut self, x: &Self::Tensor) -> Result<Self::Tensor>;
    /// `out[i] = table[labels[i]]`; labels hold integer values (checked with [`ops::check_labels`] on entry).
    fn embedding(&mut self, labels: &Self::Tensor, table: &Self::Tensor) -> Result<Self::Tensor>;
    /// Sinusoidal embedding of `t * scale` (see `reference::timestep_embedding`), `[n, dim]`.
    fn timestep_embedding(
        &mut self,
        t: &Self::Tensor,
        dim: usize,
        scale: f32,
    ) -> Result<Self::Tensor>;

    /// Standard normal noise of `shape`; sample i (along the first dim) uses seed `seed + i`, and
    /// every element is a pure function of (seed, stream, index within the sample).
    fn randn(&mut self, shape: &[usize], seed: u32, stream: u32) -> Result<Self::Tensor>;
    /// `a x + b y + c z` (z optional).
    fn combine3(
        &mut self,
        x: &Self::Tensor,
        y: &Self::Tensor,
        z: Option<&Self::Tensor>,
        coeffs: [f32; 3],
    ) -> Result<Self::Tensor>;
    /// Dot product of each sample (first dim) of a with the same sample of b: `[n]`.
    fn row_dot(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor>;
    /// Element-wise arithmetic of training (backward passes, the optimizer), see [`Pointwise`].
    fn pointwise(
        &mut self,
        op: Pointwise,
        x: &Self::Tensor,
        y: &Self::Tensor,
        z: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor>;
    /// `err / (atol + rtol max(|a|, |b|))` element-wise (adaptive step-size control).
    fn error_ratio(
        &mut self,
        err: &Self::Tensor,
        a: &Self::Tensor,
        b: &Self::Tensor,
        rtol: f32,
        atol: f32,
    ) -> Result<Self::Tensor>;
    /// `m y + (1 - m) x` with one mask (the shape of one sample) for every sample.
    fn blend(
        &mut self,
        x: &Self::Tensor,
        y: &Self::Tensor,
        mask: &Self::Tensor,
    ) -> Result<Self::Tensor>;

    /// `x [.., in] * w [in, out] + bias`, keeping x's leading dims.
    fn linear(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor> {
        let xs = Self::shape(x).to_vec();
        let (rows, k, n) = ops::check_linear(&xs, Self::shape(w), bias.map(|b| Self::shape(b)))?;
        let y = self.matmul(x, w, bias, &Matmul::plain(rows, k, n))?;
        let mut out = xs;
        *out.last_mut().unwrap() = n;
        self.reshape(&y, &out)
    }

    /// `act(x w + bias + add)`: a linear layer with an optional tensor of its output's shape
    /// added (a residual, a class embedding) and an optional SiLU after. Backends that can fuse
    /// the epilogue into the product override this composition.
    fn linear_fused(
        &mut self,
        x: &Self::Tensor,
        w: &Self::Tensor,
        bias: Option<&Self::Tensor>,
        add: Option<&Self::Tensor>,
        silu: bool,
    ) -> Result<Self::Tensor> {
        let mut y = self.linear(x, w, bias)?;
        if let Some(a) = add {
            y = self.add(&y, a)?;
        }
        if silu {
            y = self.silu(&y)?;
        }
        Ok(y)
    }

    /// `x + y`.
    fn add(&mut self, x: &Self::Tensor, y: &Self::Tensor) -> Result<Self::Tensor> {
        self.axpby(x, y, 1.0, 1.0)
    }

    /// Single-head self-attention over the h*w tokens of an already normalised NHWC tensor:
    /// `proj(softmax(q k^T / sqrt(c)) v) + residual` with q, k, v = slices of one `qkv` linear
    /// layer.
    fn attention(
        &mut self,
        xn: &Self::Tensor,
        qkv_w: &Self::Tensor,
        qkv_b: &Self::Tensor,
        proj_w: &Self::Tensor,
        proj_b: &Self::Tensor,
        residual: Option<&Self::Tensor>,
    ) -> Result<Self::Tensor> {
        let [n, h, w, c] = ops::check_nhwc("attention", Self::shape(xn))?;
        if Self::shape(qkv_w) != [c, 3 * c] {
            return shape_err(
                "attention",
                format!(
                    "qkv weight must be [{c}, {}], got {:?}",
                    3 * c,
                    Self::shape(qkv_w)
                ),
            );
        }
        let qkv = self.linear(xn, qkv_w, Some(qkv_b))?; // [n, h, w, 3c]
        let out = self.attend(&qkv, [n, h, w, c])?;
        self.linear_fused(&out, proj_w, Some(proj_b), residual, false)
    }

    /// `softmax(q k^T / sqrt(c)) v` for each image, with q, k, v the thirds of the last dim of
    /// `qkv` `[n, h, w, 3c]`; output `[n, h, w, c]`.
    fn attend(&mut self, qkv: &Self::Tensor, [n, h, w, c]: [usize; 4]) -> Result<Self::Tensor> {
        attend_by_parts(self, qkv, [n, h, w, c])
    }
}

/// [`Backend::attend`] as two products and a softmax: the definition, and the fallback of a
/// backend whose fused kernel does not cover a shape.
pub fn attend_by_parts<B: Backend + ?Sized>(
    be: &mut B,
    qkv: &B::Tensor,
    [n, h, w, c]: [usize; 4],
) -> Result<B::Tensor> {
    let hw = h * w;
    let per_batch = hw * 3 * c;
    let scores = Matmul {
        batch: n,
        m: hw,
        n: hw,
        k: c,
        a: View {
            offset: 0,
            batch_stride: per_batch,
            row_stride: 3 * c,
            col_stride: 1,
        },
        b: View {
            offset: c,
            batch_stride: per_batch,
            row_stride: 1,
            col_stride: 3 * c,
        },
        scale: 1.0 / (c as f32).sqrt(),
    };
    let att = be.matmul(qkv, qkv, None, &scores)?;
    let att = be.softmax_rows(&att)?;
    let mix = Matmul {
        batch: n,
        m: hw,
        n: c,
        k: hw,
        a: View::row_major(hw, hw),
        b: View {
            offset: 2 * c,
            batch_stride: per_batch,
            row_stride: 3 * c,
            col_stride: 1,
        },
        scale: 1.0,
    };
    let out = be.matmul(&att, qkv, None, &mix)?;
    be.reshape(&out, &[n, h, w, c])
}

/// Checks that two tensors hold `n` samples of the same length; returns (n, per-sample length).
pub(crate) fn check_rows(op: &'static str, a: &[usize], b: &[usize]) -> Result<(usize, usize)> {
    ops::check_same(op, a, b)?;
    match a.split_first() {
        Some((&n, rest)) if n > 0 && rest.iter().product::<usize>() > 0 => {
            Ok((n, rest.iter().product()))
        }
        _ => shape_err(op, format!("needs [n, ..] with n > 0, got {a:?}")),
    }
}

/// Checks a blend: x and y the same shape, the mask the shape of one sample; returns the mask length.
pub(crate) fn check_blend(x: &[usize], y: &[usize], mask: &[usize]) -> Result<usize> {
    check_rows("blend", x, y)?;
    if mask != &x[1..] {
        return shape_err(
            "blend",
            format!("mask must be one sample {:?}, got {mask:?}", &x[1..]),
        );
    }
    Ok(mask.iter().product())
}

pub(crate) fn check_upload(len: usize, shape: &[usize]) -> Result<()> {
    let want: usize = shape.iter().product();
    if want != len || len == 0 {
        return shape_err(
            "upload",
            format!("{len} values do not fill shape {shape:?}"),
        );
    }
    Ok(())
}

pub(crate) fn check_reshape(from: &[usize], to: &[usize]) -> Result<()> {
    if from.iter().product::<usize>() != to.iter().product::<usize>() {
        return shape_err("reshape", format!("{from:?} and {to:?} differ in size"));
    }
    Ok(())
}
