//! The probability-flow ODE commands: `roundtrip` (encode and decode), `interpolate` and
//! `likelihood`.

use std::path::PathBuf;

use scorelab::lab::{SampleRequest, Samples, Session};
use scorelab::model::ModelConfig;
use scorelab::sampler::edit::{LikelihoodOptions, Probe};
use scorelab::sampler::{Method, SamplerOptions};
use scorelab::{image, Backend, Error, Result};

use super::args::{parse_class, Common, OdeArgs};
use super::io::{read_images, write_samples};
use super::progress::Bar;
use super::MODEL;

/// The arguments of `scorelab roundtrip`.
#[derive(clap::Args)]
pub(super) struct RoundtripCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) ode: OdeArgs,
    /// Images (PNGs at the model's size, or grids written by `sample`); without any, `n` samples are drawn first (DDIM 100)
    #[arg(long, num_args = 1..)]
    pub(super) image: Vec<PathBuf>,
    #[arg(long, default_value_t = 4)]
    pub(super) n: usize,
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u32,
    #[arg(long, default_value = "roundtrip.png")]
    pub(super) out: PathBuf,
}

impl RoundtripCmd {
    /// Runs the command on the model loaded in `lab`.
    pub(super) async fn run<B: Backend>(
        self,
        lab: &mut Session<B>,
        cfg: &ModelConfig,
    ) -> Result<()> {
        let RoundtripCmd {
            ode,
            image,
            n,
            seed,
            out,
            ..
        } = self;
        let per = cfg.sample_len();
        let req = ode.request(cfg)?;
        let data = if image.is_empty() {
            let opts = SamplerOptions {
                method: Method::Ddim,
                steps: Some(100),
                ..Default::default()
            };
            let bar = &mut Bar::new();
            let s = lab
                .sample(
                    MODEL,
                    &SampleRequest {
                        sampler: opts,
                        seed,
                        n,
                        class: req.class,
                        guidance: req.guidance,
                        classifier: None,
                    },
                    bar,
                )
                .await?;
            bar.done("samples to encode");
            s.values
        } else {
            read_images(&image, cfg)?
        };
        let bar = &mut Bar::new();
        let (latent, enc_evals) = lab.transport(MODEL, &req, &data, true, bar).await?;
        bar.done(&format!("encoded with {enc_evals} evaluations"));
        let bar = &mut Bar::new();
        let (back, dec_evals) = lab
            .transport(MODEL, &req, &latent.values, false, bar)
            .await?;
        bar.done(&format!("decoded with {dec_evals} evaluations"));
        let mut rows = Vec::new();
        for (i, ((x, z), y)) in data
            .chunks(per)
            .zip(latent.values.chunks(per))
            .zip(back.values.chunks(per))
            .enumerate()
        {
            let norm = (z.iter().map(|v| (v * v) as f64).sum::<f64>() / per as f64).sqrt();
            if cfg.data.kind == "points" {
                let err = x
                    .iter()
                    .zip(y)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                println!("point {i}: max error {err:.2e}, latent rms {norm:.3}");
                continue;
            }
            println!(
                "image {i}: PSNR {:.2} dB, latent rms {norm:.3}",
                image::psnr(x, y)
            );
            // Latents are ~N(0, 1): shown at a third of their scale to fit [-1, 1].
            rows.extend([x.to_vec(), z.iter().map(|v| v / 3.0).collect(), y.to_vec()].concat());
        }
        if cfg.data.kind == "points" {
            return Ok(());
        }
        write_samples(&out, cfg, &rows, 3)
    }
}

/// The arguments of `scorelab interpolate`.
#[derive(clap::Args)]
pub(super) struct InterpolateCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) ode: OdeArgs,
    #[arg(long, default_value_t = 0)]
    pub(super) seed_a: u32,
    #[arg(long, default_value_t = 1)]
    pub(super) seed_b: u32,
    /// Frames, both ends included
    #[arg(long, default_value_t = 8)]
    pub(super) frames: usize,
    #[arg(long, default_value = "interpolation.png")]
    pub(super) out: PathBuf,
}

impl InterpolateCmd {
    /// Runs the command on the model loaded in `lab`.
    pub(super) async fn run<B: Backend>(
        self,
        lab: &mut Session<B>,
        cfg: &ModelConfig,
    ) -> Result<()> {
        let InterpolateCmd {
            ode,
            seed_a,
            seed_b,
            frames,
            out,
            ..
        } = self;
        if frames < 2 {
            return Err(Error::Param {
                name: "frames".into(),
                detail: "at least 2 (both ends)".into(),
            });
        }
        let req = ode.request(cfg)?;
        let (a, b) = (
            lab.seed_latent(MODEL, seed_a)?,
            lab.seed_latent(MODEL, seed_b)?,
        );
        let positions: Vec<f64> = (0..frames)
            .map(|i| i as f64 / (frames - 1) as f64)
            .collect();
        let bar = &mut Bar::new();
        let (s, evals): (Samples, usize) = lab
            .interpolate(MODEL, &req, &a, &b, &positions, bar)
            .await?;
        bar.done(&format!("{frames} frames with {evals} evaluations"));
        write_samples(&out, cfg, &s.values, frames)
    }
}

/// The arguments of `scorelab likelihood`.
#[derive(clap::Args)]
pub(super) struct LikelihoodCmd {
    #[command(flatten)]
    pub(super) common: Common,
    /// Images (PNGs at the model's size, or grids written by `sample`)
    #[arg(long, num_args = 1.., required = true)]
    pub(super) image: Vec<PathBuf>,
    /// Heun steps of the ODE (4 network evaluations each)
    #[arg(long, default_value_t = 50)]
    pub(super) steps: usize,
    /// Divergence: auto (exact trace up to 16 values per sample, else rademacher), exact,
    /// rademacher or gaussian
    #[arg(long, default_value = "auto")]
    pub(super) probe: Probe,
    /// Class index or name the density is conditioned on (omit for unconditional)
    #[arg(long)]
    pub(super) class: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u32,
}

impl LikelihoodCmd {
    /// Runs the command on the model loaded in `lab`.
    pub(super) async fn run<B: Backend>(
        self,
        lab: &mut Session<B>,
        cfg: &ModelConfig,
    ) -> Result<()> {
        let LikelihoodCmd {
            image,
            steps,
            probe,
            class,
            seed,
            ..
        } = self;
        let data = read_images(&image, cfg)?;
        let opts = LikelihoodOptions {
            steps,
            probe,
            dequantize: true,
        };
        let bar = &mut Bar::new();
        let r = lab
            .likelihood(MODEL, &opts, &data, parse_class(cfg, &class)?, seed, bar)
            .await?;
        let count = r.bits_per_dim.len();
        bar.done(&format!("{count} images with {} evaluations", r.evals));
        for (i, (lp, bpd)) in r.log_p.iter().zip(&r.bits_per_dim).enumerate() {
            println!("image {i}: log p {lp:.1} nats, {bpd:.3} bits/dim");
        }
        let mean = r.bits_per_dim.iter().sum::<f64>() / count as f64;
        let sd = (r
            .bits_per_dim
            .iter()
            .map(|b| (b - mean).powi(2))
            .sum::<f64>()
            / (count.max(2) - 1) as f64)
            .sqrt();
        println!(
            "mean: {mean:.3} bits/dim over {count} images (standard error {:.3})",
            sd / (count as f64).sqrt()
        );
        Ok(())
    }
}
