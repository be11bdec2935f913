#![cfg(not(target_arch = "wasm32"))]
//! Every noise draw of a run must be new noise: the CPU backend wrapped to record the stream of
//! each `randn` call, then every sampler and editing method run with settings that draw the most.

use std::collections::HashMap;

use scorelab::ops::{Conv2d, GroupNorm, Matmul, Pointwise};
use scorelab::sampler::edit::{inpaint, log_likelihood, LikelihoodOptions, Probe};
use scorelab::sampler::inverse::Enforce;
use scorelab::sampler::{sample, GaussianMixture, Method, SamplerOptions, Schedule, Silent};
use scorelab::{Backend, Channels, Cpu, CpuTensor, Result};

const SCHEDULE: Schedule = Schedule::vp(0.1, 20.0, 1e-3, 1000);

/// The CPU backend, counting the draws of each (seed, stream).
#[derive(Default)]
struct Recording {
    cpu: Cpu,
    draws: HashMap<(u32, u32), usize>,
}

impl Recording {
    /// Streams drawn more than once, and the number of draws.
    fn repeats(&self) -> (Vec<(u32, u32)>, usize) {
        (
            self.draws
                .iter()
                .filter(|(_, n)| **n > 1)
                .map(|(k, _)| *k)
                .collect(),
            self.draws.values().sum(),
        )
    }
}

impl Backend for Recording {
    type Tensor = CpuTensor;
    fn shape(t: &CpuTensor) -> &[usize] {
        Cpu::shape(t)
    }
    fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<CpuTensor> {
        self.cpu.upload(data, shape)
    }
    async fn read(&mut self, t: &CpuTensor) -> Result<Vec<f32>> {
        self.cpu.read(t).await
    }
    async fn sync(&mut self) -> Result<()> {
        Ok(())
    }
    fn reshape(&mut self, t: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        self.cpu.reshape(t, shape)
    }
    fn conv2d(
        &mut self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: &CpuTensor,
        spec: Conv2d,
    ) -> Result<CpuTensor> {
        self.cpu.conv2d(x, w, bias, spec)
    }
    fn matmul(
        &mut self,
        a: &CpuTensor,
        b: &CpuTensor,
        bias: Option<&CpuTensor>,
        spec: &Matmul,
    ) -> Result<CpuTensor> {
        self.cpu.matmul(a, b, bias, spec)
    }
    fn group_norm(
        &mut self,
        x: &Channels<CpuTensor>,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        add: Option<&CpuTensor>,
        spec: GroupNorm,
    ) -> Result<CpuTensor> {
        self.cpu.group_norm(x, gamma, beta, add, spec)
    }
    fn silu(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        self.cpu.silu(x)
    }
    fn axpby(&mut self, x: &CpuTensor, y: &CpuTensor, a: f32, b: f32) -> Result<CpuTensor> {
        self.cpu.axpby(x, y, a, b)
    }
    fn upsample2x(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        self.cpu.upsample2x(x)
    }
    fn concat_channels(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        self.cpu.concat_channels(a, b)
    }
    fn softmax_rows(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        self.cpu.softmax_rows(x)
    }
    fn embedding(&mut self, labels: &CpuTensor, table: &CpuTensor) -> Result<CpuTensor> {
        self.cpu.embedding(labels, table)
    }
    fn timestep_embedding(&mut self, t: &CpuTensor, dim: usize, scale: f32) -> Result<CpuTensor> {
        self.cpu.timestep_embedding(t, dim, scale)
    }
    fn randn(&mut self, shape: &[usize], seed: u32, stream: u32) -> Result<CpuTensor> {
        *self.draws.entry((seed, stream)).or_default() += 1;
        self.cpu.randn(shape, seed, stream)
    }
    fn combine3(
        &mut self,
        x: &CpuTensor,
        y: &CpuTensor,
        z: Option<&CpuTensor>,
        coeffs: [f32; 3],
    ) -> Result<CpuTensor> {
        self.cpu.combine3(x, y, z, coeffs)
    }
    fn row_dot(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        self.cpu.row_dot(a, b)
    }
    fn pointwise(
        &mut self,
        op: Pointwise,
        x: &CpuTensor,
        y: &CpuTensor,
        z: Option<&CpuTensor>,
    ) -> Result<CpuTensor> {
        self.cpu.pointwise(op, x, y, z)
    }
    fn error_ratio(
        &mut self,
        err: &CpuTensor,
        a: &CpuTensor,
        b: &CpuTensor,
        rtol: f32,
        atol: f32,
    ) -> Result<CpuTensor> {
        self.cpu.error_ratio(err, a, b, rtol, atol)
    }
    fn blend(&mut self, x: &CpuTensor, y: &CpuTensor, mask: &CpuTensor) -> Result<CpuTensor> {
        self.cpu.blend(x, y, mask)
    }
}

fn mixture() -> GaussianMixture {
    GaussianMixture {
        weights: vec![0.5, 0.5],
        means: vec![vec![-1.0, 0.5], vec![1.0, -0.5]],
        vars: vec![vec![0.1, 0.1], vec![0.2, 0.05]],
        schedule: SCHEDULE,
    }
}

fn check(what: &str, be: &Recording) {
    let (repeats, draws) = be.repeats();
    eprintln!("{what}: {draws} draws, {} streams reused", repeats.len());
    assert!(
        draws > 0 && repeats.is_empty(),
        "{what}: streams drawn more than once: {repeats:?}"
    );
}

#[test]
fn every_draw_of_a_sampling_run_is_new_noise() {
    let heavy = |method| SamplerOptions {
        method,
        steps: Some(12),
        eta: 1.0,
        corrector_steps: 15,
        langevin_steps: 100,
        predictor: Method::Sde,
        ..Default::default()
    };
    for method in Method::ALL {
        let mut be = Recording::default();
        pollster::block_on(sample(
            &mut be,
            &mut mixture(),
            &SCHEDULE,
            &heavy(method),
            &[3, 2],
            40,
            &mut Silent,
        ))
        .unwrap();
        check(method.name(), &be);
    }
}

#[test]
fn every_draw_of_an_edit_is_new_noise() {
    let known: Vec<f32> = vec![0.8, 0.0, -0.9, 0.0];
    let mask = [1.0f32, 0.0];
    for (name, how) in [
        ("replace", Enforce::Replace),
        (
            "repaint",
            Enforce::Repaint {
                jump: 3,
                resample: 4,
            },
        ),
    ] {
        for predictor in [Method::Ddpm, Method::Sde] {
            let opts = SamplerOptions {
                method: Method::Pc,
                predictor,
                steps: Some(10),
                corrector_steps: 15,
                ..Default::default()
            };
            let mut be = Recording::default();
            pollster::block_on(async {
                let k = be.upload(&known, &[2, 2]).unwrap();
                let m = be.upload(&mask, &[2]).unwrap();
                inpaint(
                    &mut be,
                    &mut mixture(),
                    &SCHEDULE,
                    &opts,
                    how,
                    &k,
                    &m,
                    9,
                    &mut Silent,
                )
                .await
                .unwrap()
            });
            check(&format!("inpaint {name} with pc/{}", predictor.name()), &be);
        }
    }
    let mut be = Recording::default();
    pollster::block_on(async {
        let x = be.upload(&known, &[2, 2]).unwrap();
        log_likelihood(
            &mut be,
            &mut mixture(),
            &SCHEDULE,
            &LikelihoodOptions {
                steps: 4,
                probe: Probe::Gaussian,
                dequantize: false,
            },
            &x,
            3,
            &mut Silent,
        )
        .await
        .unwrap()
    });
    check("likelihood", &be);
}
