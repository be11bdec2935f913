//! `scorelab inpaint` and `scorelab colorize`: fill a region, or the colour, of an image.

use std::path::PathBuf;

use clap::ValueEnum;

use scorelab::lab::Session;
use scorelab::model::ModelConfig;
use scorelab::{Backend, Error, Result};

use super::args::{Common, EditArgs};
use super::io::{read_mask, read_one_image, write_samples};
use super::progress::Bar;
use super::MODEL;

/// The arguments of `scorelab inpaint`.
#[derive(clap::Args)]
pub(super) struct InpaintCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) edit: EditArgs,
    /// The image (PNG at the model's size)
    #[arg(long)]
    pub(super) image: PathBuf,
    /// Mask PNG at the model's size: white = keep, black = fill
    #[arg(long, conflicts_with = "fill")]
    pub(super) mask: Option<PathBuf>,
    /// The region to fill when no mask is given
    #[arg(long, value_enum, default_value = "right")]
    pub(super) fill: Region,
    /// Number of variations
    #[arg(long, default_value_t = 4)]
    pub(super) n: usize,
    #[arg(long, default_value = "inpainted.png")]
    pub(super) out: PathBuf,
}

impl InpaintCmd {
    /// Runs the command on the model loaded in `lab`.
    pub(super) async fn run<B: Backend>(
        self,
        lab: &mut Session<B>,
        cfg: &ModelConfig,
    ) -> Result<()> {
        let InpaintCmd {
            edit,
            image,
            mask,
            fill,
            n,
            out,
            ..
        } = self;
        let per = cfg.sample_len();
        let req = edit.request(cfg)?;
        let img = read_one_image(&image, cfg)?;
        let mask = match mask {
            Some(path) => read_mask(&path, cfg)?,
            None => region_mask(cfg, fill),
        };
        let batch: Vec<f32> = img.iter().copied().cycle().take(n * per).collect();
        let bar = &mut Bar::new();
        let s = lab.inpaint(MODEL, &req, &batch, &mask, bar).await?;
        bar.done(&format!("{n} inpaintings"));
        let known_err = s
            .values
            .iter()
            .zip(batch.iter().zip(mask.iter().cycle()))
            .filter(|(_, (_, m))| **m == 1.0)
            .map(|(y, (x, _))| (y - x).abs())
            .fold(0f32, f32::max);
        eprintln!("largest change in the kept region: {known_err:.2e}");
        let shown: Vec<f32> = img
            .iter()
            .zip(&mask)
            .map(|(v, m)| if *m == 1.0 { *v } else { 0.0 })
            .collect();
        write_samples(&out, cfg, &[img, shown, s.values].concat(), n + 2)
    }
}

/// The arguments of `scorelab colorize`.
#[derive(clap::Args)]
pub(super) struct ColorizeCmd {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    pub(super) edit: EditArgs,
    /// The image (PNG at the model's size; its luminance is kept)
    #[arg(long)]
    pub(super) image: PathBuf,
    #[arg(long, default_value_t = 4)]
    pub(super) n: usize,
    #[arg(long, default_value = "colorized.png")]
    pub(super) out: PathBuf,
}

impl ColorizeCmd {
    /// Runs the command on the model loaded in `lab`.
    pub(super) async fn run<B: Backend>(
        self,
        lab: &mut Session<B>,
        cfg: &ModelConfig,
    ) -> Result<()> {
        let ColorizeCmd {
            edit,
            image,
            n,
            out,
            ..
        } = self;
        let per = cfg.sample_len();
        if cfg.data.channels != 3 {
            return Err(Error::Param {
                name: "model".into(),
                detail: "colorize needs an rgb model (emoji)".into(),
            });
        }
        let req = edit.request(cfg)?;
        let img = read_one_image(&image, cfg)?;
        let gray: Vec<f32> = img
            .chunks(3)
            .flat_map(|p| [(p[0] + p[1] + p[2]) / 3.0; 3])
            .collect();
        let batch: Vec<f32> = gray.iter().copied().cycle().take(n * per).collect();
        let bar = &mut Bar::new();
        let s = lab.colorize(MODEL, &req, &batch, bar).await?;
        bar.done(&format!("{n} colorizations"));
        let luma_err = s
            .values
            .chunks(3)
            .zip(batch.chunks(3))
            .map(|(y, x)| ((y[0] + y[1] + y[2]) / 3.0 - x[0]).abs())
            .fold(0f32, f32::max);
        eprintln!("largest luminance change: {luma_err:.2e}");
        write_samples(&out, cfg, &[gray, s.values].concat(), n + 1)
    }
}

/// Which part of the image `inpaint` fills when no mask file is given.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum Region {
    Left,
    Right,
    Top,
    Bottom,
    Center,
}

/// The mask (1 = keep, 0 = fill) of a region, one sample's shape.
fn region_mask(cfg: &ModelConfig, region: Region) -> Vec<f32> {
    let (h, w, c) = (cfg.data.height, cfg.data.width, cfg.data.channels);
    let fill = |y: usize, x: usize| match region {
        Region::Left => x < w / 2,
        Region::Right => x >= w / 2,
        Region::Top => y < h / 2,
        Region::Bottom => y >= h / 2,
        Region::Center => (h / 4..h - h / 4).contains(&y) && (w / 4..w - w / 4).contains(&x),
    };
    (0..h * w)
        .flat_map(|i| std::iter::repeat_n(if fill(i / w, i % w) { 0.0 } else { 1.0 }, c))
        .collect()
}
