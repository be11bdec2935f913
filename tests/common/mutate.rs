//! Seeded mutations of a weights file for the loader's fuzz tests (native and in the browser):
//! truncations, byte flips, header lengths, and edits of the header JSON (shapes, dtypes,
//! offsets, tensors, keys, config fields).

use scorelab::lab::{SampleRequest, Session};
use scorelab::rng::Rng;
use scorelab::sampler::{Method, SamplerOptions, Silent};
use serde_json::{json, Map, Value};

/// The header (as JSON text) and data section of a safetensors file.
fn split(bytes: &[u8]) -> (String, Vec<u8>) {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        String::from_utf8(bytes[8..8 + len].to_vec()).unwrap(),
        bytes[8 + len..].to_vec(),
    )
}

fn join(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

/// Applies `edit` to the config JSON under the metadata key (nothing when there is none).
fn edit_config(map: &mut Map<String, Value>, edit: impl FnOnce(&mut Value)) {
    let Some(text) = map
        .get("__metadata__")
        .and_then(|m| m.get("scorelab"))
        .and_then(|v| v.as_str())
    else {
        return;
    };
    let mut cfg: Value = serde_json::from_str(text).unwrap();
    edit(&mut cfg);
    map.get_mut("__metadata__").unwrap()["scorelab"] = Value::String(cfg.to_string());
}

/// A value of the kind fuzzers like: huge, negative, fractional, empty, wrong type.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(14) {
        0 => json!(0),
        1 => json!(-1),
        2 => json!(1u64 << 32),
        3 => json!(u64::MAX),
        4 => json!(65536),
        5 => json!(2.5),
        6 => json!(1e300),
        7 => json!("x"),
        8 => json!(null),
        9 => json!([]),
        10 => json!({}),
        11 => json!(rng.below(100)),
        12 => json!([rng.below(8), rng.below(8)]),
        _ => json!(true),
    }
}

fn odd_shape(rng: &mut Rng) -> Value {
    let dims = rng.below(6);
    Value::Array(
        (0..dims)
            .map(|_| match rng.below(6) {
                0 => json!(0),
                1 => json!(1u64 << 31),
                2 => json!(u64::MAX),
                3 => json!(-3),
                4 => json!(1.5),
                _ => json!(rng.below(300)),
            })
            .collect(),
    )
}

/// JSON pointers to every number in `v`.
fn numeric_slots(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Number(_) => out.push(at),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| numeric_slots(x, format!("{at}/{i}"), out)),
        Value::Object(o) => o
            .iter()
            .for_each(|(k, x)| numeric_slots(x, format!("{at}/{k}"), out)),
        _ => {}
    }
}

/// Edits one thing in the header JSON.
fn edit_header(map: &mut Map<String, Value>, rng: &mut Rng) {
    let names: Vec<String> = map
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    let pick = |rng: &mut Rng| names[rng.below(names.len())].clone();
    match rng.below(12) {
        9 | 10 => {
            // A plausible small number in a numeric config field (these pass the JSON types and
            // reach the range checks and the network builder).
            edit_config(map, |cfg| {
                let mut slots = Vec::new();
                numeric_slots(cfg, String::new(), &mut slots);
                if let Some(path) = slots.get(rng.below(slots.len().max(1))) {
                    let v = [0, 1, 2, 3, 4, 7, 8, 16, 31, 64][rng.below(10)];
                    *cfg.pointer_mut(path).unwrap() = json!(v);
                }
            });
        }
        11 => {
            // Another shape with the same number of elements.
            let n = pick(rng);
            let Some(shape) = map[&n]["shape"].as_array() else {
                return;
            };
            let count: u64 = shape.iter().filter_map(|d| d.as_u64()).product();
            map[&n]["shape"] = match rng.below(3) {
                0 => json!([count]),
                1 => json!([1, count]),
                _ => Value::Array(shape.iter().rev().cloned().collect()),
            };
        }
        0 => {
            let n = pick(rng);
            map[&n]["shape"] = odd_shape(rng);
        }
        1 => {
            let n = pick(rng);
            map[&n]["dtype"] =
                json!(["F64", "I8", "U8", "F16", "BF16", "F32", "I32", "", "f16"][rng.below(9)]);
        }
        2 => {
            let n = pick(rng);
            let other = pick(rng);
            map[&n]["data_offsets"] = if rng.below(2) == 0 {
                map[&other]["data_offsets"].clone()
            } else {
                json!([odd_value(rng), odd_value(rng)])
            };
        }
        3 => {
            let n = pick(rng);
            map.remove(&n);
        }
        4 => {
            let n = format!("stray.{}", rng.below(4));
            map.insert(n, json!({"dtype": "F32", "shape": odd_shape(rng), "data_offsets": [rng.below(1000), rng.below(400_000)]}));
        }
        5 => {
            let n = pick(rng);
            map[&n][["extra", "shape", "dtype"][rng.below(3)]] = odd_value(rng);
        }
        _ => {
            // A config field: set to an odd value, remove it, or add an unknown one.
            edit_config(map, |cfg| {
                let sections = ["arch", "sde", "data", "classes", "time_input"];
                let section = sections[rng.below(sections.len())];
                let target = if rng.below(4) == 0 {
                    cfg
                } else {
                    &mut cfg[section]
                };
                if let Some(obj) = target.as_object_mut() {
                    let keys: Vec<String> = obj.keys().cloned().collect();
                    if !keys.is_empty() {
                        let k = keys[rng.below(keys.len())].clone();
                        match rng.below(4) {
                            0 => {
                                obj.remove(&k);
                            }
                            1 => {
                                obj.insert("unknown_field".into(), odd_value(rng));
                            }
                            _ => {
                                obj.insert(k, odd_value(rng));
                            }
                        }
                    }
                }
            });
        }
    }
}

/// One mutated copy of `base` and the name of the mutation.
pub fn mutate(base: &[u8], rng: &mut Rng) -> (Vec<u8>, &'static str) {
    let mut bytes = base.to_vec();
    let kind = rng.below(8);
    match kind {
        0 => {
            bytes.truncate(rng.below(base.len()));
            (bytes, "truncate")
        }
        1 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            (bytes, "flip bits anywhere")
        }
        2 => {
            let (header, _) = split(base);
            for _ in 0..1 + rng.below(4) {
                let i = 8 + rng.below(header.len());
                bytes[i] = rng.below(256) as u8;
            }
            (bytes, "change header bytes")
        }
        3 => {
            let len = u64::from_le_bytes(base[..8].try_into().unwrap());
            let new = match rng.below(4) {
                0 => rng.next_u64(),
                1 => len.wrapping_add(rng.below(16) as u64).wrapping_sub(8),
                2 => u64::MAX - rng.below(16) as u64,
                _ => rng.below(64) as u64,
            };
            bytes[..8].copy_from_slice(&new.to_le_bytes());
            (bytes, "header length")
        }
        4 => {
            // Data bytes set to f16 extremes (65504, inf, NaN) or random.
            let (header, _) = split(base);
            let start = 8 + header.len();
            for _ in 0..1 + rng.below(16) {
                let i = start + rng.below(base.len() - start - 1) / 2 * 2;
                let v: [u8; 2] = [
                    [0xff, 0x7b],
                    [0x00, 0x7c],
                    [0x00, 0x7e],
                    [rng.below(256) as u8, rng.below(256) as u8],
                ][rng.below(4)];
                bytes[i..i + 2].copy_from_slice(&v);
            }
            (bytes, "data values")
        }
        5 => {
            // A key given twice in the header text.
            let (header, data) = split(base);
            let at = header
                .find("\"blocks")
                .or(header.find("\"conv"))
                .unwrap_or(1);
            let end = at + header[at..].find('}').map(|e| e + 1).unwrap_or(0);
            let doubled = format!("{},{}{}", &header[..end], &header[at..end], &header[end..]);
            (join(&doubled, &data), "duplicate key")
        }
        _ => {
            let (header, data) = split(base);
            let mut map: Map<String, Value> = serde_json::from_str(&header).unwrap();
            for _ in 0..1 + rng.below(3) {
                edit_header(&mut map, rng);
            }
            (
                join(&serde_json::to_string(&map).unwrap(), &data),
                "header JSON edit",
            )
        }
    }
}

/// Loads a (mutated) file on the CPU backend and, when that works, takes one DDIM step on two
/// samples; Err is a clean refusal. A sample that comes back must be finite.
pub async fn load_and_step(bytes: &[u8]) -> Result<(), String> {
    let mut lab = Session::new(scorelab::Cpu);
    lab.load_model("m", bytes).map_err(|e| e.to_string())?;
    let req = SampleRequest {
        sampler: SamplerOptions {
            method: Method::Ddim,
            steps: Some(1),
            ..Default::default()
        },
        n: 2,
        ..Default::default()
    };
    let samples = lab
        .sample("m", &req, &mut Silent)
        .await
        .map_err(|e| e.to_string())?;
    assert!(
        samples.values.iter().all(|v| v.is_finite()),
        "a sample came back non-finite"
    );
    Ok(())
}
