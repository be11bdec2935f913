//! The browser API (wasm-bindgen). One `Lab` owns the backend (WebGPU, or the CPU backend when the
//! browser has no WebGPU) and the loaded models; each call takes one options object and a progress
//! callback. Errors are thrown as JS `Error`s with the crate's message.
//!
//! Progress: `progress(event)` is called with `{kind: "step", step, total, fraction, t, evals}` after
//! every step and may return `"preview"` (then it is called again with
//! `{kind: "preview", step, values: Float32Array}`) or `"cancel"` (the call rejects with "cancelled").

mod convert;
mod progress;
mod types;

use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::fast::FastCpu;
use crate::gpu::{AdapterReport, Gpu, GpuContext};
use crate::lab::{EditRequest, OdeRequest, RestoreRequest, SampleRequest, Session, Task};
use crate::sampler::edit::{DensityGrid, LikelihoodOptions};
use crate::sampler::Method;
use crate::train::TrainOptions;
use convert::{arg, from_js, js_err, to_js};
use progress::{samples_to_js, samples_with_evals_to_js, JsProgress};

enum Engine {
    Gpu(Box<Session<Gpu>>),
    Cpu(Box<Session<FastCpu>>),
}

/// Runs the same code on whichever backend the lab has.
macro_rules! with_session {
    ($lab:expr, $s:ident => $body:expr) => {
        match &mut $lab.engine {
            Engine::Gpu($s) => $body,
            Engine::Cpu($s) => $body,
        }
    };
}

#[derive(Serialize)]
struct BackendInfo {
    kind: &'static str,
    adapter: Option<AdapterReport>,
    /// Why the CPU backend is in use, when it is.
    fallback_reason: Option<String>,
}

#[wasm_bindgen]
pub struct Lab {
    engine: Engine,
    info: BackendInfo,
}

thread_local! {
    /// The devices `open_lab` opened, for `destroy_device`.
    static OPENED_DEVICES: std::cell::RefCell<Vec<wgpu::Device>> = std::cell::RefCell::default();
}

/// Destroys the GPU devices this module opened, as a driver reset would, and returns how many:
/// for fault-injection tests. A free function, as it must work while a `Lab` is busy.
#[wasm_bindgen]
pub fn destroy_device() -> usize {
    OPENED_DEVICES.with(|d| {
        let devices = std::mem::take(&mut *d.borrow_mut());
        devices.iter().for_each(|d| d.destroy());
        devices.len()
    })
}

/// Opens the lab: WebGPU unless `backend` is "cpu" or the browser has no usable adapter.
#[wasm_bindgen]
pub async fn open_lab(
    #[wasm_bindgen(unchecked_param_type = "'webgpu' | 'cpu' | null")] backend: JsValue,
) -> Result<Lab, JsError> {
    console_error_panic_hook::set_once();
    let backend = if backend.is_null() || backend.is_undefined() {
        None
    } else {
        Some(arg::text("backend", &backend)?)
    };
    if !matches!(backend.as_deref(), None | Some("webgpu" | "cpu")) {
        return Err(JsError::new(&format!(
            "parameter backend: {:?} is not \"webgpu\" or \"cpu\"",
            backend.unwrap_or_default()
        )));
    }
    if backend.as_deref() == Some("cpu") {
        return Ok(Lab {
            engine: Engine::Cpu(Box::new(Session::new(FastCpu::default()))),
            info: BackendInfo {
                kind: "cpu",
                adapter: None,
                fallback_reason: Some("requested".into()),
            },
        });
    }
    match GpuContext::new().await {
        Ok(ctx) => {
            let report = ctx.report.clone();
            OPENED_DEVICES.with(|d| d.borrow_mut().push(ctx.device.clone()));
            Ok(Lab {
                engine: Engine::Gpu(Box::new(Session::new(Gpu::new(Rc::new(ctx))))),
                info: BackendInfo {
                    kind: "webgpu",
                    adapter: Some(report),
                    fallback_reason: None,
                },
            })
        }
        Err(e) => Ok(Lab {
            engine: Engine::Cpu(Box::new(Session::new(FastCpu::default()))),
            info: BackendInfo {
                kind: "cpu",
                adapter: None,
                fallback_reason: Some(e.to_string()),
            },
        }),
    }
}

/// The samplers with their one-line descriptions, default step counts and the step counts below
/// which they are likely to leave noise.
#[wasm_bindgen(unchecked_return_type = "SamplerInfo[]")]
pub fn samplers() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Entry {
        name: &'static str,
        description: &'static str,
        default_steps: usize,
        /// Fewer steps than this are likely to leave visible noise (absent: no such count).
        min_clean_steps: Option<usize>,
    }
    to_js(&Method::ALL.map(|m| Entry {
        name: m.name(),
        description: m.describe(),
        default_steps: m.default_steps(),
        min_clean_steps: m.clean_steps(),
    }))
}

/// Model values `[n, h, w, c]` in [-1, 1] to RGBA bytes, one image after another.
#[wasm_bindgen]
pub fn to_rgba(
    #[wasm_bindgen(unchecked_param_type = "Float32Array")] values: JsValue,
    #[wasm_bindgen(unchecked_param_type = "number")] height: JsValue,
    #[wasm_bindgen(unchecked_param_type = "number")] width: JsValue,
    #[wasm_bindgen(unchecked_param_type = "number")] channels: JsValue,
) -> Result<Vec<u8>, JsError> {
    let values = arg::f32s("values", &values)?;
    let [height, width, channels] = [("height", height), ("width", width), ("channels", channels)]
        .map(|(name, v)| arg::uint(name, &v).map(|x| x as usize));
    let (height, width, channels) = (height?, width?, channels?);
    let per = height
        .checked_mul(width)
        .and_then(|p| p.checked_mul(channels))
        .unwrap_or(0);
    if !matches!(channels, 1 | 3)
        || per == 0
        || values.is_empty()
        || !values.len().is_multiple_of(per)
    {
        return Err(JsError::new(&format!(
            "to_rgba: {} values are not whole {height}x{width}x{channels} images (channels 1 or 3)",
            values.len()
        )));
    }
    Ok(values
        .chunks(per)
        .flat_map(|s| crate::image::to_rgba(s, height, width, channels))
        .collect())
}

#[wasm_bindgen]
impl Lab {
    /// `{kind: "webgpu" | "cpu", adapter: {name, backend, device_type, driver, software, features} | null, fallback_reason}`.
    #[wasm_bindgen(unchecked_return_type = "BackendInfo")]
    pub fn backend(&self) -> Result<JsValue, JsError> {
        to_js(&self.info)
    }

    /// Tensor buffers the GPU backend holds, `{buffers, bytes, free_buffers, free_bytes, plans,
    /// plan_bytes}` (the pool, then the recorded evaluations; null on the CPU backend): flat over
    /// a long session, as the page tests check.
    #[wasm_bindgen(
        unchecked_return_type = "{ buffers: number; bytes: number; free_buffers: number; free_bytes: number; plans: number; plan_bytes: number } | null"
    )]
    pub fn gpu_memory(&self) -> Result<JsValue, JsError> {
        match &self.engine {
            Engine::Gpu(s) => to_js(&s.be.memory()),
            Engine::Cpu(_) => Ok(JsValue::NULL),
        }
    }

    /// Whether the GPU device was lost (a driver reset, or `destroy_device`): this lab cannot
    /// go on, and its owner opens a new one (the page's worker restarts and reloads its models).
    pub fn device_lost(&self) -> bool {
        match &self.engine {
            Engine::Gpu(s) => s.be.context().is_lost(),
            Engine::Cpu(_) => false,
        }
    }

    /// Loads a weights file under a name; returns its config.
    #[wasm_bindgen(unchecked_return_type = "ModelConfig")]
    pub fn load_model(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array")] bytes: JsValue,
    ) -> Result<JsValue, JsError> {
        let (name, bytes) = (arg::text("name", &name)?, arg::bytes("bytes", &bytes)?);
        with_session!(self, s => { let cfg = s.load_model(&name, &bytes).map_err(js_err)?; to_js(cfg) })
    }

    /// Draws samples: options `{sampler: {method, steps, eta, rtol, atol, predictor, snr,
    /// corrector_steps, langevin_steps, step_lr}, seed, n, class, guidance}`; returns
    /// `{values: Float32Array, n, shape}`.
    #[wasm_bindgen(unchecked_return_type = "Samples")]
    pub async fn sample(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "SampleOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ProgressCallback")] progress: JsValue,
    ) -> Result<JsValue, JsError> {
        let (model, progress) = (
            arg::text("model", &model)?,
            arg::function("progress", &progress)?,
        );
        let req: SampleRequest = from_js("sample options", options)?;
        let mut p = JsProgress {
            callback: &progress,
        };
        let samples =
            with_session!(self, s => s.sample(&model, &req, &mut p).await.map_err(js_err)?);
        samples_to_js(&samples)
    }

    /// The network's eps at time t for `x` (whole samples); options `{class, guidance}`.
    pub async fn eps(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] x: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] t: JsValue,
        #[wasm_bindgen(unchecked_param_type = "EpsOptions | null")] options: JsValue,
    ) -> Result<js_sys::Float32Array, JsError> {
        let (model, x, t) = (
            arg::text("model", &model)?,
            arg::f32s("x", &x)?,
            arg::number("t", &t)?,
        );
        #[derive(serde::Deserialize, Default)]
        #[serde(default, deny_unknown_fields)]
        struct EpsOptions {
            class: Option<usize>,
            guidance: Option<f32>,
        }
        let o: EpsOptions = from_js("eps options", options)?;
        let e = with_session!(self, s => s.eps(&model, &x, t, o.class, o.guidance.unwrap_or(1.0)).await.map_err(js_err)?);
        Ok(js_sys::Float32Array::from(e.as_slice()))
    }

    /// Inpaints images (`Float32Array` of whole samples in [-1, 1]) where `mask` (one sample,
    /// 1 = keep) is 0. Options `{sampler, method: {kind: "replace"} | {kind: "repaint", jump,
    /// resample}, seed, class, guidance}`.
    #[wasm_bindgen(unchecked_return_type = "Samples")]
    pub async fn inpaint(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] images: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] mask: JsValue,
        #[wasm_bindgen(unchecked_param_type = "EditOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ProgressCallback")] progress: JsValue,
    ) -> Result<JsValue, JsError> {
        let (model, progress) = (
            arg::text("model", &model)?,
            arg::function("progress", &progress)?,
        );
        let (images, mask) = (arg::f32s("images", &images)?, arg::f32s("mask", &mask)?);
        let req: EditRequest = from_js("inpaint options", options)?;
        let mut p = JsProgress {
            callback: &progress,
        };
        let out = with_session!(self, s => s.inpaint(&model, &req, &images, &mask, &mut p).await.map_err(js_err)?);
        samples_to_js(&out)
    }

    /// Colours images keeping their luminance (the emoji model); options as for `inpaint`.
    #[wasm_bindgen(unchecked_return_type = "Samples")]
    pub async fn colorize(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] images: JsValue,
        #[wasm_bindgen(unchecked_param_type = "EditOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ProgressCallback")] progress: JsValue,
    ) -> Result<JsValue, JsError> {
        let (model, progress) = (
            arg::text("model", &model)?,
            arg::function("progress", &progress)?,
        );
        let images = arg::f32s("images", &images)?;
        let req: EditRequest = from_js("colorize options", options)?;
        let mut p = JsProgress {
            callback: &progress,
        };
        let out = with_session!(self, s => s.colorize(&model, &req, &images, &mut p).await.map_err(js_err)?);
        samples_to_js(&out)
    }

    /// The measurement a task takes of clean images (`A x` plus its noise drawn from `seed`;
    /// super-resolution's is smaller, `shape` says). `noise` is for superres and deblur.
    #[wasm_bindgen(unchecked_return_type = "Samples")]
    pub async fn measure(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Task")] task: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] noise: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] images: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] seed: JsValue,
    ) -> Result<JsValue, JsError> {
        let model = arg::text("model", &model)?;
        let task: Task = from_js("task", task)?;
        let (noise, images, seed) = (
            arg::number("noise", &noise)?,
            arg::f32s("images", &images)?,
            arg::uint("seed", &seed)?,
        );
        let out = with_session!(self, s => s.measure(&model, task, noise, &images, seed).await.map_err(js_err)?);
        samples_to_js(&out)
    }

    /// Restores images from measurements `y` (super-resolution: `[n, h / f, w / f, c]`, else
    /// whole images), or turns images into samples by SDEdit; `mask` (one sample, 1 = keep, or
    /// null) is SDEdit's kept region.
    #[wasm_bindgen(unchecked_return_type = "Samples")]
    pub async fn restore(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] y: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | null")] mask: JsValue,
        #[wasm_bindgen(unchecked_param_type = "RestoreOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ProgressCallback")] progress: JsValue,
    ) -> Result<JsValue, JsError> {
        let (model, progress) = (
            arg::text("model", &model)?,
            arg::function("progress", &progress)?,
        );
        let y = arg::f32s("y", &y)?;
        let mask = if mask.is_null() || mask.is_undefined() {
            None
        } else {
            Some(arg::f32s("mask", &mask)?)
        };
        let req: RestoreRequest = from_js("restore options", options)?;
        let mut p = JsProgress {
            callback: &progress,
        };
        let out = with_session!(self, s => s.restore(&model, &req, &y, mask.as_deref(), &mut p).await.map_err(js_err)?);
        samples_to_js(&out)
    }

    /// Probability-flow encode (data to latent) or decode; options `{solver, steps, rtol, atol,
    /// class, guidance}`. Returns `{values, n, shape, evals}`.
    #[wasm_bindgen(unchecked_return_type = "Samples")]
    pub async fn transport(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] values: JsValue,
        #[wasm_bindgen(unchecked_param_type = "boolean")] encode: JsValue,
        #[wasm_bindgen(unchecked_param_type = "OdeOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ProgressCallback")] progress: JsValue,
    ) -> Result<JsValue, JsError> {
        let (model, progress) = (
            arg::text("model", &model)?,
            arg::function("progress", &progress)?,
        );
        let (values, encode) = (arg::f32s("values", &values)?, arg::flag("encode", &encode)?);
        let req: OdeRequest = from_js("ode options", options)?;
        let mut p = JsProgress {
            callback: &progress,
        };
        let (out, evals) = with_session!(self, s => s.transport(&model, &req, &values, encode, &mut p).await.map_err(js_err)?);
        samples_with_evals_to_js(&out, Some(evals))
    }

    /// Decodes slerp(a, b, u) for each position u; returns `{values, n, shape, evals}`.
    #[wasm_bindgen(unchecked_return_type = "Samples")]
    pub async fn interpolate(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] a: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] b: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float64Array | number[]")] positions: JsValue,
        #[wasm_bindgen(unchecked_param_type = "OdeOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ProgressCallback")] progress: JsValue,
    ) -> Result<JsValue, JsError> {
        let (model, progress) = (
            arg::text("model", &model)?,
            arg::function("progress", &progress)?,
        );
        let (a, b) = (arg::f32s("a", &a)?, arg::f32s("b", &b)?);
        let positions = arg::numbers("positions", &positions)?;
        let req: OdeRequest = from_js("ode options", options)?;
        let mut p = JsProgress {
            callback: &progress,
        };
        let (out, evals) = with_session!(self, s => s.interpolate(&model, &req, &a, &b, &positions, &mut p).await.map_err(js_err)?);
        samples_with_evals_to_js(&out, Some(evals))
    }

    /// The starting noise of a seed.
    pub fn seed_latent(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] seed: JsValue,
    ) -> Result<js_sys::Float32Array, JsError> {
        let (model, seed) = (arg::text("model", &model)?, arg::uint("seed", &seed)?);
        let z = match &self.engine {
            Engine::Gpu(s) => s.seed_latent(&model, seed),
            Engine::Cpu(s) => s.seed_latent(&model, seed),
        }
        .map_err(js_err)?;
        Ok(js_sys::Float32Array::from(z.as_slice()))
    }

    /// `log p` and bits/dim of whole samples; options `{steps, probe, dequantize}`, plus class
    /// and probe seed. Returns `{log_p, bits_per_dim, evals}`.
    #[wasm_bindgen(unchecked_return_type = "LikelihoodResult")]
    pub async fn likelihood(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] values: JsValue,
        #[wasm_bindgen(unchecked_param_type = "LikelihoodOptions")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number | null")] class: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] seed: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ProgressCallback")] progress: JsValue,
    ) -> Result<JsValue, JsError> {
        let (model, progress) = (
            arg::text("model", &model)?,
            arg::function("progress", &progress)?,
        );
        let (values, class) = (arg::f32s("values", &values)?, arg::class("class", &class)?);
        let seed = arg::uint("seed", &seed)?;
        let opts: LikelihoodOptions = from_js("likelihood options", options)?;
        let mut p = JsProgress {
            callback: &progress,
        };
        let out = with_session!(self, s => s.likelihood(&model, &opts, &values, class, seed, &mut p).await.map_err(js_err)?);
        to_js(&out)
    }

    /// `log p` of a 2-D model on a square grid, options `{range, size, steps}` (defaults: the
    /// playground's map). Returns `{log_p, bits_per_dim, evals}`, rows from the top down.
    #[wasm_bindgen(unchecked_return_type = "LikelihoodResult")]
    pub async fn density_grid(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] model: JsValue,
        #[wasm_bindgen(unchecked_param_type = "DensityGridOptions | null")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number | null")] class: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ProgressCallback")] progress: JsValue,
    ) -> Result<JsValue, JsError> {
        let (model, progress) = (
            arg::text("model", &model)?,
            arg::function("progress", &progress)?,
        );
        let class = arg::class("class", &class)?;
        let grid: DensityGrid = from_js("density grid options", options)?;
        let mut p = JsProgress {
            callback: &progress,
        };
        let out = with_session!(self, s => s.density_grid(&model, &grid, class, &mut p).await.map_err(js_err)?);
        to_js(&out)
    }

    /// Starts training a 2-D model on `points` (x, y pairs) with `TrainOptions`, on this lab's
    /// backend; replaces any run in progress.
    pub fn train_start(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Float32Array")] points: JsValue,
        #[wasm_bindgen(unchecked_param_type = "TrainOptions")] options: JsValue,
    ) -> Result<(), JsError> {
        let points = arg::f32s("points", &points)?;
        let opts: TrainOptions = from_js("train options", options)?;
        with_session!(self, s => s.train_start(&points, &opts).map_err(js_err))
    }

    /// Runs `steps` more optimizer steps; returns `{steps, losses, lr}`.
    #[wasm_bindgen(unchecked_return_type = "TrainStatus")]
    pub async fn train_steps(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "number")] steps: JsValue,
    ) -> Result<JsValue, JsError> {
        let steps = arg::uint("steps", &steps)? as usize;
        let out = with_session!(self, s => s.train_steps(steps).await.map_err(js_err)?);
        to_js(&out)
    }

    /// The run's EMA weights as a `.safetensors` file, also loaded as model `name`.
    #[wasm_bindgen(unchecked_return_type = "Uint8Array")]
    pub async fn train_export(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
    ) -> Result<JsValue, JsError> {
        let name = arg::text("name", &name)?;
        let bytes = with_session!(self, s => s.train_export(&name).await.map_err(js_err)?);
        Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
    }
}
