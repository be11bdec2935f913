#![cfg(not(target_arch = "wasm32"))]
//! Editing and likelihood against a Gaussian mixture with exact scores.

use scorelab::rng::Rng;
use scorelab::sampler::edit::{
    inpaint, log_likelihood, slerp, DensityGrid, LikelihoodOptions, Probe,
};
use scorelab::sampler::inverse::Enforce;
use scorelab::sampler::{GaussianMixture, Method, SamplerOptions, Schedule, Sde, Silent};
use scorelab::{Backend, Cpu};

const SCHEDULE: Schedule = Schedule::vp(0.1, 20.0, 1e-3, 1000);

fn mixture() -> GaussianMixture {
    mixture_on(SCHEDULE)
}

fn mixture_on(schedule: Schedule) -> GaussianMixture {
    GaussianMixture {
        weights: vec![0.5, 0.3, 0.2],
        means: vec![vec![-1.5, 0.5], vec![1.5, 1.0], vec![0.2, -1.8]],
        vars: vec![vec![0.16, 0.09], vec![0.04, 0.25], vec![0.09, 0.09]],
        schedule,
    }
}

#[test]
fn likelihood_matches_the_exact_log_density() {
    likelihood_on(SCHEDULE, &[Probe::Exact, Probe::Rademacher]);
}

/// The same under sub-VP and VE, whose priors are N(0, I) and N(0, sigma_max^2 I).
#[test]
fn likelihood_under_subvp_and_ve() {
    for sde in [
        Sde::SubVp {
            beta_min: 0.1,
            beta_max: 20.0,
        },
        Sde::Ve {
            sigma_min: 0.01,
            sigma_max: 50.0,
        },
    ] {
        likelihood_on(Schedule { sde, ..SCHEDULE }, &[Probe::Exact]);
    }
}

fn likelihood_on(schedule: Schedule, probes: &[Probe]) {
    let mut gm = mixture_on(schedule);
    let points = [[-1.5f32, 0.5], [1.4, 1.3], [0.0, -1.5], [-1.0, 0.9]];
    let reps = 48;
    let x: Vec<f32> = points
        .iter()
        .flat_map(|p| std::iter::repeat_n(*p, reps).flatten())
        .collect();
    // The exact trace must land on the density; a Rademacher probe (one per copy of a point) only
    // on average, within three standard errors of its mean.
    for &probe in probes {
        let opts = LikelihoodOptions {
            steps: std::env::var("LSTEPS")
                .map(|v| v.parse().unwrap())
                .unwrap_or(100),
            probe,
            dequantize: false,
        };
        let mut cpu = Cpu;
        let res = pollster::block_on(async {
            let xt = cpu.upload(&x, &[points.len() * reps, 2]).unwrap();
            log_likelihood(&mut cpu, &mut gm, &schedule, &opts, &xt, 3, &mut Silent)
                .await
                .unwrap()
        });
        for (i, p) in points.iter().enumerate() {
            let runs = &res.log_p[i * reps..(i + 1) * reps];
            let est = runs.iter().sum::<f64>() / reps as f64;
            let se = (runs.iter().map(|v| (v - est).powi(2)).sum::<f64>()
                / (reps - 1) as f64
                / reps as f64)
                .sqrt();
            let exact = gm.log_density(&[p[0] as f64, p[1] as f64], schedule.t_eps);
            eprintln!("{} {probe:?}, x = {p:?}: estimated log p {est:.4} (standard error {se:.4}), exact {exact:.4} ({} evaluations)", schedule.sde.name(), res.evals);
            assert!(
                (est - exact).abs() < 0.02 + 3.0 * se,
                "{probe:?}, x = {p:?}: {est} vs {exact}"
            );
        }
    }
}

/// The playground's log-density map (its default grid and step count, exact trace) against the
/// exact mixture density at every cell. The page colours the top 10 nats and clips the rest; the
/// error concentrates far out between components, where trajectories of neighbouring points part.
#[test]
fn density_grid_matches_the_exact_log_density() {
    let mut gm = mixture();
    let grid = DensityGrid::default();
    let res =
        pollster::block_on(grid.log_density(&mut Cpu, &mut gm, &SCHEDULE, &mut Silent)).unwrap();
    let points = grid.points();
    assert_eq!(res.log_p.len(), grid.size * grid.size);
    // The top row starts at the upper-left corner, x increasing along the row.
    assert!(points[0] < 0.0 && points[1] > 0.0 && points[2] > points[0]);
    let exact: Vec<f64> = points
        .chunks(2)
        .map(|p| gm.log_density(&[p[0] as f64, p[1] as f64], SCHEDULE.t_eps))
        .collect();
    let errors: Vec<f64> = res
        .log_p
        .iter()
        .zip(&exact)
        .map(|(a, b)| (a - b).abs())
        .collect();
    let mean = |e: &[f64]| e.iter().sum::<f64>() / e.len() as f64;
    let top = exact.iter().cloned().fold(f64::MIN, f64::max);
    let shown: Vec<f64> = errors
        .iter()
        .zip(&exact)
        .filter(|(_, lp)| **lp > top - 10.0)
        .map(|(e, _)| *e)
        .collect();
    eprintln!(
        "{0}x{0} grid, {1} steps, {2} evaluations: mean error {3:.3} nats over the {4} cells within 10 nats of the top, {5:.3} over all cells (worst {6:.2})",
        grid.size,
        grid.steps,
        res.evals,
        mean(&shown),
        shown.len(),
        mean(&errors),
        errors.iter().cloned().fold(0.0, f64::max)
    );
    assert!(
        mean(&shown) < 0.1,
        "mean error {} where the map has colour",
        mean(&shown)
    );
    assert!(
        mean(&errors) < 0.5,
        "mean error {} over the grid",
        mean(&errors)
    );
}

/// Inpaints the second coordinate given the first (x0 = 1.4, where the exact conditional
/// p(x1 | x0) is essentially one component, N(1.0, 0.25)); returns |mean error| and the variance
/// ratio. Known coordinates must come back exactly.
fn conditional_error(method: Enforce, opts: SamplerOptions) -> (f64, f64) {
    let mut gm = mixture();
    let x0 = 1.4f32;
    let n = 2000;
    let known: Vec<f32> = (0..n).flat_map(|_| [x0, 0.0]).collect();
    let mut cpu = Cpu;
    let out = pollster::block_on(async {
        let k = cpu.upload(&known, &[n, 2]).unwrap();
        let m = cpu.upload(&[1.0, 0.0], &[2]).unwrap();
        let y = inpaint(
            &mut cpu,
            &mut gm,
            &SCHEDULE,
            &opts,
            method,
            &k,
            &m,
            5,
            &mut Silent,
        )
        .await
        .unwrap();
        cpu.read(&y).await.unwrap()
    });
    assert!(
        out.chunks(2).all(|p| p[0] == x0),
        "known coordinate changed"
    );
    let w: Vec<f64> = (0..3)
        .map(|k| {
            gm.weights[k] * (-(x0 as f64 - gm.means[k][0]).powi(2) / (2.0 * gm.vars[k][0])).exp()
                / gm.vars[k][0].sqrt()
        })
        .collect();
    let total: f64 = w.iter().sum();
    let mean: f64 = (0..3).map(|k| w[k] / total * gm.means[k][1]).sum();
    let var: f64 = (0..3)
        .map(|k| w[k] / total * (gm.vars[k][1] + gm.means[k][1].powi(2)))
        .sum::<f64>()
        - mean * mean;
    let got_mean = out.chunks(2).map(|p| p[1] as f64).sum::<f64>() / n as f64;
    let got_var = out
        .chunks(2)
        .map(|p| (p[1] as f64 - got_mean).powi(2))
        .sum::<f64>()
        / n as f64;
    eprintln!("{method:?} {}: conditional mean {got_mean:.3} (exact {mean:.3}), variance {got_var:.3} (exact {var:.3})", opts.method.name());
    ((got_mean - mean).abs(), got_var / var)
}

#[test]
fn repaint_follows_the_conditional_better_than_replacement() {
    let ddpm = SamplerOptions {
        method: Method::Ddpm,
        steps: Some(200),
        ..Default::default()
    };
    let (replace_err, _) = conditional_error(Enforce::Replace, ddpm.clone());
    let (repaint_err, repaint_var) = conditional_error(
        Enforce::Repaint {
            jump: 10,
            resample: 10,
        },
        ddpm,
    );
    assert!(
        repaint_err < 0.2 && repaint_var < 3.0,
        "RePaint: mean error {repaint_err}, variance ratio {repaint_var}"
    );
    assert!(
        repaint_err < replace_err / 2.0,
        "RePaint {repaint_err} vs replacement {replace_err}"
    );
    // The other samplers run the same loop; known values come back exactly.
    conditional_error(
        Enforce::Replace,
        SamplerOptions {
            method: Method::Ddim,
            steps: Some(50),
            ..Default::default()
        },
    );
    conditional_error(
        Enforce::Repaint {
            jump: 5,
            resample: 2,
        },
        SamplerOptions {
            method: Method::Pc,
            steps: Some(50),
            ..Default::default()
        },
    );
}

#[test]
fn slerp_keeps_endpoints_and_norm() {
    let mut rng = Rng::new(1);
    let (a, b) = (rng.normals(1000), rng.normals(1000));
    assert!(
        slerp(&a, &b, 0.0)
            .iter()
            .zip(&a)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
            < 1e-5
    );
    assert!(slerp(&a, &b, 1.0)
        .iter()
        .zip(&b)
        .all(|(x, y)| (x - y).abs() < 1e-5));
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let mid = slerp(&a, &b, 0.5);
    assert!(
        (norm(&mid) / norm(&a) - 1.0).abs() < 0.05,
        "slerp of two independent normals keeps the norm"
    );
}

/// Progress counts the steps RePaint takes, also when the last block is shorter than `jump`.
#[test]
fn repaint_progress_ends_at_its_total() {
    struct Last(Vec<(usize, usize, f64)>);
    impl scorelab::sampler::Progress for Last {
        fn step(&mut self, info: &scorelab::sampler::StepInfo) -> scorelab::sampler::Control {
            self.0.push((info.step, info.total, info.fraction));
            scorelab::sampler::Control::Continue
        }
    }
    let opts = SamplerOptions {
        method: Method::Ddpm,
        steps: Some(10),
        ..Default::default()
    };
    let mut seen = Last(Vec::new());
    pollster::block_on(async {
        let known = Cpu.upload(&[0.5, 0.0], &[1, 2]).unwrap();
        let mask = Cpu.upload(&[1.0, 0.0], &[2]).unwrap();
        inpaint(
            &mut Cpu,
            &mut mixture(),
            &SCHEDULE,
            &opts,
            Enforce::Repaint {
                jump: 3,
                resample: 2,
            },
            &known,
            &mask,
            1,
            &mut seen,
        )
        .await
        .unwrap()
    });
    let &(step, total, fraction) = seen.0.last().unwrap();
    assert_eq!((seen.0.len(), step, total, fraction), (20, 20, 20, 1.0));
}
