//! `scorelab sample`: draw samples, split over threads on the CPU.

use std::path::PathBuf;

use scorelab::lab::{ClassifierGuidance, SampleRequest, Samples, Session};
use scorelab::model::ModelConfig;
use scorelab::sampler::{Method, Progress, Silent};
use scorelab::{Backend, FastCpu, Result};

use super::args::{parse_class, Common, Condition, SamplerArgs};
use super::io::{io_error, write_samples};
use super::progress::Bar;
use super::MODEL;

/// The arguments of `scorelab sample`.
#[derive(clap::Args)]
pub(super) struct SampleCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) sampler: SamplerArgs,
    #[command(flatten)]
    pub(super) condition: Condition,
    /// Seed of the first sample (sample i uses seed + i)
    #[arg(long, default_value_t = 0)]
    pub(super) seed: u32,
    /// Number of samples
    #[arg(long, default_value_t = 16)]
    pub(super) n: usize,
    /// A noise-conditional classifier (models/digits-classifier.safetensors) for classifier
    /// guidance towards --class; with --guidance 0 the score model itself is unconditional
    #[arg(long)]
    pub(super) classifier: Option<PathBuf>,
    /// Classifier guidance scale (with --classifier)
    #[arg(long, default_value_t = 1.0, requires = "classifier")]
    pub(super) classifier_scale: f64,
    /// Output file (.png, .csv for point models, or .npy: float32 [n, ..])
    #[arg(long, default_value = "samples.png")]
    pub(super) out: PathBuf,
}

impl SampleCmd {
    /// Runs the command on the model loaded in `lab`.
    pub(super) async fn run<B: Backend>(
        self,
        lab: &mut Session<B>,
        cfg: &ModelConfig,
        bytes: &[u8],
        cpu_threads: usize,
    ) -> Result<()> {
        let SampleCmd {
            sampler,
            condition,
            seed,
            n,
            classifier,
            classifier_scale,
            out,
            ..
        } = self;
        let classifier = match &classifier {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|e| io_error("classifier", path, e))?;
                lab.load_model("classifier", &bytes)?;
                Some(ClassifierGuidance {
                    model: "classifier".into(),
                    scale: classifier_scale,
                })
            }
            None => None,
        };
        let req = SampleRequest {
            sampler: sampler.options("ddim", None)?,
            seed,
            n,
            class: parse_class(cfg, &condition.class)?,
            guidance: condition.guidance,
            classifier,
        };
        let bar = &mut Bar::new();
        // rk45 shares one step size over the batch, and the split sessions hold no classifier:
        // those run whole.
        let whole = req.sampler.method == Method::Rk45 || req.classifier.is_some();
        let s = if cpu_threads > 1 && n > 1 && !whole {
            sample_split(bytes, &req, cpu_threads, bar)?
        } else {
            lab.sample(MODEL, &req, bar).await?
        };
        bar.done(&format!("{n} samples"));
        write_samples(&out, cfg, &s.values, (n as f64).sqrt().ceil() as usize)
    }
}

/// Draws `req` on `threads` fast CPU sessions at once, each a contiguous share of the samples
/// with their own seeds (sample i uses seed + i). Noise is keyed per sample and each sample's
/// forward pass is computed whole in one session, so the result equals one session's bit for bit.
/// `progress` follows the first share.
fn sample_split(
    bytes: &[u8],
    req: &SampleRequest,
    threads: usize,
    progress: &mut impl Progress,
) -> Result<Samples> {
    let parts = threads.clamp(1, req.n.max(1));
    let bounds: Vec<usize> = (0..=parts).map(|i| i * req.n / parts).collect();
    let share = |i: usize| SampleRequest {
        seed: req.seed.wrapping_add(bounds[i] as u32),
        n: bounds[i + 1] - bounds[i],
        ..req.clone()
    };
    let shares: Vec<Result<Samples>> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..parts)
            .map(|i| {
                let req = share(i);
                scope.spawn(move || sample_share(bytes, &req, &mut Silent))
            })
            .collect();
        let first = sample_share(bytes, &share(0), progress);
        std::iter::once(first)
            .chain(
                others
                    .into_iter()
                    .map(|h| h.join().expect("a sampling thread panicked")),
            )
            .collect()
    });
    let mut all = Samples {
        values: Vec::new(),
        n: req.n,
        shape: Vec::new(),
    };
    for share in shares {
        let share = share?;
        all.values.extend(share.values);
        all.shape = share.shape;
    }
    Ok(all)
}

/// One share of [`sample_split`], in a session of its own.
fn sample_share(
    bytes: &[u8],
    req: &SampleRequest,
    progress: &mut impl Progress,
) -> Result<Samples> {
    let mut lab = Session::new(FastCpu::default());
    lab.load_model(MODEL, bytes)?;
    pollster::block_on(lab.sample(MODEL, req, progress))
}
