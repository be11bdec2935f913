#![cfg(not(target_arch = "wasm32"))]
//! Recorded evaluations on the GPU: a replay computes exactly what the unrecorded forward pass
//! computes, outputs of several replays stay valid together, memory stays flat once recorded,
//! and replacing a model lets its recordings go. Sampling with steps kept in flight (no drain per
//! step) matches the CPU reference.

mod common;

use scorelab::lab::{SampleRequest, Session};
use scorelab::model::Network;
use scorelab::sampler::{Method, SamplerOptions, Silent};
use scorelab::{Backend, Cpu, Gpu};

const DIGITS: &[u8] = include_bytes!("../models/digits.safetensors");

fn inputs(be: &mut Gpu, n: usize, seed: u32) -> Vec<<Gpu as Backend>::Tensor> {
    let x = be.randn(&[n, 32, 32, 1], seed, 0).unwrap();
    let t: Vec<f32> = (0..n).map(|i| 0.1 + 0.8 * i as f32 / n as f32).collect();
    let labels: Vec<f32> = (0..n).map(|i| (i % 11) as f32).collect();
    vec![
        x,
        be.upload(&t, &[n]).unwrap(),
        be.upload(&labels, &[n]).unwrap(),
    ]
}

fn unrecorded(be: &mut Gpu, net: &Network<Gpu>, ins: &[<Gpu as Backend>::Tensor]) -> Vec<f32> {
    let e = net
        .forward_with_taps(be, &ins[0], &ins[1], &ins[2], None)
        .unwrap();
    pollster::block_on(be.read(&e)).unwrap()
}

#[test]
fn replays_match_the_unrecorded_forward_pass() {
    let Some(mut gpu) = common::gpu_or_skip() else {
        return;
    };
    let net = Network::load(&mut gpu, DIGITS).unwrap();
    let a = inputs(&mut gpu, 3, 1);
    let b = inputs(&mut gpu, 3, 2);
    // Two replays queued before either is read: each output has its own buffer.
    let ea = net.forward(&mut gpu, &a[0], &a[1], &a[2]).unwrap();
    let eb = net.forward(&mut gpu, &b[0], &b[1], &b[2]).unwrap();
    let (ra, rb) = (
        pollster::block_on(gpu.read(&ea)).unwrap(),
        pollster::block_on(gpu.read(&eb)).unwrap(),
    );
    assert_eq!(ra, unrecorded(&mut gpu, &net, &a), "first replay");
    assert_eq!(rb, unrecorded(&mut gpu, &net, &b), "second replay");
    assert_ne!(ra, rb);
    let shapes: [&[usize]; 3] = [&[3, 32, 32, 1], &[3], &[3]];
    let dispatches = gpu.planned_dispatches(net.id, &shapes).unwrap();
    eprintln!("digits: {dispatches} dispatches per recorded evaluation");
    // Attention by parts (software adapters) is two more dispatches in each of 4 blocks.
    let want = if gpu.kernels().fused_attention {
        72
    } else {
        80
    };
    assert_eq!(dispatches, want, "{:?}", gpu.kernels());
    assert_eq!(gpu.memory().plans, 1);

    // Steady state: no new buffers however many evaluations follow.
    drop((ea, eb));
    let mut after = Vec::new();
    for seed in 3..7 {
        let c = inputs(&mut gpu, 3, seed);
        let e = net.forward(&mut gpu, &c[0], &c[1], &c[2]).unwrap();
        pollster::block_on(gpu.read(&e)).unwrap();
        after.push(gpu.memory());
    }
    assert!(
        after.windows(2).all(|w| w[0] == w[1]),
        "memory after more evaluations: {after:?}"
    );

    // Another batch size is another recording.
    let d = inputs(&mut gpu, 1, 7);
    let ed = net.forward(&mut gpu, &d[0], &d[1], &d[2]).unwrap();
    let rd = pollster::block_on(gpu.read(&ed)).unwrap();
    assert_eq!(rd, unrecorded(&mut gpu, &net, &d));
    assert_eq!(gpu.memory().plans, 2);

    // Timed kernel by kernel, the replay computes the same and every dispatch is counted.
    gpu.time_kernels(true);
    let et = net.forward(&mut gpu, &d[0], &d[1], &d[2]).unwrap();
    assert_eq!(
        pollster::block_on(gpu.read(&et)).unwrap(),
        rd,
        "timed replay"
    );
    let times = gpu.kernel_times();
    gpu.time_kernels(false);
    let counted: usize = times.iter().map(|t| t.2).sum();
    assert_eq!(counted, want, "{times:?}");
    assert!(times.iter().all(|t| t.1 >= 0.0) && times.windows(2).all(|w| w[0].1 >= w[1].1));
    gpu.forget(net.id);
    assert_eq!(gpu.memory().plans, 0);
    assert_eq!(gpu.memory().plan_bytes, 0);
}

#[test]
fn replacing_a_model_lets_its_recordings_go() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let mut s = Session::new(gpu);
    s.load_model("digits", DIGITS).unwrap();
    let req = SampleRequest {
        n: 2,
        sampler: SamplerOptions {
            method: Method::Ddim,
            steps: Some(3),
            ..Default::default()
        },
        ..Default::default()
    };
    pollster::block_on(s.sample("digits", &req, &mut Silent)).unwrap();
    let m = s.be.memory();
    assert_eq!(m.plans, 1);
    assert!(m.plan_bytes > 0);
    s.load_model("digits", DIGITS).unwrap();
    assert_eq!(
        s.be.memory().plans,
        0,
        "the old model's recording is let go"
    );
}

/// DDIM and Heun runs without previews keep steps in flight; the result still matches the CPU.
#[test]
fn paced_runs_match_the_cpu_reference() {
    let Some(gpu) = common::gpu_or_skip() else {
        return;
    };
    let mut on_gpu = Session::new(gpu);
    let mut on_cpu = Session::new(Cpu);
    on_gpu.load_model("digits", DIGITS).unwrap();
    on_cpu.load_model("digits", DIGITS).unwrap();
    for method in [Method::Ddim, Method::Heun, Method::Dpm2m] {
        let req = SampleRequest {
            n: 2,
            seed: 11,
            class: Some(4),
            guidance: 2.0,
            sampler: SamplerOptions {
                method,
                steps: Some(5),
                ..Default::default()
            },
            classifier: None,
        };
        let g = pollster::block_on(on_gpu.sample("digits", &req, &mut Silent)).unwrap();
        let c = pollster::block_on(on_cpu.sample("digits", &req, &mut Silent)).unwrap();
        let scale = c.values.iter().fold(1f32, |m, v| m.max(v.abs()));
        let d = common::compare(method.name(), &g.values, &c.values, 0.0, 1e-3 * scale).unwrap();
        eprintln!("{}: max |gpu - cpu| = {d:.2e}", method.name());
    }
}

/// Weights stored as f16 (where the device has shader-f16) give the f32 path's results bit for
/// bit: the shipped weights are f16, and every load converts to f32 before the f32 arithmetic.
#[test]
fn f16_weights_match_f32_weights_exactly() {
    let Some(mut half) = common::gpu_or_skip() else {
        return;
    };
    if half.set_half_weights(true).is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI's adapter (lavapipe) has shader-f16"
        );
        eprintln!("skipping: the adapter has no shader-f16");
        return;
    }
    let mut full = common::gpu_or_skip().unwrap();
    full.set_half_weights(false).unwrap();
    for (name, model, _) in common::MODELS {
        let h = Network::load(&mut half, model).unwrap();
        let f = Network::load(&mut full, model).unwrap();
        let n = 3;
        let mut shape = vec![n];
        shape.extend(h.config.sample_shape());
        let per: usize = shape[1..].iter().product();
        let x: Vec<f32> = (0..n * per).map(|i| (i as f32 * 0.37).sin()).collect();
        let t = [0.2f32, 0.5, 0.9];
        let labels = [0f32, 1.0, 2.0];
        let run = |be: &mut Gpu, net: &Network<Gpu>| {
            let x = be.upload(&x, &shape).unwrap();
            let t = be.upload(&t, &[n]).unwrap();
            let l = be.upload(&labels, &[n]).unwrap();
            let e = net.forward(be, &x, &t, &l).unwrap();
            pollster::block_on(be.read(&e)).unwrap()
        };
        let (eh, ef) = (run(&mut half, &h), run(&mut full, &f));
        assert_eq!(eh, ef, "{name}: f16 and f32 weights differ");
        eprintln!("{name}: f16 weights, {} values identical to f32", eh.len());
    }
    assert!(half.memory().bytes < full.memory().bytes);
}
