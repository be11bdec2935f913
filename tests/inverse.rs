#![cfg(not(target_arch = "wasm32"))]
//! Inverse problems against closed forms: a linear measurement of Gaussian data has a Gaussian
//! (of a mixture, a mixture) posterior, so sample moments can be checked without a trained model.

mod common;

use scorelab::rng::Rng;
use scorelab::sampler::inverse::{solve, Enforce, Measurement, Operator, Start};
use scorelab::sampler::{GaussianMixture, Method, SamplerOptions, Schedule, Silent};
use scorelab::{Backend, Cpu};

const SCHEDULE: Schedule = Schedule::vp(0.1, 20.0, 1e-3, 1000);

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

/// N(mu, I): the data for which the gradient method's `p(x0 | x_t)` is exact.
fn unit_gaussian(mu: &[f64]) -> GaussianMixture {
    GaussianMixture {
        weights: vec![1.0],
        means: vec![mu.to_vec()],
        vars: vec![vec![1.0; mu.len()]],
        schedule: SCHEDULE,
    }
}

fn ddpm(steps: usize) -> SamplerOptions {
    SamplerOptions {
        method: Method::Ddpm,
        steps: Some(steps),
        ..Default::default()
    }
}

fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| rng.normal() as f32).collect()
}

/// Sample mean and covariance of rows of length d.
fn moments(x: &[f32], d: usize) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = x.len() / d;
    let mut mean = vec![0.0; d];
    for row in x.chunks(d) {
        row.iter()
            .zip(&mut mean)
            .for_each(|(v, m)| *m += *v as f64 / n as f64);
    }
    let mut cov = vec![vec![0.0; d]; d];
    for row in x.chunks(d) {
        for i in 0..d {
            for j in 0..d {
                cov[i][j] += (row[i] as f64 - mean[i]) * (row[j] as f64 - mean[j]) / n as f64;
            }
        }
    }
    (mean, cov)
}

/// Checks sample moments against the posterior's: means within 5 standard errors, covariances
/// within 0.08.
fn assert_moments(x: &[f32], d: usize, mean: &[f64], cov: &[Vec<f64>]) {
    let n = (x.len() / d) as f64;
    let (m, c) = moments(x, d);
    for i in 0..d {
        let se = (cov[i][i] / n).sqrt();
        assert!(
            (m[i] - mean[i]).abs() < 5.0 * se + 1e-3,
            "mean {i}: {} vs {} (se {se:.4})",
            m[i],
            mean[i]
        );
        for j in 0..d {
            assert!(
                (c[i][j] - cov[i][j]).abs() < 0.08,
                "cov {i},{j}: {:.4} vs {:.4}",
                c[i][j],
                cov[i][j]
            );
        }
    }
}

#[test]
fn every_adjoint_is_the_transpose() {
    // <A x, u> = <x, A^T u> for random x, u, on every operator.
    let mut be = Cpu;
    let mut rng = Rng::new(3);
    let shape = [2, 8, 8, 3];
    let len = 2 * 8 * 8 * 3;
    let mask: Vec<f32> = (0..8 * 8 * 3)
        .map(|i| ((i / 3) % 3 == 0) as u8 as f32)
        .collect();
    let mask = be.upload(&mask, &shape[1..]).unwrap();
    for op in [
        Operator::Mask,
        Operator::Luminance,
        Operator::Downsample { factor: 2 },
        Operator::Downsample { factor: 4 },
        Operator::Blur { width: 1.0 },
        Operator::Blur { width: 2.0 },
        Operator::Identity,
    ] {
        let m = Measurement::new(&mut be, op, &shape[1..], Some(&mask), 0.0).unwrap();
        let x = be.upload(&random(len, &mut rng), &shape).unwrap();
        let ax = m.apply(&mut be, &x).unwrap();
        let u_shape = Cpu::shape(&ax).to_vec();
        let u = be
            .upload(&random(ax.data.len(), &mut rng), &u_shape)
            .unwrap();
        let atu = m.adjoint(&mut be, &u).unwrap();
        assert_eq!(Cpu::shape(&atu), &shape, "{op:?}");
        let dot = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(a, b)| *a as f64 * *b as f64)
                .sum::<f64>()
        };
        let (l, r) = (dot(&ax.data, &u.data), dot(&x.data, &atu.data));
        assert!(
            (l - r).abs() < 1e-4 * l.abs().max(1.0),
            "{op:?}: {l} vs {r}"
        );
        // A A^T = c I where the projection relies on it (a mask's is the mask itself).
        if !matches!(op, Operator::Blur { .. } | Operator::Mask) {
            let aatu = m.apply(&mut be, &atu).unwrap();
            for (a, b) in aatu.data.iter().zip(u.data.iter()) {
                let want = m.gram() as f32 * b;
                assert!((a - want).abs() < 1e-5, "{op:?}: A A^T u {a} vs {want}");
            }
        }
    }
}

#[test]
fn the_blur_solve_converges_where_it_is_well_posed() {
    // (r2 A A^T + sigma_y^2 I) v = b, with sigma_y = 0.5: Richardson's residual contracts at
    // least by 1 - sigma_y^2 / d per iteration (d bounds the largest eigenvalue).
    let mut be = Cpu;
    let mut rng = Rng::new(4);
    let shape = [1, 12, 12, 1];
    let m = Measurement::new(
        &mut be,
        Operator::Blur { width: 1.0 },
        &shape[1..],
        None,
        0.5,
    )
    .unwrap();
    let b = be.upload(&random(144, &mut rng), &shape).unwrap();
    let v = m.solve_normal(&mut be, &b, 0.8).unwrap();
    let at = m.adjoint(&mut be, &v).unwrap();
    let aat = m.apply(&mut be, &at).unwrap();
    let lhs: Vec<f32> = aat
        .data
        .iter()
        .zip(v.data.iter())
        .map(|(a, v)| 0.8 * a + 0.25 * v)
        .collect();
    let err: f32 = lhs
        .iter()
        .zip(b.data.iter())
        .map(|(l, b)| (l - b).powi(2))
        .sum::<f32>()
        .sqrt();
    let norm: f32 = b.data.iter().map(|b| b * b).sum::<f32>().sqrt();
    let d = 0.8 * m.gram() + 0.25;
    let bound = (1.0 - 0.25 / d).powi(10) as f32;
    assert!(
        err < bound * norm,
        "residual {err} of {norm}, bound {bound}"
    );
    // The blur keeps a constant image (rows normalised: no frame at the border).
    let ones = be.upload(&[0.7; 144], &shape).unwrap();
    let blurred = m.apply(&mut be, &ones).unwrap();
    assert!(blurred.data.iter().all(|v| (v - 0.7).abs() < 1e-5));
}

#[test]
fn projection_reproduces_the_measurement_and_samples_the_rest_from_the_prior() {
    // N(mu, I) on 4x4 images, measured by 4x downsampling (one value): the projection keeps the
    // measured direction exactly and the other 15 directions are independent of it under this
    // prior, so their moments are the prior's.
    let mut be = Cpu;
    let d = 16;
    let mu: Vec<f64> = (0..d).map(|i| 0.3 * ((i % 5) as f64 - 2.0)).collect();
    let mut gm = unit_gaussian(&mu);
    let n = 1500;
    let shape = [n, 4, 4, 1];
    let m = Measurement::new(
        &mut be,
        Operator::Downsample { factor: 4 },
        &shape[1..],
        None,
        0.0,
    )
    .unwrap();
    let y = be.upload(&vec![0.4; n], &[n, 1, 1, 1]).unwrap();
    let x = block_on(solve(
        &mut be,
        &mut gm,
        &SCHEDULE,
        &ddpm(200),
        Start::Noise,
        Some((&m, &y, Enforce::Replace)),
        &shape,
        11,
        &mut Silent,
    ))
    .unwrap();
    for row in x.data.chunks(d) {
        let mean: f32 = row.iter().sum::<f32>() / d as f32;
        assert!((mean - 0.4).abs() < 1e-5, "A x = {mean}, y = 0.4");
    }
    // Posterior: mu + v (v . (x* - mu)) along v = 1/4, covariance I - v v^T.
    let v = 1.0 / 4.0;
    let shift = 0.4 * 4.0 - mu.iter().sum::<f64>() * v; // v . x = 4 mean(x) = 1.6
    let mean: Vec<f64> = mu.iter().map(|m| m + v * shift).collect();
    let cov: Vec<Vec<f64>> = (0..d)
        .map(|i| (0..d).map(|j| (i == j) as u8 as f64 - v * v).collect())
        .collect();
    assert_moments(&x.data, d, &mean, &cov);
}

#[test]
fn gradient_method_samples_the_exact_posterior_of_gaussian_data() {
    // N(mu, I) on 2x2 images, y = mean of the 4 pixels + N(0, 0.2^2): the posterior shrinks the
    // direction v = (1,1,1,1)/2 to variance 1 / (1 + 1 / (4 sigma_y^2)) = 0.138.
    let mut be = Cpu;
    let mu = [0.5, -0.3, 0.2, 0.1];
    let mut gm = unit_gaussian(&mu);
    let (n, sy, y0) = (3000, 0.2, 0.6);
    let m = Measurement::new(
        &mut be,
        Operator::Downsample { factor: 2 },
        &[2, 2, 1],
        None,
        sy,
    )
    .unwrap();
    let y = be.upload(&vec![y0 as f32; n], &[n, 1, 1, 1]).unwrap();
    let x = block_on(solve(
        &mut be,
        &mut gm,
        &SCHEDULE,
        &ddpm(500),
        Start::Noise,
        Some((&m, &y, Enforce::Gradient { scale: 1.0 })),
        &[n, 2, 2, 1],
        5,
        &mut Silent,
    ))
    .unwrap();
    let v = [0.5; 4];
    let vmu: f64 = mu.iter().zip(v).map(|(a, b)| a * b).sum();
    let var = 1.0 / (1.0 + 1.0 / (4.0 * sy * sy));
    let ms = var * (vmu + y0 / (2.0 * sy * sy));
    let mean: Vec<f64> = (0..4).map(|i| mu[i] + v[i] * (ms - vmu)).collect();
    let cov: Vec<Vec<f64>> = (0..4)
        .map(|i| {
            (0..4)
                .map(|j| (i == j) as u8 as f64 + (var - 1.0) * v[i] * v[j])
                .collect()
        })
        .collect();
    assert_moments(&x.data, 4, &mean, &cov);
}

#[test]
fn denoising_from_the_matching_time_samples_the_mixture_posterior() {
    // A two-mode mixture observed with noise 0.5: starting the reverse process at the time whose
    // noise level matches is exact, and the posterior is a reweighted mixture.
    let mut be = Cpu;
    let mut gm = GaussianMixture {
        weights: vec![0.6, 0.4],
        means: vec![vec![-1.0, 0.5], vec![1.2, -0.4]],
        vars: vec![vec![0.09, 0.25], vec![0.16, 0.04]],
        schedule: SCHEDULE,
    };
    let (n, sy, y0) = (3000, 0.5, [0.3f64, 0.1]);
    // Posterior components: weights w N(y; mu, v + sy^2), means and variances per dimension.
    let mut comps = vec![];
    for k in 0..2 {
        let mut logw = gm.weights[k].ln();
        let (mut mean, mut var) = (vec![], vec![]);
        for (j, yj) in y0.iter().enumerate() {
            let (m, v) = (gm.means[k][j], gm.vars[k][j]);
            let c = v + sy * sy;
            logw -= 0.5 * ((yj - m).powi(2) / c + (2.0 * std::f64::consts::PI * c).ln());
            let pv = 1.0 / (1.0 / v + 1.0 / (sy * sy));
            mean.push(pv * (m / v + yj / (sy * sy)));
            var.push(pv);
        }
        comps.push((logw, mean, var));
    }
    let z: f64 = comps.iter().map(|c| c.0.exp()).sum();
    let mut mean = [0.0; 2];
    let mut second = [[0.0; 2]; 2];
    for (logw, m, v) in &comps {
        let w = logw.exp() / z;
        for i in 0..2 {
            mean[i] += w * m[i];
            for j in 0..2 {
                second[i][j] += w * (m[i] * m[j] + if i == j { v[i] } else { 0.0 });
            }
        }
    }
    let cov: Vec<Vec<f64>> = (0..2)
        .map(|i| (0..2).map(|j| second[i][j] - mean[i] * mean[j]).collect())
        .collect();
    let image = be
        .upload(&[y0[0] as f32, y0[1] as f32].repeat(n), &[n, 2])
        .unwrap();
    for method in [Method::Ddpm, Method::Sde] {
        let opts = SamplerOptions {
            method,
            steps: Some(1000),
            ..Default::default()
        };
        let x = block_on(solve(
            &mut be,
            &mut gm,
            &SCHEDULE,
            &opts,
            Start::Noisy {
                noise: sy,
                image: &image,
            },
            None,
            &[n, 2],
            21,
            &mut Silent,
        ))
        .unwrap();
        assert_moments(&x.data, 2, &mean, &cov);
    }
}

#[test]
fn sdedit_keeps_a_painted_mask_and_changes_the_rest() {
    let mut be = Cpu;
    let mut gm = unit_gaussian(&[0.0; 16]);
    let n = 4;
    let shape = [n, 4, 4, 1];
    let mut rng = Rng::new(9);
    let image = be.upload(&random(n * 16, &mut rng), &shape).unwrap();
    let keep: Vec<f32> = (0..16).map(|i| (i < 8) as u8 as f32).collect();
    let mask = be.upload(&keep, &shape[1..]).unwrap();
    let m = Measurement::new(&mut be, Operator::Mask, &shape[1..], Some(&mask), 0.0).unwrap();
    let y = m.apply(&mut be, &image).unwrap();
    let x = block_on(solve(
        &mut be,
        &mut gm,
        &SCHEDULE,
        &ddpm(50),
        Start::Noised {
            t: 0.5,
            image: &image,
        },
        Some((&m, &y, Enforce::Replace)),
        &shape,
        1,
        &mut Silent,
    ))
    .unwrap();
    for (i, (a, b)) in x.data.iter().zip(image.data.iter()).enumerate() {
        if i % 16 < 8 {
            assert!((a - b).abs() < 1e-6, "kept pixel {i}: {a} vs {b}");
        }
    }
    let changed = x
        .data
        .iter()
        .zip(image.data.iter())
        .enumerate()
        .filter(|(i, (a, b))| i % 16 >= 8 && (*a - *b).abs() > 1e-3)
        .count();
    assert!(changed >= n * 8 - 1, "only {changed} free pixels changed");
}

#[test]
fn impossible_requests_say_what_is_wrong() {
    let mut be = Cpu;
    let mut gm = unit_gaussian(&[0.0; 16]);
    let shape = [1, 4, 4, 1];
    fn err<T>(r: scorelab::error::Result<T>) -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }
    assert!(err(Measurement::<Cpu>::new(
        &mut be,
        Operator::Downsample { factor: 3 },
        &shape[1..],
        None,
        0.0
    ))
    .contains("2 or 4"));
    assert!(err(Measurement::<Cpu>::new(
        &mut be,
        Operator::Luminance,
        &shape[1..],
        None,
        0.0
    ))
    .contains("rgb"));
    assert!(err(Measurement::<Cpu>::new(
        &mut be,
        Operator::Blur { width: 5.0 },
        &shape[1..],
        None,
        0.0
    ))
    .contains("width"));
    let blur = Measurement::new(
        &mut be,
        Operator::Blur { width: 1.0 },
        &shape[1..],
        None,
        0.0,
    )
    .unwrap();
    let y = be.upload(&[0.0; 16], &shape).unwrap();
    let e = err(block_on(solve(
        &mut be,
        &mut gm,
        &SCHEDULE,
        &ddpm(10),
        Start::Noise,
        Some((&blur, &y, Enforce::Replace)),
        &shape,
        0,
        &mut Silent,
    )));
    assert!(e.contains("gradient"), "{e}");
    let e = err(block_on(solve(
        &mut be,
        &mut gm,
        &SCHEDULE,
        &ddpm(10),
        Start::Noised { t: 0.0, image: &y },
        None,
        &shape,
        0,
        &mut Silent,
    )));
    assert!(e.contains("strength"), "{e}");
    let e = err(block_on(solve(
        &mut be,
        &mut gm,
        &SCHEDULE,
        &ddpm(10),
        Start::Noisy {
            noise: 1e-5,
            image: &y,
        },
        None,
        &shape,
        0,
        &mut Silent,
    )));
    assert!(e.contains("noise"), "{e}");
    let annealed = SamplerOptions {
        method: Method::Annealed,
        ..Default::default()
    };
    let e = err(block_on(solve(
        &mut be,
        &mut gm,
        &SCHEDULE,
        &annealed,
        Start::Noised { t: 0.5, image: &y },
        None,
        &shape,
        0,
        &mut Silent,
    )));
    assert!(e.contains("annealed"), "{e}");
}

#[test]
fn gpu_measurements_match_the_cpu() {
    // Every operator's A, A^T, projection and normal-equation solve on the GPU against the CPU
    // reference (the blur's weights above 1 go through the blend kernel).
    let Some(mut gpu) = common::gpu_or_skip() else {
        return;
    };
    let mut cpu = Cpu;
    let mut rng = Rng::new(8);
    let shape = [2, 8, 8, 3];
    let x = random(2 * 8 * 8 * 3, &mut rng);
    let t = random(2 * 8 * 8 * 3, &mut rng);
    let mask: Vec<f32> = (0..8 * 8 * 3)
        .map(|i| ((i / 3) % 4 != 0) as u8 as f32)
        .collect();
    let close = |what: String, a: &[f32], b: &[f32]| {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-5 * b.abs(),
                "{what}[{i}]: gpu {a} vs cpu {b}"
            );
        }
    };
    for op in [
        Operator::Mask,
        Operator::Luminance,
        Operator::Downsample { factor: 2 },
        Operator::Downsample { factor: 4 },
        Operator::Blur { width: 1.5 },
        Operator::Identity,
    ] {
        let results = |be: &mut Cpu| -> Vec<Vec<f32>> {
            let mt = be.upload(&mask, &shape[1..]).unwrap();
            let m = Measurement::new(be, op, &shape[1..], Some(&mt), 0.3).unwrap();
            let (xt, tt) = (
                be.upload(&x, &shape).unwrap(),
                be.upload(&t, &shape).unwrap(),
            );
            let ax = m.apply(be, &xt).unwrap();
            let atax = m.adjoint(be, &ax).unwrap();
            let solved = m.solve_normal(be, &ax, 0.5).unwrap();
            let mut out = vec![ax.data.to_vec(), atax.data.to_vec(), solved.data.to_vec()];
            if !matches!(op, Operator::Blur { .. }) {
                out.push(m.project(be, &xt, &tt).unwrap().data.to_vec());
            }
            out
        };
        let want = results(&mut cpu);
        let mt = gpu.upload(&mask, &shape[1..]).unwrap();
        let m = Measurement::new(&mut gpu, op, &shape[1..], Some(&mt), 0.3).unwrap();
        let (xt, tt) = (
            gpu.upload(&x, &shape).unwrap(),
            gpu.upload(&t, &shape).unwrap(),
        );
        let ax = m.apply(&mut gpu, &xt).unwrap();
        let atax = m.adjoint(&mut gpu, &ax).unwrap();
        let solved = m.solve_normal(&mut gpu, &ax, 0.5).unwrap();
        let mut got = vec![ax, atax, solved];
        if !matches!(op, Operator::Blur { .. }) {
            got.push(m.project(&mut gpu, &xt, &tt).unwrap());
        }
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let g = block_on(gpu.read(g)).unwrap();
            close(format!("{op:?} result {k}"), &g, w);
        }
    }
}
