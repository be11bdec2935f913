//! CPU reference implementation of every op: plain Rust over slices, f32 storage with f64
//! accumulation in every reduction. It is the oracle the GPU kernels are tested against and the
//! backend used when no GPU is available. Shapes are checked by the callers (`ops`).

use crate::ops::{Conv2d, GroupNorm, Matmul, Pointwise};

/// NHWC convolution with zero padding `ksize / 2`; `w` is `[k*k*cin, cout]`.
pub fn conv2d(
    x: &[f32],
    dims: [usize; 4],
    w: &[f32],
    bias: &[f32],
    cout: usize,
    spec: Conv2d,
) -> Vec<f32> {
    let [n, h, wd, cin] = dims;
    let (ho, wo) = spec.out_hw(h, wd);
    let (k, s, pad) = (spec.ksize, spec.stride, (spec.ksize / 2) as isize);
    let mut out = vec![0f32; n * ho * wo * cout];
    let mut acc = vec![0f64; cout];
    for b in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                acc.iter_mut().zip(bias).for_each(|(a, &bv)| *a = bv as f64);
                for ky in 0..k {
                    let iy = (oy * s + ky) as isize - pad;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    for kx in 0..k {
                        let ix = (ox * s + kx) as isize - pad;
                        if ix < 0 || ix >= wd as isize {
                            continue;
                        }
                        let src = ((b * h + iy as usize) * wd + ix as usize) * cin;
                        for ci in 0..cin {
                            let xv = x[src + ci] as f64;
                            let row = &w[((ky * k + kx) * cin + ci) * cout..][..cout];
                            acc.iter_mut()
                                .zip(row)
                                .for_each(|(a, &wv)| *a += xv * wv as f64);
                        }
                    }
                }
                let dst = ((b * ho + oy) * wo + ox) * cout;
                out[dst..dst + cout]
                    .iter_mut()
                    .zip(&acc)
                    .for_each(|(o, &a)| *o = a as f32);
            }
        }
    }
    out
}

/// Batched strided matrix product, see [`Matmul`].
pub fn matmul(a: &[f32], b: &[f32], bias: Option<&[f32]>, spec: &Matmul) -> Vec<f32> {
    let Matmul {
        batch,
        m,
        n,
        k,
        a: va,
        b: vb,
        scale,
    } = *spec;
    let mut out = vec![0f32; batch * m * n];
    for bt in 0..batch {
        for r in 0..m {
            for c in 0..n {
                let mut acc = 0f64;
                for kk in 0..k {
                    let av = a
                        [va.offset + bt * va.batch_stride + r * va.row_stride + kk * va.col_stride];
                    let bv = b
                        [vb.offset + bt * vb.batch_stride + kk * vb.row_stride + c * vb.col_stride];
                    acc += av as f64 * bv as f64;
                }
                let mut v = acc * scale as f64;
                if let Some(bias) = bias {
                    v += bias[c] as f64;
                }
                out[(bt * m + r) * n + c] = v as f32;
            }
        }
    }
    out
}

/// GroupNorm over `[n, hw, c]` with optional per-(n, c) add before (columns from
/// `spec.add_offset` of an `[n, s]` add) and SiLU after.
pub fn group_norm(
    x: &[f32],
    (n, hw, c): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    add: Option<&[f32]>,
    spec: GroupNorm,
) -> Vec<f32> {
    let cg = c / spec.groups;
    let value = |b: usize, p: usize, ch: usize| {
        x[(b * hw + p) * c + ch] as f64
            + add.map_or(0.0, |a| a[b * (a.len() / n) + spec.add_offset + ch] as f64)
    };
    let mut out = vec![0f32; x.len()];
    for b in 0..n {
        for g in 0..spec.groups {
            let chans = g * cg..(g + 1) * cg;
            let count = (hw * cg) as f64;
            let mean = (0..hw)
                .flat_map(|p| chans.clone().map(move |ch| (p, ch)))
                .map(|(p, ch)| value(b, p, ch))
                .sum::<f64>()
                / count;
            let var = (0..hw)
                .flat_map(|p| chans.clone().map(move |ch| (p, ch)))
                .map(|(p, ch)| (value(b, p, ch) - mean).powi(2))
                .sum::<f64>()
                / count;
            let rstd = 1.0 / (var + spec.eps as f64).sqrt();
            for p in 0..hw {
                for ch in chans.clone() {
                    let y = (value(b, p, ch) - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64;
                    out[(b * hw + p) * c + ch] = if spec.silu { silu64(y) } else { y } as f32;
                }
            }
        }
    }
    out
}

fn silu64(v: f64) -> f64 {
    v / (1.0 + (-v).exp())
}

pub fn silu(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| silu64(v as f64) as f32).collect()
}

/// `a * x + b * y`, element-wise.
/// `out = a x + b y`.
pub fn axpby(x: &[f32], y: &[f32], a: f32, b: f32, out: &mut [f32]) {
    for ((o, &xv), &yv) in out.iter_mut().zip(x).zip(y) {
        *o = (a as f64 * xv as f64 + b as f64 * yv as f64) as f32;
    }
}

/// Nearest-neighbour 2x upsampling of `[n, h, w, c]` into `out` (`[n, 2h, 2w, c]`).
pub fn upsample2x(x: &[f32], [n, h, w, c]: [usize; 4], out: &mut [f32]) {
    let mut rows = out.chunks_exact_mut(c);
    for b in 0..n {
        for oy in 0..2 * h {
            for ox in 0..2 * w {
                let src = ((b * h + oy / 2) * w + ox / 2) * c;
                rows.next()
                    .expect("out holds the upsampled image")
                    .copy_from_slice(&x[src..src + c]);
            }
        }
    }
}

/// Rows of `a` (`ca` wide) and `b` (`cb` wide) side by side in `out`.
pub fn concat_channels(a: &[f32], ca: usize, b: &[f32], cb: usize, out: &mut [f32]) {
    for ((o, ra), rb) in out
        .chunks_exact_mut(ca + cb)
        .zip(a.chunks(ca))
        .zip(b.chunks(cb))
    {
        o[..ca].copy_from_slice(ra);
        o[ca..].copy_from_slice(rb);
    }
}

/// Row gather from `table` `[rows, dim]` by integer-valued labels.
pub fn embedding(labels: &[f32], table: &[f32], dim: usize) -> Vec<f32> {
    labels
        .iter()
        .flat_map(|&l| table[l as usize * dim..][..dim].iter().copied())
        .collect()
}

/// Sinusoidal embedding of `t * scale`, `[sin(s f_j) | cos(s f_j)]`, `f_j = exp(-ln(1e4) j / half)`.
/// The frequencies and the argument are rounded to f32 as in the training code, then sin/cos are
/// taken in f64.
pub fn timestep_embedding(t: &[f32], dim: usize, scale: f32) -> Vec<f32> {
    let freqs = crate::ops::timestep_frequencies(dim);
    let mut out = Vec::with_capacity(t.len() * dim);
    for &tv in t {
        let s = tv * scale;
        out.extend(freqs.iter().map(|&f| ((s * f) as f64).sin() as f32));
        out.extend(freqs.iter().map(|&f| ((s * f) as f64).cos() as f32));
    }
    out
}

/// Numerically stable softmax over each row of length `len`.
pub fn softmax_rows(x: &[f32], len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks(len) {
        let mx = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let sum: f64 = row.iter().map(|&v| (v as f64 - mx).exp()).sum();
        out.extend(row.iter().map(|&v| ((v as f64 - mx).exp() / sum) as f32));
    }
    out
}

/// Gaussian noise for `n` samples of `per_sample` elements; sample i uses seed `seed + i`.
pub fn randn(n: usize, per_sample: usize, seed: u32, stream: u32) -> Vec<f32> {
    (0..n * per_sample)
        .map(|i| {
            crate::rng::normal_at(
                seed.wrapping_add((i / per_sample) as u32),
                stream,
                (i % per_sample) as u32,
            )
        })
        .collect()
}

/// `a x + b y (+ c z)`.
pub fn combine3(x: &[f32], y: &[f32], z: Option<&[f32]>, [a, b, c]: [f32; 3], out: &mut [f32]) {
    match z {
        Some(z) => {
            for (((o, &x), &y), &z) in out.iter_mut().zip(x).zip(y).zip(z) {
                *o = a * x + b * y + c * z;
            }
        }
        None => axpby(x, y, a, b, out),
    }
}

/// See [`Pointwise`]; z is used where the op names it (checked by the caller).
pub fn pointwise(op: Pointwise, x: &[f32], y: &[f32], z: Option<&[f32]>, out: &mut [f32]) {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    for (i, o) in out.iter_mut().enumerate() {
        let (xv, yv) = (x[i] as f64, y[i] as f64);
        let zv = z.map_or(0.0, |z| z[i] as f64);
        *o = match op {
            Pointwise::SiluGrad => {
                let s = sig(xv);
                yv * s * (1.0 + xv * (1.0 - s))
            }
            Pointwise::SiluHess => {
                let s = sig(xv);
                yv * zv * s * (1.0 - s) * (2.0 + xv * (1.0 - 2.0 * s))
            }
            Pointwise::SquareMix { a, b } => a as f64 * xv + b as f64 * yv * yv,
            Pointwise::AdamApply { lr, eps } => xv - lr as f64 * yv / (zv.sqrt() + eps as f64),
        } as f32;
    }
}

/// Per-row dot products of rows of length `len`.
pub fn row_dot(a: &[f32], b: &[f32], len: usize) -> Vec<f32> {
    a.chunks(len)
        .zip(b.chunks(len))
        .map(|(ra, rb)| {
            ra.iter()
                .zip(rb)
                .map(|(&x, &y)| x as f64 * y as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

/// `err / (atol + rtol max(|a|, |b|))` element-wise.
pub fn error_ratio(err: &[f32], a: &[f32], b: &[f32], rtol: f32, atol: f32) -> Vec<f32> {
    err.iter()
        .zip(a)
        .zip(b)
        .map(|((&e, &a), &b)| e / (atol + rtol * a.abs().max(b.abs())))
        .collect()
}

/// `m y + (1 - m) x`, with the mask repeating every `mask.len()` elements.
pub fn blend(x: &[f32], y: &[f32], mask: &[f32]) -> Vec<f32> {
    x.iter()
        .zip(y)
        .enumerate()
        .map(|(i, (&x, &y))| {
            let m = mask[i % mask.len()];
            m * y + (1.0 - m) * x
        })
        .collect()
}
