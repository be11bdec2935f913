//! The shipped models against the training code: golden forward passes and the committed
//! reference sampler runs every backend replays.

#![allow(dead_code)]

use scorelab::{Backend, Result};

/// The shipped models and their golden tensors (exported by `train/export.py`).
pub const MODELS: &[(&str, &[u8], &[u8])] = &[
    (
        "toy2d",
        include_bytes!("../../models/toy2d.safetensors"),
        include_bytes!("../golden/toy2d.safetensors"),
    ),
    (
        "digits",
        include_bytes!("../../models/digits.safetensors"),
        include_bytes!("../golden/digits.safetensors"),
    ),
    (
        "emoji",
        include_bytes!("../../models/emoji.safetensors"),
        include_bytes!("../golden/emoji.safetensors"),
    ),
];

/// Runs a model's forward pass on the golden inputs and compares eps and every tap with the
/// training code's outputs; passes when max |diff| <= rtol * max |golden| for each tensor.
/// Returns one line per tensor: max abs error and that error relative to the largest golden value.
pub async fn check_golden<B: Backend>(
    be: &mut B,
    model: &[u8],
    golden: &[u8],
    rtol: f32,
) -> std::result::Result<Vec<String>, String> {
    use scorelab::model::file::read_tensors;
    let net = scorelab::Network::load(be, model).map_err(|e| e.to_string())?;
    let (g, _) = read_tensors(golden).map_err(|e| e.to_string())?;
    let input = |be: &mut B, name: &str| {
        be.upload(&g[name].data, &g[name].shape)
            .map_err(|e| e.to_string())
    };
    let (x, t, labels) = (input(be, "x")?, input(be, "t")?, input(be, "labels")?);
    let mut taps = Vec::new();
    let eps = net
        .forward_with_taps(be, &x, &t, &labels, Some(&mut taps))
        .map_err(|e| e.to_string())?;
    let mut outputs = vec![("eps".to_string(), eps)];
    outputs.extend(taps.into_iter().map(|(name, t)| (format!("tap.{name}"), t)));
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    for (name, tensor) in outputs {
        let want = g
            .get(&name)
            .ok_or_else(|| format!("golden file has no {name}"))?;
        let got = be.read(&tensor).await.map_err(|e| e.to_string())?;
        if got.len() != want.data.len() {
            failures.push(format!(
                "{name}: {} values, golden has {}",
                got.len(),
                want.data.len()
            ));
            continue;
        }
        let (worst, max_abs) = got
            .iter()
            .zip(&want.data)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold((0, 0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
        let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        let rel = max_abs / scale.max(f32::MIN_POSITIVE);
        lines.push(format!("{name}: max abs {max_abs:.2e}, rel {rel:.2e}"));
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // NaN must fail too
        if !(rel <= rtol) {
            failures.push(format!("{name}: element {worst} is {}, golden {} (max abs {max_abs:.3e}, rel {rel:.3e} > {rtol:e})", got[worst], want.data[worst]));
        }
    }
    if failures.is_empty() {
        Ok(lines)
    } else {
        Err(failures.join("\n"))
    }
}

/// Collects the predicted x0 after every step.
#[derive(Default)]
pub struct Recorder {
    pub previews: Vec<Vec<f32>>,
}

impl scorelab::sampler::Progress for Recorder {
    fn step(&mut self, _: &scorelab::sampler::StepInfo) -> scorelab::sampler::Control {
        scorelab::sampler::Control::Preview
    }
    fn preview(&mut self, _: &scorelab::sampler::StepInfo, x0: &[f32]) {
        self.previews.push(x0.to_vec());
    }
}

/// Fixed sampler runs whose results are compared across backends and against the committed
/// reference `tests/golden/sampler_runs.json` (written by the native CPU backend).
/// (model, sampler, steps, batch, seed, class)
pub type SamplerRun = (&'static str, &'static str, usize, usize, u32, Option<usize>);

pub const SAMPLER_RUNS: &[SamplerRun] = &[
    // (model, sampler, steps, batch, seed, class)
    ("toy2d", "ddim", 8, 6, 42, Some(1)),
    ("toy2d", "sde", 8, 6, 7, None),
    ("toy2d", "pc", 4, 6, 9, Some(3)),
    ("toy2d", "dpm2m", 6, 6, 11, Some(0)),
    ("digits", "ddpm", 3, 2, 5, Some(7)),
];

pub fn run_name(i: usize) -> String {
    let (model, sampler, steps, n, seed, class) = SAMPLER_RUNS[i];
    format!("{model}/{sampler}/{steps} steps/n={n}/seed={seed}/class={class:?}")
}

/// Runs `SAMPLER_RUNS[i]` on a backend; returns the previews of every step and the result.
pub async fn sampler_run<B: Backend>(be: &mut B, i: usize) -> Result<(Vec<Vec<f32>>, Vec<f32>)> {
    use scorelab::sampler::{sample, Guided, Method, SamplerOptions};
    let (model, sampler, steps, n, seed, class) = SAMPLER_RUNS[i];
    let bytes = MODELS
        .iter()
        .find(|m| m.0 == model)
        .expect("a shipped model")
        .1;
    let net = scorelab::Network::load(be, bytes)?;
    let mut shape = vec![n];
    shape.extend(net.config.sample_shape());
    let schedule = net.config.schedule();
    let opts = SamplerOptions {
        method: Method::parse(sampler)?,
        steps: Some(steps),
        ..Default::default()
    };
    let mut den = Guided::new(be, &net, &vec![class; n], 2.0)?;
    let mut rec = Recorder::default();
    let x = sample(be, &mut den, &schedule, &opts, &shape, seed, &mut rec).await?;
    let out = be.read(&x).await?;
    Ok((rec.previews, out))
}
