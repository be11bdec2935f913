//! Inverse problems: sampling `p(x | y)` for a linear measurement `y = A x (+ noise of std
//! sigma_y)` (Song et al. 2021, sec. I.4 and 7.4.4 of the notes). Inpainting, colorization,
//! super-resolution, deblurring and denoising are all one [`Measurement`] each; SDEdit is the same
//! reverse process started from a noised image instead of pure noise.
//!
//! Two ways to keep the measurement:
//! - **projection** (`replace`, `repaint`): after every step `x <- x + A+ A (x_y - x)` with
//!   `x_y = alpha A+ y + sigma z` the measurement noised to the new time; the final image is
//!   projected onto `{x : A x = y}`, so it reproduces the measurement exactly. Needs a stable
//!   pseudo-inverse `A+`: every operator here but the blur has `A A^T = c I`, so `A+ = A^T / c`.
//! - **likelihood gradient** (`gradient`): the score gains `grad log p_t(y | x_t)` under the
//!   model of unit-variance isotropic data, for which `p(x_0 | x_t) = N(x0_hat, sigma_t^2 I)` and
//!   `d x0_hat / d x_t = alpha_t I` exactly: `alpha_t A^T (sigma_t^2 A A^T + sigma_y^2 I)^-1
//!   (y - A x0_hat)`. It moves x0_hat to the posterior mean of that model (without noise: onto
//!   the measurement), one evaluation per call, any operator, any sampler; consistency is
//!   approximate. For the blur the inverse is a few Richardson iterations. (The network's own
//!   Jacobian, by finite differences, was tried: near t = 1 it is divided by alpha ~ 0.006, and
//!   its errors made every digit run diverge.)

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ops::Conv2d;

use super::{
    param, sample_from, time_grid, Denoiser, Method, NoiseKey, Progress, Role, Run, SamplerOptions,
    Schedule,
};

/// How a measurement is kept during the reverse process.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Enforce {
    /// Projection onto the noised measurement after every step (for a mask: the known region
    /// replaced by a forward-noised copy of the data).
    Replace,
    /// RePaint (Lugmayr et al. 2022): as Replace, but every `jump` steps the sample is noised
    /// back up `jump` steps and re-denoised, `resample` times, which harmonises the boundary.
    Repaint { jump: usize, resample: usize },
    /// The measurement's likelihood gradient added to the score, times `scale` in (0, 2)
    /// (1 = exact for unit-variance Gaussian data).
    Gradient { scale: f64 },
}

/// The linear operators, as requests name them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Operator {
    /// Pixels where a mask is 1 (inpainting; the mask is given separately).
    Mask,
    /// The luminance `(r + g + b) / sqrt 3` of every pixel (colorization).
    Luminance,
    /// The mean of every `factor x factor` block (super-resolution; factor 2 or 4).
    Downsample { factor: usize },
    /// A Gaussian blur of std `width` pixels (0.5 to 2, in steps of passes of a 3x3 binomial
    /// filter: `sqrt(passes / 2)`); each output is the weighted mean of the pixels inside the
    /// image (deblurring).
    Blur { width: f64 },
    /// The image itself (denoising).
    Identity,
}

/// A linear operator on images `[n, h, w, c]`, with what projection and the gradient need.
pub struct Measurement<B: Backend> {
    pub operator: Operator,
    /// The standard deviation of the noise in `y`.
    pub noise: f64,
    /// Mask: the mask (one sample's shape). Luminance: rgb -> luma. Downsample: one 2x stage.
    /// Blur: one binomial pass. Convolution weights are `[k*k*cin, cout]`.
    forward: Option<B::Tensor>,
    /// Luminance: luma -> rgb (the adjoint).
    back: Option<B::Tensor>,
    zero_in: Option<B::Tensor>,
    zero_out: Option<B::Tensor>,
    /// Blur: 1 / (the blur of a ones image), one sample's shape: each output pixel is the
    /// weighted mean of the pixels inside the image (no dark or light frame at the border).
    normalise: Option<B::Tensor>,
    /// `||A A^T||` (a bound): `c` for the operators with `A A^T = c I`.
    gram: f64,
}

/// A depthwise convolution weight `[k*k*c, c]` applying `kernel` (`k x k`) to every channel.
fn depthwise(kernel: &[f64], k: usize, c: usize) -> Vec<f32> {
    let mut w = vec![0f32; k * k * c * c];
    for (tap, v) in kernel.iter().enumerate() {
        for ch in 0..c {
            w[(tap * c + ch) * c + ch] = *v as f32;
        }
    }
    w
}

/// The blur is `passes` applications of the 3x3 binomial filter (1 2 1)^T (1 2 1) / 16, each
/// adding variance 1/2 per axis: a Gaussian of std `sqrt(passes / 2)` pixels to within a few
/// percent, with kernels the convolution op has.
fn blur_passes(width: f64) -> usize {
    (2.0 * width * width).round().max(1.0) as usize
}

/// The 1-D blur of `passes` binomial passes over `n` pixels with zero padding, as a dense
/// matrix (the 2-D blur is its product along the two axes).
fn binomial_1d(n: usize, passes: usize) -> Vec<Vec<f64>> {
    let mut m: Vec<Vec<f64>> = (0..n)
        .map(|i| (0..n).map(|j| (i == j) as u8 as f64).collect())
        .collect();
    for _ in 0..passes {
        let at = |m: &[Vec<f64>], k: isize, j: usize| {
            if (0..n as isize).contains(&k) {
                m[k as usize][j]
            } else {
                0.0
            }
        };
        m = (0..n as isize)
            .map(|i| {
                (0..n)
                    .map(|j| (at(&m, i - 1, j) + 2.0 * at(&m, i, j) + at(&m, i + 1, j)) / 4.0)
                    .collect()
            })
            .collect();
    }
    m
}

/// Richardson iterations for the blur's `(r2 A A^T + sigma_y^2 I) v = b`.
const BLUR_ITERATIONS: usize = 10;

impl<B: Backend> Measurement<B> {
    /// The operator for samples of shape `sample` (`[h, w, c]`, any shape for a mask and the
    /// identity); `mask` (that shape, values in [0, 1]) is needed by [`Operator::Mask`] only.
    /// `noise` is sigma_y, in model units.
    pub fn new(
        be: &mut B,
        operator: Operator,
        sample: &[usize],
        mask: Option<&B::Tensor>,
        noise: f64,
    ) -> Result<Self> {
        if !(0.0..=2.0).contains(&noise) {
            return param("noise", format!("{noise} must be in [0, 2]"));
        }
        // A mask and the identity take samples of any shape; the others are convolutions.
        let [h, w, c] = match (operator, sample) {
            (_, &[h, w, c]) => [h, w, c],
            (Operator::Mask | Operator::Identity, _) => [0, 0, 0],
            _ => {
                return param(
                    "images",
                    format!("{operator:?} needs images [h, w, c], got samples {sample:?}"),
                )
            }
        };
        let mut m = Measurement {
            operator,
            noise,
            forward: None,
            back: None,
            zero_in: None,
            zero_out: None,
            normalise: None,
            gram: 1.0,
        };
        match operator {
            Operator::Mask => {
                let mask = mask.ok_or_else(|| Error::Param {
                    name: "mask".into(),
                    detail: "the mask operator needs a mask".into(),
                })?;
                m.forward = Some(mask.clone());
            }
            Operator::Luminance => {
                if c != 3 {
                    return param(
                        "task",
                        format!("colorization needs rgb images, not {c} channels"),
                    );
                }
                let v = 1.0 / 3f32.sqrt();
                m.forward = Some(be.upload(&[v; 3], &[3, 1])?);
                m.back = Some(be.upload(&[v; 3], &[1, 3])?);
                m.zero_in = Some(be.upload(&[0.0; 3], &[3])?);
                m.zero_out = Some(be.upload(&[0.0], &[1])?);
            }
            Operator::Downsample { factor } => {
                if (factor != 2 && factor != 4) || h % factor != 0 || w % factor != 0 {
                    return param(
                        "factor",
                        format!("{factor} must be 2 or 4 and divide the {h}x{w} image"),
                    );
                }
                m.gram = 1.0 / (factor * factor) as f64;
                // A 3x3 stride-2 convolution padded by 1 whose lower-right 2x2 taps are 1/4:
                // output (i, j) averages input rows 2i, 2i+1 and columns 2j, 2j+1.
                let kernel = [0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.0, 0.25, 0.25];
                m.forward = Some(be.upload(&depthwise(&kernel, 3, c), &[9 * c, c])?);
                m.zero_out = Some(be.upload(&vec![0.0; c], &[c])?);
            }
            Operator::Blur { width } => {
                if !(0.5..=2.0).contains(&width) {
                    return param("width", format!("{width} must be in [0.5, 2] pixels"));
                }
                let kernel = [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0].map(|v| v / 16.0);
                m.forward = Some(be.upload(&depthwise(&kernel, 3, c), &[9 * c, c])?);
                m.zero_out = Some(be.upload(&vec![0.0; c], &[c])?);
                // Per axis: the row sums of the zero-padded blur (its response to ones), and
                // the largest column sum once rows are normalised; the 2-D ones are products.
                let axis = |n: usize| {
                    let b = binomial_1d(n, blur_passes(width));
                    let sums: Vec<f64> = b.iter().map(|row| row.iter().sum()).collect();
                    let column_max = (0..n)
                        .map(|j| (0..n).map(|i| b[i][j] / sums[i]).sum::<f64>())
                        .fold(0.0, f64::max);
                    (sums, column_max)
                };
                let ((rh, ch), (rw, cw)) = (axis(h), axis(w));
                let weights: Vec<f32> = (0..h * w * c)
                    .map(|i| (1.0 / (rh[i / c / w] * rw[i / c % w])) as f32)
                    .collect();
                m.normalise = Some(be.upload(&weights, sample)?);
                // ||A A^T|| <= ||A||_1 ||A||_inf = (largest column sum) x 1.
                m.gram = ch * cw;
            }
            Operator::Identity => {}
        }
        Ok(m)
    }

    fn tensor(t: &Option<B::Tensor>) -> &B::Tensor {
        t.as_ref()
            .expect("made by Measurement::new for this operator")
    }

    /// `c` with `A A^T = c I` (for the blur, a bound on `||A A^T||`).
    pub fn gram(&self) -> f64 {
        self.gram
    }

    /// Whether `A A^T = c I` holds exactly (all but the blur).
    fn row_orthogonal(&self) -> bool {
        !matches!(self.operator, Operator::Blur { .. })
    }

    /// `(r2 A A^T + sigma_y^2 I)^-1 b`: exact for row-orthogonal operators, else
    /// `BLUR_ITERATIONS` Richardson iterations from 0 (a regularised inverse where `A A^T` is
    /// near singular).
    pub fn solve_normal(&self, be: &mut B, b: &B::Tensor, r2: f64) -> Result<B::Tensor> {
        let d = r2 * self.gram + self.noise * self.noise;
        if self.row_orthogonal() {
            return be.axpby(b, b, (1.0 / d) as f32, 0.0);
        }
        let mut v = be.axpby(b, b, (1.0 / d) as f32, 0.0)?;
        for _ in 1..BLUR_ITERATIONS {
            let at = self.adjoint(be, &v)?;
            let aat = self.apply(be, &at)?;
            // v + (b - r2 A A^T v - sigma_y^2 v) / d
            let rest = be.combine3(
                b,
                &aat,
                Some(&v),
                [1.0, -r2 as f32, -(self.noise * self.noise) as f32],
            )?;
            v = be.axpby(&v, &rest, 1.0, (1.0 / d) as f32)?;
        }
        Ok(v)
    }

    /// `A x`. For a mask the measurement keeps the image's shape (zero where unknown).
    pub fn apply(&self, be: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        match self.operator {
            Operator::Mask => {
                let zero = be.axpby(x, x, 0.0, 0.0)?;
                be.blend(&zero, x, Self::tensor(&self.forward))
            }
            Operator::Luminance => self.convolve(be, x, &self.forward, &self.zero_out, 1, 1, 1),
            Operator::Downsample { factor } => {
                self.convolve(be, x, &self.forward, &self.zero_out, 3, 2, factor / 2)
            }
            Operator::Blur { width } => {
                let b = self.blur(be, x, width)?;
                self.scale_pixels(be, &b)
            }
            Operator::Identity => Ok(x.clone()),
        }
    }

    /// The unnormalised blur (zero padding): a symmetric matrix.
    fn blur(&self, be: &mut B, x: &B::Tensor, width: f64) -> Result<B::Tensor> {
        self.convolve(
            be,
            x,
            &self.forward,
            &self.zero_out,
            3,
            1,
            blur_passes(width),
        )
    }

    /// `times` convolutions of x by `weight` (zero bias).
    #[allow(clippy::too_many_arguments)]
    fn convolve(
        &self,
        be: &mut B,
        x: &B::Tensor,
        weight: &Option<B::Tensor>,
        zero: &Option<B::Tensor>,
        ksize: usize,
        stride: usize,
        times: usize,
    ) -> Result<B::Tensor> {
        let mut y = x.clone();
        for _ in 0..times {
            y = be.conv2d(
                &y,
                Self::tensor(weight),
                Self::tensor(zero),
                Conv2d { ksize, stride },
            )?;
        }
        Ok(y)
    }

    /// `A^T u`.
    pub fn adjoint(&self, be: &mut B, u: &B::Tensor) -> Result<B::Tensor> {
        match self.operator {
            Operator::Mask | Operator::Identity => self.apply(be, u),
            Operator::Luminance => self.convolve(be, u, &self.back, &self.zero_in, 1, 1, 1),
            Operator::Downsample { factor } => {
                let x = Self::upsample(be, u, factor)?;
                be.axpby(&x, &x, self.gram() as f32, 0.0)
            }
            // A = N B with B symmetric and N diagonal: A^T = B N.
            Operator::Blur { width } => {
                let nu = self.scale_pixels(be, u)?;
                self.blur(be, &nu, width)
            }
        }
    }

    /// The blur's normalisation, pixel by pixel (a blend with zero of weights >= 1).
    fn scale_pixels(&self, be: &mut B, x: &B::Tensor) -> Result<B::Tensor> {
        let zero = be.axpby(x, x, 0.0, 0.0)?;
        be.blend(&zero, x, Self::tensor(&self.normalise))
    }

    /// `A+ y`: an image that measures `y`. None for the blur (its pseudo-inverse amplifies the
    /// high frequencies it all but removes: one binomial pass sends the highest to zero).
    pub fn lift(&self, be: &mut B, y: &B::Tensor) -> Result<B::Tensor> {
        if let Operator::Blur { .. } = self.operator {
            return param(
                "method",
                "the blur has no stable pseudo-inverse, so it cannot be projected onto: use the gradient method".into(),
            );
        }
        match self.operator {
            Operator::Downsample { factor } => Self::upsample(be, y, factor),
            // A A^T = I: A+ = A^T.
            _ => self.adjoint(be, y),
        }
    }

    /// Nearest-neighbour upsampling by `factor`: `A+` of the block means (`A^T / c`).
    fn upsample(be: &mut B, y: &B::Tensor, factor: usize) -> Result<B::Tensor> {
        let mut x = y.clone();
        for _ in 0..factor / 2 {
            x = be.upsample2x(&x)?;
        }
        Ok(x)
    }

    /// `x + A+ A (target - x)`: x with its measured part taken from `target` (a soft mask blends).
    pub fn project(&self, be: &mut B, x: &B::Tensor, target: &B::Tensor) -> Result<B::Tensor> {
        match self.operator {
            Operator::Mask => be.blend(x, target, Self::tensor(&self.forward)),
            Operator::Identity => Ok(target.clone()),
            _ => {
                let d = be.axpby(target, x, 1.0, -1.0)?;
                let ad = self.apply(be, &d)?;
                let back = self.lift(be, &ad)?;
                be.axpby(x, &back, 1.0, 1.0)
            }
        }
    }
}

/// Where the reverse process starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start<'a, T> {
    /// Pure noise at t = 1 (the seed's latent).
    Noise,
    /// SDEdit (Meng et al. 2022): `x_t = alpha(t) image + sigma(t) z` at `t` in (t_eps, 1].
    Noised { t: f64, image: &'a T },
    /// Denoising: `image` carries Gaussian noise of std `noise`, so `alpha(t) image` with
    /// `sigma(t) / alpha(t) = noise` is distributed exactly as x_t given the clean image.
    Noisy { noise: f64, image: &'a T },
}

/// The score network's eps with the measurement's likelihood gradient added (see the module).
pub struct MeasurementGuided<'a, B: Backend, D> {
    pub inner: &'a mut D,
    pub measurement: &'a Measurement<B>,
    pub y: &'a B::Tensor,
    pub scale: f64,
    pub schedule: Schedule,
}

impl<B: Backend, D: Denoiser<B>> Denoiser<B> for MeasurementGuided<'_, B, D> {
    async fn eps(&mut self, be: &mut B, x: &B::Tensor, t: f64) -> Result<B::Tensor> {
        let (a, s) = (self.schedule.alpha(t), self.schedule.sigma(t));
        let e = self.inner.eps(be, x, t).await?;
        let x0 = be.combine3(x, &e, None, [(1.0 / a) as f32, (-s / a) as f32, 0.0])?;
        let ax0 = self.measurement.apply(be, &x0)?;
        let residual = be.axpby(self.y, &ax0, 1.0, -1.0)?;
        let v = self.measurement.solve_normal(be, &residual, s * s)?;
        let u = self.measurement.adjoint(be, &v)?;
        // score += J^T u with J = alpha I; eps = -sigma score.
        be.axpby(&e, &u, 1.0, (-self.scale * s * a) as f32)
    }
}

/// Samples `p(x | y)` (or, without a measurement, runs the reverse process from `start`).
/// Projection takes single-step methods (ddpm, ddim, euler, heun, sde) and pc; the gradient and
/// no measurement take any sampler that can start below t = 1 (all but annealed).
#[allow(clippy::too_many_arguments)]
pub async fn solve<B: Backend, D: Denoiser<B>, P: Progress>(
    be: &mut B,
    den: &mut D,
    s: &Schedule,
    opts: &SamplerOptions,
    start: Start<'_, B::Tensor>,
    measured: Option<(&Measurement<B>, &B::Tensor, Enforce)>,
    shape: &[usize],
    seed: u32,
    progress: &mut P,
) -> Result<B::Tensor> {
    opts.validate()?;
    let (t0, x) = match start {
        Start::Noise => (1.0, super::start_noise(be, s, shape, seed)?),
        Start::Noised { t, image } => {
            if !(t > s.t_eps && t <= 1.0) {
                return param("strength", format!("{t} must be in ({}, 1]", s.t_eps));
            }
            let z = be.randn(shape, seed, NoiseKey::START.stream()?)?;
            (
                t,
                be.axpby(image, &z, s.alpha(t) as f32, s.sigma(t) as f32)?,
            )
        }
        Start::Noisy { noise, image } => {
            let lo = s.noise_ratio(s.t_eps);
            if !(noise > lo && noise <= s.noise_ratio(1.0)) {
                return param(
                    "noise",
                    format!("{noise} must be above {lo:.4} (the model's smallest noise level)"),
                );
            }
            let t = s.t_from_noise_ratio(noise);
            (t, be.axpby(image, image, s.alpha(t) as f32, 0.0)?)
        }
    };
    match measured {
        None => sample_from(be, den, s, opts, x, t0, seed, progress).await,
        Some((m, y, Enforce::Gradient { scale })) => {
            // At 2 and above a noiseless measurement's correction overshoots and grows each step.
            if !(scale > 0.0 && scale < 2.0) {
                return param("scale", format!("{scale} must be in (0, 2)"));
            }
            let mut guided = MeasurementGuided {
                inner: den,
                measurement: m,
                y,
                scale,
                schedule: *s,
            };
            sample_from(be, &mut guided, s, opts, x, t0, seed, progress).await
        }
        Some((m, y, how)) => {
            project_each_step(be, den, s, opts, how, m, y, x, t0, seed, progress).await
        }
    }
}

/// Samples from noise keeping what `m` measures of `image` (inpainting, colorization).
#[allow(clippy::too_many_arguments)]
pub async fn keep<B: Backend, D: Denoiser<B>, P: Progress>(
    be: &mut B,
    den: &mut D,
    s: &Schedule,
    opts: &SamplerOptions,
    how: Enforce,
    m: &Measurement<B>,
    image: &B::Tensor,
    seed: u32,
    progress: &mut P,
) -> Result<B::Tensor> {
    let y = m.apply(be, image)?;
    let shape = B::shape(image).to_vec();
    solve(
        be,
        den,
        s,
        opts,
        Start::Noise,
        Some((m, &y, how)),
        &shape,
        seed,
        progress,
    )
    .await
}

/// The projection methods' loop (see the module): `replace` and `repaint`.
#[allow(clippy::too_many_arguments)]
async fn project_each_step<B: Backend, D: Denoiser<B>, P: Progress>(
    be: &mut B,
    den: &mut D,
    s: &Schedule,
    opts: &SamplerOptions,
    how: Enforce,
    m: &Measurement<B>,
    y: &B::Tensor,
    x: B::Tensor,
    t0: f64,
    seed: u32,
    progress: &mut P,
) -> Result<B::Tensor> {
    let (predictor, corrector) = match opts.method {
        Method::Pc => (opts.predictor, true),
        m @ (Method::Ddpm | Method::Ddim | Method::Euler | Method::Heun | Method::Sde) => {
            (m, false)
        }
        m => {
            return param(
                "sampler",
                format!(
                    "{} cannot project each step; use ddpm, ddim, euler, heun, sde or pc",
                    m.name()
                ),
            )
        }
    };
    let (jump, resample) = match how {
        Enforce::Repaint { jump, resample } => {
            if !(1..=50).contains(&jump) || !(1..=20).contains(&resample) {
                return param(
                    "repaint",
                    format!("jump {jump} and resample {resample} must be 1..=50 and 1..=20"),
                );
            }
            (jump, resample)
        }
        _ => (1, 1),
    };
    let known = m.lift(be, y)?;
    let shape = B::shape(&x).to_vec();
    let k = opts.steps_from(s, t0);
    let grid = time_grid(s, predictor, k, t0)?;
    let total = k * resample; // every step is taken `resample` times, the last block too
    let mut run = Run::new(be, den, progress, *s, shape, seed, total);
    let mut x = x;
    let mut draw = 0usize; // numbers every step taken, for distinct noise streams
    let mut i = 0;
    while i < k {
        let block = jump.min(k - i);
        for r in 0..resample {
            for j in i..i + block {
                x = run
                    .single_step(predictor, opts.eta, &x, grid[j], grid[j + 1], draw)
                    .await?;
                if corrector {
                    x = run
                        .correct(x, grid[j + 1], opts.snr, opts.corrector_steps, draw)
                        .await?;
                }
                // The measured part: the data noised to the new time.
                let (a, sg) = (s.alpha(grid[j + 1]), s.sigma(grid[j + 1]));
                let z = run.noise(Role::Known, draw, 0)?;
                let noised = run.be.axpby(&known, &z, a as f32, sg as f32)?;
                x = m.project(run.be, &x, &noised)?;
                draw += 1;
                run.end_step(grid[j + 1], draw as f64 / total as f64, &x)
                    .await?;
            }
            if r + 1 < resample {
                // Back up: x_t = (alpha_t / alpha_s) x_s + sqrt(1 - (alpha_t / alpha_s)^2) z.
                let (t, sn) = (grid[i], grid[i + block]);
                let ratio = s.alpha(t) / s.alpha(sn);
                let z = run.noise(Role::Renoise, draw, 0)?;
                x = run.be.axpby(
                    &x,
                    &z,
                    ratio as f32,
                    (1.0 - ratio * ratio).max(0.0).sqrt() as f32,
                )?;
            }
        }
        i += block;
    }
    let x0 = run.denoise(&x, s.t_eps).await?;
    m.project(run.be, &x0, &known)
}
