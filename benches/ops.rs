//! Benchmarks: kernels, one network evaluation and a short sampling run, each on the GPU (wgpu on
//! the best adapter), the CPU reference and the fast CPU backend, measured side by side in one run.
//! Prints the median of several repetitions and how many times faster the fast CPU backend is.
//! Run with `./build.sh bench`.

use std::rc::Rc;
use std::time::Instant;

use scorelab::lab::{SampleRequest, Session};
use scorelab::ops::{Conv2d, GroupNorm, Matmul};
use scorelab::rng::Rng;
use scorelab::sampler::{Method, SamplerOptions, Silent};
use scorelab::{Backend, Channels, Cpu, FastCpu, Gpu, GpuContext, Result};

const REPS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Median wall time in ms of `f` followed by a full sync (one warm-up run first).
fn time<B: Backend>(be: &mut B, mut f: impl FnMut(&mut B) -> Result<()>) -> f64 {
    let mut once = |be: &mut B| {
        let start = Instant::now();
        f(be).expect("benchmark op failed");
        pollster::block_on(be.sync()).expect("sync failed");
        start.elapsed().as_secs_f64() * 1e3
    };
    once(be);
    median((0..REPS).map(|_| once(be)).collect())
}

fn random(n: usize, seed: u64) -> Vec<f32> {
    Rng::new(seed).normals(n)
}

/// One kernel on one backend: uploads inputs, then times the op.
fn kernel<B: Backend>(be: &mut B, name: &str) -> f64 {
    let up = |be: &mut B, shape: &[usize], seed| {
        be.upload(&random(shape.iter().product(), seed), shape)
            .unwrap()
    };
    match name {
        "conv3x3 8x16x16x64->64" => {
            let (x, w, b) = (
                up(be, &[8, 16, 16, 64], 1),
                up(be, &[9 * 64, 64], 2),
                up(be, &[64], 3),
            );
            time(be, |be| {
                be.conv2d(
                    &x,
                    &w,
                    &b,
                    Conv2d {
                        ksize: 3,
                        stride: 1,
                    },
                )
                .map(drop)
            })
        }
        "matmul 512x256 @ 256x256" => {
            let (a, w) = (up(be, &[512, 256], 1), up(be, &[256, 256], 2));
            time(be, |be| {
                be.matmul(&a, &w, None, &Matmul::plain(512, 256, 256))
                    .map(drop)
            })
        }
        "groupnorm+silu 8x16x16x64" => {
            let (x, g, b) = (
                up(be, &[8, 16, 16, 64], 1),
                up(be, &[64], 2),
                up(be, &[64], 3),
            );
            time(be, |be| {
                be.group_norm(
                    &Channels::One(x.clone()),
                    &g,
                    &b,
                    None,
                    GroupNorm {
                        groups: 8,
                        eps: 1e-5,
                        silu: true,
                        add_offset: 0,
                    },
                )
                .map(drop)
            })
        }
        "attention 8x8x8x64" => {
            let x = up(be, &[8, 8, 8, 64], 1);
            let (qw, qb, pw, pb) = (
                up(be, &[64, 192], 2),
                up(be, &[192], 3),
                up(be, &[64, 64], 4),
                up(be, &[64], 5),
            );
            time(be, |be| {
                be.attention(&x, &qw, &qb, &pw, &pb, None).map(drop)
            })
        }
        "randn 16x3072" => time(be, |be| be.randn(&[16, 3072], 7, 1).map(drop)),
        other => panic!("unknown kernel {other}"),
    }
}

/// One network evaluation of `n` samples, and a DDIM run of `steps` steps.
fn model<B: Backend>(be: B, bytes: &[u8], n: usize, steps: usize) -> (f64, f64) {
    let mut lab = Session::new(be);
    let per = lab
        .load_model("m", bytes)
        .expect("model loads")
        .sample_len();
    let x = random(n * per, 9);
    let mut reps = |f: &mut dyn FnMut(&mut Session<B>)| {
        f(&mut lab);
        median(
            (0..REPS.min(5))
                .map(|_| {
                    let start = Instant::now();
                    f(&mut lab);
                    start.elapsed().as_secs_f64() * 1e3
                })
                .collect(),
        )
    };
    let eval = reps(&mut |lab| drop(pollster::block_on(lab.eps("m", &x, 0.5, None, 1.0)).unwrap()));
    let req = SampleRequest {
        sampler: SamplerOptions {
            method: Method::Ddim,
            steps: Some(steps),
            ..Default::default()
        },
        n,
        ..Default::default()
    };
    let run =
        reps(&mut |lab| drop(pollster::block_on(lab.sample("m", &req, &mut Silent)).unwrap()));
    (eval, run)
}

/// One GPU evaluation of `n` samples with every dispatch timed on its own, summed by kernel:
/// where the device time goes on this adapter.
fn kernel_times(gpu: Gpu, bytes: &[u8], n: usize) {
    let mut lab = Session::new(gpu);
    let per = lab
        .load_model("m", bytes)
        .expect("model loads")
        .sample_len();
    let x = random(n * per, 9);
    let eval = |lab: &mut Session<Gpu>| {
        drop(pollster::block_on(lab.eps("m", &x, 0.5, None, 1.0)).unwrap());
    };
    eval(&mut lab);
    lab.be.time_kernels(true);
    eval(&mut lab);
    let times = lab.be.kernel_times();
    lab.be.time_kernels(false);
    let total: f64 = times.iter().map(|t| t.1).sum();
    for (kernel, ms, count) in times {
        println!(
            "  {ms:>9.1} ms {:>5.1} % {count:>3}x  {kernel}",
            100.0 * ms / total
        );
    }
    println!("  {total:>9.1} ms in all");
}

/// Times on the GPU, the CPU reference and the fast CPU backend, and the ratios to the last.
fn row(what: &str, [gpu, reference, fast]: [f64; 3]) {
    println!(
        "{what:<38} {gpu:>10.2} {reference:>10.2} {fast:>10.2} {:>9.2}x {:>9.2}x",
        gpu / fast,
        reference / fast
    );
}

fn main() {
    // `cargo bench --bench ops -- <text>`: only the rows whose name contains the text.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.contains(o.as_str()));
    let ctx = pollster::block_on(GpuContext::new())
        .expect("benchmarks need a GPU adapter (software is fine)");
    let r = &ctx.report;
    println!(
        "adapter: {} ({}, {}{}); median of {REPS} runs\n",
        r.name,
        r.backend,
        r.device_type,
        if r.software { ", software" } else { "" }
    );
    let ctx = Rc::new(ctx);
    let mut gpu = Gpu::new(ctx.clone());
    println!(
        "{:<38} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "GPU ms", "ref ms", "fast ms", "GPU/fast", "ref/fast"
    );
    for name in [
        "conv3x3 8x16x16x64->64",
        "matmul 512x256 @ 256x256",
        "groupnorm+silu 8x16x16x64",
        "attention 8x8x8x64",
        "randn 16x3072",
    ] {
        if !wanted(name) {
            continue;
        }
        let times = [
            kernel(&mut gpu, name),
            kernel(&mut Cpu, name),
            kernel(&mut FastCpu::default(), name),
        ];
        row(name, times);
    }
    for (name, n, steps) in [
        ("toy2d", 4096, 20),
        ("digits", 1, 10),
        ("digits", 8, 10),
        ("emoji", 1, 10),
        ("emoji", 8, 10),
    ] {
        if !wanted(&format!("{name}: n={n}")) {
            continue;
        }
        let path = format!("models/{name}.safetensors");
        let Ok(bytes) = std::fs::read(&path) else {
            println!("{path} not found; skipped");
            continue;
        };
        let (ge, gs) = model(Gpu::new(ctx.clone()), &bytes, n, steps);
        let (ce, cs) = model(Cpu, &bytes, n, steps);
        let (fe, fs) = model(FastCpu::default(), &bytes, n, steps);
        row(&format!("{name}: one evaluation, n={n}"), [ge, ce, fe]);
        row(&format!("{name}: ddim {steps} steps, n={n}"), [gs, cs, fs]);
    }
    let name = "digits: kernel times, n=8";
    if wanted(name) {
        if let Ok(bytes) = std::fs::read("models/digits.safetensors") {
            println!("\n{name} (GPU, each dispatch timed on its own):");
            kernel_times(Gpu::new(ctx.clone()), &bytes, 8);
        }
    }
}
