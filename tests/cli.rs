#![cfg(not(target_arch = "wasm32"))]
//! The command-line tool end to end on the CPU backend: sample, then edit and measure what it
//! wrote, and the errors a user meets.

use std::path::PathBuf;
use std::process::{Command, Output};

fn scorelab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scorelab"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let out = scorelab(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scorelab {}\n{stderr}",
        args.join(" ")
    );
    String::from_utf8_lossy(&out.stdout).into_owned() + &stderr
}

fn fails(args: &[&str], needle: &str) {
    let out = scorelab(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "scorelab {} should fail",
        args.join(" ")
    );
    assert!(
        stderr.contains(needle),
        "scorelab {}: expected {needle:?} in\n{stderr}",
        args.join(" ")
    );
}

fn tmp(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    dir.join(name).to_string_lossy().into_owned()
}

/// Numbers following `key` on each line of `text` that contains it.
fn numbers_after(text: &str, key: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.split(key).nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

const DIGITS: &str = "models/digits.safetensors";

#[test]
fn sample_then_roundtrip_inpaint_and_likelihood() {
    let grid = tmp("cli-grid.png");
    let one = tmp("cli-one.png");
    ok(&[
        "sample",
        "--backend",
        "cpu",
        "--model",
        DIGITS,
        "--sampler",
        "ddim",
        "--steps",
        "8",
        "--class",
        "3",
        "--n",
        "2",
        "--seed",
        "5",
        "--out",
        &grid,
    ]);
    ok(&[
        "sample",
        "--backend",
        "cpu",
        "--model",
        DIGITS,
        "--sampler",
        "ddim",
        "--steps",
        "8",
        "--class",
        "3",
        "--n",
        "1",
        "--seed",
        "5",
        "--out",
        &one,
    ]);

    // Encode and decode the two samples of the grid: the PF-ODE round trip reproduces them.
    let out = ok(&[
        "roundtrip",
        "--backend",
        "cpu",
        "--model",
        DIGITS,
        "--image",
        &grid,
        "--solver",
        "heun",
        "--ode-steps",
        "40",
        "--class",
        "3",
        "--out",
        &tmp("cli-roundtrip.png"),
    ]);
    let psnr = numbers_after(&out, "PSNR ");
    eprintln!("{out}");
    assert_eq!(psnr.len(), 2, "one PSNR per tile of the grid:\n{out}");
    assert!(psnr.iter().all(|&p| p > 25.0), "round-trip PSNR {psnr:?}");

    // Inpainting keeps the known half exactly.
    let out = ok(&[
        "inpaint",
        "--backend",
        "cpu",
        "--model",
        DIGITS,
        "--image",
        &one,
        "--fill",
        "right",
        "--sampler",
        "ddim",
        "--steps",
        "6",
        "--n",
        "2",
        "--out",
        &tmp("cli-inpaint.png"),
    ]);
    let kept = numbers_after(&out, "largest change in the kept region: ");
    assert!(
        kept.len() == 1 && kept[0] == 0.0,
        "kept region changed: {out}"
    );

    // Bits/dim of a sample: positive and well under the 8 bits of raw pixels.
    let out = ok(&[
        "likelihood",
        "--backend",
        "cpu",
        "--model",
        DIGITS,
        "--image",
        &one,
        "--steps",
        "20",
    ]);
    let bpd = numbers_after(&out, "mean: ");
    assert!(bpd.len() == 1 && bpd[0] > 0.0 && bpd[0] < 8.0, "{out}");
}

/// `sample` splits a batch over threads; the samples are those of one thread, bit for bit (the CSV
/// holds each f32 in its shortest exact form). DDPM draws fresh noise every step; the seeds wrap.
#[test]
fn sample_split_over_threads_matches_one_thread() {
    let mut csv = vec![];
    for threads in ["1", "3"] {
        let out = tmp(&format!("split-{threads}.csv"));
        let model = "models/toy2d.safetensors";
        let args = [
            "--n",
            "7",
            "--seed",
            "4294967294",
            "--sampler",
            "ddpm",
            "--steps",
            "20",
        ];
        ok(&[
            &[
                "sample",
                "--model",
                model,
                "--backend",
                "cpu",
                "--threads",
                threads,
                "--out",
                &out,
            ],
            &args[..],
        ]
        .concat());
        csv.push(std::fs::read_to_string(&out).unwrap());
    }
    assert_eq!(csv[0].lines().count(), 7, "{}", csv[0]);
    assert_eq!(csv[0], csv[1], "1 and 3 threads differ");
}

#[test]
fn interpolate_writes_a_strip() {
    let out = tmp("cli-interp.png");
    let log = ok(&[
        "interpolate",
        "--backend",
        "cpu",
        "--model",
        DIGITS,
        "--solver",
        "euler",
        "--ode-steps",
        "6",
        "--frames",
        "3",
        "--out",
        &out,
    ]);
    assert!(log.contains("3 frames"), "{log}");
    let bytes = std::fs::read(&out).expect("strip written");
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn clear_errors() {
    let toy = "models/toy2d.safetensors";
    fails(
        &[
            "sample",
            "--backend",
            "cpu",
            "--model",
            DIGITS,
            "--steps",
            "0",
            "--n",
            "1",
        ],
        "steps",
    );
    fails(
        &[
            "sample",
            "--backend",
            "cpu",
            "--model",
            DIGITS,
            "--class",
            "eleven",
            "--n",
            "1",
        ],
        "unknown class \"eleven\"",
    );
    fails(
        &[
            "sample",
            "--backend",
            "cpu",
            "--model",
            DIGITS,
            "--n",
            "100000",
        ],
        "samples: choose 1..=",
    );
    fails(
        &[
            "sample",
            "--backend",
            "cpu",
            "--model",
            "no/such/file.safetensors",
        ],
        "file no/such/file.safetensors: No such file",
    );
    fails(
        &[
            "inpaint",
            "--backend",
            "cpu",
            "--model",
            toy,
            "--image",
            "www/examples/digits.png",
        ],
        "image models",
    );
    // The examples strip is 512x32: neither one 32x32 image nor a grid with borders.
    fails(
        &[
            "likelihood",
            "--backend",
            "cpu",
            "--model",
            DIGITS,
            "--image",
            "www/examples/digits.png",
        ],
        "give 32x32 images",
    );
    fails(
        &[
            "colorize",
            "--backend",
            "cpu",
            "--model",
            DIGITS,
            "--image",
            "docs/generate-digits.png",
        ],
        "rgb model",
    );
    fails(
        &[
            "roundtrip",
            "--backend",
            "cpu",
            "--model",
            DIGITS,
            "--solver",
            "magic",
            "--n",
            "1",
        ],
        "use rk45, heun or euler",
    );
    // A tolerance f32 cannot meet is refused by name, not "converged" in a blink.
    fails(
        &[
            "sample",
            "--backend",
            "cpu",
            "--model",
            DIGITS,
            "--sampler",
            "rk45",
            "--rtol",
            "1e-300",
            "--n",
            "1",
        ],
        "parameter rtol: 1e-300",
    );
}

#[test]
fn restore_commands_keep_their_measurements_and_read_and_write_npy() {
    let digit = tmp("cli-restore-digit.png");
    let cpu = ["--backend", "cpu", "--model", DIGITS];
    let with = |cmd: &str, rest: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [cmd]
            .iter()
            .chain(cpu.iter())
            .map(|s| s.to_string())
            .collect();
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: Vec<String>| ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(with(
        "sample",
        &[
            "--n",
            "1",
            "--seed",
            "4",
            "--sampler",
            "ddpm",
            "--steps",
            "20",
            "--out",
            &digit,
        ],
    ));
    // Super-resolution by projection reproduces the measurement (float precision).
    let out = run(with(
        "superres",
        &[
            "--image",
            &digit,
            "--factor",
            "2",
            "--n",
            "2",
            "--steps",
            "10",
            "--out",
            &tmp("cli-sr.png"),
        ],
    ));
    let rms = numbers_after(&out, "rms of A x - y:");
    assert!(!rms.is_empty() && rms.iter().all(|r| *r < 1e-5), "{out}");
    // Results as .npy, read back as the images of another command.
    let npy = tmp("cli-dn.npy");
    run(with(
        "denoise",
        &[
            "--image", &digit, "--noise", "0.3", "--n", "3", "--steps", "20", "--out", &npy,
        ],
    ));
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    assert_eq!(
        bytes.len() % 64,
        (3 * 32 * 32 * 4) % 64,
        "header padded to 64 bytes"
    );
    let out = run(with(
        "sdedit",
        &[
            "--image",
            &npy,
            "--strength",
            "0.3",
            "--n",
            "1",
            "--steps",
            "20",
            "--out",
            &tmp("cli-sd.png"),
        ],
    ));
    assert!(out.contains("3 results"), "{out}");
    // What cannot be done is said.
    let fail = |args: Vec<String>, needle: &str| {
        fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), needle)
    };
    fail(
        with("superres", &["--image", &digit, "--factor", "3"]),
        "2 or 4",
    );
    fail(
        with("deblur", &["--image", &digit, "--method", "replace"]),
        "gradient",
    );
    fail(
        with("denoise", &["--image", &digit, "--method", "replace"]),
        "nothing to project",
    );
    fail(
        with("superres", &["--image", &digit, "--measured"]),
        "the measurement must be 8x8",
    );
    fail(
        with("denoise", &["--image", &digit, "--noise", "0.0001"]),
        "noise",
    );
}

/// `train2d` reads a CSV of points, trains, and writes a model that `sample` and `info` load;
/// bad data and options are refused by name.
#[test]
fn train2d_writes_a_model_the_other_commands_load() {
    let data = tmp("ring.csv");
    let text: String = std::iter::once("x,y\n".to_string())
        .chain((0..400).map(|i| {
            let a = i as f64 * 0.0157;
            format!("{},{}\n", 2.0 * a.cos(), 2.0 * a.sin())
        }))
        .collect();
    std::fs::write(&data, text).unwrap();
    let model = tmp("ring.safetensors");
    let log = ok(&[
        "train2d", "--data", &data, "--loss", "ssm", "--sde", "ve", "--steps", "300", "--out",
        &model,
    ]);
    assert!(log.contains("trained 300 steps on 400 points"), "{log}");
    let info = ok(&["info", "--model", &model]);
    assert!(
        info.contains("\"ve\"") && info.contains("\"ssm\""),
        "{info}"
    );
    let out = tmp("ring.csv.out.csv");
    ok(&[
        "sample",
        "--model",
        &model,
        "--backend",
        "cpu",
        "--sampler",
        "sde",
        "--steps",
        "100",
        "--n",
        "50",
        "--out",
        &out,
    ]);
    let rows = std::fs::read_to_string(&out).unwrap();
    assert_eq!(rows.lines().count(), 50);
    // After 300 steps the samples are already near the ring of radius 2.
    let radii: Vec<f64> = rows
        .lines()
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            v[0].hypot(v[1])
        })
        .collect();
    let mean = radii.iter().sum::<f64>() / radii.len() as f64;
    assert!((mean - 2.0).abs() < 0.5, "mean radius {mean}");
    let bad = tmp("bad.csv");
    std::fs::write(&bad, "x,y\n1,2\nthree,4\n").unwrap();
    fails(&["train2d", "--data", &bad], "line 3");
    fails(
        &["train2d", "--data", &data, "--loss", "mle"],
        "unknown variant",
    );
    fails(&["train2d", "--data", &data, "--width", "4"], "width");
}

/// Classifier guidance from the CLI: a run towards a class writes its samples; no class, a score
/// network given as the classifier, or a classifier given as the model, are refused by name.
#[test]
fn classifier_guidance_runs_and_refuses_by_name() {
    let out = tmp("guided.npy");
    ok(&[
        "sample",
        "--backend",
        "cpu",
        "--class",
        "3",
        "--guidance",
        "0",
        "--classifier",
        "models/digits-classifier.safetensors",
        "--classifier-scale",
        "4",
        "--sampler",
        "ddpm",
        "--steps",
        "10",
        "--n",
        "2",
        "--out",
        &out,
    ]);
    assert_eq!(
        std::fs::metadata(&out).unwrap().len(),
        128 + 2 * 32 * 32 * 4,
        "float32 [2, 32, 32, 1] with a 128-byte header"
    );
    fails(
        &[
            "sample",
            "--backend",
            "cpu",
            "--classifier",
            "models/digits-classifier.safetensors",
            "--n",
            "1",
        ],
        "classifier guidance needs a class",
    );
    fails(
        &[
            "sample",
            "--backend",
            "cpu",
            "--class",
            "3",
            "--classifier",
            "models/toy2d.safetensors",
            "--n",
            "1",
        ],
        "is a score network, not a classifier",
    );
    fails(
        &[
            "sample",
            "--backend",
            "cpu",
            "--model",
            "models/digits-classifier.safetensors",
        ],
        "is a classifier",
    );
}
