//! Samplers, written once against [`Denoiser`] so they run any shipped model or an exact score, on
//! any backend. Every per-step update is a tensor op (GPU kernels on the GPU backend); the only
//! readbacks are previews that the caller asks for and the adaptive solver's one error norm per step.
//!
//! Time runs from t = 1 (noise) to `t_eps`; every sampler ends with one denoising evaluation at
//! `t_eps` (`x0 = (x - sigma eps) / alpha`, which is also DDIM's last step to t = 0).
//! Noise comes from [`Backend::randn`] keyed by (seed of the sample, stream), the stream naming
//! the draw ([`NoiseKey`]: role, step, index); stream 0 is the starting noise.

mod annealed;
mod ddim;
pub mod denoiser;
mod dpm2m;
pub mod edit;
pub mod guidance;
pub mod inverse;
pub mod mixture;
pub mod noise;
mod ode;
mod pc;
mod reverse_sde;
mod rk45;
mod run;

use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::error::{Error, Result};

pub use crate::schedule::{Schedule, Sde};
pub use denoiser::{Denoiser, Guided};
pub use mixture::GaussianMixture;
pub use noise::{NoiseKey, Role};
pub use ode::{solve_ode, OdeSolver};
pub use rk45::check_tolerances;
use run::Run;

/// The sampling methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Ddpm,
    Ddim,
    Euler,
    Heun,
    Rk45,
    Sde,
    Pc,
    Annealed,
    Dpm2m,
}

impl Method {
    pub const ALL: [Method; 9] = [
        Method::Ddpm,
        Method::Ddim,
        Method::Euler,
        Method::Heun,
        Method::Rk45,
        Method::Sde,
        Method::Pc,
        Method::Annealed,
        Method::Dpm2m,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Ddpm => "ddpm",
            Method::Ddim => "ddim",
            Method::Euler => "euler",
            Method::Heun => "heun",
            Method::Rk45 => "rk45",
            Method::Sde => "sde",
            Method::Pc => "pc",
            Method::Annealed => "annealed",
            Method::Dpm2m => "dpm2m",
        }
    }

    pub fn parse(name: &str) -> Result<Method> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| Error::Param {
                name: "sampler".into(),
                detail: format!(
                    "unknown sampler {name:?}; choose one of {}",
                    Method::ALL.map(|m| m.name()).join(", ")
                ),
            })
    }

    /// One line for `--help` and the page.
    pub fn describe(self) -> &'static str {
        match self {
            Method::Ddpm => "DDPM ancestral sampling on a strided subset of the model's discrete chain (steps)",
            Method::Ddim => "DDIM on a strided subset of the chain; eta 0 is deterministic, eta 1 has DDPM's variance (steps, eta)",
            Method::Euler => "probability-flow ODE, Euler steps uniform in t (steps)",
            Method::Heun => "probability-flow ODE, Heun's 2nd-order method (steps; 2 evaluations each)",
            Method::Rk45 => "probability-flow ODE, adaptive Dormand-Prince 5(4) (rtol, atol; steps caps the step count)",
            Method::Sde => "reverse-time SDE, Euler-Maruyama (steps)",
            Method::Pc => "predictor-corrector: a predictor step then Langevin corrector steps (steps, predictor, snr, corrector_steps)",
            Method::Annealed => "annealed Langevin dynamics (NCSN) over a geometric ladder of VE noise levels (steps = levels, langevin_steps, step_lr)",
            Method::Dpm2m => "DPM-Solver++(2M), a multistep solver in log-SNR; good in 10-20 evaluations (steps)",
        }
    }

    /// The fewest steps that end clean on the digits model: at most 5 % of the background pixels
    /// (below -0.5) speckled (above -0.9), over 16 samples; DDIM at 20 steps has 3.9 %. `None`
    /// where the count is not what decides it (rk45 adapts its steps) or it was not measured.
    pub fn clean_steps(self) -> Option<usize> {
        match self {
            Method::Ddpm | Method::Dpm2m => Some(10),
            Method::Ddim | Method::Sde | Method::Pc => Some(20),
            Method::Heun => Some(30),
            Method::Euler => Some(50),
            Method::Rk45 | Method::Annealed => None,
        }
    }

    /// A sensible step count when none is given.
    pub fn default_steps(self) -> usize {
        match self {
            Method::Ddpm | Method::Sde => 200,
            Method::Ddim | Method::Euler => 50,
            // Its Euler-Maruyama predictor needs the steps; at 50 it leaves 3.5x the spread of
            // sharp data (tests/samplers.rs).
            Method::Pc => 100,
            Method::Heun => 25,
            Method::Rk45 => 500,
            Method::Annealed => 100,
            Method::Dpm2m => 15,
        }
    }
}

/// Sampler settings; every field has a default, so `{"method": "ddim"}` is a complete request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerOptions {
    pub method: Method,
    /// Steps (None = the method's default). For rk45 the cap on accepted steps; for annealed, levels.
    pub steps: Option<usize>,
    /// DDIM (and PC with the DDIM predictor): 0 deterministic .. 1 DDPM variance.
    pub eta: f64,
    /// rk45 tolerances.
    pub rtol: f64,
    pub atol: f64,
    /// PC: the predictor (ddpm, ddim, euler, heun or sde), signal-to-noise ratio and corrector steps.
    pub predictor: Method,
    pub snr: f64,
    pub corrector_steps: usize,
    /// Annealed Langevin: steps per noise level and the base step size (scaled by sigma_i^2 / sigma_min^2).
    pub langevin_steps: usize,
    pub step_lr: f64,
}

impl Default for SamplerOptions {
    fn default() -> Self {
        SamplerOptions {
            method: Method::Ddim,
            steps: None,
            eta: 0.0,
            rtol: 1e-3,
            atol: 1e-3,
            predictor: Method::Sde,
            snr: 0.16,
            corrector_steps: 1,
            langevin_steps: 3,
            step_lr: 2e-4,
        }
    }
}

pub(crate) fn param<T>(name: &str, detail: String) -> Result<T> {
    Err(Error::Param {
        name: name.into(),
        detail,
    })
}

impl SamplerOptions {
    pub fn steps(&self) -> usize {
        self.steps.unwrap_or(self.method.default_steps())
    }

    /// The steps of a run that starts at `t0`: the share of [`SamplerOptions::steps`] that
    /// `[t_eps, t0]` is of `[t_eps, 1]`, rounded up (SDEdit at strength 0.5 takes half the steps).
    pub fn steps_from(&self, s: &Schedule, t0: f64) -> usize {
        let least = if self.method == Method::Dpm2m { 2 } else { 1 };
        let share = ((t0 - s.t_eps) / (1.0 - s.t_eps)).clamp(0.0, 1.0);
        ((self.steps() as f64 * share - 1e-9).ceil() as usize).max(least)
    }

    /// Rejects impossible settings with a message naming the parameter.
    pub fn validate(&self) -> Result<()> {
        if !(1..=10_000).contains(&self.steps()) {
            return param("steps", format!("{} must be 1..=10000", self.steps()));
        }
        if !(0.0..=1.0).contains(&self.eta) {
            return param("eta", format!("{} is outside [0, 1]", self.eta));
        }
        check_tolerances(self.rtol, self.atol)?;
        if !matches!(
            self.predictor,
            Method::Ddpm | Method::Ddim | Method::Euler | Method::Heun | Method::Sde
        ) {
            return param(
                "predictor",
                format!(
                    "{} cannot be a predictor; use ddpm, ddim, euler, heun or sde",
                    self.predictor.name()
                ),
            );
        }
        if !(self.snr > 0.0 && self.snr <= 10.0) {
            return param("snr", format!("{} must be in (0, 10]", self.snr));
        }
        if !(1..=15).contains(&self.corrector_steps) {
            return param(
                "corrector_steps",
                format!("{} must be 1..=15", self.corrector_steps),
            );
        }
        if !(1..=100).contains(&self.langevin_steps) {
            return param(
                "langevin_steps",
                format!("{} must be 1..=100", self.langevin_steps),
            );
        }
        if !(self.step_lr > 0.0 && self.step_lr < 1.0) {
            return param("step_lr", format!("{} must be in (0, 1)", self.step_lr));
        }
        if self.method == Method::Dpm2m && self.steps() < 2 {
            return param("steps", "dpm2m needs at least 2 steps".into());
        }
        Ok(())
    }
}

/// Where a run is, reported after every step.
#[derive(Clone, Debug, Serialize)]
pub struct StepInfo {
    pub step: usize,
    /// Planned steps (for rk45 the cap; the run may finish earlier).
    pub total: usize,
    /// Fraction of the time interval covered, 0..1.
    pub fraction: f64,
    pub t: f64,
    /// Denoiser evaluations so far.
    pub evals: usize,
    /// An rk45 try whose error was too large: x did not move, `step` is unchanged. Reported so
    /// the caller sees the evaluations and can cancel between tries.
    pub rejected: bool,
}

/// What the caller wants after a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Control {
    Continue,
    /// Read back the current predicted x0 and pass it to [`Progress::preview`].
    Preview,
    /// Read back the current state x_t and pass it to [`Progress::trace`] (for trajectories).
    Trace,
    /// Stop: the run returns [`Error::Cancelled`].
    Cancel,
}

pub trait Progress {
    fn step(&mut self, info: &StepInfo) -> Control;
    fn preview(&mut self, _info: &StepInfo, _x0: &[f32]) {}
    fn trace(&mut self, _info: &StepInfo, _x: &[f32]) {}
}

/// No reporting.
pub struct Silent;

impl Progress for Silent {
    fn step(&mut self, _: &StepInfo) -> Control {
        Control::Continue
    }
}

impl<B: Backend, D: Denoiser<B>, P: Progress> Run<'_, B, D, P> {
    /// One step of a single-step method from t to s (< t); `k` numbers the step for noise streams.
    async fn single_step(
        &mut self,
        method: Method,
        eta: f64,
        x: &B::Tensor,
        t: f64,
        s: f64,
        k: usize,
    ) -> Result<B::Tensor> {
        match method {
            Method::Ddpm => self.ddim_step(1.0, x, t, s, k).await,
            Method::Ddim => self.ddim_step(eta, x, t, s, k).await,
            Method::Euler => self.euler_step(x, t, s).await,
            Method::Heun => self.heun_step(x, t, s).await,
            Method::Sde => self.sde_step(x, t, s, k).await,
            other => param(
                "sampler",
                format!("{} is not a single-step method", other.name()),
            ),
        }
    }
}

/// The time grid of `k` steps from `t0` (1 unless the run starts from a noised image) to `t_eps`
/// (k + 1 points). DDPM/DDIM grids are rounded to the discrete chain (`t = i / N`), so they are
/// strided subsets of it; `t0` itself is kept, as the run's start was noised to it.
pub fn time_grid(s: &Schedule, method: Method, k: usize, t0: f64) -> Result<Vec<f64>> {
    let n = s.discrete_steps as f64;
    let grid: Vec<f64> = (0..=k)
        .map(|i| {
            // The last point is t_eps exactly (the interpolation can miss it by a rounding).
            let t = if i == k {
                s.t_eps
            } else {
                t0 + (s.t_eps - t0) * i as f64 / k as f64
            };
            if i > 0 && matches!(method, Method::Ddpm | Method::Ddim) {
                ((t * n).round() / n).max(s.t_eps)
            } else {
                t
            }
        })
        .collect();
    // On the discrete chain more steps than it has would repeat times: steps that cost an
    // evaluation and do nothing.
    if grid.windows(2).any(|w| w[1] >= w[0]) {
        return param("steps", format!("{k} steps would repeat times of the model's {}-step chain: {} needs fewer steps than the chain has between t = {t0:.3} and {}", s.discrete_steps, method.name(), s.t_eps));
    }
    Ok(grid)
}

/// Draws samples of `shape` (`[n, ..sample shape]`) with the given method. Sample i uses seed
/// `seed + i`, so an image depends only on its own seed, not on the batch it was drawn in.
pub async fn sample<B: Backend, D: Denoiser<B>, P: Progress>(
    be: &mut B,
    den: &mut D,
    s: &Schedule,
    opts: &SamplerOptions,
    shape: &[usize],
    seed: u32,
    progress: &mut P,
) -> Result<B::Tensor> {
    opts.validate()?;
    let x = start_noise(be, s, shape, seed)?;
    sample_from(be, den, s, opts, x, 1.0, seed, progress).await
}

/// A draw from the prior at t = 1: the unit-normal start noise of each sample's seed, times the
/// SDE's prior std (the unit noise is the latent that encoding and interpolation work with).
pub fn start_noise<B: Backend>(
    be: &mut B,
    s: &Schedule,
    shape: &[usize],
    seed: u32,
) -> Result<B::Tensor> {
    let z = be.randn(shape, seed, NoiseKey::START.stream()?)?;
    match s.prior_std() {
        1.0 => Ok(z),
        p => be.axpby(&z, &z, p as f32, 0.0),
    }
}

/// Runs the reverse process from `x` at time `t0` down to data. Below t = 1 the run takes the
/// share of `opts`' steps that its interval is of the whole ([`SamplerOptions::steps_from`]).
#[allow(clippy::too_many_arguments)]
pub async fn sample_from<B: Backend, D: Denoiser<B>, P: Progress>(
    be: &mut B,
    den: &mut D,
    s: &Schedule,
    opts: &SamplerOptions,
    x: B::Tensor,
    t0: f64,
    seed: u32,
    progress: &mut P,
) -> Result<B::Tensor> {
    opts.validate()?;
    let steps = opts.steps_from(s, t0);
    let shape = B::shape(&x).to_vec();
    let mut run = Run::new(be, den, progress, *s, shape, seed, steps);
    match opts.method {
        Method::Rk45 => {
            let x = ode::solve_ode_in(
                &mut run,
                x,
                t0,
                s.t_eps,
                OdeSolver::Rk45 {
                    rtol: opts.rtol,
                    atol: opts.atol,
                    max_steps: steps,
                },
            )
            .await?;
            run.denoise(&x, s.t_eps).await
        }
        Method::Annealed if t0 < 1.0 => param(
            "sampler",
            "annealed Langevin starts from pure noise; choose another sampler to start from an image".into(),
        ),
        Method::Annealed => annealed::annealed(&mut run, x, opts).await,
        Method::Dpm2m => dpm2m::dpm_solver_2m(&mut run, x, t0, steps).await,
        Method::Pc => pc::predictor_corrector(&mut run, x, opts, steps, t0).await,
        method => {
            let grid = time_grid(s, method, steps, t0)?;
            let mut x = x;
            for k in 0..steps {
                x = run
                    .single_step(method, opts.eta, &x, grid[k], grid[k + 1], k)
                    .await?;
                run.end_step(grid[k + 1], (k + 1) as f64 / steps as f64, &x)
                    .await?;
            }
            run.denoise(&x, s.t_eps).await
        }
    }
}
