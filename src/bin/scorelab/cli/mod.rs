//! The command-line interface (native only): a thin layer over [`scorelab::lab::Session`], the
//! same operations the wasm API exposes. One file per command (or family of commands); the flags
//! they share in `args.rs`, the file formats in `io.rs`.

mod args;
mod edit;
mod io;
mod ode;
mod progress;
mod restore;
mod sample;
mod train2d;

use std::path::Path;
use std::rc::Rc;

use clap::{Parser, Subcommand, ValueEnum};

use args::{sampler_list, Common, EditArgs, RestoreInput};
use io::{io_error, read_mask};
use scorelab::lab::{Session, Task};
use scorelab::{Backend, Cpu, Error, FastCpu, Gpu, GpuContext, Result};

/// The name the one model of a CLI run is loaded under.
const MODEL: &str = "model";

#[derive(Parser)]
#[command(
    name = "scorelab",
    version,
    about = "Score-based diffusion sampling, editing and likelihoods on WebGPU/wgpu or the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendChoice {
    /// whichever of gpu and cpu evaluates the model faster here, timed at start
    Auto,
    /// wgpu on the best adapter (WGPU_BACKEND selects one)
    Gpu,
    /// the fast CPU backend (f32 GEMM, SIMD)
    Cpu,
    /// the CPU reference (f64 accumulation, plain loops): the oracle, slow
    Reference,
}

#[derive(Subcommand)]
enum Command {
    /// Draw samples and write them as a PNG grid (images) or a scatter plot / CSV (points)
    #[command(after_help = sampler_list())]
    Sample(sample::SampleCmd),
    /// Fill a region of an image; writes [image, masked, variations...] as one PNG row
    #[command(after_help = sampler_list())]
    Inpaint(edit::InpaintCmd),
    /// Colour a grayscale (or any rgb) image keeping its luminance (rgb models); writes [input, variations...]
    #[command(after_help = sampler_list())]
    Colorize(edit::ColorizeCmd),
    /// Super-resolution: restore an image from its mean over factor x factor blocks; writes
    /// [image, measurement, variations...] and prints each variation's PSNR and ||A x - y||
    #[command(after_help = sampler_list())]
    Superres(restore::SuperresCmd),
    /// Denoising: restore an image from a copy with Gaussian noise of a known std; writes
    /// [image, noisy, variations...]
    #[command(after_help = sampler_list())]
    Denoise(restore::DenoiseCmd),
    /// Deblurring: restore an image from a Gaussian blur of it; writes [image, blurred, variations...]
    #[command(after_help = sampler_list())]
    Deblur(restore::DeblurCmd),
    /// SDEdit: noise an image (a sketch, say) to a strength in (0, 1] and denoise it into a
    /// sample; writes [image, variations...]
    #[command(after_help = sampler_list())]
    Sdedit(restore::SdeditCmd),
    /// Encode images to their probability-flow latents and decode them back; prints the PSNR of
    /// each reconstruction and writes [image, latent, reconstruction] rows
    Roundtrip(ode::RoundtripCmd),
    /// Decode spherical interpolations between the starting noise of two seeds
    Interpolate(ode::InterpolateCmd),
    /// Estimate log p(x) and bits/dim of images with the probability-flow ODE
    Likelihood(ode::LikelihoodCmd),
    /// Train a 2-D score model on points (a CSV of x,y lines) and write it as a weights file that
    /// `sample`, `likelihood` and the page load like the shipped ones
    Train2d(train2d::Train2dCmd),
    /// Show a model's config and the adapter that would run it
    Info {
        #[command(flatten)]
        common: Common,
    },
}

impl Command {
    /// A restoring command's arguments, task, measurement noise and kept-region mask file.
    fn restoring(&self) -> Option<(&EditArgs, &RestoreInput, Task, f64, Option<&Path>)> {
        match self {
            Command::Superres(c) => Some((
                &c.edit,
                &c.input,
                Task::Superres { factor: c.factor },
                c.noise,
                None,
            )),
            Command::Denoise(c) => Some((
                &c.edit,
                &c.input,
                Task::Denoise { noise: c.noise },
                0.0,
                None,
            )),
            Command::Deblur(c) => Some((
                &c.edit,
                &c.input,
                Task::Deblur { width: c.width },
                c.noise,
                None,
            )),
            Command::Sdedit(c) => Some((
                &c.edit,
                &c.input,
                Task::Sdedit {
                    strength: c.strength,
                },
                0.0,
                c.mask.as_deref(),
            )),
            _ => None,
        }
    }

    /// The model and backend flags (every command but train2d has them).
    fn common(&self) -> Option<&Common> {
        match self {
            Command::Sample(c) => Some(&c.common),
            Command::Inpaint(c) => Some(&c.common),
            Command::Colorize(c) => Some(&c.common),
            Command::Superres(c) => Some(&c.common),
            Command::Denoise(c) => Some(&c.common),
            Command::Deblur(c) => Some(&c.common),
            Command::Sdedit(c) => Some(&c.common),
            Command::Roundtrip(c) => Some(&c.common),
            Command::Interpolate(c) => Some(&c.common),
            Command::Likelihood(c) => Some(&c.common),
            Command::Info { common } => Some(common),
            Command::Train2d(_) => None,
        }
    }
}

/// Runs `command` on `lab`; on the CPU backend `sample` splits its batch over `cpu_threads`.
async fn execute<B: Backend>(
    mut lab: Session<B>,
    command: Command,
    bytes: &[u8],
    cpu_threads: usize,
) -> Result<()> {
    let cfg = lab.load_model(MODEL, bytes)?.clone();
    if cfg.is_classifier() {
        return Err(Error::Param {
            name: "model".into(),
            detail: format!(
                "{} is a classifier, not a score network: give it to sample with --classifier",
                cfg.name
            ),
        });
    }
    match command {
        Command::Sample(c) => c.run(&mut lab, &cfg, bytes, cpu_threads).await,
        Command::Inpaint(c) => c.run(&mut lab, &cfg).await,
        Command::Colorize(c) => c.run(&mut lab, &cfg).await,
        c @ (Command::Superres(_)
        | Command::Denoise(_)
        | Command::Deblur(_)
        | Command::Sdedit(_)) => {
            let (edit, input, task, noise, mask) = c.restoring().expect("a restoring command");
            let mask = match mask {
                Some(path) => Some(read_mask(path, &cfg)?),
                None => None,
            };
            restore::restore(&mut lab, &cfg, edit, input, task, noise, mask).await
        }
        Command::Roundtrip(c) => c.run(&mut lab, &cfg).await,
        Command::Interpolate(c) => c.run(&mut lab, &cfg).await,
        Command::Likelihood(c) => c.run(&mut lab, &cfg).await,
        Command::Info { .. } => {
            println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
            Ok(())
        }
        Command::Train2d(_) => unreachable!("train2d runs without a model (run)"),
    }
}

/// Median ms of one evaluation of the model at batch 1 (after a warm-up).
fn time_evaluation<B: Backend>(be: B, bytes: &[u8]) -> Result<f64> {
    let mut lab = Session::new(be);
    let per = lab.load_model(MODEL, bytes)?.sample_len();
    let x: Vec<f32> = (0..per).map(|i| (i as f32).sin()).collect();
    let mut times = Vec::new();
    for _ in 0..4 {
        let start = std::time::Instant::now();
        pollster::block_on(lab.eps(MODEL, &x, 0.5, None, 1.0))?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.remove(0);
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// gpu or cpu, whichever evaluates this model faster here (cpu when there is no adapter).
fn faster_backend(bytes: &[u8]) -> Result<BackendChoice> {
    let gpu = match gpu() {
        Ok(gpu) => gpu,
        Err(e) => {
            eprintln!("backend: cpu ({e})");
            return Ok(BackendChoice::Cpu);
        }
    };
    let gpu_ms = time_evaluation(gpu, bytes)?;
    let cpu_ms = time_evaluation(FastCpu::default(), bytes)?;
    let (choice, name) = if cpu_ms <= gpu_ms {
        (BackendChoice::Cpu, "cpu")
    } else {
        (BackendChoice::Gpu, "gpu")
    };
    eprintln!("backend: {name} (one evaluation: cpu {cpu_ms:.1} ms, gpu {gpu_ms:.1} ms; --backend chooses)");
    Ok(choice)
}

fn gpu() -> Result<Gpu> {
    let ctx = pollster::block_on(GpuContext::new())?;
    let r = &ctx.report;
    eprintln!(
        "adapter: {} ({}, {}{})",
        r.name,
        r.backend,
        r.device_type,
        if r.software {
            ", software: correct but slow"
        } else {
            ""
        }
    );
    Ok(Gpu::new(Rc::new(ctx)))
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Train2d(t) = &cli.command {
        return t.run();
    }
    let common = cli.command.common().expect("train2d returned above");
    let bytes = std::fs::read(&common.model).map_err(|e| io_error("model", &common.model, e))?;
    let threads = common.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        usize::from,
    );
    // `sample` splits its batch over the threads, each on one core; other commands let the matrix
    // products use them. SAFETY: set before any other thread exists (the pool starts on first use).
    let product_threads = if matches!(cli.command, Command::Sample { .. }) {
        1
    } else {
        threads
    };
    unsafe { std::env::set_var("MATMUL_NUM_THREADS", product_threads.to_string()) };
    let choice = match common.backend {
        // `info` only reads the file: nothing to measure.
        BackendChoice::Auto if matches!(cli.command, Command::Info { .. }) => BackendChoice::Cpu,
        BackendChoice::Auto => faster_backend(&bytes)?,
        other => other,
    };
    match choice {
        BackendChoice::Auto => unreachable!("resolved above"),
        BackendChoice::Gpu => {
            pollster::block_on(execute(Session::new(gpu()?), cli.command, &bytes, 1))
        }
        BackendChoice::Cpu => pollster::block_on(execute(
            Session::new(FastCpu::default()),
            cli.command,
            &bytes,
            threads,
        )),
        BackendChoice::Reference => {
            pollster::block_on(execute(Session::new(Cpu), cli.command, &bytes, 1))
        }
    }
}

pub fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("\nerror: {e}");
        std::process::exit(1);
    }
}
