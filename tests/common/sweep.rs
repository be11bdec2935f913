//! Running the sweep: each case built on both backends from the same inputs, its op run on each,
//! the outputs compared element by element with a relative + absolute tolerance.

#![allow(dead_code)]

use super::cases::{sweep, variant_cases, Case};
use scorelab::ops::{Conv2d, GroupNorm, Matmul, Pointwise, View};
use scorelab::rng::Rng;
use scorelab::{Backend, Channels, Cpu, Result};

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
