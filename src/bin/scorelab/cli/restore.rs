//! The restoring commands, `superres`, `denoise`, `deblur` and `sdedit`: one measurement each, one
//! restoration for all.

use std::path::{Path, PathBuf};

use scorelab::lab::{Session, Task};
use scorelab::model::ModelConfig;
use scorelab::{image, Backend, Error, Result};

use super::args::{Common, EditArgs, RestoreInput};
use super::io::{io_error, read_images, read_npy_samples, read_png, write_npy, write_samples};
use super::progress::Bar;
use super::MODEL;

/// The arguments of `scorelab superres`.
#[derive(clap::Args)]
pub(super) struct SuperresCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) edit: EditArgs,
    #[command(flatten)]
    pub(super) input: RestoreInput,
    /// Downsampling factor: 2 or 4
    #[arg(long, default_value_t = 4)]
    pub(super) factor: usize,
    /// Std of the measurement's noise (model units: images span [-1, 1])
    #[arg(long, default_value_t = 0.0)]
    pub(super) noise: f64,
}

/// The arguments of `scorelab denoise`.
#[derive(clap::Args)]
pub(super) struct DenoiseCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) edit: EditArgs,
    #[command(flatten)]
    pub(super) input: RestoreInput,
    /// Std of the noise (model units: images span [-1, 1])
    #[arg(long, default_value_t = 0.2)]
    pub(super) noise: f64,
}

/// The arguments of `scorelab deblur`.
#[derive(clap::Args)]
pub(super) struct DeblurCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) edit: EditArgs,
    #[command(flatten)]
    pub(super) input: RestoreInput,
    /// Blur std in pixels, 0.5 to 2
    #[arg(long, default_value_t = 1.0)]
    pub(super) width: f64,
    /// Std of the measurement's noise (model units)
    #[arg(long, default_value_t = 0.0)]
    pub(super) noise: f64,
}

/// The arguments of `scorelab sdedit`.
#[derive(clap::Args)]
pub(super) struct SdeditCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) edit: EditArgs,
    #[command(flatten)]
    pub(super) input: RestoreInput,
    /// How far to noise the image: 0 keeps it, 1 is pure noise
    #[arg(long, default_value_t = 0.5)]
    pub(super) strength: f64,
    /// Mask PNG at the model's size: white = keep exactly, black = free
    #[arg(long)]
    pub(super) mask: Option<PathBuf>,
}

/// The image-to-image commands: reads (and unless `--measured`, measures) the images, restores
/// `n` variations of each, prints their PSNR against the images and their distance to the
/// measurement, and writes them: as rows [image, measurement (at the image size), variations...]
/// to a PNG, or as the variations alone, `[k n, h, w, c]`, to a `.npy` file.
pub(super) async fn restore<B: Backend>(
    lab: &mut Session<B>,
    cfg: &ModelConfig,
    edit: &EditArgs,
    input: &RestoreInput,
    task: Task,
    noise: f64,
    mask: Option<Vec<f32>>,
) -> Result<()> {
    let req = edit.restore_request(cfg, task, noise)?;
    let (h, w, c) = (cfg.data.height, cfg.data.width, cfg.data.channels);
    let factor = match task {
        Task::Superres { factor } if factor == 2 || factor == 4 => factor,
        Task::Superres { factor } => {
            return Err(Error::Param {
                name: "factor".into(),
                detail: format!("{factor} must be 2 or 4"),
            })
        }
        _ => 1,
    };
    let (mh, mw) = (h / factor, w / factor);
    let npy = |p: &Path| p.extension().is_some_and(|e| e == "npy");
    let (clean, y) = if input.measured {
        let y = if npy(&input.image) {
            read_npy_samples(&input.image, [mh, mw, c])?
        } else {
            let (rgba, iw, ih) = read_png(&input.image)?;
            if (iw, ih) != (mw, mh) {
                return Err(io_error(
                    "image",
                    &input.image,
                    format!("is {iw}x{ih}: the measurement must be {mw}x{mh}"),
                ));
            }
            image::from_rgba(&rgba, c)
        };
        (None, y)
    } else {
        let x = if npy(&input.image) {
            read_npy_samples(&input.image, [h, w, c])?
        } else {
            read_images(std::slice::from_ref(&input.image), cfg)?
        };
        let y = lab.measure(MODEL, task, noise, &x, req.seed).await?.values;
        (Some(x), y)
    };
    let (per, m) = (h * w * c, mh * mw * c);
    let (k, n) = (y.len() / m, input.n);
    // Each measurement n times, image-major.
    let batch: Vec<f32> = y.chunks(m).flat_map(|yi| yi.repeat(n)).collect();
    let bar = &mut Bar::new();
    let s = lab
        .restore(MODEL, &req, &batch, mask.as_deref(), bar)
        .await?;
    bar.done(&format!("{} results", k * n));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let show = |v: &[f64], digits: usize| -> String {
        if v.len() <= 8 {
            v.iter()
                .map(|d| format!("{d:.digits$e}"))
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            format!("mean {:.digits$e} over {}", mean(v), v.len())
        }
    };
    if !matches!(task, Task::Sdedit { .. }) {
        let again = lab.measure(MODEL, task, 0.0, &s.values, 0).await?.values;
        let rms: Vec<f64> = again
            .chunks(m)
            .zip(batch.chunks(m))
            .map(|(ax, yi)| {
                let se: f64 = ax
                    .iter()
                    .zip(yi)
                    .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                    .sum();
                (se / m as f64).sqrt()
            })
            .collect();
        eprintln!("rms of A x - y: {}", show(&rms, 2));
    }
    if let Some(x) = &clean {
        let psnr: Vec<f64> = s
            .values
            .chunks(per)
            .enumerate()
            .map(|(i, r)| image::psnr(&x[i / n * per..][..per], r))
            .collect();
        if psnr.len() <= 8 {
            eprintln!(
                "PSNR against the image (dB): {}",
                psnr.iter()
                    .map(|d| format!("{d:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        } else {
            eprintln!(
                "PSNR against the image: mean {:.2} dB over {}",
                mean(&psnr),
                psnr.len()
            );
        }
    }
    if npy(&input.out) {
        return write_npy(&input.out, &s.values, &[k * n, h, w, c]);
    }
    // Rows of [image, measurement at the image's size (nearest neighbour), variations...].
    let mut rows = Vec::new();
    for i in 0..k {
        let yi = &y[i * m..][..m];
        if let Some(x) = &clean {
            rows.extend_from_slice(&x[i * per..][..per]);
        }
        rows.extend((0..per).map(|j| {
            let (p, ch) = (j / c, j % c);
            yi[((p / w / factor) * mw + (p % w) / factor) * c + ch]
        }));
        rows.extend_from_slice(&s.values[i * n * per..][..n * per]);
    }
    let cols = rows.len() / per / k;
    write_samples(&input.out, cfg, &rows, cols)
}
