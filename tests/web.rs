//! Browser kernel tests: the same GPU-versus-CPU sweep as `tests/kernels.rs`, on Chromium's WebGPU.
//! Run with `wasm-pack test --headless --chrome` (see build.sh). A browser without an adapter fails.

#![cfg(target_arch = "wasm32")]

mod common;

use std::rc::Rc;

use scorelab::{Gpu, GpuContext};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

pub async fn gpu() -> Gpu {
    let ctx = GpuContext::new().await.unwrap_or_else(|e| panic!("the browser offers no WebGPU adapter: {e}"));
    Gpu::new(Rc::new(ctx))
}

#[wasm_bindgen_test]
async fn gpu_kernels_match_cpu_reference() {
    let mut gpu = gpu().await;
    web_sys::console::log_1(&format!("adapter: {:?}", gpu.context().report).into());
    match common::run_sweep(&mut gpu).await {
        Ok(report) => report.iter().for_each(|l| web_sys::console::log_1(&l.into())),
        Err(failures) => panic!("GPU and CPU disagree:\n{failures}"),
    }
}

#[wasm_bindgen_test]
async fn shipped_models_match_golden_on_webgpu() {
    let mut gpu = gpu().await;
    for (name, model, golden) in common::MODELS {
        match common::check_golden(&mut gpu, model, golden, 1e-3).await {
            Ok(lines) => lines.iter().for_each(|l| web_sys::console::log_1(&format!("{name} webgpu {l}").into())),
            Err(e) => panic!("{name} on WebGPU:\n{e}"),
        }
    }
}
