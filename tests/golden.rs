#![cfg(not(target_arch = "wasm32"))]
//! Every shipped model's forward pass, on the CPU reference, the fast CPU backend and the GPU,
//! reproduces the golden outputs exported by the training code (the CPU backends within 1e-4
//! relative, the GPU within 1e-3).

mod common;

use scorelab::{Cpu, FastCpu};

#[test]
fn cpu_forward_matches_golden() {
    for (name, model, golden) in common::MODELS {
        match pollster::block_on(common::check_golden(&mut Cpu, model, golden, 1e-4)) {
            Ok(lines) => lines.iter().for_each(|l| eprintln!("{name} cpu {l}")),
            Err(e) => panic!("{name} on the CPU:\n{e}"),
        }
    }
}

#[test]
fn fast_cpu_forward_matches_golden() {
    for (name, model, golden) in common::MODELS {
        let mut fast = FastCpu::default();
        match pollster::block_on(common::check_golden(&mut fast, model, golden, 1e-4)) {
            Ok(lines) => lines.iter().for_each(|l| eprintln!("{name} fast cpu {l}")),
            Err(e) => panic!("{name} on the fast CPU backend:\n{e}"),
        }
    }
}

#[test]
fn gpu_forward_matches_golden() {
    let Some(mut gpu) = common::gpu_or_skip() else {
        return;
    };
    for (name, model, golden) in common::MODELS {
        match pollster::block_on(common::check_golden(&mut gpu, model, golden, 1e-3)) {
            Ok(lines) => lines.iter().for_each(|l| eprintln!("{name} gpu {l}")),
            Err(e) => panic!("{name} on the GPU:\n{e}"),
        }
    }
}
