#![cfg(not(target_arch = "wasm32"))]
//! The noise-conditional digits classifier (classifier guidance): its logits and the gradient of
//! `log p(y | x_t, t)` with respect to the image against PyTorch autograd
//! (`python -m train.classifier` writes both), on the CPU reference, the fast engine and the GPU;
//! and guidance through the CLI.

mod common;

use scorelab::model::classifier::Classifier;
use scorelab::{Backend, Cpu, FastCpu};

async fn check<B: Backend>(be: &mut B, what: &str) {
    let model = std::fs::read("models/digits-classifier.safetensors").unwrap();
    let golden = std::fs::read("tests/golden/digits-classifier.safetensors").unwrap();
    let (g, _) = scorelab::model::file::read_tensors(&golden).unwrap();
    let clf = Classifier::load(be, &model).unwrap();
    let x = be.upload(&g["x"].data, &g["x"].shape).unwrap();
    let n = g["x"].shape[0];
    let t = be.upload(&g["t"].data, &[n]).unwrap();
    let k = clf.config.num_classes();
    let mut onehot = vec![0f32; n * k];
    for (i, &l) in g["labels"].data.iter().enumerate() {
        onehot[i * k + l as usize] = 1.0;
    }
    let onehot = be.upload(&onehot, &[n, k]).unwrap();
    let logits = clf.logits(be, &x, &t).unwrap();
    let grad = clf.grad_log_p(be, &x, &t, &onehot).unwrap();
    for (name, got, want) in [
        ("logits", be.read(&logits).await.unwrap(), &g["logits"].data),
        (
            "grad log p",
            be.read(&grad).await.unwrap(),
            &g["grad_log_p"].data,
        ),
    ] {
        let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / scale)
            .fold(0f32, f32::max);
        eprintln!("{what} {name}: worst error {worst:.1e} of the largest |value| {scale:.3}");
        assert!(worst < 2e-3, "{what} {name}: worst relative error {worst}");
    }
}

#[test]
fn classifier_and_its_gradient_match_pytorch() {
    pollster::block_on(check(&mut Cpu, "reference"));
    pollster::block_on(check(&mut FastCpu::default(), "fast cpu"));
    if let Some(mut gpu) = common::gpu_or_skip() {
        pollster::block_on(check(&mut gpu, "gpu"));
    }
}

/// A score network refuses to load as a classifier and the reverse, by name.
#[test]
fn classifier_and_score_network_are_not_confused() {
    let clf = std::fs::read("models/digits-classifier.safetensors").unwrap();
    let net = std::fs::read("models/toy2d.safetensors").unwrap();
    let e = scorelab::Network::load(&mut Cpu, &clf)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is a classifier"), "{e}");
    let e = Classifier::load(&mut Cpu, &net).err().unwrap().to_string();
    assert!(e.contains("not a classifier"), "{e}");
}
