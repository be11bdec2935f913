use scorelab::lab::{SampleRequest, Session};
use scorelab::sampler::{Method, SamplerOptions, Silent};
use scorelab::Cpu;

fn noisy(values: &[f32]) -> f64 {
    let bg: Vec<f32> = values.iter().cloned().filter(|v| *v < -0.5).collect();
    bg.iter().filter(|v| **v > -0.9).count() as f64 / bg.len() as f64
}

#[test]
fn measure() {
    let mut lab = Session::new(Cpu);
    lab.load_model("digits", include_bytes!("../models/digits.safetensors"))
        .unwrap();
    let steps: Vec<usize> = std::env::var("STEPS")
        .unwrap_or("20".into())
        .split(',')
        .map(|s| s.parse().unwrap())
        .collect();
    for m in std::env::var("M")
        .unwrap_or("ddim,sde,pc,euler,heun".into())
        .split(',')
    {
        for &k in &steps {
            let method: Method =
                serde_json::from_value(serde_json::Value::String(m.into())).unwrap();
            let req = SampleRequest {
                sampler: SamplerOptions {
                    method,
                    steps: Some(k),
                    ..Default::default()
                },
                seed: 11,
                n: 16,
                class: None,
                guidance: 1.0,
            };
            let s = pollster::block_on(lab.sample("digits", &req, &mut Silent)).unwrap();
            eprintln!(
                "{m} {k}: noisy background {:.1} %",
                100.0 * noisy(&s.values)
            );
        }
    }
}
