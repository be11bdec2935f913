//! The option and result objects of the API as TypeScript, for the generated `scorelab.d.ts`.

use wasm_bindgen::prelude::*;

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
