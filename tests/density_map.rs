#![cfg(not(target_arch = "wasm32"))]
//! The playground's log-density map of the shipped toy2d model: for each distribution, the
//! cells the map ranks in its top decile must be where the true samples are.

use scorelab::lab::Session;
use scorelab::rng::Rng;
use scorelab::sampler::edit::DensityGrid;
use scorelab::sampler::Silent;
use scorelab::Cpu;

/// The training distributions (`train/data.py`, `sample_toy2d`), drawn with the crate's generator.
fn true_samples(name: &str, n: usize, rng: &mut Rng) -> Vec<[f64; 2]> {
    use std::f64::consts::PI;
    (0..n)
        .map(|_| match name {
            "swiss_roll" => {
                let t = 1.5 * PI * (1.0 + 2.0 * rng.uniform());
                [
                    t * t.cos() / 7.5 + 0.05 * rng.normal(),
                    t * t.sin() / 7.5 + 0.05 * rng.normal(),
                ]
            }
            "two_moons" => {
                let t = PI * rng.uniform();
                let p = if rng.uniform() < 0.5 {
                    [t.cos(), t.sin()]
                } else {
                    [1.0 - t.cos(), 0.5 - t.sin()]
                };
                [
                    (p[0] - 0.5) * 1.2 + 0.06 * rng.normal(),
                    (p[1] - 0.25) * 1.2 + 0.06 * rng.normal(),
                ]
            }
            "eight_gaussians" => {
                let k = (rng.uniform() * 8.0).floor();
                [
                    1.5 * (k * PI / 4.0).cos() + 0.1 * rng.normal(),
                    1.5 * (k * PI / 4.0).sin() + 0.1 * rng.normal(),
                ]
            }
            "checkerboard" => {
                let x = rng.uniform() * 4.0 - 2.0;
                let y =
                    rng.uniform() - 2.0 * (rng.uniform() * 2.0).floor() + x.floor().rem_euclid(2.0);
                [0.75 * x, 0.75 * y]
            }
            other => panic!("unknown distribution {other}"),
        })
        .collect()
}

#[test]
fn top_decile_of_the_density_map_holds_the_true_samples() {
    let mut lab = Session::new(Cpu);
    let config = lab
        .load_model("toy2d", include_bytes!("../models/toy2d.safetensors"))
        .unwrap()
        .clone();
    let names = config.classes.names.clone();
    // Fewer steps than the page: which cells rank highest is settled long before the values are.
    let grid = DensityGrid {
        steps: 6,
        ..DensityGrid::default()
    };
    let (k, r) = (grid.size, grid.range);
    for (class, name) in names.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let map =
            pollster::block_on(lab.density_grid("toy2d", &grid, Some(class), &mut Silent)).unwrap();
        let ms = t0.elapsed().as_millis();
        // Sample counts per cell (row 0 at the top).
        let mut counts = vec![0usize; k * k];
        let samples = true_samples(name, 20000, &mut Rng::new(7));
        for p in &samples {
            let (j, i) = (
                ((p[0] + r) / (2.0 * r) * k as f64).floor(),
                ((r - p[1]) / (2.0 * r) * k as f64).floor(),
            );
            if (0.0..k as f64).contains(&j) && (0.0..k as f64).contains(&i) {
                counts[i as usize * k + j as usize] += 1;
            }
        }
        let mut order: Vec<usize> = (0..k * k).collect();
        order.sort_by(|a, b| map.log_p[*b].total_cmp(&map.log_p[*a]));
        let top = &order[..k * k / 10];
        let mass = top.iter().map(|c| counts[*c]).sum::<usize>() as f64 / samples.len() as f64;
        // The best any map could do: the decile of cells holding the most samples.
        let mut best: Vec<usize> = counts.clone();
        best.sort_unstable_by(|a, b| b.cmp(a));
        let best_mass = best[..k * k / 10].iter().sum::<usize>() as f64 / samples.len() as f64;
        // Of the top cells, the share holding samples (out of as many as there are occupied cells).
        let occupied = top.iter().filter(|c| counts[**c] > 0).count() as f64
            / top.len().min(counts.iter().filter(|c| **c > 0).count()) as f64;
        let (lo, hi) = (
            map.log_p.iter().cloned().fold(f64::MAX, f64::min),
            map.log_p.iter().cloned().fold(f64::MIN, f64::max),
        );
        eprintln!("{name}: top decile holds {:.1} % of the samples (best possible {:.1} %), {:.0} % of its cells hold samples; log p {lo:.1} .. {hi:.2}; {} evaluations, {ms} ms", 100.0 * mass, 100.0 * best_mass, 100.0 * occupied, map.evals);
        assert!(
            hi < 5.0,
            "{name}: maximum log p {hi} is more than any of these densities reaches"
        );
        assert!(
            occupied > 0.8 && mass > 0.75 * best_mass,
            "{name}: the map's top decile misses the data"
        );
    }
}
