//! The command-line interface (native only): a thin layer over [`scorelab::lab::Session`], the
//! same operations the wasm API exposes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use scorelab::lab::{
    ClassifierGuidance, EditRequest, OdeRequest, RestoreRequest, SampleRequest, Samples, Session,
    Task,
};
use scorelab::model::ModelConfig;
use scorelab::sampler::edit::{LikelihoodOptions, Probe};
use scorelab::sampler::inverse::Enforce;
use scorelab::sampler::{Control, Method, Progress, SamplerOptions, Silent, StepInfo};
use scorelab::train::{Loss, Projection, SdeChoice, TrainOptions, Trainer};
use scorelab::{image, Backend, Cpu, Error, FastCpu, Gpu, GpuContext, Result};

/// The name the one model of a CLI run is loaded under.
const MODEL: &str = "model";
/// Border of the PNG grids the CLI writes and reads.
const GAP: usize = 2;

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

#[derive(clap::Args)]
struct Common {
    /// Weights file (models/*.safetensors)
    #[arg(long, default_value = "models/digits.safetensors")]
    model: PathBuf,
    /// Where to run
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendChoice,
    /// Threads for the CPU backend (1 to 4; default: the cores, at most 4): `sample` splits its batch
    /// over them (the same samples as one thread, bit for bit), other commands its matrix products
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=4))]
    threads: Option<u8>,
}

#[derive(clap::Args)]
struct Condition {
    /// Class index or name (omit for unconditional)
    #[arg(long)]
    class: Option<String>,
    /// Classifier-free guidance scale (1 = plain conditional, 0 = unconditional)
    #[arg(long, default_value_t = 1.0)]
    guidance: f32,
}

#[derive(clap::Args)]
struct SamplerArgs {
    /// Sampling method (see the list below) [default: ddim; inpaint and colorize: ddpm]
    #[arg(long)]
    sampler: Option<String>,
    /// Steps [default: the sampler's own; inpaint and colorize: 100] (rk45: the step cap; annealed: noise levels)
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
    fn options(
        &self,
        default_method: &str,
        default_steps: Option<usize>,
    ) -> Result<SamplerOptions> {
        Ok(SamplerOptions {
            method: Method::parse(self.sampler.as_deref().unwrap_or(default_method))?,
            steps: self.steps.or(default_steps),
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

#[derive(clap::Args)]
struct EditArgs {
    #[command(flatten)]
    sampler: SamplerArgs,
    #[command(flatten)]
    condition: Condition,
    /// How the measurement is kept: replace (projection: exact), repaint (projection with
    /// resampling that harmonises the boundary) or gradient (likelihood gradient, any sampler,
    /// approximate) [default: replace; deblur: gradient; denoise: start at the matching noise level]
    #[arg(long)]
    method: Option<String>,
    /// repaint: jump length in steps
    #[arg(long, default_value_t = 10)]
    jump: usize,
    /// repaint: resamplings per jump
    #[arg(long, default_value_t = 5)]
    resample: usize,
    /// gradient: scale of the likelihood gradient in (0, 2) (1 = exact for unit-variance
    /// Gaussian data); given alone, it selects the gradient method
    #[arg(long)]
    scale: Option<f64>,
    /// Seed of the first variation
    #[arg(long, default_value_t = 0)]
    seed: u32,
}

impl EditArgs {
    /// The chosen method, `None` when not given.
    fn method(&self) -> Result<Option<Enforce>> {
        let Some(name) = &self.method else {
            return Ok(self.scale.map(|scale| Enforce::Gradient { scale }));
        };
        Ok(Some(match name.as_str() {
            "replace" => Enforce::Replace,
            "repaint" => Enforce::Repaint {
                jump: self.jump,
                resample: self.resample,
            },
            "gradient" => Enforce::Gradient {
                scale: self.scale.unwrap_or(1.0),
            },
            other => {
                return Err(Error::Param {
                    name: "method".into(),
                    detail: format!("{other:?}: use replace, repaint or gradient"),
                })
            }
        }))
    }

    fn request(&self, cfg: &ModelConfig) -> Result<EditRequest> {
        Ok(EditRequest {
            sampler: self.sampler.options("ddpm", Some(100))?,
            method: self.method()?.unwrap_or(Enforce::Replace),
            seed: self.seed,
            class: parse_class(cfg, &self.condition.class)?,
            guidance: self.condition.guidance,
        })
    }

    fn restore_request(&self, cfg: &ModelConfig, task: Task, noise: f64) -> Result<RestoreRequest> {
        Ok(RestoreRequest {
            task,
            sampler: self.sampler.options("ddpm", Some(100))?,
            method: self.method()?,
            noise,
            seed: self.seed,
            class: parse_class(cfg, &self.condition.class)?,
            guidance: self.condition.guidance,
        })
    }
}

#[derive(clap::Args)]
struct OdeArgs {
    /// Probability-flow ODE solver: rk45, heun or euler
    #[arg(long, default_value = "rk45")]
    solver: String,
    /// Steps (heun, euler) or the step cap (rk45)
    #[arg(long, default_value_t = 500)]
    ode_steps: usize,
    /// rk45 relative tolerance
    #[arg(long, default_value_t = 1e-4)]
    rtol: f64,
    /// rk45 absolute tolerance
    #[arg(long, default_value_t = 1e-4)]
    atol: f64,
    #[command(flatten)]
    condition: Condition,
}

impl OdeArgs {
    fn request(&self, cfg: &ModelConfig) -> Result<OdeRequest> {
        Ok(OdeRequest {
            solver: self.solver.clone(),
            steps: self.ode_steps,
            rtol: self.rtol,
            atol: self.atol,
            class: parse_class(cfg, &self.condition.class)?,
            guidance: self.condition.guidance,
        })
    }
}

#[derive(clap::Args)]
struct RestoreInput {
    /// The images: a PNG at the model's size, a grid written by `sample`, or a float32 .npy
    /// `[k, h, w, c]` (values in [-1, 1]); measured by the command unless --measured
    #[arg(long)]
    image: PathBuf,
    /// The image is the measurement itself (super-resolution: a PNG of the model's size / factor
    /// or a .npy `[k, h / f, w / f, c]`; denoising: a noisy image; deblurring: a blurred one)
    #[arg(long)]
    measured: bool,
    /// Variations of each image
    #[arg(long, default_value_t = 4)]
    n: usize,
    /// Output: a PNG of rows [image, measurement, variations...], or a .npy of the variations
    #[arg(long, default_value = "restored.png")]
    out: PathBuf,
}

/// Which part of the image `inpaint` fills when no mask file is given.
#[derive(Clone, Copy, ValueEnum)]
enum Region {
    Left,
    Right,
    Top,
    Bottom,
    Center,
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
        #[command(flatten)]
        condition: Condition,
        /// Seed of the first sample (sample i uses seed + i)
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// Number of samples
        #[arg(long, default_value_t = 16)]
        n: usize,
        /// A noise-conditional classifier (models/digits-classifier.safetensors) for classifier
        /// guidance towards --class; with --guidance 0 the score model itself is unconditional
        #[arg(long)]
        classifier: Option<PathBuf>,
        /// Classifier guidance scale (with --classifier)
        #[arg(long, default_value_t = 1.0, requires = "classifier")]
        classifier_scale: f64,
        /// Output file (.png, .csv for point models, or .npy: float32 [n, ..])
        #[arg(long, default_value = "samples.png")]
        out: PathBuf,
    },
    /// Fill a region of an image; writes [image, masked, variations...] as one PNG row
    #[command(after_help = sampler_list())]
    Inpaint {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        edit: EditArgs,
        /// The image (PNG at the model's size)
        #[arg(long)]
        image: PathBuf,
        /// Mask PNG at the model's size: white = keep, black = fill
        #[arg(long, conflicts_with = "fill")]
        mask: Option<PathBuf>,
        /// The region to fill when no mask is given
        #[arg(long, value_enum, default_value = "right")]
        fill: Region,
        /// Number of variations
        #[arg(long, default_value_t = 4)]
        n: usize,
        #[arg(long, default_value = "inpainted.png")]
        out: PathBuf,
    },
    /// Colour a grayscale (or any rgb) image keeping its luminance (rgb models); writes [input, variations...]
    #[command(after_help = sampler_list())]
    Colorize {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        edit: EditArgs,
        /// The image (PNG at the model's size; its luminance is kept)
        #[arg(long)]
        image: PathBuf,
        #[arg(long, default_value_t = 4)]
        n: usize,
        #[arg(long, default_value = "colorized.png")]
        out: PathBuf,
    },
    /// Super-resolution: restore an image from its mean over factor x factor blocks; writes
    /// [image, measurement, variations...] and prints each variation's PSNR and ||A x - y||
    #[command(after_help = sampler_list())]
    Superres {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        edit: EditArgs,
        #[command(flatten)]
        input: RestoreInput,
        /// Downsampling factor: 2 or 4
        #[arg(long, default_value_t = 4)]
        factor: usize,
        /// Std of the measurement's noise (model units: images span [-1, 1])
        #[arg(long, default_value_t = 0.0)]
        noise: f64,
    },
    /// Denoising: restore an image from a copy with Gaussian noise of a known std; writes
    /// [image, noisy, variations...]
    #[command(after_help = sampler_list())]
    Denoise {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        edit: EditArgs,
        #[command(flatten)]
        input: RestoreInput,
        /// Std of the noise (model units: images span [-1, 1])
        #[arg(long, default_value_t = 0.2)]
        noise: f64,
    },
    /// Deblurring: restore an image from a Gaussian blur of it; writes [image, blurred, variations...]
    #[command(after_help = sampler_list())]
    Deblur {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        edit: EditArgs,
        #[command(flatten)]
        input: RestoreInput,
        /// Blur std in pixels, 0.5 to 2
        #[arg(long, default_value_t = 1.0)]
        width: f64,
        /// Std of the measurement's noise (model units)
        #[arg(long, default_value_t = 0.0)]
        noise: f64,
    },
    /// SDEdit: noise an image (a sketch, say) to a strength in (0, 1] and denoise it into a
    /// sample; writes [image, variations...]
    #[command(after_help = sampler_list())]
    Sdedit {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        edit: EditArgs,
        #[command(flatten)]
        input: RestoreInput,
        /// How far to noise the image: 0 keeps it, 1 is pure noise
        #[arg(long, default_value_t = 0.5)]
        strength: f64,
        /// Mask PNG at the model's size: white = keep exactly, black = free
        #[arg(long)]
        mask: Option<PathBuf>,
    },
    /// Encode images to their probability-flow latents and decode them back; prints the PSNR of
    /// each reconstruction and writes [image, latent, reconstruction] rows
    Roundtrip {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        ode: OdeArgs,
        /// Images (PNGs at the model's size, or grids written by `sample`); without any, `n` samples are drawn first (DDIM 100)
        #[arg(long, num_args = 1..)]
        image: Vec<PathBuf>,
        #[arg(long, default_value_t = 4)]
        n: usize,
        #[arg(long, default_value_t = 0)]
        seed: u32,
        #[arg(long, default_value = "roundtrip.png")]
        out: PathBuf,
    },
    /// Decode spherical interpolations between the starting noise of two seeds
    Interpolate {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        ode: OdeArgs,
        #[arg(long, default_value_t = 0)]
        seed_a: u32,
        #[arg(long, default_value_t = 1)]
        seed_b: u32,
        /// Frames, both ends included
        #[arg(long, default_value_t = 8)]
        frames: usize,
        #[arg(long, default_value = "interpolation.png")]
        out: PathBuf,
    },
    /// Estimate log p(x) and bits/dim of images with the probability-flow ODE
    Likelihood {
        #[command(flatten)]
        common: Common,
        /// Images (PNGs at the model's size, or grids written by `sample`)
        #[arg(long, num_args = 1.., required = true)]
        image: Vec<PathBuf>,
        /// Heun steps of the ODE (4 network evaluations each)
        #[arg(long, default_value_t = 50)]
        steps: usize,
        /// Divergence: auto (exact trace up to 16 values per sample, else rademacher), exact,
        /// rademacher or gaussian
        #[arg(long, default_value = "auto")]
        probe: Probe,
        /// Class index or name the density is conditioned on (omit for unconditional)
        #[arg(long)]
        class: Option<String>,
        #[arg(long, default_value_t = 0)]
        seed: u32,
    },
    /// Train a 2-D score model on points (a CSV of x,y lines) and write it as a weights file that
    /// `sample`, `likelihood` and the page load like the shipped ones
    Train2d {
        /// The points: one "x,y" per line (a header line is skipped)
        #[arg(long)]
        data: PathBuf,
        /// dsm (denoising) or ssm (sliced score matching)
        #[arg(long, default_value = "dsm", value_parser = parse_name::<Loss>)]
        loss: Loss,
        /// ssm's projections: rademacher or gaussian
        #[arg(long, default_value = "rademacher", value_parser = parse_name::<Projection>)]
        projection: Projection,
        /// vp, subvp or ve
        #[arg(long, default_value = "vp", value_parser = parse_name::<SdeChoice>)]
        sde: SdeChoice,
        /// Optimizer steps
        #[arg(long, default_value_t = 3000)]
        steps: usize,
        /// Hidden width and residual blocks of the MLP
        #[arg(long, default_value_t = 64)]
        width: usize,
        #[arg(long, default_value_t = 2)]
        depth: usize,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Adam's learning rate
        #[arg(long, default_value_t = 3e-3)]
        lr: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to run: cpu, gpu or reference
        #[arg(long, value_enum, default_value = "cpu")]
        backend: BackendChoice,
        /// Output weights file
        #[arg(long, default_value = "trained.safetensors")]
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

impl Bar {
    fn new() -> Bar {
        Bar {
            start: Instant::now(),
        }
    }

    fn done(&self, what: &str) {
        eprintln!("\n{what} in {:.2} s", self.start.elapsed().as_secs_f64());
    }
}

impl Progress for Bar {
    fn step(&mut self, info: &StepInfo) -> Control {
        let width = 30;
        let filled = (info.fraction * width as f64).round() as usize;
        let secs = self.start.elapsed().as_secs_f64();
        eprint!(
            "\r[{}{}] step {}/{} t={:.3} {} evals {:.1} steps/s ",
            "#".repeat(filled),
            " ".repeat(width - filled),
            info.step,
            info.total,
            info.t,
            info.evals,
            info.step as f64 / secs.max(1e-9)
        );
        let _ = std::io::stderr().flush();
        Control::Continue
    }
}

fn parse_class(cfg: &ModelConfig, class: &Option<String>) -> Result<Option<usize>> {
    let Some(c) = class else { return Ok(None) };
    if let Ok(i) = c.parse::<usize>() {
        return Ok(Some(i)); // range-checked by the denoiser
    }
    let names = &cfg.classes.names;
    names
        .iter()
        .position(|n| n == c)
        .map(Some)
        .ok_or_else(|| Error::Param {
            name: "class".into(),
            detail: format!("unknown class {c:?}; classes: {}", names.join(", ")),
        })
}

/// A file error, naming the option it came from and the path.
fn io_error(name: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        detail: format!("{e} (--{name})"),
    }
}

fn write_png(path: &Path, rgba: &[u8], w: usize, h: usize) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| io_error("out", path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .and_then(|mut w| w.write_image_data(rgba))
        .map_err(|e| io_error("out", path, e))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Reads a PNG of any colour type as 8-bit RGBA; returns the pixels, width and height.
fn read_png(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let file = std::fs::File::open(path).map_err(|e| io_error("image", path, e))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(|e| io_error("image", path, e))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| io_error("image", path, e))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let px = &buf[..info.buffer_size()];
    let rgba = match info.color_type {
        png::ColorType::Rgba => px.to_vec(),
        png::ColorType::Rgb => px.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        png::ColorType::Grayscale => px.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::GrayscaleAlpha => px
            .chunks(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Indexed => {
            return Err(io_error("image", path, "indexed colour was not expanded"))
        }
    };
    Ok((rgba, w, h))
}

/// Reads images as model values, concatenated. A PNG at the model's size is one image; a larger
/// one must be a grid as `sample` writes it (tiles with a 2-pixel border), whose tiles are read in
/// order, skipping blank (all-white) tiles.
fn read_images(paths: &[PathBuf], cfg: &ModelConfig) -> Result<Vec<f32>> {
    let d = &cfg.data;
    if d.kind == "points" {
        return Err(Error::Param {
            name: "model".into(),
            detail: "this command works on image models".into(),
        });
    }
    let (tw, th) = (d.width + GAP, d.height + GAP);
    let mut values = Vec::new();
    for path in paths {
        let (rgba, w, h) = read_png(path)?;
        if (w, h) == (d.width, d.height) {
            values.extend(image::from_rgba(&rgba, d.channels));
            continue;
        }
        if w < GAP || h < GAP || !(w - GAP).is_multiple_of(tw) || !(h - GAP).is_multiple_of(th) {
            return Err(io_error(
                "image",
                path,
                format!(
                    "is {w}x{h}: give {}x{} images or a grid written by `sample`",
                    d.width, d.height
                ),
            ));
        }
        for row in 0..(h - GAP) / th {
            for col in 0..(w - GAP) / tw {
                let (x0, y0) = (GAP + col * tw, GAP + row * th);
                let tile: Vec<u8> = (y0..y0 + d.height)
                    .flat_map(|y| rgba[(y * w + x0) * 4..(y * w + x0 + d.width) * 4].to_vec())
                    .collect();
                if tile.iter().any(|&b| b != 255) {
                    values.extend(image::from_rgba(&tile, d.channels));
                }
            }
        }
    }
    Ok(values)
}

/// Reads exactly one image (see [`read_images`]).
fn read_one_image(path: &Path, cfg: &ModelConfig) -> Result<Vec<f32>> {
    let values = read_images(&[path.to_path_buf()], cfg)?;
    if values.len() != cfg.sample_len() {
        return Err(io_error(
            "image",
            path,
            format!("holds {} images; give one", values.len() / cfg.sample_len()),
        ));
    }
    Ok(values)
}

/// Writes samples as a grid with `cols` columns (images) or a scatter plot / CSV (points).
fn write_samples(out: &Path, cfg: &ModelConfig, values: &[f32], cols: usize) -> Result<()> {
    let d = &cfg.data;
    // float32 [n, ..sample shape], no 8-bit rounding (for evaluation scripts).
    if out.extension().is_some_and(|e| e == "npy") {
        let mut shape = vec![values.len() / cfg.sample_len()];
        shape.extend(cfg.sample_shape());
        return write_npy(out, values, &shape);
    }
    if d.kind == "points" {
        if out.extension().is_some_and(|e| e == "csv") {
            let text: String = values
                .chunks(d.dim)
                .map(|p| {
                    p.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                        + "\n"
                })
                .collect();
            return std::fs::write(out, text)
                .map_err(|e| io_error("out", out, e))
                .map(|_| eprintln!("wrote {}", out.display()));
        }
        return write_png(out, &image::scatter(values, 512, 4.0), 512, 512);
    }
    let n = values.len() / cfg.sample_len();
    let (rgba, w, h) = image::grid(values, n, (d.height, d.width, d.channels), cols, GAP);
    write_png(out, &rgba, w, h)
}

/// A mask PNG at the model's size: 1 where it is not black (keep), 0 elsewhere.
fn read_mask(path: &Path, cfg: &ModelConfig) -> Result<Vec<f32>> {
    Ok(read_one_image(path, cfg)?
        .iter()
        .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
        .collect())
}

impl Command {
    /// A restoring command's arguments, task, measurement noise and kept-region mask file.
    fn restoring(&self) -> Option<(&EditArgs, &RestoreInput, Task, f64, Option<&Path>)> {
        match self {
            Command::Superres {
                edit,
                input,
                factor,
                noise,
                ..
            } => Some((
                edit,
                input,
                Task::Superres { factor: *factor },
                *noise,
                None,
            )),
            Command::Denoise {
                edit, input, noise, ..
            } => Some((edit, input, Task::Denoise { noise: *noise }, 0.0, None)),
            Command::Deblur {
                edit,
                input,
                width,
                noise,
                ..
            } => Some((edit, input, Task::Deblur { width: *width }, *noise, None)),
            Command::Sdedit {
                edit,
                input,
                strength,
                mask,
                ..
            } => Some((
                edit,
                input,
                Task::Sdedit {
                    strength: *strength,
                },
                0.0,
                mask.as_deref(),
            )),
            _ => None,
        }
    }
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

/// The image-to-image commands: reads (and unless `--measured`, measures) the images, restores
/// `n` variations of each, prints their PSNR against the images and their distance to the
/// measurement, and writes them: as rows [image, measurement (at the image size), variations...]
/// to a PNG, or as the variations alone, `[k n, h, w, c]`, to a `.npy` file.
async fn restore<B: Backend>(
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

/// Reads a little-endian f32 `.npy` file (C order): its values and shape.
fn read_npy(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| io_error("image", path, e))?;
    let bad = |why: &str| io_error("image", path, format!("is not a float32 .npy file: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no .npy magic"));
    }
    let (len_at, start) = if bytes[6] == 1 { (8, 10) } else { (8, 12) };
    let header_len = if bytes[6] == 1 {
        u16::from_le_bytes([bytes[len_at], bytes[len_at + 1]]) as usize
    } else {
        u32::from_le_bytes(bytes[len_at..len_at + 4].try_into().expect("4 bytes")) as usize
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + header_len)
            .ok_or_else(|| bad("short header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
    if !header.contains("'descr': '<f4'") || header.contains("'fortran_order': True") {
        return Err(bad("needs dtype <f4 in C order"));
    }
    let dims = header
        .split("'shape': (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().map_err(|_| bad("shape is not numbers")))
        .collect::<Result<_>>()?;
    let data = &bytes[start + header_len..];
    if data.len() != shape.iter().product::<usize>() * 4 {
        return Err(bad("data length does not match the shape"));
    }
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(bad("non-finite values"));
    }
    Ok((values, shape))
}

/// The values of a `.npy` file of samples `[k, ..sample]` (any k).
fn read_npy_samples(path: &Path, sample: [usize; 3]) -> Result<Vec<f32>> {
    let (values, shape) = read_npy(path)?;
    if shape.len() != 4 || shape[1..] != sample {
        let [h, w, c] = sample;
        return Err(io_error(
            "image",
            path,
            format!("has shape {shape:?}: it must be [k, {h}, {w}, {c}]"),
        ));
    }
    Ok(values)
}

/// Writes f32 values as a `.npy` file of the given shape.
fn write_npy(path: &Path, values: &[f32], shape: &[usize]) -> Result<()> {
    let dims: String = shape.iter().map(|d| format!("{d},")).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic, version, length, header: padded with spaces to a multiple of 64, ending in a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).map_err(|e| io_error("out", path, e))?;
    eprintln!("wrote {}", path.display());
    Ok(())
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
    let per = cfg.sample_len();
    match command {
        Command::Sample {
            sampler,
            condition,
            seed,
            n,
            classifier,
            classifier_scale,
            out,
            ..
        } => {
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
                class: parse_class(&cfg, &condition.class)?,
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
            write_samples(&out, &cfg, &s.values, (n as f64).sqrt().ceil() as usize)
        }
        Command::Inpaint {
            edit,
            image,
            mask,
            fill,
            n,
            out,
            ..
        } => {
            let req = edit.request(&cfg)?;
            let img = read_one_image(&image, &cfg)?;
            let mask = match mask {
                Some(path) => read_mask(&path, &cfg)?,
                None => region_mask(&cfg, fill),
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
            write_samples(&out, &cfg, &[img, shown, s.values].concat(), n + 2)
        }
        Command::Colorize {
            edit,
            image,
            n,
            out,
            ..
        } => {
            if cfg.data.channels != 3 {
                return Err(Error::Param {
                    name: "model".into(),
                    detail: "colorize needs an rgb model (emoji)".into(),
                });
            }
            let req = edit.request(&cfg)?;
            let img = read_one_image(&image, &cfg)?;
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
            write_samples(&out, &cfg, &[gray, s.values].concat(), n + 1)
        }
        c @ (Command::Superres { .. }
        | Command::Denoise { .. }
        | Command::Deblur { .. }
        | Command::Sdedit { .. }) => {
            let (edit, input, task, noise, mask) = c.restoring().expect("a restoring command");
            let mask = match mask {
                Some(path) => Some(read_mask(path, &cfg)?),
                None => None,
            };
            restore(&mut lab, &cfg, edit, input, task, noise, mask).await
        }
        Command::Roundtrip {
            ode,
            image,
            n,
            seed,
            out,
            ..
        } => {
            let req = ode.request(&cfg)?;
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
                read_images(&image, &cfg)?
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
            write_samples(&out, &cfg, &rows, 3)
        }
        Command::Interpolate {
            ode,
            seed_a,
            seed_b,
            frames,
            out,
            ..
        } => {
            if frames < 2 {
                return Err(Error::Param {
                    name: "frames".into(),
                    detail: "at least 2 (both ends)".into(),
                });
            }
            let req = ode.request(&cfg)?;
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
            write_samples(&out, &cfg, &s.values, frames)
        }
        Command::Likelihood {
            image,
            steps,
            probe,
            class,
            seed,
            ..
        } => {
            let data = read_images(&image, &cfg)?;
            let opts = LikelihoodOptions {
                steps,
                probe,
                dequantize: true,
            };
            let bar = &mut Bar::new();
            let r = lab
                .likelihood(MODEL, &opts, &data, parse_class(&cfg, &class)?, seed, bar)
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
        Command::Info { .. } => {
            println!("{}", serde_json::to_string_pretty(&cfg).unwrap_or_default());
            Ok(())
        }
        Command::Train2d { .. } => unreachable!("train2d runs without a model (run)"),
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

/// A lowercase name of one of the library's option enums (its serde name).
fn parse_name<T: serde::de::DeserializeOwned>(s: &str) -> std::result::Result<T, String> {
    serde_json::from_value(serde_json::Value::String(s.into())).map_err(|e| e.to_string())
}

/// Points from a CSV of `x,y` lines (a first line that does not parse is a header).
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

fn run(cli: Cli) -> Result<()> {
    if let Command::Train2d {
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
    } = &cli.command
    {
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
        return pollster::block_on(match backend {
            BackendChoice::Gpu => Box::pin(train(gpu()?, &points, &opts, *steps, out))
                as std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>>>>,
            BackendChoice::Reference => Box::pin(train(Cpu, &points, &opts, *steps, out)),
            BackendChoice::Cpu | BackendChoice::Auto => {
                Box::pin(train(FastCpu::default(), &points, &opts, *steps, out))
            }
        });
    }
    let common = match &cli.command {
        Command::Sample { common, .. }
        | Command::Inpaint { common, .. }
        | Command::Colorize { common, .. }
        | Command::Superres { common, .. }
        | Command::Denoise { common, .. }
        | Command::Deblur { common, .. }
        | Command::Sdedit { common, .. }
        | Command::Roundtrip { common, .. }
        | Command::Interpolate { common, .. }
        | Command::Likelihood { common, .. }
        | Command::Info { common } => common,
        Command::Train2d { .. } => unreachable!("handled above"),
    };
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
