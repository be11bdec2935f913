#![cfg(not(target_arch = "wasm32"))]
//! Samplers driven by the exact score of a Gaussian mixture must reproduce the mixture; the
//! probability-flow ODE must be invertible; DDIM with eta = 0 must approach Euler on the ODE.

use scorelab::rng::Rng;
use scorelab::sampler::{
    sample, solve_ode, time_grid, GaussianMixture, Method, OdeSolver, SamplerOptions, Schedule,
    Sde, Silent,
};
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

/// Mode weights, per-mode means and per-mode variances of samples, assigning each to its most
/// probable component.
fn moments(gm: &GaussianMixture, xs: &[f32]) -> (Vec<f64>, Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let (k, d) = (gm.weights.len(), gm.dim());
    let mut count = vec![0.0; k];
    let mut sum = vec![vec![0.0; d]; k];
    let mut sq = vec![vec![0.0; d]; k];
    for row in xs.chunks(d) {
        let x: Vec<f64> = row.iter().map(|&v| v as f64).collect();
        let r = gm.responsibilities(&x);
        let c = (0..k).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
        count[c] += 1.0;
        for j in 0..d {
            sum[c][j] += x[j];
            sq[c][j] += x[j] * x[j];
        }
    }
    let n = xs.len() as f64 / d as f64;
    let means: Vec<Vec<f64>> = (0..k)
        .map(|c| (0..d).map(|j| sum[c][j] / count[c]).collect())
        .collect();
    let vars = (0..k)
        .map(|c| {
            (0..d)
                .map(|j| sq[c][j] / count[c] - means[c][j].powi(2))
                .collect()
        })
        .collect();
    (count.iter().map(|c| c / n).collect(), means, vars)
}

fn draw(opts: &SamplerOptions, n: usize, seed: u32) -> Vec<f32> {
    draw_on(SCHEDULE, opts, n, seed)
}

fn draw_on(schedule: Schedule, opts: &SamplerOptions, n: usize, seed: u32) -> Vec<f32> {
    let mut gm = mixture_on(schedule);
    let mut cpu = Cpu;
    pollster::block_on(async {
        let x = sample(
            &mut cpu,
            &mut gm,
            &schedule,
            opts,
            &[n, 2],
            seed,
            &mut Silent,
        )
        .await
        .unwrap();
        cpu.read(&x).await.unwrap()
    })
}

/// Checks mode weights within `w_tol` (absolute), means within `m_tol`, and variances within a
/// relative `v_tol`; returns the worst errors for the report.
fn check(name: &str, xs: &[f32], w_tol: f64, m_tol: f64, v_tol: f64) {
    let gm = mixture();
    let (w, m, v) = moments(&gm, xs);
    let mut worst = (0f64, 0f64, 0f64);
    for c in 0..gm.weights.len() {
        worst.0 = worst.0.max((w[c] - gm.weights[c]).abs());
        for j in 0..gm.dim() {
            worst.1 = worst.1.max((m[c][j] - gm.means[c][j]).abs());
            worst.2 = worst.2.max((v[c][j] / gm.vars[c][j] - 1.0).abs());
        }
    }
    eprintln!(
        "{name}: weight err {:.3}, mean err {:.3}, var rel err {:.3}",
        worst.0, worst.1, worst.2
    );
    assert!(
        worst.0 <= w_tol && worst.1 <= m_tol && worst.2 <= v_tol,
        "{name}: weights {w:?} means {m:?} vars {v:?} (worst {worst:?})"
    );
}

fn opts(method: Method, steps: usize) -> SamplerOptions {
    SamplerOptions {
        method,
        steps: Some(steps),
        ..Default::default()
    }
}

// 4000 samples: the standard error of a mode weight is below 0.008, of a mode mean below 0.02.
const N: usize = 4000;

fn every_sampler() -> Vec<(&'static str, SamplerOptions)> {
    vec![
        ("ddpm 200", opts(Method::Ddpm, 200)),
        ("ddim eta=0, 50", opts(Method::Ddim, 50)),
        (
            "ddim eta=0.5, 50",
            SamplerOptions {
                eta: 0.5,
                ..opts(Method::Ddim, 50)
            },
        ),
        ("euler 100", opts(Method::Euler, 100)),
        ("heun 25", opts(Method::Heun, 25)),
        (
            "rk45",
            SamplerOptions {
                rtol: 1e-4,
                atol: 1e-4,
                ..opts(Method::Rk45, 500)
            },
        ),
        ("sde 500", opts(Method::Sde, 500)),
        ("pc 100 (sde predictor)", opts(Method::Pc, 100)),
        (
            "pc 50 (ddim predictor)",
            SamplerOptions {
                predictor: Method::Ddim,
                ..opts(Method::Pc, 50)
            },
        ),
        ("annealed 100 levels x 3", opts(Method::Annealed, 100)),
        ("dpm2m 10", opts(Method::Dpm2m, 10)),
        ("dpm2m 20", opts(Method::Dpm2m, 20)),
    ]
}

#[test]
fn every_sampler_reproduces_the_mixture() {
    for (name, o) in every_sampler() {
        check(name, &draw(&o, N, 1), 0.03, 0.06, 0.25);
    }
}

/// The same samplers under the sub-VP and VE SDEs (Song et al. 2021, §3.4), with the mixture's
/// exact scores under each: one sampler implementation serves every SDE.
#[test]
fn every_sampler_reproduces_the_mixture_under_subvp_and_ve() {
    let subvp = Schedule {
        sde: Sde::SubVp {
            beta_min: 0.1,
            beta_max: 20.0,
        },
        ..SCHEDULE
    };
    // sigma_max above the largest distance between modes (Song & Ermon 2020, technique 1).
    let ve = Schedule {
        sde: Sde::Ve {
            sigma_min: 0.01,
            sigma_max: 10.0,
        },
        ..SCHEDULE
    };
    for (sde, s) in [("subvp", subvp), ("ve", ve)] {
        // DPM-Solver's grid (quadratic in t) was tuned on VP; sub-VP and VE span a wider range of
        // log-SNR, and 10 steps leave a mode's mean off by 0.18 (20 steps pass). Euler's uniform
        // steps are too coarse for VE's constant rate ln(sigma_max / sigma_min) = 6.9 at 100
        // (mean off by 0.061), not at 200.
        for (name, o) in every_sampler()
            .into_iter()
            .filter(|c| c.0 != "dpm2m 10" && c.0 != "euler 100")
            .chain([("euler 200", opts(Method::Euler, 200))])
        {
            check(
                &format!("{sde} {name}"),
                &draw_on(s, &o, N, 1),
                0.03,
                0.06,
                0.25,
            );
        }
    }
}

#[test]
fn ddpm_is_ddim_with_eta_one() {
    let a = draw(&opts(Method::Ddpm, 40), 64, 5);
    let b = draw(
        &SamplerOptions {
            eta: 1.0,
            ..opts(Method::Ddim, 40)
        },
        64,
        5,
    );
    let d = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "max diff {d}");
}

#[test]
fn ddim_eta_zero_approaches_euler_on_the_ode() {
    let gap = |k: usize| {
        let a = draw(&opts(Method::Ddim, k), 256, 3);
        let b = draw(&opts(Method::Euler, k), 256, 3);
        (a.iter()
            .zip(&b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum::<f64>()
            / a.len() as f64)
            .sqrt()
    };
    let (g50, g500) = (gap(50), gap(500));
    eprintln!("rms gap ddim vs euler: {g50:.4} at 50 steps, {g500:.5} at 500");
    assert!(g500 < g50 / 5.0 && g500 < 0.02, "gap {g50} -> {g500}");
}

#[test]
fn probability_flow_ode_returns_to_its_start() {
    let mut gm = mixture();
    let mut rng = Rng::new(9);
    let x0: Vec<f32> = gm
        .sample(64, &mut rng)
        .into_iter()
        .map(|v| v as f32)
        .collect();
    let mut cpu = Cpu;
    let solver = OdeSolver::Rk45 {
        rtol: 1e-5,
        atol: 1e-5,
        max_steps: 2000,
    };
    let (back, evals) = pollster::block_on(async {
        let x = cpu.upload(&x0, &[64, 2]).unwrap();
        let (z, e1) = solve_ode(
            &mut cpu,
            &mut gm,
            &SCHEDULE,
            x,
            SCHEDULE.t_eps,
            1.0,
            solver,
            0,
            &mut Silent,
        )
        .await
        .unwrap();
        let (x, e2) = solve_ode(
            &mut cpu,
            &mut gm,
            &SCHEDULE,
            z,
            1.0,
            SCHEDULE.t_eps,
            solver,
            0,
            &mut Silent,
        )
        .await
        .unwrap();
        (cpu.read(&x).await.unwrap(), e1 + e2)
    });
    let err = back
        .iter()
        .zip(&x0)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("PF-ODE encode+decode: max error {err:.2e} with {evals} evaluations");
    assert!(err < 2e-3, "max error {err}");
}

#[test]
fn a_sample_depends_only_on_its_own_seed() {
    let batch = draw(&opts(Method::Sde, 20), 4, 10);
    let single = draw(&opts(Method::Sde, 20), 1, 12);
    assert_eq!(&batch[4..6], &single[..]);
}

fn rk45(tol: f64) -> SamplerOptions {
    SamplerOptions {
        rtol: tol,
        atol: tol,
        ..opts(Method::Rk45, 2000)
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max)
}

/// rk45 steps a batch together with the step size its worst sample needs. So a sample's last
/// digits depend on its batch, but every sample meets the tolerance: alone or in a batch of 64,
/// it lands within a few tolerances of the same path solved 1000x tighter, and the same batch
/// always gives the same result.
#[test]
fn rk45_batch_semantics() {
    let tol = 1e-4;
    let batch = draw(&rk45(tol), 64, 20);
    assert_eq!(batch, draw(&rk45(tol), 64, 20), "not reproducible");
    let exact = draw(&rk45(1e-7), 64, 20);
    let mut worst_alone: f64 = 0.0;
    for i in [0, 17, 40, 63] {
        let alone = draw(&rk45(tol), 1, 20 + i as u32);
        let row = &batch[2 * i..2 * i + 2];
        worst_alone = worst_alone.max(max_diff(&alone, &exact[2 * i..2 * i + 2]));
        eprintln!("sample {i}: batch vs alone {:.1e}", max_diff(row, &alone));
    }
    let worst_batch = max_diff(&batch, &exact);
    eprintln!(
        "rk45 at {tol:e}: worst error {worst_batch:.1e} in the batch, {worst_alone:.1e} alone"
    );
    assert!(worst_batch < 20.0 * tol && worst_alone < 20.0 * tol);
}

/// Cancel is honoured between rk45's tries, rejected ones included.
#[test]
fn rk45_reports_and_cancels_rejected_tries() {
    use scorelab::sampler::{Control, Progress, StepInfo};
    #[derive(Default)]
    struct CancelAtFirstRejection(Vec<StepInfo>);
    impl Progress for CancelAtFirstRejection {
        fn step(&mut self, info: &StepInfo) -> Control {
            self.0.push(info.clone());
            if info.rejected {
                Control::Cancel
            } else {
                Control::Continue
            }
        }
    }
    let mut gm = mixture();
    let mut seen = CancelAtFirstRejection::default();
    let r = pollster::block_on(sample(
        &mut Cpu,
        &mut gm,
        &SCHEDULE,
        &rk45(1e-6),
        &[16, 2],
        3,
        &mut seen,
    ));
    assert!(
        matches!(r, Err(scorelab::Error::Cancelled)),
        "{:?}",
        r.err()
    );
    let last = seen.0.last().expect("reports");
    assert!(last.rejected && last.step + 1 == seen.0.len());
    assert_eq!(last.evals, 1 + 6 * seen.0.len(), "evaluations counted");
}

#[test]
fn impossible_parameters_are_refused() {
    let mut gm = mixture();
    let bad = [
        SamplerOptions {
            eta: 1.5,
            ..Default::default()
        },
        SamplerOptions {
            rtol: 0.0,
            ..opts(Method::Rk45, 10)
        },
        SamplerOptions {
            predictor: Method::Rk45,
            ..opts(Method::Pc, 10)
        },
        SamplerOptions {
            rtol: 1e-300,
            ..opts(Method::Rk45, 10)
        },
        // The tolerance cannot be met in 3 steps: an error, not a result short of it.
        SamplerOptions {
            rtol: 1e-6,
            atol: 1e-6,
            ..opts(Method::Rk45, 3)
        },
        opts(Method::Dpm2m, 1),
        opts(Method::Ddim, 0),
        opts(Method::Ddpm, 20_000),
        // A 1000-step chain has no 1000 distinct times above t_eps = 1/1000 to step between.
        opts(Method::Ddim, 1000),
        opts(Method::Ddpm, 5000),
    ];
    for o in bad {
        let r = pollster::block_on(sample(
            &mut Cpu,
            &mut gm,
            &SCHEDULE,
            &o,
            &[1, 2],
            0,
            &mut Silent,
        ));
        assert!(
            matches!(r, Err(scorelab::Error::Param { .. })),
            "{o:?} was accepted"
        );
    }
    assert!(Method::parse("ddim").is_ok() && Method::parse("dpm").is_err());
    // The longest DDIM walk visits every time of the chain once.
    let grid = time_grid(&SCHEDULE, Method::Ddim, 999, 1.0).unwrap();
    assert!(grid.windows(2).all(|w| w[1] < w[0]) && grid[999] == SCHEDULE.t_eps);
}

/// Every grid ends on t_eps exactly (the SDE's last step returns its mean only there).
#[test]
fn time_grids_end_on_t_eps() {
    for method in [
        Method::Ddpm,
        Method::Ddim,
        Method::Euler,
        Method::Heun,
        Method::Sde,
    ] {
        for k in [1, 3, 7, 12, 20, 49, 333] {
            assert_eq!(
                *time_grid(&SCHEDULE, method, k, 1.0)
                    .unwrap()
                    .last()
                    .unwrap(),
                SCHEDULE.t_eps,
                "{method:?} {k}"
            );
        }
    }
}

/// Sharp data (two points blurred by sigma 0.01, like the flat background of a digit): at its
/// default step count every sampler must end on the data, not leave noise behind.
#[test]
fn default_step_counts_end_on_sharp_data() {
    let sharp = GaussianMixture {
        weights: vec![0.5, 0.5],
        means: vec![vec![-0.5, 0.5], vec![0.5, -0.5]],
        vars: vec![vec![1e-4; 2]; 2],
        schedule: SCHEDULE,
    };
    for method in Method::ALL {
        let o = SamplerOptions {
            method,
            ..Default::default()
        };
        let xs = pollster::block_on(async {
            let x = sample(
                &mut Cpu,
                &mut sharp.clone(),
                &SCHEDULE,
                &o,
                &[400, 2],
                5,
                &mut Silent,
            )
            .await
            .unwrap();
            Cpu.read(&x).await.unwrap()
        });
        // Root-mean-square distance to the nearer point.
        let rms = (xs
            .chunks(2)
            .map(|p| {
                sharp
                    .means
                    .iter()
                    .map(|m| (p[0] as f64 - m[0]).powi(2) + (p[1] as f64 - m[1]).powi(2))
                    .fold(f64::MAX, f64::min)
            })
            .sum::<f64>()
            / 400.0)
            .sqrt();
        eprintln!(
            "{} ({} steps): rms distance to the data {rms:.4} (data spread {:.4})",
            method.name(),
            o.steps(),
            (2e-4f64).sqrt()
        );
        assert!(rms < 0.03, "{} leaves noise: rms {rms}", method.name());
    }
}

/// Classifier guidance with the exact `grad log p(component | x_t)` at scale 1 turns the mixture's
/// score into the component's, so every sampler draws from that component alone.
#[test]
fn exact_classifier_guidance_samples_one_component() {
    use scorelab::sampler::guidance::{ClassifierGuided, MixtureClass};
    for (name, o) in [
        ("ddpm 200", opts(Method::Ddpm, 200)),
        ("heun 25", opts(Method::Heun, 25)),
    ] {
        for component in [1, 2] {
            let mut gm = mixture();
            let mut guided = ClassifierGuided {
                inner: &mut gm,
                class: Some(MixtureClass {
                    mixture: mixture(),
                    component,
                }),
                scale: 1.0,
                schedule: SCHEDULE,
            };
            let mut cpu = Cpu;
            let xs = pollster::block_on(async {
                let x = sample(
                    &mut cpu,
                    &mut guided,
                    &SCHEDULE,
                    &o,
                    &[N, 2],
                    1,
                    &mut Silent,
                )
                .await
                .unwrap();
                cpu.read(&x).await.unwrap()
            });
            let gm = mixture();
            let (w, m, v) = moments(&gm, &xs);
            eprintln!(
                "{name}, component {component}: weights {w:.3?}, mean {:.3?}, var {:.3?}",
                m[component], v[component]
            );
            assert!(w[component] > 0.99, "{name} {component}: weights {w:?}");
            for j in 0..2 {
                assert!(
                    (m[component][j] - gm.means[component][j]).abs() < 0.03,
                    "{name} {component}: mean {m:?}"
                );
                assert!(
                    (v[component][j] / gm.vars[component][j] - 1.0).abs() < 0.15,
                    "{name} {component}: var {v:?}"
                );
            }
        }
    }
}
