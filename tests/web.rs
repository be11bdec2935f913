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
    match common::gpu_sweep_async(&mut gpu).await {
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

/// The fast CPU backend built for wasm32 with SIMD128 matches the reference op by op and on the
/// golden tensors of every shipped model.
#[wasm_bindgen_test]
async fn fast_cpu_matches_the_reference_in_wasm() {
    let mut fast = scorelab::FastCpu::default();
    if let Err(failures) = common::run_sweep(&mut fast).await {
        panic!("the fast CPU backend and the reference disagree in wasm:\n{failures}");
    }
    for (name, model, golden) in common::MODELS {
        match common::check_golden(&mut fast, model, golden, 1e-4).await {
            Ok(lines) => lines
                .iter()
                .for_each(|l| web_sys::console::log_1(&format!("{name} wasm fast cpu {l}").into())),
            Err(e) => panic!("{name} on the fast CPU backend in wasm:\n{e}"),
        }
    }
}

/// The browser build reproduces the native reference runs (same seeds, same samples), on WebGPU,
/// on the reference backend compiled to wasm and on the fast CPU backend (SIMD128).
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
        let (_, fast) = common::sampler_run(&mut scorelab::FastCpu::default(), i)
            .await
            .unwrap();
        let fast_diff = common::compare(
            &format!("{name} wasm fast cpu"),
            &fast,
            want,
            0.0,
            1e-3 * scale,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        web_sys::console::log_1(
            &format!(
                "{name}: max |diff| vs native: wasm cpu {cpu_diff:.2e}, webgpu {gpu_diff:.2e}, wasm fast cpu {fast_diff:.2e}"
            )
            .into(),
        );
    }
}

/// Super-resolution and deblurring of a digit on WebGPU: the same results as the fast CPU
/// backend in wasm, and projection reproduces the measurement.
#[wasm_bindgen_test]
async fn restoring_on_webgpu_matches_the_cpu() {
    use scorelab::lab::{RestoreRequest, Session, Task};
    use scorelab::sampler::{Method, SamplerOptions, Silent};
    async fn run<B: scorelab::Backend>(be: B, task: Task) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut s = Session::new(be);
        s.load_model("digits", common::MODELS[1].1).unwrap();
        // A blob of ink on black: any image will do.
        let x: Vec<f32> = (0..32 * 32)
            .map(|i| {
                if (i / 32usize).abs_diff(16) < 6 && (i % 32).abs_diff(14) < 3 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let y = s.measure("digits", task, 0.0, &x, 0).await.unwrap().values;
        let req = RestoreRequest {
            task,
            sampler: SamplerOptions {
                method: Method::Ddpm,
                steps: Some(6),
                ..Default::default()
            },
            seed: 2,
            ..Default::default()
        };
        let out = s
            .restore("digits", &req, &y, None, &mut Silent)
            .await
            .unwrap()
            .values;
        let again = s
            .measure("digits", task, 0.0, &out, 0)
            .await
            .unwrap()
            .values;
        (out, y, again)
    }
    for task in [Task::Superres { factor: 4 }, Task::Deblur { width: 1.0 }] {
        let (gpu_out, y, again) = run(gpu().await, task).await;
        let (cpu_out, _, _) = run(scorelab::FastCpu::default(), task).await;
        let diff = common::compare(&format!("{task:?}"), &gpu_out, &cpu_out, 0.0, 2e-3)
            .unwrap_or_else(|e| panic!("{e}"));
        let rms = (again
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            / y.len() as f32)
            .sqrt();
        web_sys::console::log_1(
            &format!("{task:?}: webgpu vs cpu max |diff| {diff:.2e}, rms of A x - y {rms:.2e}")
                .into(),
        );
        if let Task::Superres { .. } = task {
            assert!(rms < 1e-5, "projection keeps the measurement: {rms}");
        }
    }
}

/// The loader's fuzz slice in the browser (32-bit sizes): mutated weights files load or are
/// refused, never panic (a panic here fails the test), and nothing NaN comes back as a sample.
#[wasm_bindgen_test]
async fn mutated_weights_files_are_refused_cleanly_in_wasm() {
    let toy: &[u8] = include_bytes!("../models/toy2d.safetensors");
    let mut rng = scorelab::rng::Rng::new(2);
    let (mut sampled, mut refused) = (0, 0);
    for _ in 0..10_000 {
        let (bytes, _) = common::mutate::mutate(toy, &mut rng);
        match common::mutate::load_and_step(&bytes).await {
            Ok(()) => sampled += 1,
            Err(_) => refused += 1,
        }
    }
    web_sys::console::log_1(
        &format!("10000 mutated files in wasm: {sampled} sampled, {refused} refused, no panic")
            .into(),
    );
}

/// Every public method of the wasm API, given wrong types, unknown option keys, NaN, huge
/// batches, wrong lengths or an unknown model, throws an `Error` that names the parameter at
/// fault; the lab keeps working afterwards.
#[wasm_bindgen_test]
async fn the_wasm_api_names_every_wrong_argument() {
    use js_sys::{Array, Float32Array, Function, Uint8Array};
    use scorelab::web::{open_lab, to_rgba};
    use wasm_bindgen::{JsError, JsValue};

    fn message(r: Result<JsValue, JsError>) -> String {
        match r {
            Ok(_) => "accepted".into(),
            Err(e) => js_sys::Error::from(JsValue::from(e)).message().into(),
        }
    }
    fn json(s: &str) -> JsValue {
        js_sys::JSON::parse(s).unwrap()
    }
    let f32s = |v: &[f32]| JsValue::from(Float32Array::from(v));
    let s = |v: &str| JsValue::from_str(v);
    let n = |v: f64| JsValue::from_f64(v);
    let noop: JsValue = Function::new_no_args("return undefined").into();
    let toy: &[u8] = include_bytes!("../models/toy2d.safetensors");

    let mut lab = open_lab(s("cpu")).await.unwrap();
    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    let mut check = |label: &'static str, got: String, want: &'static str| {
        cases.push((label, got, want));
    };
    check(
        "open_lab backend 3",
        message(open_lab(n(3.0)).await.map(JsValue::from)),
        "parameter backend",
    );
    check(
        "open_lab backend gpu",
        message(open_lab(s("gpu")).await.map(JsValue::from)),
        "parameter backend",
    );
    check(
        "load_model name",
        message(lab.load_model(n(1.0), Uint8Array::from(toy).into())),
        "parameter name",
    );
    check(
        "load_model bytes as string",
        message(lab.load_model(s("toy"), s("abc"))),
        "parameter bytes",
    );
    check(
        "load_model garbage",
        message(lab.load_model(s("toy"), Uint8Array::from(&b"garbage!"[..]).into())),
        "weights",
    );
    lab.load_model(s("toy"), Uint8Array::from(toy).into())
        .unwrap();
    let obj = |v: &str| json(v);
    check(
        "sample model",
        message(lab.sample(JsValue::NULL, obj("{}"), noop.clone()).await),
        "parameter model",
    );
    check(
        "sample unknown model",
        message(lab.sample(s("nope"), obj("{}"), noop.clone()).await),
        "\"nope\" is not loaded",
    );
    check(
        "sample options type",
        message(lab.sample(s("toy"), n(5.0), noop.clone()).await),
        "sample options",
    );
    check(
        "sample unknown key",
        message(
            lab.sample(s("toy"), obj(r#"{"sampler": {"stepz": 3}}"#), noop.clone())
                .await,
        ),
        "sampler",
    );
    check(
        "sample huge batch",
        message(
            lab.sample(s("toy"), obj(r#"{"n": 1000000000}"#), noop.clone())
                .await,
        ),
        "parameter n",
    );
    check(
        "sample progress",
        message(lab.sample(s("toy"), obj("{}"), s("not a function")).await),
        "parameter progress",
    );
    check(
        "eps x as string",
        message(
            lab.eps(s("toy"), s("abc"), n(0.5), JsValue::UNDEFINED)
                .await
                .map(JsValue::from),
        ),
        "parameter x",
    );
    check(
        "eps x length",
        message(
            lab.eps(s("toy"), f32s(&[0.0; 3]), n(0.5), JsValue::UNDEFINED)
                .await
                .map(JsValue::from),
        ),
        "parameter x",
    );
    check(
        "eps x NaN",
        message(
            lab.eps(s("toy"), f32s(&[f32::NAN, 0.0]), n(0.5), JsValue::UNDEFINED)
                .await
                .map(JsValue::from),
        ),
        "parameter x",
    );
    check(
        "eps t NaN",
        message(
            lab.eps(s("toy"), f32s(&[0.0; 2]), n(f64::NAN), JsValue::UNDEFINED)
                .await
                .map(JsValue::from),
        ),
        "parameter t",
    );
    check(
        "eps t string",
        message(
            lab.eps(s("toy"), f32s(&[0.0; 2]), s("0.5"), JsValue::UNDEFINED)
                .await
                .map(JsValue::from),
        ),
        "parameter t",
    );
    check(
        "eps unknown key",
        message(
            lab.eps(s("toy"), f32s(&[0.0; 2]), n(0.5), obj(r#"{"klass": 1}"#))
                .await
                .map(JsValue::from),
        ),
        "klass",
    );
    check(
        "inpaint images null",
        message(
            lab.inpaint(
                s("toy"),
                JsValue::NULL,
                f32s(&[1.0; 2]),
                obj("{}"),
                noop.clone(),
            )
            .await,
        ),
        "parameter images",
    );
    check(
        "inpaint mask length",
        message(
            lab.inpaint(
                s("toy"),
                f32s(&[0.0; 2]),
                f32s(&[1.0; 5]),
                obj("{}"),
                noop.clone(),
            )
            .await,
        ),
        "parameter mask",
    );
    check(
        "colorize images length",
        message(
            lab.colorize(s("toy"), f32s(&[0.0; 5]), obj("{}"), noop.clone())
                .await,
        ),
        "parameter images",
    );
    check(
        "restore on points",
        message(
            lab.restore(
                s("toy"),
                f32s(&[0.0; 2]),
                JsValue::NULL,
                obj("{}"),
                noop.clone(),
            )
            .await,
        ),
        "not an image model",
    );
    check(
        "restore unknown key",
        message(
            lab.restore(
                s("toy"),
                f32s(&[0.0; 2]),
                JsValue::NULL,
                obj(r#"{"tsk": 1}"#),
                noop.clone(),
            )
            .await,
        ),
        "tsk",
    );
    check(
        "restore mask type",
        message(
            lab.restore(s("toy"), f32s(&[0.0; 2]), s("all"), obj("{}"), noop.clone())
                .await,
        ),
        "parameter mask",
    );
    check(
        "measure task kind",
        message(
            lab.measure(
                s("toy"),
                obj(r#"{"kind": "zoom"}"#),
                n(0.0),
                f32s(&[0.0; 2]),
                n(0.0),
            )
            .await,
        ),
        "zoom",
    );
    let array = Array::of2(&n(1.0), &s("a"));
    check(
        "transport values entry",
        message(
            lab.transport(
                s("toy"),
                array.into(),
                JsValue::TRUE,
                obj("{}"),
                noop.clone(),
            )
            .await,
        ),
        "parameter values[1]",
    );
    check(
        "transport encode",
        message(
            lab.transport(s("toy"), f32s(&[0.0; 2]), s("yes"), obj("{}"), noop.clone())
                .await,
        ),
        "parameter encode",
    );
    check(
        "transport values Inf",
        message(
            lab.transport(
                s("toy"),
                f32s(&[f32::INFINITY, 0.0]),
                JsValue::TRUE,
                obj("{}"),
                noop.clone(),
            )
            .await,
        ),
        "parameter values[0]",
    );
    check(
        "interpolate positions",
        message(
            lab.interpolate(
                s("toy"),
                f32s(&[0.0; 2]),
                f32s(&[0.0; 2]),
                s("abc"),
                obj("{}"),
                noop.clone(),
            )
            .await,
        ),
        "parameter positions",
    );
    check(
        "interpolate a length",
        message(
            lab.interpolate(
                s("toy"),
                f32s(&[0.0; 3]),
                f32s(&[0.0; 2]),
                f32s(&[0.5]),
                obj("{}"),
                noop.clone(),
            )
            .await,
        ),
        "parameter a",
    );
    check(
        "interpolate position NaN",
        message(
            lab.interpolate(
                s("toy"),
                f32s(&[0.0; 2]),
                f32s(&[0.0; 2]),
                f32s(&[f32::NAN]),
                obj("{}"),
                noop.clone(),
            )
            .await,
        ),
        "parameter positions[0]",
    );
    check(
        "seed_latent seed -1",
        message(lab.seed_latent(s("toy"), n(-1.0)).map(JsValue::from)),
        "parameter seed",
    );
    check(
        "seed_latent seed 1.5",
        message(lab.seed_latent(s("toy"), n(1.5)).map(JsValue::from)),
        "parameter seed",
    );
    check(
        "likelihood class string",
        message(
            lab.likelihood(
                s("toy"),
                f32s(&[0.0; 2]),
                obj("{}"),
                s("x"),
                n(0.0),
                noop.clone(),
            )
            .await,
        ),
        "parameter class",
    );
    check(
        "likelihood class 99",
        message(
            lab.likelihood(
                s("toy"),
                f32s(&[0.0; 2]),
                obj("{}"),
                n(99.0),
                n(0.0),
                noop.clone(),
            )
            .await,
        ),
        "class",
    );
    check(
        "likelihood seed NaN",
        message(
            lab.likelihood(
                s("toy"),
                f32s(&[0.0; 2]),
                obj("{}"),
                JsValue::NULL,
                n(f64::NAN),
                noop.clone(),
            )
            .await,
        ),
        "parameter seed",
    );
    check(
        "density_grid size",
        message(
            lab.density_grid(
                s("toy"),
                obj(r#"{"size": 1000}"#),
                JsValue::NULL,
                noop.clone(),
            )
            .await,
        ),
        "size",
    );
    check(
        "density_grid class",
        message(
            lab.density_grid(s("toy"), obj("{}"), obj("[]"), noop.clone())
                .await,
        ),
        "parameter class",
    );
    check(
        "to_rgba channels",
        message(
            to_rgba(f32s(&[0.0; 4]), n(2.0), n(2.0), n(2.0))
                .map(|v| Uint8Array::from(&v[..]).into()),
        ),
        "channels",
    );
    check(
        "to_rgba height string",
        message(
            to_rgba(f32s(&[0.0; 4]), s("2"), n(2.0), n(1.0))
                .map(|v| Uint8Array::from(&v[..]).into()),
        ),
        "parameter height",
    );
    let mut failures = Vec::new();
    for (label, got, want) in &cases {
        web_sys::console::log_1(&format!("{label}: {got}").into());
        if !got.contains(want) {
            failures.push(format!("{label}: want {want:?} in {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The lab still works.
    let out = lab
        .sample(
            s("toy"),
            obj(r#"{"sampler": {"method": "ddim", "steps": 2}, "n": 3}"#),
            noop,
        )
        .await
        .unwrap();
    let values = js_sys::Reflect::get(&out, &s("values")).unwrap();
    assert_eq!(Float32Array::from(values).length(), 6);
}

#[wasm_bindgen::prelude::wasm_bindgen(module = "/www/gpu_counters.js")]
extern "C" {
    fn count_webgpu_calls();
    fn webgpu_counts() -> String;
}

fn counts() -> std::collections::BTreeMap<String, f64> {
    serde_json::from_str(&webgpu_counts()).unwrap()
}

/// Calls made since `before` (counts are whole numbers).
fn since(
    before: &std::collections::BTreeMap<String, f64>,
) -> std::collections::BTreeMap<String, i64> {
    counts()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("submit") || k == "submit")
        .map(|(k, v)| (k.clone(), (v - before[&k]) as i64))
        .collect()
}

/// The steady state of the GPU engine, counted on Chromium's WebGPU: a network evaluation makes
/// no buffer and no bind group and is one submit; a sampler run without previews submits once
/// per step and never lets the device run dry before its last step. Dispatches are counted with
/// the fused attention a hardware GPU gets (SwiftShader's own choice adds 2 per attention block).
#[wasm_bindgen_test]
async fn steady_state_evaluations_create_nothing_and_steps_do_not_drain() {
    use scorelab::gpu::KernelChoices;
    use scorelab::lab::{SampleRequest, Session};
    use scorelab::sampler::{Method, SamplerOptions, Silent};
    count_webgpu_calls();
    let mut g = gpu().await;
    g.set_kernels(KernelChoices {
        fused_attention: true,
        ..g.kernels()
    });
    let mut s = Session::new(g);
    s.load_model("digits", common::MODELS[1].1).unwrap();
    let x = vec![0.25f32; 2 * 32 * 32];
    for batch in [1usize, 8] {
        let x = vec![0.25f32; batch * 32 * 32];
        s.eps("digits", &x, 0.5, Some(3), 1.0).await.unwrap(); // records the evaluation
        let before = counts();
        let evals = 4;
        for i in 0..evals {
            s.eps("digits", &x, 0.2 + 0.1 * i as f64, Some(3), 1.0)
                .await
                .unwrap();
        }
        let d = since(&before);
        web_sys::console::log_1(&format!("batch {batch}, {evals} evaluations: {d:?}").into());
        assert_eq!(d["createBuffer"], 0, "buffers made per evaluation: {d:?}");
        assert_eq!(
            d["createBindGroup"], 0,
            "bind groups made per evaluation: {d:?}"
        );
        assert_eq!(d["submit"], evals, "one submit per evaluation: {d:?}");
        assert_eq!(d["writeBuffer"], evals, "one upload per evaluation: {d:?}");
        assert_eq!(d["dispatchWorkgroups"], 72 * evals, "dispatches: {d:?}");
    }
    drop(x);
    let steps = 10;
    let req = SampleRequest {
        n: 4,
        seed: 3,
        sampler: SamplerOptions {
            method: Method::Ddim,
            steps: Some(steps),
            ..Default::default()
        },
        ..Default::default()
    };
    s.sample("digits", &req, &mut Silent).await.unwrap(); // records batch 4
    let before = counts();
    s.sample("digits", &req, &mut Silent).await.unwrap();
    let d = since(&before);
    web_sys::console::log_1(&format!("DDIM {steps} steps, no previews: {d:?}").into());
    let steps = steps as i64;
    // One submit per step plus the final denoising step's read.
    assert!(d["submit"] <= steps + 1, "{d:?}");
    assert_eq!(d["createBuffer"], 0, "{d:?}");
    assert!(d["drains"] <= 1, "the device ran dry between steps: {d:?}");
    assert_eq!(d["mapAsync"], 1, "{d:?}");
}

/// Training a 2-D model through the wasm API on the CPU lab: the loss falls, the exported file
/// loads as a model, and sampling it lands on the training data (three clusters).
#[wasm_bindgen_test]
async fn a_2d_model_trains_in_the_browser() {
    use js_sys::{Float32Array, Function, Uint8Array};
    use scorelab::web::open_lab;
    use wasm_bindgen::JsValue;
    let centres = [(-2.0f32, 0.0f32), (2.0, 0.0), (0.0, 2.5)];
    let mut rng = scorelab::rng::Rng::new(5);
    let points: Vec<f32> = (0..1500)
        .flat_map(|i| {
            let (x, y) = centres[i % 3];
            [x + 0.2 * rng.normal() as f32, y + 0.2 * rng.normal() as f32]
        })
        .collect();
    let mut lab = open_lab(JsValue::from_str("cpu")).await.unwrap();
    let opts = js_sys::JSON::parse(r#"{"steps": 1500, "seed": 3}"#).unwrap();
    lab.train_start(Float32Array::from(points.as_slice()).into(), opts)
        .unwrap();
    let mut means = Vec::new();
    for _ in 0..3 {
        let status = lab.train_steps(JsValue::from_f64(500.0)).await.unwrap();
        let losses: Vec<f64> = serde_wasm_bindgen::from_value(
            js_sys::Reflect::get(&status, &"losses".into()).unwrap(),
        )
        .unwrap();
        means.push(losses.iter().sum::<f64>() / losses.len() as f64);
    }
    web_sys::console::log_1(&format!("mean loss per 500 steps: {means:?}").into());
    assert!(
        means[2] < 0.8 * means[0],
        "the loss did not fall: {means:?}"
    );
    let bytes = lab
        .train_export(JsValue::from_str("trained"))
        .await
        .unwrap();
    assert!(Uint8Array::from(bytes).length() > 1000);
    let noop: JsValue = Function::new_no_args("return undefined").into();
    let req =
        js_sys::JSON::parse(r#"{"sampler": {"method": "sde", "steps": 200}, "n": 300}"#).unwrap();
    let out = lab
        .sample(JsValue::from_str("trained"), req, noop)
        .await
        .unwrap();
    let values = Float32Array::from(js_sys::Reflect::get(&out, &"values".into()).unwrap()).to_vec();
    let near = values
        .chunks(2)
        .filter(|p| {
            centres
                .iter()
                .any(|(x, y)| (p[0] - x).hypot(p[1] - y) < 0.8)
        })
        .count();
    web_sys::console::log_1(&format!("{near} of 300 samples within 0.8 of a centre").into());
    assert!(near >= 270, "only {near} of 300 samples near the data");
}
