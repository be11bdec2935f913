//! `scorelab train2d`: train a 2-D score model on a CSV of points, no model file needed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use scorelab::train::{Loss, Projection, SdeChoice, TrainOptions, Trainer};
use scorelab::{Backend, Cpu, FastCpu, Result};

use super::args::parse_name;
use super::io::io_error;
use super::{gpu, BackendChoice};

/// The arguments of `scorelab train2d`.
#[derive(clap::Args)]
pub(super) struct Train2dCmd {
    /// The points: one "x,y" per line (a header line is skipped)
    #[arg(long)]
    pub(super) data: PathBuf,
    /// dsm (denoising) or ssm (sliced score matching)
    #[arg(long, default_value = "dsm", value_parser = parse_name::<Loss>)]
    pub(super) loss: Loss,
    /// ssm's projections: rademacher or gaussian
    #[arg(long, default_value = "rademacher", value_parser = parse_name::<Projection>)]
    pub(super) projection: Projection,
    /// vp, subvp or ve
    #[arg(long, default_value = "vp", value_parser = parse_name::<SdeChoice>)]
    pub(super) sde: SdeChoice,
    /// Optimizer steps
    #[arg(long, default_value_t = 3000)]
    pub(super) steps: usize,
    /// Hidden width and residual blocks of the MLP
    #[arg(long, default_value_t = 64)]
    pub(super) width: usize,
    #[arg(long, default_value_t = 2)]
    pub(super) depth: usize,
    #[arg(long, default_value_t = 256)]
    pub(super) batch: usize,
    /// Adam's learning rate
    #[arg(long, default_value_t = 3e-3)]
    pub(super) lr: f64,
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u64,
    /// Where to run: cpu, gpu or reference
    #[arg(long, value_enum, default_value = "cpu")]
    pub(super) backend: BackendChoice,
    /// Output weights file
    #[arg(long, default_value = "trained.safetensors")]
    pub(super) out: PathBuf,
}

/// Points from a CSV of `x,y` lines (a first line that does not parse is a header).
impl Train2dCmd {
    /// Trains on `--data` and writes `--out`.
    pub(super) fn run(&self) -> Result<()> {
        let Train2dCmd {
            data,
            loss,
            projection,
            sde,
            steps,
            width,
            depth,
            batch,
            lr,
            seed,
            backend,
            out,
        } = self;
        let opts = TrainOptions {
            loss: *loss,
            projection: *projection,
            sde: *sde,
            width: *width,
            depth: *depth,
            batch: *batch,
            lr: *lr,
            steps: *steps,
            seed: *seed,
            ..Default::default()
        };
        let points = read_points(data)?;
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", "1") };
        pollster::block_on(match backend {
            BackendChoice::Gpu => Box::pin(train(gpu()?, &points, &opts, *steps, out))
                as std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>>>>,
            BackendChoice::Reference => Box::pin(train(Cpu, &points, &opts, *steps, out)),
            BackendChoice::Cpu | BackendChoice::Auto => {
                Box::pin(train(FastCpu::default(), &points, &opts, *steps, out))
            }
        })
    }
}

fn read_points(path: &Path) -> Result<Vec<f32>> {
    let text = std::fs::read_to_string(path).map_err(|e| io_error("data", path, e))?;
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Option<Vec<f32>> = fields.iter().map(|f| f.parse().ok()).collect();
        match parsed {
            Some(p) if p.len() == 2 => points.extend(p),
            _ if i == 0 || line.trim().is_empty() => {}
            _ => {
                return Err(io_error(
                    "data",
                    path,
                    format!("line {} is not \"x,y\": {line:?}", i + 1),
                ))
            }
        }
    }
    Ok(points)
}

/// `train2d`: trains on `backend` with a progress line, writes the EMA weights.
async fn train<B: Backend>(
    mut be: B,
    data: &[f32],
    opts: &TrainOptions,
    steps: usize,
    out: &Path,
) -> Result<()> {
    let mut trainer = Trainer::new(&mut be, data, opts)?;
    let start = Instant::now();
    for k in 1..=steps {
        let loss = trainer.step(&mut be).await?;
        if k % 50 == 0 || k == steps {
            let secs = start.elapsed().as_secs_f64();
            eprint!(
                "\r[{:30}] step {k}/{steps} loss {loss:.4} {:.0} steps/s ",
                "#".repeat(30 * k / steps),
                k as f64 / secs.max(1e-9)
            );
            let _ = std::io::stderr().flush();
        }
    }
    eprintln!(
        "\ntrained {steps} steps on {} points in {:.2} s",
        data.len() / 2,
        start.elapsed().as_secs_f64()
    );
    let name = out
        .file_stem()
        .map_or("trained".into(), |s| s.to_string_lossy().into_owned());
    std::fs::write(out, trainer.export(&mut be, &name).await?)
        .map_err(|e| io_error("out", out, e))?;
    eprintln!("wrote {}", out.display());
    Ok(())
}
