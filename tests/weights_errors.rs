#![cfg(not(target_arch = "wasm32"))]
//! A bad weights file gets a clear error naming the tensor or field at fault.

use scorelab::model::file::parse_header;
use scorelab::{Cpu, Network};
use serde_json::{json, Value};

const TOY: &[u8] = include_bytes!("../models/toy2d.safetensors");

/// Rebuilds a safetensors file after editing its header and data.
fn rebuild(edit: impl FnOnce(&mut serde_json::Map<String, Value>, &mut Vec<u8>)) -> Vec<u8> {
    let (mut header, start) = parse_header(TOY).unwrap();
    let mut data = TOY[start..].to_vec();
    edit(&mut header, &mut data);
    let text = serde_json::to_string(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

fn error_of(bytes: &[u8]) -> String {
    match Network::load(&mut Cpu, bytes) {
        Ok(_) => panic!("a bad file loaded without error"),
        Err(e) => e.to_string(),
    }
}

fn edit_config(f: impl FnOnce(&mut Value)) -> Vec<u8> {
    rebuild(|h, _| {
        let meta = h["__metadata__"].as_object_mut().unwrap();
        let mut cfg: Value = serde_json::from_str(meta["scorelab"].as_str().unwrap()).unwrap();
        f(&mut cfg);
        meta.insert("scorelab".into(), Value::String(cfg.to_string()));
    })
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error {err:?} should mention {p:?}");
    }
}

#[test]
fn the_shipped_file_loads() {
    Network::load(&mut Cpu, TOY).unwrap();
}

#[test]
fn truncated_file() {
    assert_mentions(&error_of(&TOY[..TOY.len() - 100]), &["truncated"]);
    assert_mentions(&error_of(&TOY[..4]), &["too short"]);
    assert_mentions(&error_of(&TOY[..200]), &["header"]);
}

#[test]
fn not_a_safetensors_file() {
    assert_mentions(
        &error_of(b"\x05\x00\x00\x00\x00\x00\x00\x00hello, world"),
        &["header", "JSON"],
    );
}

#[test]
fn missing_tensor() {
    // Its bytes go too, and the later tensors move down (the data section stays tiled).
    let bytes = rebuild(|h, data| {
        let entry = h.remove("blocks.1.fc2.weight").unwrap();
        let [lo, hi] = [0, 1].map(|i| entry["data_offsets"][i].as_u64().unwrap() as usize);
        data.drain(lo..hi);
        for (_, e) in h.iter_mut() {
            if let Some(offsets) = e.get_mut("data_offsets") {
                for o in offsets.as_array_mut().unwrap() {
                    let v = o.as_u64().unwrap() as usize;
                    if v >= hi {
                        *o = json!(v - (hi - lo));
                    }
                }
            }
        }
    });
    assert_mentions(&error_of(&bytes), &["blocks.1.fc2.weight", "missing"]);
}

#[test]
fn overlapping_gapped_or_repeated_entries() {
    let overlap = rebuild(|h, _| {
        let first = h["blocks.0.fc1.weight"]["data_offsets"].clone();
        h["blocks.0.fc2.weight"]["data_offsets"] = first;
    });
    assert_mentions(&error_of(&overlap), &["overlapping or a gap"]);
    let trailing = rebuild(|_, data| data.extend([0u8; 16]));
    assert_mentions(&error_of(&trailing), &["16 bytes after the last tensor"]);
    // The same key twice in the header text.
    let (header, start) = parse_header(TOY).unwrap();
    let text = serde_json::to_string(&header).unwrap();
    let first = text.find("\"blocks.0.fc1.bias\"").unwrap();
    let entry_end = first + text[first..].find('}').unwrap() + 1;
    let doubled = format!(
        "{},{}{}",
        &text[..entry_end],
        &text[first..entry_end],
        &text[entry_end..]
    );
    let mut bytes = (doubled.len() as u64).to_le_bytes().to_vec();
    bytes.extend(doubled.as_bytes());
    bytes.extend(&TOY[start..]);
    assert_mentions(&error_of(&bytes), &["blocks.0.fc1.bias", "twice"]);
    // A header length near u64::MAX, and shapes whose product overflows.
    let mut huge = TOY.to_vec();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_mentions(&error_of(&huge), &["header"]);
    let overflow = rebuild(|h, _| {
        h["blocks.0.fc1.bias"]["shape"] = json!([1u64 << 32, 1u64 << 32, 16]);
    });
    assert_mentions(&error_of(&overflow), &["blocks.0.fc1.bias", "does not fit"]);
}

#[test]
fn extra_tensor() {
    let bytes = rebuild(|h, data| {
        let at = data.len();
        data.extend([0u8; 8]);
        h.insert(
            "stray.weight".into(),
            json!({"dtype": "F32", "shape": [2], "data_offsets": [at, at + 8]}),
        );
    });
    assert_mentions(&error_of(&bytes), &["stray.weight", "not part of"]);
}

#[test]
fn wrong_shape() {
    let bytes = rebuild(|h, _| {
        h.get_mut("in_proj.weight").unwrap()["shape"] = json!([2, 128]);
    });
    assert_mentions(
        &error_of(&bytes),
        &["in_proj.weight", "[2, 128]", "[128, 2]"],
    );
}

#[test]
fn wrong_dtype() {
    let bytes = rebuild(|h, _| {
        h.get_mut("out_proj.bias").unwrap()["dtype"] = json!("I8");
    });
    assert_mentions(&error_of(&bytes), &["out_proj.bias", "I8"]);
    let bytes = rebuild(|h, _| {
        h.get_mut("out_proj.bias").unwrap()["dtype"] = json!("F32");
    });
    assert_mentions(&error_of(&bytes), &["out_proj.bias", "bytes"]);
}

#[test]
fn non_finite_value() {
    let bytes = rebuild(|h, data| {
        let at = h["embed.fc1.bias"]["data_offsets"][0].as_u64().unwrap() as usize;
        data[at + 6..at + 8].copy_from_slice(&half::f16::NAN.to_le_bytes());
    });
    assert_mentions(
        &error_of(&bytes),
        &["embed.fc1.bias", "element 3", "not finite"],
    );
}

#[test]
fn unknown_format_version() {
    let bytes = edit_config(|c| c["format_version"] = json!(7));
    assert_mentions(&error_of(&bytes), &["format_version", "7", "not supported"]);
}

#[test]
fn missing_or_broken_config() {
    let bytes = rebuild(|h, _| {
        h.remove("__metadata__");
    });
    assert_mentions(&error_of(&bytes), &["scorelab", "missing"]);
    let bytes = edit_config(|c| {
        c["arch"].as_object_mut().unwrap().remove("width");
    });
    assert_mentions(&error_of(&bytes), &["config", "width"]);
    let bytes = edit_config(|c| c["parameterization"] = json!("v"));
    assert_mentions(&error_of(&bytes), &["parameterization"]);
}

#[test]
fn unknown_config_fields_are_rejected_not_ignored() {
    let bytes = edit_config(|c| {
        c["sde"]["discrete_step"] = json!(500);
    });
    assert_mentions(&error_of(&bytes), &["unknown field", "discrete_step"]);
    let bytes = edit_config(|c| {
        c["guidance_scale"] = json!(3.0);
    });
    assert_mentions(&error_of(&bytes), &["unknown field", "guidance_scale"]);
}

#[test]
fn time_input_must_match_the_network() {
    let bytes = edit_config(|c| {
        c["time_input"]["scale"] = json!(999.0);
    });
    assert_mentions(&error_of(&bytes), &["time_input.scale", "999"]);
    let bytes = edit_config(|c| {
        c["time_input"]["kind"] = json!("discrete");
    });
    assert_mentions(&error_of(&bytes), &["time_input.kind", "discrete"]);
    let bytes = edit_config(|c| {
        c.as_object_mut().unwrap().remove("time_input");
    });
    assert_mentions(&error_of(&bytes), &["time_input"]);
}

/// The chain length comes from the file: DDIM cannot take 150 distinct steps on a 100-step chain.
#[test]
fn discrete_steps_is_honoured() {
    use scorelab::lab::{SampleRequest, Session};
    use scorelab::sampler::{Method, SamplerOptions, Silent};
    let bytes = edit_config(|c| {
        c["sde"]["discrete_steps"] = json!(100);
    });
    let mut lab = Session::new(Cpu);
    assert_eq!(
        lab.load_model("toy", &bytes).unwrap().sde.discrete_steps,
        100
    );
    let req = |steps| SampleRequest {
        sampler: SamplerOptions {
            method: Method::Ddim,
            steps: Some(steps),
            ..Default::default()
        },
        n: 2,
        ..Default::default()
    };
    pollster::block_on(lab.sample("toy", &req(99), &mut Silent)).unwrap();
    let err = pollster::block_on(lab.sample("toy", &req(150), &mut Silent))
        .unwrap_err()
        .to_string();
    assert_mentions(&err, &["steps", "100-step chain"]);
    let bytes = edit_config(|c| {
        c["sde"]["discrete_steps"] = json!(0);
    });
    assert_mentions(&error_of(&bytes), &["sde.discrete_steps"]);
}

#[test]
fn absurd_architecture_sizes_are_rejected() {
    for (field, value) in [
        ("width", json!(1u64 << 40)),
        ("depth", json!(100_000)),
        ("dim", json!(0)),
    ] {
        let bytes = edit_config(|c| {
            c["arch"][field] = value.clone();
        });
        assert_mentions(&error_of(&bytes), &["arch"]);
    }
}

/// The SDE section: each type takes its own constants and only those; a VE file loads.
#[test]
fn sde_types_take_their_own_constants() {
    let bytes = edit_config(|c| c["sde"]["type"] = json!("vpsde"));
    assert_mentions(&error_of(&bytes), &["sde.type", "vpsde"]);
    let bytes = edit_config(|c| {
        c["sde"]["type"] = json!("ve");
    });
    assert_mentions(&error_of(&bytes), &["sde", "sigma_min and sigma_max"]);
    let bytes = edit_config(|c| {
        c["sde"]["type"] = json!("ve");
        c["sde"]["sigma_min"] = json!(0.01);
        c["sde"]["sigma_max"] = json!(5.0);
    });
    // beta_min/beta_max still present: refused.
    assert_mentions(&error_of(&bytes), &["sde", "only those"]);
    // A VE section in place of the VP one.
    let ve = |sigma_min: f64, sigma_max: f64| {
        edit_config(|c| {
            let s = c["sde"].as_object_mut().unwrap();
            s.remove("beta_min");
            s.remove("beta_max");
            s.insert("type".into(), json!("ve"));
            s.insert("sigma_min".into(), json!(sigma_min));
            s.insert("sigma_max".into(), json!(sigma_max));
        })
    };
    let mut lab = scorelab::lab::Session::new(Cpu);
    assert_eq!(
        lab.load_model("toy", &ve(0.01, 5.0)).unwrap().sde.kind,
        "ve"
    );
    assert_mentions(&error_of(&ve(5.0, 0.01)), &["sde", "sigma_min < sigma_max"]);
}
