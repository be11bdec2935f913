//! scorelab: score-based diffusion models on WebGPU, with a CPU twin.
//!
//! Layers, bottom up: `ops` (op parameters and shape checks) -> `reference` (CPU oracle) and
//! `gpu` (WGSL kernels on wgpu) and `fast` (the CPU engine: f32 GEMM) -> `backend` (the interface
//! networks and samplers use).

pub mod backend;
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
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use backend::{Backend, Channels, Cpu, CpuTensor};
pub use error::{Error, Result};
pub use fast::FastCpu;
pub use gpu::{Gpu, GpuContext, GpuTensor};
pub use model::{ModelConfig, Network};
