//! The browser API (wasm-bindgen). One `Lab` owns the backend (WebGPU, or the CPU backend when the
//! browser has no WebGPU) and the loaded models; each call takes one options object and a progress
//! callback. Errors are thrown as JS `Error`s with the crate's message.
//!
//! Progress: `progress(event)` is called with `{kind: "step", step, total, fraction, t, evals}` after
//! every step and may return `"preview"` (then it is called again with
//! `{kind: "preview", step, values: Float32Array}`) or `"cancel"` (the call rejects with "cancelled").

use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::error::Error;
use crate::fast::FastCpu;
use crate::gpu::{AdapterReport, Gpu, GpuContext};
use crate::lab::{EditRequest, OdeRequest, RestoreRequest, SampleRequest, Samples, Session, Task};
use crate::sampler::edit::{DensityGrid, LikelihoodOptions};
use crate::sampler::{Control, Method, Progress, StepInfo};
use crate::train::TrainOptions;

fn js_err(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// `undefined`, `null` or a plain object without keys: no options given.
fn no_options(v: &JsValue) -> bool {
    if v.is_undefined() || v.is_null() {
        return true;
    }
    let Some(obj) = v.dyn_ref::<js_sys::Object>() else {
        return false;
    };
    js_sys::Object::get_prototype_of(v) == js_sys::Object::get_prototype_of(&js_sys::Object::new())
        && js_sys::Object::keys(obj).length() == 0
}

fn from_js<T: serde::de::DeserializeOwned>(what: &str, v: JsValue) -> Result<T, JsError> {
    // Through JSON: serde_wasm_bindgen reads only the fields a struct declares, so unknown keys
    // would pass silently; serde_json honours deny_unknown_fields. The error names the field at
    // fault by its path (e.g. `sampler.steps`). No options skip the conversion: it is on every
    // evaluation's path and cost 20-40 us of its 0.2-0.3 ms CPU time in Chromium.
    let json = if no_options(&v) {
        serde_json::Value::Object(Default::default())
    } else {
        serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("{what}: {e}")))?
    };
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        JsError::new(&format!("{what}: {field}{}", e.inner()))
    })
}

/// Arguments arrive untyped from JS: each is checked here, and a wrong one is an error that
/// names it (wasm-bindgen's own conversions would coerce silently: `"abc"` to seed 0, `null` to an
/// empty array, a string's letters to NaN).
mod arg {
    use wasm_bindgen::{JsCast, JsError, JsValue};

    fn wrong(name: &str, want: &str, v: &JsValue) -> JsError {
        let got = if v.is_null() {
            "null".to_string()
        } else {
            v.js_typeof().as_string().unwrap_or_default()
        };
        JsError::new(&format!("parameter {name}: expected {want}, got {got}"))
    }

    /// A string.
    pub fn text(name: &str, v: &JsValue) -> Result<String, JsError> {
        v.as_string().ok_or_else(|| wrong(name, "a string", v))
    }

    /// A boolean.
    pub fn flag(name: &str, v: &JsValue) -> Result<bool, JsError> {
        v.as_bool().ok_or_else(|| wrong(name, "true or false", v))
    }

    /// A finite number.
    pub fn number(name: &str, v: &JsValue) -> Result<f64, JsError> {
        match v.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            Some(x) => Err(JsError::new(&format!(
                "parameter {name}: {x} is not finite"
            ))),
            None => Err(wrong(name, "a number", v)),
        }
    }

    /// An integer in 0..=u32::MAX.
    pub fn uint(name: &str, v: &JsValue) -> Result<u32, JsError> {
        let x = number(name, v)?;
        if x.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&x) {
            return Err(JsError::new(&format!(
                "parameter {name}: {x} is not an integer in 0..=4294967295"
            )));
        }
        Ok(x as u32)
    }

    /// An optional class index: `null`/`undefined` for none.
    pub fn class(name: &str, v: &JsValue) -> Result<Option<usize>, JsError> {
        if v.is_null() || v.is_undefined() {
            return Ok(None);
        }
        uint(name, v).map(|c| Some(c as usize))
    }

    /// A `Float32Array` or an array of numbers, all finite.
    pub fn f32s(name: &str, v: &JsValue) -> Result<Vec<f32>, JsError> {
        let values = match v.dyn_ref::<js_sys::Float32Array>() {
            Some(a) => a.to_vec(),
            None => numbers(name, v)?.into_iter().map(|x| x as f32).collect(),
        };
        finite(name, &values)?;
        Ok(values)
    }

    /// A `Float64Array`, `Float32Array` or array of numbers, all finite.
    pub fn numbers(name: &str, v: &JsValue) -> Result<Vec<f64>, JsError> {
        let values = if let Some(a) = v.dyn_ref::<js_sys::Float64Array>() {
            a.to_vec()
        } else if let Some(a) = v.dyn_ref::<js_sys::Float32Array>() {
            a.to_vec().into_iter().map(f64::from).collect()
        } else if let Some(array) = v.dyn_ref::<js_sys::Array>() {
            array
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_f64()
                        .ok_or_else(|| wrong(&format!("{name}[{i}]"), "a number", &x))
                })
                .collect::<Result<_, _>>()?
        } else {
            return Err(wrong(name, "a Float32Array or an array of numbers", v));
        };
        finite(name, &values)?;
        Ok(values)
    }

    fn finite<T: Copy + Into<f64>>(name: &str, values: &[T]) -> Result<(), JsError> {
        match values.iter().position(|&x| !x.into().is_finite()) {
            Some(i) => Err(JsError::new(&format!(
                "parameter {name}[{i}]: {} is not finite",
                values[i].into()
            ))),
            None => Ok(()),
        }
    }

    /// A `Uint8Array` (a file's bytes).
    pub fn bytes(name: &str, v: &JsValue) -> Result<Vec<u8>, JsError> {
        v.dyn_ref::<js_sys::Uint8Array>()
            .map(|a| a.to_vec())
            .ok_or_else(|| wrong(name, "a Uint8Array", v))
    }

    /// A function (the progress callback).
    pub fn function(name: &str, v: &JsValue) -> Result<js_sys::Function, JsError> {
        v.dyn_ref::<js_sys::Function>()
            .cloned()
            .ok_or_else(|| wrong(name, "a function", v))
    }
}

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

// The option and result objects of the API, for the generated `scorelab.d.ts`. They mirror the
// serde structs the options are parsed into (unknown keys are refused) and the objects returned.
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A sampling method; `samplers()` lists them with their defaults. */
export type Method = 'ddpm' | 'ddim' | 'euler' | 'heun' | 'rk45' | 'sde' | 'pc' | 'annealed' | 'dpm2m';
/** Sampler settings; every field has a default. */
export interface SamplerOptions {
  method?: Method;
  /** null: the method's default; rk45: the cap on accepted steps; annealed: noise levels. */
  steps?: number | null;
  /** ddim: 0 deterministic .. 1 DDPM variance. */
  eta?: number;
  /** rk45 tolerances. */
  rtol?: number;
  atol?: number;
  /** pc: the predictor, signal-to-noise ratio and corrector steps. */
  predictor?: Method;
  snr?: number;
  corrector_steps?: number;
  /** annealed: Langevin steps per level and base step size. */
  langevin_steps?: number;
  step_lr?: number;
}
/** What `sample` draws; sample i uses seed + i. */
export interface SampleOptions {
  sampler?: SamplerOptions;
  seed?: number;
  n?: number;
  /** A class index of the model, or null for unconditional. */
  class?: number | null;
  /** Classifier-free guidance scale (1: plain conditional). */
  guidance?: number;
  /** Classifier guidance towards `class` by a loaded classifier (`load_model` of a
   *  `*-classifier.safetensors`); with `guidance` 0 the score model is unconditional. */
  classifier?: { model: string; scale: number } | null;
}
export interface EpsOptions {
  class?: number | null;
  guidance?: number;
}
/** How a measurement is kept: projection (`replace`, `repaint`: the result measures exactly
 *  the given measurement) or the likelihood gradient (`gradient`, any sampler, approximate). */
export type Enforce = { kind: 'replace' } | { kind: 'repaint'; jump: number; resample: number } | { kind: 'gradient'; scale: number };
export interface EditOptions {
  sampler?: SamplerOptions;
  method?: Enforce;
  seed?: number;
  class?: number | null;
  guidance?: number;
}
/** An image-to-image task: super-resolution from block means, denoising (noise std in model
 *  units), deblurring (Gaussian blur std in pixels), or SDEdit (noise to `strength`, denoise). */
/** Training a 2-D model in the engine (`train_start`); every field has a default. */
export interface TrainOptions {
  loss?: 'dsm' | 'ssm';
  projection?: 'rademacher' | 'gaussian';
  sde?: 'vp' | 'subvp' | 've';
  width?: number;
  depth?: number;
  batch?: number;
  lr?: number;
  warmup?: number;
  /** The planned length (the learning rate decays to a tenth by then). */
  steps?: number;
  ema_decay?: number;
  clip?: number;
  seed?: number;
}
export interface TrainStatus { steps: number; losses: number[]; lr: number }
export type Task = { kind: 'superres'; factor: 2 | 4 } | { kind: 'denoise'; noise: number } | { kind: 'deblur'; width: number } | { kind: 'sdedit'; strength: number };
export interface RestoreOptions {
  task?: Task;
  sampler?: SamplerOptions;
  /** null: the task's own (superres replace, deblur gradient, denoise a start at the matching
   *  noise level, sdedit nothing or replace of the kept region). */
  method?: Enforce | null;
  /** The measurement's noise std (superres, deblur). */
  noise?: number;
  seed?: number;
  class?: number | null;
  guidance?: number;
}
export interface OdeOptions {
  solver?: 'rk45' | 'heun' | 'euler';
  steps?: number;
  rtol?: number;
  atol?: number;
  class?: number | null;
  guidance?: number;
}
export interface LikelihoodOptions {
  steps?: number;
  probe?: 'auto' | 'exact' | 'rademacher' | 'gaussian';
  dequantize?: boolean;
}
export interface DensityGridOptions {
  range?: number;
  size?: number;
  steps?: number;
}
/** Samples as model values in [-1, 1], `[n, ...shape]` row-major (images NHWC). */
export interface Samples {
  values: Float32Array;
  n: number;
  shape: number[];
  /** Network evaluations (transport and interpolate). */
  evals?: number;
}
export interface LikelihoodResult {
  log_p: number[];
  bits_per_dim: number[];
  evals: number;
}
/** What the progress callback receives: a step, or the values it asked for by returning
 *  'preview' (predicted x0) or 'trace' (current x_t). Returning 'cancel' stops the run. */
export type ProgressEvent =
  | { kind: 'step'; step: number; total: number; fraction: number; t: number; evals: number; rejected: boolean }
  | { kind: 'preview' | 'trace'; step: number; t: number; values: Float32Array };
export type ProgressCallback = (event: ProgressEvent) => 'cancel' | 'preview' | 'trace' | undefined | void;
export interface AdapterInfo {
  name: string;
  backend: string;
  device_type: string;
  driver: string;
  /** A CPU-emulated adapter (SwiftShader, lavapipe, WARP): correct but slow. */
  software: boolean;
  features: string[];
}
export interface BackendInfo {
  kind: 'webgpu' | 'cpu';
  adapter: AdapterInfo | null;
  /** Why the CPU backend is in use, when it is ('requested' when asked for). */
  fallback_reason: string | null;
}
export interface SamplerInfo {
  name: Method;
  description: string;
  default_steps: number;
  min_clean_steps?: number | null;
}
/** A model's config (the weights file's metadata). */
export interface ModelConfig {
  name: string;
  /** Images: height x width x channels; points: dim. */
  data: { kind: 'image' | 'points'; height: number; width: number; channels: number; dim: number; [key: string]: unknown };
  classes: { names: string[]; null_index: number };
  [key: string]: unknown;
}
"#;

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

/// Forwards progress to a JS function.
struct JsProgress<'a> {
    callback: &'a js_sys::Function,
}

impl Progress for JsProgress<'_> {
    fn step(&mut self, info: &StepInfo) -> Control {
        #[derive(Serialize)]
        struct Event<'a> {
            kind: &'static str,
            #[serde(flatten)]
            info: &'a StepInfo,
        }
        let Ok(event) = to_js(&Event { kind: "step", info }) else {
            return Control::Continue;
        };
        match self
            .callback
            .call1(&JsValue::NULL, &event)
            .ok()
            .and_then(|r| r.as_string())
            .as_deref()
        {
            Some("cancel") => Control::Cancel,
            Some("preview") => Control::Preview,
            Some("trace") => Control::Trace,
            _ => Control::Continue,
        }
    }

    fn preview(&mut self, info: &StepInfo, x0: &[f32]) {
        self.values_event("preview", info, x0);
    }

    fn trace(&mut self, info: &StepInfo, x: &[f32]) {
        self.values_event("trace", info, x);
    }
}

impl JsProgress<'_> {
    fn values_event(&self, kind: &str, info: &StepInfo, values: &[f32]) {
        let event = js_sys::Object::new();
        let set = |k: &str, v: JsValue| js_sys::Reflect::set(&event, &k.into(), &v);
        let _ = set("kind", kind.into());
        let _ = set("step", (info.step as u32).into());
        let _ = set("t", info.t.into());
        let _ = set("values", js_sys::Float32Array::from(values).into());
        let _ = self.callback.call1(&JsValue::NULL, &event);
    }
}

fn samples_to_js(s: &Samples) -> Result<JsValue, JsError> {
    samples_with_evals_to_js(s, None)
}

/// `{values, n, shape}`, with `evals` (network evaluations spent) where the call counts them.
fn samples_with_evals_to_js(s: &Samples, evals: Option<usize>) -> Result<JsValue, JsError> {
    let out = js_sys::Object::new();
    let set = |k: &str, v: JsValue| {
        js_sys::Reflect::set(&out, &k.into(), &v)
            .map(|_| ())
            .map_err(|_| JsError::new("building the result"))
    };
    set(
        "values",
        js_sys::Float32Array::from(s.values.as_slice()).into(),
    )?;
    set("n", (s.n as u32).into())?;
    set("shape", to_js(&s.shape)?)?;
    if let Some(evals) = evals {
        set("evals", (evals as u32).into())?;
    }
    Ok(out.into())
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
