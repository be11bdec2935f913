//! The command-line interface (native only).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use scorelab::sampler::{self, Control, Guided, Method, Progress, SamplerOptions, StepInfo, VpSchedule};
use scorelab::{image, Backend, Cpu, Error, Gpu, GpuContext, Network, Result};

#[derive(Parser)]
#[command(name = "scorelab", version, about = "Score-based diffusion sampling on WebGPU/wgpu or the CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum BackendChoice {
    /// wgpu on the best adapter (WGPU_BACKEND selects one)
    Gpu,
    /// the plain-Rust reference implementation
    Cpu,
}

#[derive(clap::Args)]
struct Common {
    /// Weights file (models/*.safetensors)
    #[arg(long, default_value = "models/digits.safetensors")]
    model: PathBuf,
    /// Where to run
    #[arg(long, value_enum, default_value = "gpu")]
    backend: BackendChoice,
}

#[derive(clap::Args)]
struct SamplerArgs {
    /// Sampling method (see the list below)
    #[arg(long, default_value = "ddim")]
    sampler: String,
    /// Steps [default: the sampler's own] (rk45: the step cap; annealed: noise levels)
    #[arg(long)]
    steps: Option<usize>,
    /// ddim: 0 = deterministic .. 1 = DDPM variance
    #[arg(long, default_value_t = 0.0)]
    eta: f64,
    /// rk45 relative tolerance
    #[arg(long, default_value_t = 1e-3)]
    rtol: f64,
    /// rk45 absolute tolerance
    #[arg(long, default_value_t = 1e-3)]
    atol: f64,
    /// pc: predictor (ddpm, ddim, euler, heun, sde)
    #[arg(long, default_value = "sde")]
    predictor: String,
    /// pc: corrector signal-to-noise ratio
    #[arg(long, default_value_t = 0.16)]
    snr: f64,
    /// pc: Langevin corrector steps per step
    #[arg(long, default_value_t = 1)]
    corrector_steps: usize,
    /// annealed: Langevin steps per noise level
    #[arg(long, default_value_t = 3)]
    langevin_steps: usize,
    /// annealed: base step size (scaled by sigma_i^2 / sigma_min^2)
    #[arg(long, default_value_t = 2e-4)]
    step_lr: f64,
}

impl SamplerArgs {
    fn options(&self) -> Result<SamplerOptions> {
        Ok(SamplerOptions {
            method: Method::parse(&self.sampler)?,
            steps: self.steps,
            eta: self.eta,
            rtol: self.rtol,
            atol: self.atol,
            predictor: Method::parse(&self.predictor)?,
            snr: self.snr,
            corrector_steps: self.corrector_steps,
            langevin_steps: self.langevin_steps,
            step_lr: self.step_lr,
        })
    }
}

fn sampler_list() -> String {
    let mut s = String::from("Samplers:\n");
    for m in Method::ALL {
        s += &format!("  {:<9} {}\n", m.name(), m.describe());
    }
    s
}

#[derive(Subcommand)]
enum Command {
    /// Draw samples and write them as a PNG grid (images) or a scatter plot / CSV (points)
    #[command(after_help = sampler_list())]
    Sample {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        sampler: SamplerArgs,
        /// Seed of the first sample (sample i uses seed + i)
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// Class index or name (omit for unconditional)
        #[arg(long)]
        class: Option<String>,
        /// Classifier-free guidance scale (1 = plain conditional, 0 = unconditional)
        #[arg(long, default_value_t = 1.0)]
        guidance: f32,
        /// Number of samples
        #[arg(long, default_value_t = 16)]
        n: usize,
        /// Output file (.png, or .csv for point models)
        #[arg(long, default_value = "samples.png")]
        out: PathBuf,
    },
    /// Show a model's config and the adapter that would run it
    Info {
        #[command(flatten)]
        common: Common,
    },
}

/// A progress bar on stderr.
struct Bar {
    start: Instant,
}

impl Progress for Bar {
    fn step(&mut self, info: &StepInfo) -> Control {
        let width = 30;
        let filled = (info.fraction * width as f64).round() as usize;
        let secs = self.start.elapsed().as_secs_f64();
        eprint!("\r[{}{}] step {}/{} t={:.3} {} evals {:.1} steps/s ", "#".repeat(filled), " ".repeat(width - filled), info.step, info.total, info.t, info.evals, info.step as f64 / secs.max(1e-9));
        let _ = std::io::stderr().flush();
        Control::Continue
    }
}

fn parse_class(net_classes: &[String], class: &Option<String>) -> Result<Option<usize>> {
    let Some(c) = class else { return Ok(None) };
    if let Ok(i) = c.parse::<usize>() {
        return Ok(Some(i)); // range-checked by Guided
    }
    net_classes.iter().position(|n| n == c).map(Some).ok_or_else(|| Error::Param { name: "class".into(), detail: format!("unknown class {c:?}; classes: {}", net_classes.join(", ")) })
}

fn write_png(path: &Path, rgba: &[u8], w: usize, h: usize) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::Param { name: "out".into(), detail: format!("{}: {e}", path.display()) })?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let io = |e: png::EncodingError| Error::Param { name: "out".into(), detail: e.to_string() };
    enc.write_header().map_err(io)?.write_image_data(rgba).map_err(io)
}

async fn sample_cmd<B: Backend>(be: &mut B, bytes: &[u8], args: &SamplerArgs, seed: u32, class: &Option<String>, guidance: f32, n: usize, out: &Path) -> Result<()> {
    if n == 0 {
        return Err(Error::Param { name: "n".into(), detail: "must be at least 1".into() });
    }
    let net = Network::load(be, bytes)?;
    let opts = args.options()?;
    let class = parse_class(&net.config.classes.names, class)?;
    let mut den = Guided::new(be, &net, &vec![class; n], guidance)?;
    let schedule = VpSchedule::from_config(&net.config.sde);
    let mut shape = vec![n];
    shape.extend(net.config.sample_shape());
    let start = Instant::now();
    let x = sampler::sample(be, &mut den, &schedule, &opts, &shape, seed, &mut Bar { start }).await?;
    let values = be.read(&x).await?;
    eprintln!("\n{} samples in {:.2} s", n, start.elapsed().as_secs_f64());
    let cfg = &net.config;
    if cfg.data.kind == "points" {
        if out.extension().is_some_and(|e| e == "csv") {
            let text: String = values.chunks(cfg.data.dim).map(|p| p.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",") + "\n").collect();
            std::fs::write(out, text).map_err(|e| Error::Param { name: "out".into(), detail: e.to_string() })?;
        } else {
            write_png(out, &image::scatter(&values, 512, 4.0), 512, 512)?;
        }
    } else {
        let cols = (n as f64).sqrt().ceil() as usize;
        let (rgba, w, h) = image::grid(&values, n, (cfg.data.height, cfg.data.width, cfg.data.channels), cols, 2);
        write_png(out, &rgba, w, h)?;
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn gpu() -> Result<Gpu> {
    let ctx = pollster::block_on(GpuContext::new())?;
    let r = &ctx.report;
    eprintln!("adapter: {} ({}, {}{})", r.name, r.backend, r.device_type, if r.software { ", software: correct but slow" } else { "" });
    Ok(Gpu::new(Rc::new(ctx)))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Sample { common, sampler, seed, class, guidance, n, out } => {
            let bytes = std::fs::read(&common.model).map_err(|e| Error::Param { name: "model".into(), detail: format!("{}: {e}", common.model.display()) })?;
            match common.backend {
                BackendChoice::Gpu => pollster::block_on(sample_cmd(&mut gpu()?, &bytes, &sampler, seed, &class, guidance, n, &out)),
                BackendChoice::Cpu => pollster::block_on(sample_cmd(&mut Cpu, &bytes, &sampler, seed, &class, guidance, n, &out)),
            }
        }
        Command::Info { common } => {
            let bytes = std::fs::read(&common.model).map_err(|e| Error::Param { name: "model".into(), detail: format!("{}: {e}", common.model.display()) })?;
            let file = scorelab::model::WeightsFile::parse(&bytes)?;
            println!("{}", serde_json::to_string_pretty(&file.config).unwrap_or_default());
            if let BackendChoice::Gpu = common.backend {
                gpu()?;
            }
            Ok(())
        }
    }
}

pub fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("\nerror: {e}");
        std::process::exit(1);
    }
}
