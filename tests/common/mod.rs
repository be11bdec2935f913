//! The GPU-versus-CPU kernel sweep, shared by the native tests (lavapipe) and the browser tests
//! (Chromium's WebGPU). Each case builds the same inputs on both backends, runs one op, and compares
//! element by element with a relative + absolute tolerance.

#![allow(dead_code)]

pub mod mutate;

/// A native GPU backend, or None (with a note) when the machine has no adapter — except under
/// `CI=true`, where a missing adapter fails the test instead of skipping it.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_or_skip() -> Option<scorelab::Gpu> {
    match pollster::block_on(scorelab::GpuContext::new()) {
        Ok(ctx) => Some(scorelab::Gpu::new(std::rc::Rc::new(ctx))),
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipping GPU test: {e}");
            None
        }
        Err(e) => panic!("CI=true requires a GPU adapter: {e}"),
    }
}

use scorelab::ops::{Conv2d, GroupNorm, Matmul, Pointwise, View};
use scorelab::rng::Rng;
use scorelab::{Backend, Channels, Cpu, Result};

/// One op applied to seeded random inputs.
#[derive(Clone, Debug)]
pub enum Case {
    Conv {
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        ksize: usize,
        stride: usize,
    },
    /// A convolution plus a 1x1 convolution of another input (`conv2d_skip`); with `split` > 0
    /// that input is a pair of tensors with `split` and `cin2 - split` channels.
    ConvSkip {
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        cin2: usize,
        cout: usize,
        split: usize,
    },
    /// A 3x3 convolution of the 2x nearest upsampling (`upsample_conv2d`).
    UpsampleConv {
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
    },
    /// A convolution with a residual add fused in (`conv2d_add`).
    ConvAdd {
        n: usize,
        h: usize,
        w: usize,
        cin: usize,
        cout: usize,
        ksize: usize,
    },
    Linear {
        rows: usize,
        k: usize,
        n: usize,
        bias: bool,
    },
    /// `linear_fused`: an added tensor and/or SiLU after the product.
    LinearFused {
        rows: usize,
        k: usize,
        n: usize,
        add: bool,
        silu: bool,
    },
    /// Batched product of transposed views, as attention uses.
    MatmulStrided {
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
    },
    /// With `split` > 0 the input is a pair of tensors with `split` and `c - split` channels.
    GroupNorm {
        n: usize,
        h: usize,
        w: usize,
        c: usize,
        groups: usize,
        silu: bool,
        add: bool,
        split: usize,
    },
    Silu {
        len: usize,
    },
    Axpby {
        len: usize,
        a: f32,
        b: f32,
    },
    Upsample {
        n: usize,
        h: usize,
        w: usize,
        c: usize,
    },
    Concat {
        n: usize,
        h: usize,
        w: usize,
        ca: usize,
        cb: usize,
    },
    Softmax {
        rows: usize,
        len: usize,
        spread: f32,
    },
    Embedding {
        n: usize,
        rows: usize,
        dim: usize,
    },
    Timestep {
        n: usize,
        dim: usize,
        scale: f32,
    },
    Attention {
        n: usize,
        h: usize,
        w: usize,
        c: usize,
    },
    Randn {
        n: usize,
        per: usize,
        seed: u32,
        stream: u32,
    },
    Combine3 {
        len: usize,
        with_z: bool,
    },
    RowDot {
        n: usize,
        per: usize,
    },
    ErrorRatio {
        len: usize,
    },
    Blend {
        n: usize,
        per: usize,
    },
    /// `op` 0..4: SiLU gradient, SiLU second-order term, Adam's second moment, Adam's update.
    Pointwise {
        len: usize,
        op: usize,
    },
}

/// The sweep: every op, with the awkward shapes (1x1 maps, odd sizes, channels off the tile, groups,
/// stride 2, batch > 1).
pub fn sweep() -> Vec<Case> {
    use Case::*;
    vec![
        LinearFused {
            rows: 3,
            k: 7,
            n: 5,
            add: true,
            silu: false,
        },
        LinearFused {
            rows: 2,
            k: 16,
            n: 9,
            add: false,
            silu: true,
        },
        LinearFused {
            rows: 5,
            k: 8,
            n: 12,
            add: true,
            silu: true,
        },
        ConvSkip {
            n: 2,
            h: 3,
            w: 5,
            cin: 3,
            cin2: 7,
            cout: 5,
            split: 0,
        },
        ConvSkip {
            n: 1,
            h: 4,
            w: 3,
            cin: 8,
            cin2: 12,
            cout: 8,
            split: 0,
        },
        // The upsampling path's [h, skip] read in place: odd splits (scalar entry), and splits
        // in multiples of 4 (vec4 entry) with more than one workgroup of pixels and channels.
        ConvSkip {
            n: 2,
            h: 3,
            w: 5,
            cin: 3,
            cin2: 7,
            cout: 5,
            split: 2,
        },
        ConvSkip {
            n: 2,
            h: 4,
            w: 5,
            cin: 8,
            cin2: 48,
            cout: 36,
            split: 32,
        },
        UpsampleConv {
            n: 2,
            h: 3,
            w: 5,
            cin: 3,
            cout: 5,
        },
        UpsampleConv {
            n: 1,
            h: 4,
            w: 4,
            cin: 8,
            cout: 4,
        },
        // More than one GPU workgroup of pixels per phase and of output channels; output
        // widths the fast CPU kernel runs (16 and 32 lanes).
        UpsampleConv {
            n: 2,
            h: 5,
            w: 7,
            cin: 12,
            cout: 48,
        },
        UpsampleConv {
            n: 1,
            h: 3,
            w: 4,
            cin: 8,
            cout: 32,
        },
        // Any channel counts, and the vec4 path (multiples of 4).
        ConvAdd {
            n: 2,
            h: 5,
            w: 7,
            cin: 3,
            cout: 5,
            ksize: 3,
        },
        ConvAdd {
            n: 3,
            h: 4,
            w: 3,
            cin: 8,
            cout: 12,
            ksize: 3,
        },
        ConvAdd {
            n: 1,
            h: 6,
            w: 5,
            cin: 4,
            cout: 8,
            ksize: 1,
        },
        Conv {
            n: 1,
            h: 1,
            w: 1,
            cin: 3,
            cout: 5,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 5,
            w: 7,
            cin: 3,
            cout: 6,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 1,
            h: 8,
            w: 8,
            cin: 4,
            cout: 32,
            ksize: 3,
            stride: 2,
        },
        // Output channels a multiple of the CPU kernels' 8-wide tiles, rows not a multiple of 4.
        Conv {
            n: 3,
            h: 5,
            w: 7,
            cin: 5,
            cout: 16,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 3,
            w: 6,
            cin: 9,
            cout: 8,
            ksize: 1,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 7,
            w: 5,
            cin: 5,
            cout: 33,
            ksize: 3,
            stride: 2,
        },
        Conv {
            n: 1,
            h: 1,
            w: 1,
            cin: 2,
            cout: 3,
            ksize: 3,
            stride: 2,
        },
        Conv {
            n: 3,
            h: 4,
            w: 3,
            cin: 6,
            cout: 7,
            ksize: 1,
            stride: 1,
        },
        Conv {
            n: 1,
            h: 9,
            w: 9,
            cin: 1,
            cout: 1,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 1,
            h: 6,
            w: 6,
            cin: 37,
            cout: 9,
            ksize: 1,
            stride: 2,
        },
        // Channel counts that are multiples of 4 take the vec4 entry point.
        Conv {
            n: 1,
            h: 1,
            w: 1,
            cin: 4,
            cout: 4,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 5,
            w: 7,
            cin: 8,
            cout: 12,
            ksize: 3,
            stride: 1,
        },
        Conv {
            n: 2,
            h: 7,
            w: 5,
            cin: 12,
            cout: 36,
            ksize: 3,
            stride: 2,
        },
        Conv {
            n: 3,
            h: 4,
            w: 3,
            cin: 16,
            cout: 8,
            ksize: 1,
            stride: 1,
        },
        Linear {
            rows: 1,
            k: 1,
            n: 1,
            bias: true,
        },
        Linear {
            rows: 5,
            k: 3,
            n: 7,
            bias: false,
        },
        Linear {
            rows: 33,
            k: 17,
            n: 9,
            bias: true,
        },
        Linear {
            rows: 70,
            k: 64,
            n: 65,
            bias: true,
        },
        MatmulStrided {
            batch: 1,
            m: 1,
            n: 1,
            k: 1,
        },
        MatmulStrided {
            batch: 3,
            m: 9,
            n: 13,
            k: 5,
        },
        MatmulStrided {
            batch: 2,
            m: 37,
            n: 33,
            k: 16,
        },
        GroupNorm {
            n: 1,
            h: 1,
            w: 1,
            c: 4,
            groups: 2,
            silu: false,
            add: false,
            split: 0,
        },
        GroupNorm {
            n: 2,
            h: 3,
            w: 5,
            c: 6,
            groups: 3,
            silu: true,
            add: true,
            split: 0,
        },
        GroupNorm {
            n: 1,
            h: 8,
            w: 8,
            c: 32,
            groups: 8,
            silu: true,
            add: false,
            split: 0,
        },
        GroupNorm {
            n: 3,
            h: 2,
            w: 2,
            c: 7,
            groups: 7,
            silu: false,
            add: true,
            split: 0,
        },
        GroupNorm {
            n: 2,
            h: 1,
            w: 1,
            c: 12,
            groups: 1,
            silu: true,
            add: true,
            split: 0,
        },
        GroupNorm {
            n: 1,
            h: 17,
            w: 19,
            c: 5,
            groups: 1,
            silu: false,
            add: false,
            split: 0,
        },
        // Pairs read in place: a group straddling the two tensors (channels 4..8 of 12 split
        // at 6), and the U-Net's 96 = 64 + 32 in 8 groups.
        GroupNorm {
            n: 2,
            h: 3,
            w: 2,
            c: 12,
            groups: 3,
            silu: true,
            add: true,
            split: 6,
        },
        GroupNorm {
            n: 1,
            h: 4,
            w: 4,
            c: 96,
            groups: 8,
            silu: false,
            add: false,
            split: 64,
        },
        // A group wider than the GPU kernel's 64 invocations (its walk carries the channel).
        GroupNorm {
            n: 2,
            h: 3,
            w: 2,
            c: 260,
            groups: 2,
            silu: true,
            add: true,
            split: 0,
        },
        Silu { len: 1 },
        Silu { len: 1000 },
        Axpby {
            len: 1,
            a: 1.0,
            b: 1.0,
        },
        Axpby {
            len: 777,
            a: 0.3,
            b: -2.5,
        },
        Upsample {
            n: 1,
            h: 1,
            w: 1,
            c: 1,
        },
        Upsample {
            n: 2,
            h: 3,
            w: 5,
            c: 7,
        },
        Concat {
            n: 1,
            h: 1,
            w: 1,
            ca: 1,
            cb: 3,
        },
        Concat {
            n: 2,
            h: 3,
            w: 5,
            ca: 7,
            cb: 2,
        },
        Softmax {
            rows: 1,
            len: 1,
            spread: 1.0,
        },
        Softmax {
            rows: 5,
            len: 257,
            spread: 4.0,
        },
        Softmax {
            rows: 3,
            len: 16,
            spread: 80.0,
        },
        Embedding {
            n: 1,
            rows: 1,
            dim: 1,
        },
        Embedding {
            n: 7,
            rows: 11,
            dim: 13,
        },
        Timestep {
            n: 1,
            dim: 2,
            scale: 1.0,
        },
        Timestep {
            n: 6,
            dim: 64,
            scale: 1000.0,
        },
        Attention {
            n: 1,
            h: 1,
            w: 1,
            c: 4,
        },
        Attention {
            n: 2,
            h: 3,
            w: 3,
            c: 5,
        },
        Attention {
            n: 1,
            h: 4,
            w: 4,
            c: 8,
        },
        // More tokens than the fused GPU kernel's 64 invocations, and the digits model's 8x8.
        Attention {
            n: 2,
            h: 9,
            w: 9,
            c: 12,
        },
        Attention {
            n: 2,
            h: 8,
            w: 8,
            c: 16,
        },
        Randn {
            n: 1,
            per: 1,
            seed: 0,
            stream: 0,
        },
        Randn {
            n: 3,
            per: 1000,
            seed: 4_000_000_000,
            stream: 7,
        },
        Combine3 {
            len: 1,
            with_z: true,
        },
        Combine3 {
            len: 513,
            with_z: false,
        },
        Combine3 {
            len: 513,
            with_z: true,
        },
        RowDot { n: 1, per: 1 },
        RowDot { n: 3, per: 3072 },
        RowDot { n: 5, per: 255 },
        ErrorRatio { len: 300 },
        Blend { n: 1, per: 1 },
        Blend { n: 3, per: 75 },
        Pointwise { len: 1, op: 0 },
        Pointwise { len: 1000, op: 0 },
        Pointwise { len: 1000, op: 1 },
        Pointwise { len: 333, op: 2 },
        Pointwise { len: 333, op: 3 },
    ]
}

/// A convolution's seeded input `[n, h, w, cin]`, weights `[k*k*cin, cout]` and bias, as every
/// convolution case draws them.
fn conv_inputs<B: Backend>(
    randn: &mut impl FnMut(&mut B, &[usize], f32) -> Result<B::Tensor>,
    be: &mut B,
    [n, h, w, cin]: [usize; 4],
    ksize: usize,
    cout: usize,
) -> Result<(B::Tensor, B::Tensor, B::Tensor)> {
    Ok((
        randn(be, &[n, h, w, cin], 1.0)?,
        randn(be, &[ksize * ksize * cin, cout], 0.3)?,
        randn(be, &[cout], 0.5)?,
    ))
}

impl Case {
    fn seed(&self) -> u64 {
        format!("{self:?}")
            .bytes()
            .fold(17u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
    }

    /// Runs the case on a backend and returns the output values.
    pub async fn run<B: Backend>(&self, be: &mut B) -> Result<Vec<f32>> {
        let mut rng = Rng::new(self.seed());
        let mut randn = |be: &mut B, shape: &[usize], scale: f32| -> Result<B::Tensor> {
            let v: Vec<f32> = rng
                .normals(shape.iter().product())
                .into_iter()
                .map(|x| x * scale)
                .collect();
            be.upload(&v, shape)
        };
        let out = match *self {
            Case::Conv {
                n,
                h,
                w,
                cin,
                cout,
                ksize,
                stride,
            } => {
                let (x, wt, b) = conv_inputs(&mut randn, be, [n, h, w, cin], ksize, cout)?;
                be.conv2d(&x, &wt, &b, Conv2d { ksize, stride })?
            }
            Case::ConvSkip {
                n,
                h,
                w,
                cin,
                cin2,
                cout,
                split,
            } => {
                let (x, wt, b) = conv_inputs(&mut randn, be, [n, h, w, cin], 3, cout)?;
                let sx = if split == 0 {
                    Channels::One(randn(be, &[n, h, w, cin2], 1.0)?)
                } else {
                    let first = randn(be, &[n, h, w, split], 1.0)?;
                    Channels::Pair(first, randn(be, &[n, h, w, cin2 - split], 1.0)?)
                };
                let sw = randn(be, &[cin2, cout], 0.3)?;
                let sb = randn(be, &[cout], 0.5)?;
                be.conv2d_skip(
                    &x,
                    &wt,
                    &b,
                    &sx,
                    &sw,
                    &sb,
                    Conv2d {
                        ksize: 3,
                        stride: 1,
                    },
                )?
            }
            Case::UpsampleConv { n, h, w, cin, cout } => {
                let x = randn(be, &[n, h, w, cin], 1.0)?;
                // Host values for the backend's own weight layout (its own stream: `rng` is
                // borrowed by `randn`).
                let w3: Vec<f32> = Rng::new(self.seed() ^ 1)
                    .normals(9 * cin * cout)
                    .iter()
                    .map(|v| v * 0.3)
                    .collect();
                let wt = be.upload_upsample_conv_weights(&w3, cin, cout)?;
                let b = randn(be, &[cout], 0.5)?;
                be.upsample_conv2d(&x, &wt, &b)?
            }
            Case::ConvAdd {
                n,
                h,
                w,
                cin,
                cout,
                ksize,
            } => {
                let (x, wt, b) = conv_inputs(&mut randn, be, [n, h, w, cin], ksize, cout)?;
                let add = randn(be, &[n, h, w, cout], 1.0)?;
                be.conv2d_add(&x, &wt, &b, &add, Conv2d { ksize, stride: 1 })?
            }
            Case::LinearFused {
                rows,
                k,
                n,
                add,
                silu,
            } => {
                let x = randn(be, &[rows, k], 1.0)?;
                let wt = randn(be, &[k, n], 0.3)?;
                let b = randn(be, &[n], 0.5)?;
                let a = if add {
                    Some(randn(be, &[rows, n], 1.0)?)
                } else {
                    None
                };
                be.linear_fused(&x, &wt, Some(&b), a.as_ref(), silu)?
            }
            Case::Linear { rows, k, n, bias } => {
                let x = randn(be, &[rows, k], 1.0)?;
                let wt = randn(be, &[k, n], 0.3)?;
                let b = if bias {
                    Some(randn(be, &[n], 0.5)?)
                } else {
                    None
                };
                be.linear(&x, &wt, b.as_ref())?
            }
            Case::MatmulStrided { batch, m, n, k } => {
                // a is stored [batch, k, m] and read transposed; b is stored [batch, n, k] read transposed.
                let a = randn(be, &[batch, k, m], 1.0)?;
                let b = randn(be, &[batch, n, k], 1.0)?;
                let spec = Matmul {
                    batch,
                    m,
                    n,
                    k,
                    a: View {
                        offset: 0,
                        batch_stride: k * m,
                        row_stride: 1,
                        col_stride: m,
                    },
                    b: View {
                        offset: 0,
                        batch_stride: n * k,
                        row_stride: 1,
                        col_stride: k,
                    },
                    scale: 0.7,
                };
                be.matmul(&a, &b, None, &spec)?
            }
            Case::GroupNorm {
                n,
                h,
                w,
                c,
                groups,
                silu,
                add,
                split,
            } => {
                let x = if split == 0 {
                    Channels::One(randn(be, &[n, h, w, c], 2.0)?)
                } else {
                    let first = randn(be, &[n, h, w, split], 2.0)?;
                    Channels::Pair(first, randn(be, &[n, h, w, c - split], 2.0)?)
                };
                let gamma = randn(be, &[c], 1.0)?;
                let beta = randn(be, &[c], 1.0)?;
                // The add is columns 3..3+c of wider rows, as the U-Net's joint projection.
                let a = if add {
                    Some(randn(be, &[n, c + 5], 1.0)?)
                } else {
                    None
                };
                be.group_norm(
                    &x,
                    &gamma,
                    &beta,
                    a.as_ref(),
                    GroupNorm {
                        groups,
                        eps: 1e-5,
                        silu,
                        add_offset: if add { 3 } else { 0 },
                    },
                )?
            }
            Case::Silu { len } => {
                let x = randn(be, &[len], 4.0)?;
                be.silu(&x)?
            }
            Case::Axpby { len, a, b } => {
                let x = randn(be, &[len], 1.0)?;
                let y = randn(be, &[len], 1.0)?;
                be.axpby(&x, &y, a, b)?
            }
            Case::Upsample { n, h, w, c } => {
                let x = randn(be, &[n, h, w, c], 1.0)?;
                be.upsample2x(&x)?
            }
            Case::Concat { n, h, w, ca, cb } => {
                let a = randn(be, &[n, h, w, ca], 1.0)?;
                let b = randn(be, &[n, h, w, cb], 1.0)?;
                be.concat_channels(&a, &b)?
            }
            Case::Softmax { rows, len, spread } => {
                let x = randn(be, &[rows, len], spread)?;
                be.softmax_rows(&x)?
            }
            Case::Embedding { n, rows, dim } => {
                let labels: Vec<f32> = (0..n).map(|i| ((i * 5 + 3) % rows) as f32).collect();
                let l = be.upload(&labels, &[n])?;
                let table = randn(be, &[rows, dim], 1.0)?;
                be.embedding(&l, &table)?
            }
            Case::Timestep { n, dim, scale } => {
                let t: Vec<f32> = (0..n)
                    .map(|i| {
                        if n == 1 {
                            0.5
                        } else {
                            1e-3 + (1.0 - 1e-3) * i as f32 / (n - 1) as f32
                        }
                    })
                    .collect();
                let t = be.upload(&t, &[n])?;
                be.timestep_embedding(&t, dim, scale)?
            }
            Case::Attention { n, h, w, c } => {
                let x = randn(be, &[n, h, w, c], 1.0)?;
                let qkv_w = randn(be, &[c, 3 * c], 0.5)?;
                let qkv_b = randn(be, &[3 * c], 0.1)?;
                let proj_w = randn(be, &[c, c], 0.5)?;
                let proj_b = randn(be, &[c], 0.1)?;
                // Batches of two add the input back (the residual the U-Net fuses in).
                let residual = (n == 2).then_some(&x);
                be.attention(&x, &qkv_w, &qkv_b, &proj_w, &proj_b, residual)?
            }
            Case::Randn {
                n,
                per,
                seed,
                stream,
            } => be.randn(&[n, per], seed, stream)?,
            Case::Combine3 { len, with_z } => {
                let x = randn(be, &[len], 1.0)?;
                let y = randn(be, &[len], 1.0)?;
                let z = randn(be, &[len], 1.0)?;
                be.combine3(&x, &y, with_z.then_some(&z), [0.9, -0.3, 0.25])?
            }
            Case::RowDot { n, per } => {
                let a = randn(be, &[n, per], 1.0)?;
                let b = randn(be, &[n, per], 1.0)?;
                be.row_dot(&a, &b)?
            }
            Case::ErrorRatio { len } => {
                let e = randn(be, &[len], 0.01)?;
                let a = randn(be, &[len], 1.0)?;
                let b = randn(be, &[len], 1.0)?;
                be.error_ratio(&e, &a, &b, 1e-3, 1e-4)?
            }
            Case::Blend { n, per } => {
                let x = randn(be, &[n, per], 1.0)?;
                let y = randn(be, &[n, per], 1.0)?;
                let m: Vec<f32> = (0..per).map(|i| (i % 5) as f32 / 4.0).collect();
                let m = be.upload(&m, &[per])?;
                be.blend(&x, &y, &m)?
            }
            Case::Pointwise { len, op } => {
                let x = randn(be, &[len], 3.0)?;
                let y = randn(be, &[len], 1.0)?;
                let z = randn(be, &[len], 1.0)?;
                let ops = [
                    Pointwise::SiluGrad,
                    Pointwise::SiluHess,
                    Pointwise::SquareMix { a: 0.999, b: 1e-3 },
                    Pointwise::AdamApply {
                        lr: 1e-2,
                        eps: 1e-8,
                    },
                ];
                // Adam's second moment is never negative.
                let z = match ops[op] {
                    Pointwise::AdamApply { .. } => {
                        be.pointwise(Pointwise::SquareMix { a: 0.0, b: 1.0 }, &z, &z, None)?
                    }
                    _ => z,
                };
                be.pointwise(ops[op], &x, &y, ops[op].uses_z().then_some(&z))?
            }
        };
        be.read(&out).await
    }
}

/// Compares with `|got - want| <= atol + rtol * |want|`; the error names the worst element.
pub fn compare(
    what: &str,
    got: &[f32],
    want: &[f32],
    rtol: f32,
    atol: f32,
) -> std::result::Result<f32, String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: {} values, expected {}",
            got.len(),
            want.len()
        ));
    }
    // The element furthest past its tolerance; a NaN on either side counts as infinitely far.
    let excess = |i: usize| {
        let e = (got[i] - want[i]).abs() - (atol + rtol * want[i].abs());
        if e.is_nan() {
            f32::INFINITY
        } else {
            e
        }
    };
    let worst = (0..got.len())
        .max_by(|&i, &j| excess(i).total_cmp(&excess(j)))
        .unwrap_or(0);
    if !got.is_empty() && excess(worst) > 0.0 {
        let (g, w) = (got[worst], want[worst]);
        return Err(format!("{what}: element {worst} is {g}, expected {w} (|diff| {:.3e} > {atol:e} + {rtol:e} * |expected|)", (g - w).abs()));
    }
    let max_abs = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0f32, f32::max);
    Ok(max_abs)
}

/// Runs the whole sweep on a backend and on the CPU reference; returns one line per case or the
/// failures (relative 1e-4, absolute 1e-5).
pub async fn run_sweep<B: Backend>(be: &mut B) -> std::result::Result<Vec<String>, String> {
    run_cases(be, sweep()).await
}

/// The sweep's cases that have variants by adapter class (convolutions, attention).
pub fn variant_cases() -> Vec<Case> {
    sweep()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Case::Attention { .. }
                    | Case::Conv { .. }
                    | Case::ConvAdd { .. }
                    | Case::ConvSkip { .. }
                    | Case::UpsampleConv { .. }
            )
        })
        .collect()
}

/// A GPU backend's sweep: every case with the adapter's kernel choices, then the cases that have
/// variants with the other choices, so every variant is checked on any adapter.
#[cfg(not(target_arch = "wasm32"))]
pub fn gpu_sweep(gpu: &mut scorelab::Gpu) -> std::result::Result<Vec<String>, String> {
    pollster::block_on(gpu_sweep_async(gpu))
}

pub async fn gpu_sweep_async(gpu: &mut scorelab::Gpu) -> std::result::Result<Vec<String>, String> {
    let mut report = run_sweep(gpu).await?;
    let chosen = gpu.kernels();
    let other = scorelab::gpu::KernelChoices {
        fused_attention: !chosen.fused_attention,
        tiled_conv: !chosen.tiled_conv,
    };
    gpu.set_kernels(other);
    let more = run_cases(gpu, variant_cases()).await;
    gpu.set_kernels(chosen);
    report.extend(more?.into_iter().map(|l| format!("{l} ({other:?})")));
    Ok(report)
}

pub async fn run_cases<B: Backend>(
    be: &mut B,
    cases: Vec<Case>,
) -> std::result::Result<Vec<String>, String> {
    let mut cpu = Cpu;
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for case in cases {
        let what = format!("{case:?}");
        let want = case
            .run(&mut cpu)
            .await
            .map_err(|e| format!("{what} on CPU: {e}"))?;
        let got = case
            .run(be)
            .await
            .map_err(|e| format!("{what} on the backend under test: {e}"))?;
        match compare(&what, &got, &want, 1e-4, 1e-5) {
            Ok(max_abs) => report.push(format!("{what}: max |diff| {max_abs:.2e}")),
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        Err(failures.join("\n"))
    }
}

/// The shipped models and their golden tensors (exported by `train/export.py`).
pub const MODELS: &[(&str, &[u8], &[u8])] = &[
    (
        "toy2d",
        include_bytes!("../../models/toy2d.safetensors"),
        include_bytes!("../golden/toy2d.safetensors"),
    ),
    (
        "digits",
        include_bytes!("../../models/digits.safetensors"),
        include_bytes!("../golden/digits.safetensors"),
    ),
    (
        "emoji",
        include_bytes!("../../models/emoji.safetensors"),
        include_bytes!("../golden/emoji.safetensors"),
    ),
];

/// Runs a model's forward pass on the golden inputs and compares eps and every tap with the
/// training code's outputs; passes when max |diff| <= rtol * max |golden| for each tensor.
/// Returns one line per tensor: max abs error and that error relative to the largest golden value.
pub async fn check_golden<B: Backend>(
    be: &mut B,
    model: &[u8],
    golden: &[u8],
    rtol: f32,
) -> std::result::Result<Vec<String>, String> {
    use scorelab::model::file::read_tensors;
    let net = scorelab::Network::load(be, model).map_err(|e| e.to_string())?;
    let (g, _) = read_tensors(golden).map_err(|e| e.to_string())?;
    let input = |be: &mut B, name: &str| {
        be.upload(&g[name].data, &g[name].shape)
            .map_err(|e| e.to_string())
    };
    let (x, t, labels) = (input(be, "x")?, input(be, "t")?, input(be, "labels")?);
    let mut taps = Vec::new();
    let eps = net
        .forward_with_taps(be, &x, &t, &labels, Some(&mut taps))
        .map_err(|e| e.to_string())?;
    let mut outputs = vec![("eps".to_string(), eps)];
    outputs.extend(taps.into_iter().map(|(name, t)| (format!("tap.{name}"), t)));
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (name, tensor) in outputs {
        let want = g
            .get(&name)
            .ok_or_else(|| format!("golden file has no {name}"))?;
        let got = be.read(&tensor).await.map_err(|e| e.to_string())?;
        if got.len() != want.data.len() {
            failures.push(format!(
                "{name}: {} values, golden has {}",
                got.len(),
                want.data.len()
            ));
            continue;
        }
        let (worst, max_abs) = got
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
        let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let rel = max_abs / scale.max(f32::MIN_POSITIVE);
        lines.push(format!("{name}: max abs {max_abs:.2e}, rel {rel:.2e}"));
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN must fail too
        if !(rel <= rtol) {
            failures.push(format!("{name}: element {worst} is {}, golden {} (max abs {max_abs:.3e}, rel {rel:.3e} > {rtol:e})", got[worst], want.data[worst]));
        }
    }
    if failures.is_empty() {
        Ok(lines)
    } else {
        Err(failures.join("\n"))
    }
}

/// Collects the predicted x0 after every step.
#[derive(Default)]
pub struct Recorder {
    pub previews: Vec<Vec<f32>>,
}

impl scorelab::sampler::Progress for Recorder {
    fn step(&mut self, _: &scorelab::sampler::StepInfo) -> scorelab::sampler::Control {
        scorelab::sampler::Control::Preview
    }
    fn preview(&mut self, _: &scorelab::sampler::StepInfo, x0: &[f32]) {
        self.previews.push(x0.to_vec());
    }
}

/// Fixed sampler runs whose results are compared across backends and against the committed
/// reference `tests/golden/sampler_runs.json` (written by the native CPU backend).
/// (model, sampler, steps, batch, seed, class)
pub type SamplerRun = (&'static str, &'static str, usize, usize, u32, Option<usize>);

pub const SAMPLER_RUNS: &[SamplerRun] = &[
    // (model, sampler, steps, batch, seed, class)
    ("toy2d", "ddim", 8, 6, 42, Some(1)),
    ("toy2d", "sde", 8, 6, 7, None),
    ("toy2d", "pc", 4, 6, 9, Some(3)),
    ("toy2d", "dpm2m", 6, 6, 11, Some(0)),
    ("digits", "ddpm", 3, 2, 5, Some(7)),
];

pub fn run_name(i: usize) -> String {
    let (model, sampler, steps, n, seed, class) = SAMPLER_RUNS[i];
    format!("{model}/{sampler}/{steps} steps/n={n}/seed={seed}/class={class:?}")
}

/// Runs `SAMPLER_RUNS[i]` on a backend; returns the previews of every step and the result.
pub async fn sampler_run<B: Backend>(be: &mut B, i: usize) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
    use scorelab::sampler::{sample, Guided, Method, SamplerOptions};
    let (model, sampler, steps, n, seed, class) = SAMPLER_RUNS[i];
    let bytes = MODELS
        .iter()
        .find(|m| m.0 == model)
        .expect("a shipped model")
        .1;
    let net = scorelab::Network::load(be, bytes)?;
    let mut shape = vec![n];
    shape.extend(net.config.sample_shape());
    let schedule = net.config.schedule();
    let opts = SamplerOptions {
        method: Method::parse(sampler)?,
        steps: Some(steps),
        ..Default::default()
    };
    let mut den = Guided::new(be, &net, &vec![class; n], 2.0)?;
    let mut rec = Recorder::default();
    let x = sample(be, &mut den, &schedule, &opts, &shape, seed, &mut rec).await?;
    let out = be.read(&x).await?;
    Ok((rec.previews, out))
}
