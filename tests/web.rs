//! Browser kernel tests: the same GPU-versus-CPU sweep as `tests/kernels.rs`, on Chromium's WebGPU.
//! Run with `wasm-pack test --headless --chrome` (see build.sh). A browser without an adapter fails.

#![cfg(target_arch = "wasm32")]

mod common;

use std::rc::Rc;

use scorelab::{Gpu, GpuContext};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

pub async fn gpu() -> Gpu {
    let ctx = GpuContext::new()
        .await
        .unwrap_or_else(|e| panic!("the browser offers no WebGPU adapter: {e}"));
    Gpu::new(Rc::new(ctx))
}

#[wasm_bindgen_test]
async fn gpu_kernels_match_cpu_reference() {
    let mut gpu = gpu().await;
    web_sys::console::log_1(&format!("adapter: {:?}", gpu.context().report).into());
    match common::run_sweep(&mut gpu).await {
        Ok(report) => report
            .iter()
            .for_each(|l| web_sys::console::log_1(&l.into())),
        Err(failures) => panic!("GPU and CPU disagree:\n{failures}"),
    }
}

#[wasm_bindgen_test]
async fn shipped_models_match_golden_on_webgpu() {
    let mut gpu = gpu().await;
    for (name, model, golden) in common::MODELS {
        match common::check_golden(&mut gpu, model, golden, 1e-3).await {
            Ok(lines) => lines
                .iter()
                .for_each(|l| web_sys::console::log_1(&format!("{name} webgpu {l}").into())),
            Err(e) => panic!("{name} on WebGPU:\n{e}"),
        }
    }
}

/// The browser build reproduces the native reference runs (same seeds, same samples), on WebGPU
/// and on the CPU backend compiled to wasm.
#[wasm_bindgen_test]
async fn samplers_match_the_native_reference() {
    let reference: std::collections::BTreeMap<String, Vec<f32>> =
        serde_json::from_str(include_str!("golden/sampler_runs.json")).unwrap();
    let mut gpu = gpu().await;
    for i in 0..common::SAMPLER_RUNS.len() {
        let name = common::run_name(i);
        let want = &reference[&name];
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let (_, cpu) = common::sampler_run(&mut scorelab::Cpu, i).await.unwrap();
        let cpu_diff = common::compare(&format!("{name} wasm cpu"), &cpu, want, 0.0, 1e-4 * scale)
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, webgpu) = common::sampler_run(&mut gpu, i).await.unwrap();
        let gpu_diff = common::compare(&format!("{name} webgpu"), &webgpu, want, 0.0, 1e-3 * scale)
            .unwrap_or_else(|e| panic!("{e}"));
        web_sys::console::log_1(
            &format!(
                "{name}: max |diff| vs native: wasm cpu {cpu_diff:.2e}, webgpu {gpu_diff:.2e}"
            )
            .into(),
        );
    }
}

/// The loader's fuzz slice in the browser (32-bit sizes): mutated weights files load or are
/// refused, never panic (a panic here fails the test), and nothing NaN comes back as a sample.
#[wasm_bindgen_test]
async fn mutated_weights_files_are_refused_cleanly_in_wasm() {
    use scorelab::lab::{SampleRequest, Session};
    use scorelab::sampler::{Method, SamplerOptions, Silent};
    let toy: &[u8] = include_bytes!("../models/toy2d.safetensors");
    let mut rng = scorelab::rng::Rng::new(2);
    let (mut loaded, mut refused) = (0, 0);
    for _ in 0..10_000 {
        let (bytes, _) = common::mutate::mutate(toy, &mut rng);
        let mut lab = Session::new(scorelab::Cpu);
        if lab.load_model("m", &bytes).is_err() {
            refused += 1;
            continue;
        }
        let req = SampleRequest {
            sampler: SamplerOptions {
                method: Method::Ddim,
                steps: Some(1),
                ..Default::default()
            },
            n: 2,
            ..Default::default()
        };
        match lab.sample("m", &req, &mut Silent).await {
            Ok(s) => assert!(s.values.iter().all(|v| v.is_finite())),
            Err(_) => refused += 1,
        }
        loaded += 1;
    }
    web_sys::console::log_1(
        &format!("10000 mutated files in wasm: {loaded} loaded, {refused} refused, no panic")
            .into(),
    );
}
