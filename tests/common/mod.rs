//! What the native tests (lavapipe) and the browser tests (Chromium's WebGPU) share: the
//! GPU-versus-CPU kernel sweep (`cases`, `sweep`), the golden tensors and reference sampler runs
//! (`golden`), and the weights-file mutations of the fuzz tests (`mutate`).

#![allow(dead_code)]

pub mod cases;
pub mod golden;
pub mod mutate;
pub mod sweep;

// Each test uses some of these; the names stay where the tests have always found them.
#[allow(unused_imports)]
pub use cases::{sweep, variant_cases, Case};
#[allow(unused_imports)]
pub use golden::*;
#[allow(unused_imports)]
pub use sweep::*;

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
