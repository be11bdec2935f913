//! scorelab: score-based diffusion models on WebGPU, with a CPU twin.
//!
//! The layers, bottom up; each is written against the one below it only:
//!
//! - [`ops`]: op parameters and shape checks, shared by every backend.
//! - [`reference`](mod@reference) (the CPU oracle, f64 accumulation), [`fast`] (the CPU engine: our own SIMD
//!   GEMM, native and wasm) and [`gpu`] (WGSL kernels on wgpu, recorded and replayed
//!   evaluations): three implementations of every op.
//! - [`backend`]: the [`Backend`] interface networks and samplers are written against.
//! - [`model`]: the weights file and the networks built from its config.
//! - [`sampler`]: SDEs and schedules, the samplers, guidance, editing and inverse problems,
//!   written once against a denoiser (a network, or the exact score of a Gaussian mixture).
//! - [`lab`]: a [`lab::Session`] holds a backend and loaded models and answers requests; the
//!   wasm API (`web`, in the browser build) and the CLI are thin layers over it.
//!
//! Eight digits "7" on the fast CPU backend, with DPM-Solver++ in 10 steps:
//!
//! ```
//! # #[cfg(not(target_arch = "wasm32"))] // the example blocks on the future; the page awaits it
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use scorelab::lab::{SampleRequest, Session};
//! use scorelab::sampler::{Method, SamplerOptions, Silent};
//! use scorelab::FastCpu;
//!
//! let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/digits.safetensors"))?;
//! let mut lab = Session::new(FastCpu::default());
//! lab.load_model("digits", &bytes)?;
//! let request = SampleRequest {
//!     sampler: SamplerOptions { method: Method::Dpm2m, steps: Some(10), ..Default::default() },
//!     seed: 1,
//!     n: 8,
//!     class: Some(7),
//!     ..Default::default()
//! };
//! let samples = pollster::block_on(lab.sample("digits", &request, &mut Silent))?;
//! assert_eq!((samples.n, samples.shape.as_slice()), (8, &[32, 32, 1][..]));
//! assert!(samples.values.iter().all(|v| v.is_finite()));
//! # Ok(())
//! # }
//! # #[cfg(target_arch = "wasm32")]
//! # fn main() {}
//! ```

pub mod backend;
pub mod cpu;
pub mod error;
pub mod fast;
pub mod gpu;
pub mod image;
pub mod lab;
pub mod model;
pub mod ops;
pub mod reference;
pub mod rng;
pub mod sampler;
pub mod schedule;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use backend::{Backend, Channels};
pub use cpu::{Cpu, CpuTensor};
pub use error::{Error, Result};
pub use fast::FastCpu;
pub use gpu::{Gpu, GpuContext, GpuTensor};
pub use model::{ModelConfig, Network};
