#![cfg(not(target_arch = "wasm32"))]
//! Training in the engine: the backward passes against finite differences, runs that repeat bit
//! for bit, the GPU against the CPU, and models trained on a Gaussian mixture against its samples
//! (sliced Wasserstein distance) and its exact log-density (ODE likelihood).

mod common;

use scorelab::rng::Rng;
use scorelab::sampler::edit::{log_likelihood, LikelihoodOptions, Probe};
use scorelab::sampler::{sample, GaussianMixture, Guided, Method, SamplerOptions, Silent};
use scorelab::train::{
    loss_and_grads, Batch, Loss, Projection, ScoreMlp, SdeChoice, TrainOptions, Trainer,
};
use scorelab::{Backend, Cpu, FastCpu, Network};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

fn mixture() -> GaussianMixture {
    GaussianMixture {
        weights: vec![0.5, 0.3, 0.2],
        means: vec![vec![-1.5, 0.5], vec![1.5, 1.0], vec![0.2, -1.8]],
        vars: vec![vec![0.16, 0.09], vec![0.04, 0.25], vec![0.09, 0.09]],
        // Only the data distribution (t = 0) is used here.
        schedule: scorelab::sampler::Schedule::vp(0.1, 20.0, 1e-3, 1000),
    }
}

fn points(n: usize, seed: u64) -> Vec<f32> {
    mixture()
        .sample(n, &mut Rng::new(seed))
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

fn small(loss: Loss, sde: SdeChoice) -> TrainOptions {
    TrainOptions {
        loss,
        sde,
        width: 8,
        depth: 2,
        batch: 6,
        ..Default::default()
    }
}

/// Every parameter's gradient against central differences of the loss (f64-accumulated CPU
/// reference, a fixed batch), for both losses; SSM's gradient runs through the tangent.
#[test]
fn gradients_match_finite_differences() {
    for (loss, projection) in [
        (Loss::Dsm, Projection::Rademacher),
        (Loss::Ssm, Projection::Rademacher),
        (Loss::Ssm, Projection::Gaussian),
    ] {
        let mut be = Cpu;
        let opts = TrainOptions {
            projection,
            ..small(loss, SdeChoice::Vp)
        };
        let mut tr = Trainer::new(&mut be, &points(50, 1), &opts).unwrap();
        let batch: Batch = tr.draw_batch();
        let (_, grads) = block_on(loss_and_grads(&mut be, tr.net(), loss, &batch)).unwrap();
        let mut worst = 0f64;
        let mut checked = 0;
        for (p, g) in grads.iter().enumerate() {
            let g = block_on(be.read(g)).unwrap();
            let base = block_on(be.read(&tr.net().params[p].value)).unwrap();
            let shape = Cpu::shape(&tr.net().params[p].value).to_vec();
            // A few elements of every parameter.
            for i in (0..base.len()).step_by(base.len().div_ceil(5)) {
                let h = 1e-2f32;
                let mut at = |d: f32| {
                    let mut v = base.clone();
                    v[i] += d;
                    tr.net_mut().params[p].value = be.upload(&v, &shape).unwrap();
                    block_on(loss_and_grads(&mut be, tr.net(), loss, &batch))
                        .unwrap()
                        .0
                };
                let fd = (at(h) - at(-h)) / (2.0 * h as f64);
                tr.net_mut().params[p].value = be.upload(&base, &shape).unwrap();
                let err = (fd - g[i] as f64).abs() / (1e-3 + fd.abs().max(g[i].abs() as f64));
                assert!(
                    err < 2e-2,
                    "{loss:?} {projection:?} {} [{i}]: backward {} vs finite differences {fd}",
                    tr.net().params[p].name,
                    g[i]
                );
                worst = worst.max(err);
                checked += 1;
            }
        }
        eprintln!("{loss:?} {projection:?}: {checked} gradient elements, worst relative error {worst:.2e}");
    }
}

/// A stored tensor's (shape, values) in the runtime's layout.
type ToRuntime<'a> = &'a dyn Fn(&str, Vec<f32>) -> (Vec<usize>, Vec<f32>);

/// Both losses and every parameter's gradient against PyTorch autograd
/// (`python -m train.train_golden`: ScoreMLP width 8, depth 2, one fixed batch), on the CPU
/// reference, the fast CPU engine and the GPU.
#[test]
fn gradients_match_pytorch_autograd() {
    let bytes = std::fs::read("tests/golden/train_grads.safetensors").unwrap();
    let (tensors, _) = scorelab::model::file::read_tensors(&bytes).unwrap();
    let get = |name: &str| tensors[name].data.clone();
    // The network's parameters in its own order, matrices to the runtime's [in, out].
    let names: Vec<String> = ["embed.fc1", "embed.fc2", "in_proj"]
        .into_iter()
        .map(String::from)
        .chain((0..2).flat_map(|i| ["fc1", "temb", "fc2"].map(|p| format!("blocks.{i}.{p}"))))
        .chain(["out_proj".to_string()])
        .flat_map(|l| [format!("{l}.weight"), format!("{l}.bias")])
        .collect();
    let runtime = |name: &str, v: Vec<f32>| -> (Vec<usize>, Vec<f32>) {
        match tensors[name].shape[..] {
            [cout, cin] => {
                let mut w = vec![0f32; cin * cout];
                for o in 0..cout {
                    for i in 0..cin {
                        w[i * cout + o] = v[o * cin + i];
                    }
                }
                (vec![cin, cout], w)
            }
            _ => (tensors[name].shape.clone(), v),
        }
    };
    let values: Vec<(String, Vec<usize>, Vec<f32>)> = names
        .iter()
        .map(|n| {
            let (shape, v) = runtime(n, get(n));
            (n.clone(), shape, v)
        })
        .collect();
    let batch = Batch {
        x: get("batch.x"),
        t: get("batch.t"),
        target: get("batch.target"),
        sigma: get("batch.sigma"),
    };
    async fn check<B: Backend>(
        be: &mut B,
        what: &str,
        values: &[(String, Vec<usize>, Vec<f32>)],
        batch: &Batch,
        want: &dyn Fn(&str) -> Vec<f32>,
        runtime: ToRuntime<'_>,
    ) {
        let net = ScoreMlp::from_values(be, values, 2, 8, 2, 32, 1000.0).unwrap();
        for (loss, key) in [(Loss::Dsm, "dsm"), (Loss::Ssm, "ssm")] {
            let (value, grads) = loss_and_grads(be, &net, loss, batch).await.unwrap();
            let want_loss = want(&format!("loss.{key}"))[0] as f64;
            assert!(
                (value - want_loss).abs() < 1e-4 * (1.0 + want_loss.abs()),
                "{what} {key}: loss {value} vs PyTorch {want_loss}"
            );
            let mut worst = 0f32;
            for ((name, _, _), g) in values.iter().zip(&grads) {
                let got = be.read(g).await.unwrap();
                let (_, w) = runtime(name, want(&format!("grad.{key}.{name}")));
                let scale = w.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
                for (i, (a, b)) in got.iter().zip(&w).enumerate() {
                    let err = (a - b).abs() / scale;
                    worst = worst.max(err);
                    assert!(err < 1e-3, "{what} {key} {name}[{i}]: {a} vs PyTorch {b}");
                }
            }
            eprintln!("{what} {key}: loss {value:.6} (PyTorch {want_loss:.6}), worst gradient error {worst:.1e} of each tensor's largest");
        }
    }
    let want = |k: &str| get(k);
    block_on(check(
        &mut Cpu,
        "reference",
        &values,
        &batch,
        &want,
        &runtime,
    ));
    block_on(check(
        &mut FastCpu::default(),
        "fast cpu",
        &values,
        &batch,
        &want,
        &runtime,
    ));
    if let Some(mut gpu) = common::gpu_or_skip() {
        block_on(check(&mut gpu, "gpu", &values, &batch, &want, &runtime));
    }
}

/// The same options and data give the same run, bit for bit, and the same exported file.
#[test]
fn a_run_repeats_bit_for_bit() {
    let data = points(200, 2);
    let run = |loss| {
        let mut be = FastCpu::default();
        let mut tr = Trainer::new(&mut be, &data, &small(loss, SdeChoice::Subvp)).unwrap();
        for _ in 0..30 {
            block_on(tr.step(&mut be)).unwrap();
        }
        (
            tr.losses.clone(),
            block_on(tr.export(&mut be, "m")).unwrap(),
        )
    };
    for loss in [Loss::Dsm, Loss::Ssm] {
        let (a, b) = (run(loss), run(loss));
        assert_eq!(a.0, b.0, "{loss:?} losses");
        assert!(a.1 == b.1, "{loss:?}: the exported files differ");
    }
}

/// The fast CPU engine and the GPU (lavapipe here) train alike: the same losses within float
/// rounding over 20 steps, for both losses.
#[test]
fn gpu_training_matches_the_cpu() {
    let Some(mut gpu) = common::gpu_or_skip() else {
        return;
    };
    let data = points(200, 3);
    for loss in [Loss::Dsm, Loss::Ssm] {
        let opts = small(loss, SdeChoice::Ve);
        let mut cpu = FastCpu::default();
        let mut a = Trainer::new(&mut cpu, &data, &opts).unwrap();
        let mut b = Trainer::new(&mut gpu, &data, &opts).unwrap();
        for k in 0..20 {
            let (la, lb) = (
                block_on(a.step(&mut cpu)).unwrap(),
                block_on(b.step(&mut gpu)).unwrap(),
            );
            assert!(
                (la - lb).abs() < 1e-3 * (1.0 + la.abs()),
                "{loss:?} step {k}: cpu {la} gpu {lb}"
            );
        }
    }
}

/// Sliced Wasserstein-1 distance between two equal-size 2-D samples over `k` fixed directions.
fn sliced_wasserstein(a: &[f32], b: &[f32], k: usize) -> f64 {
    (0..k)
        .map(|j| {
            let th = std::f64::consts::PI * j as f64 / k as f64;
            let proj = |x: &[f32]| {
                let mut p: Vec<f64> = x
                    .chunks(2)
                    .map(|q| q[0] as f64 * th.cos() + q[1] as f64 * th.sin())
                    .collect();
                p.sort_by(f64::total_cmp);
                p
            };
            let (pa, pb) = (proj(a), proj(b));
            pa.iter().zip(&pb).map(|(x, y)| (x - y).abs()).sum::<f64>() / pa.len() as f64
        })
        .sum::<f64>()
        / k as f64
}

/// Trains on a Gaussian mixture with each loss under each SDE; samples (reverse SDE, 500 steps)
/// must be within 1.5x of the true-vs-true sliced Wasserstein floor, and the ODE log-likelihood of
/// held-out points within 0.1 nats of the exact log-density on average.
#[test]
fn training_on_a_mixture_learns_it() {
    const N: usize = 4000;
    const STEPS: usize = 4000;
    let data = points(20_000, 10);
    let truth = points(N, 11);
    // The floor: the distance between two independent samples of the truth, averaged over 4 pairs.
    let floor = (0..4)
        .map(|k| sliced_wasserstein(&points(N, 20 + 2 * k), &points(N, 21 + 2 * k), 64))
        .sum::<f64>()
        / 4.0;
    let held_out = points(200, 13);
    let gm = mixture();
    let exact: Vec<f64> = held_out
        .chunks(2)
        .map(|p| gm.log_density(&[p[0] as f64, p[1] as f64], 0.0))
        .collect();
    eprintln!("true vs true sliced W1: {floor:.4}");
    for loss in [Loss::Dsm, Loss::Ssm] {
        for sde in [SdeChoice::Vp, SdeChoice::Subvp, SdeChoice::Ve] {
            let mut be = FastCpu::default();
            let opts = TrainOptions {
                loss,
                sde,
                batch: 512,
                steps: STEPS,
                ..Default::default()
            };
            let mut tr = Trainer::new(&mut be, &data, &opts).unwrap();
            let start = std::time::Instant::now();
            for _ in 0..STEPS {
                block_on(tr.step(&mut be)).unwrap();
            }
            let secs = start.elapsed().as_secs_f64();
            let bytes = block_on(tr.export(&mut be, "mixture")).unwrap();
            let net = Network::load(&mut be, &bytes).unwrap();
            let s = net.config.schedule();
            let mut den = Guided::new(&mut be, &net, &vec![None; N], 1.0).unwrap();
            let opts = SamplerOptions {
                method: Method::Sde,
                steps: Some(500),
                ..Default::default()
            };
            let x = block_on(sample(
                &mut be,
                &mut den,
                &s,
                &opts,
                &[N, 2],
                0,
                &mut Silent,
            ))
            .unwrap();
            let got = block_on(be.read(&x)).unwrap();
            let sw = sliced_wasserstein(&got, &truth, 64);
            let mut den = Guided::new(&mut be, &net, &vec![None; 200], 1.0).unwrap();
            let xt = be.upload(&held_out, &[200, 2]).unwrap();
            let lik = LikelihoodOptions {
                steps: 100,
                probe: Probe::Exact,
                dequantize: false,
            };
            let lp = block_on(log_likelihood(
                &mut be,
                &mut den,
                &s,
                &lik,
                &xt,
                0,
                &mut Silent,
            ))
            .unwrap()
            .log_p;
            let gap = lp.iter().zip(&exact).map(|(a, b)| a - b).sum::<f64>() / exact.len() as f64;
            eprintln!(
                "{loss:?} {sde:?}: {STEPS} steps in {secs:.1} s, final loss {:.4}, sliced W1 {sw:.4} ({:.2}x the floor), mean log p - exact {gap:+.4} nats",
                tr.losses.last().unwrap(),
                sw / floor
            );
            assert!(
                sw < 1.5 * floor,
                "{loss:?} {sde:?}: sliced W1 {sw} vs floor {floor}"
            );
            assert!(
                gap.abs() < 0.1,
                "{loss:?} {sde:?}: log-likelihood off by {gap}"
            );
        }
    }
}
