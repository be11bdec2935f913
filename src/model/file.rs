//! Reading a safetensors weights file: the header, every tensor's dtype, shape and bounds, finite
//! values, and the config in the metadata. Every failure names the tensor or field at fault.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

use super::config::ModelConfig;

/// One tensor as stored (PyTorch layout), widened to f32.
#[derive(Clone, Debug)]
pub struct StoredTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct WeightsFile {
    pub config: ModelConfig,
    pub tensors: BTreeMap<String, StoredTensor>,
}

fn bad<T>(what: impl Into<String>, detail: impl Into<String>) -> Result<T> {
    Err(Error::Weights {
        what: what.into(),
        detail: detail.into(),
    })
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// The `__metadata__` object of a header.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// Headers larger than this are refused before they are read (safetensors' own limit).
const MAX_HEADER: u64 = 100 << 20;

/// A JSON object whose keys are kept in order with repeats (serde_json's map keeps only the last
/// of a repeated key, which would let a file say two things about one tensor).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Entries, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> std::result::Result<Entries, M::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Parses the safetensors header: (header JSON, data section start). Refuses a header longer
/// than the file or than `MAX_HEADER`, and a key given twice.
pub fn parse_header(bytes: &[u8]) -> Result<(serde_json::Map<String, serde_json::Value>, usize)> {
    if bytes.len() < 8 {
        return bad(
            "header",
            format!(
                "the file is {} bytes, too short to be safetensors (truncated?)",
                bytes.len()
            ),
        );
    }
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if len > (bytes.len() - 8) as u64 {
        return bad("header", format!("declares a {len}-byte header but the file has {} bytes (truncated or not safetensors)", bytes.len()));
    }
    if len > MAX_HEADER {
        return bad(
            "header",
            format!("declares a {len}-byte header, more than the {MAX_HEADER} bytes allowed"),
        );
    }
    let end = 8 + len as usize;
    let text = std::str::from_utf8(&bytes[8..end]).map_err(|_| Error::Weights {
        what: "header".into(),
        detail: "is not UTF-8 (not a safetensors file?)".into(),
    })?;
    let Entries(entries) = serde_json::from_str(text).map_err(|e| Error::Weights {
        what: "header".into(),
        detail: format!("is not valid JSON: {e}"),
    })?;
    let mut map = serde_json::Map::new();
    for (key, value) in entries {
        if map.insert(key.clone(), value).is_some() {
            return bad("header", format!("gives {key:?} twice"));
        }
    }
    Ok((map, end))
}

/// Reads every tensor of a safetensors file, widened to f32 (F16, BF16 and F32 are accepted).
/// Sizes are computed with checked arithmetic and matched against the bytes present before
/// anything is allocated, and the tensors must tile the data section exactly, so no header can
/// make the loader allocate more than the file holds.
pub fn read_tensors(bytes: &[u8]) -> Result<(BTreeMap<String, StoredTensor>, Option<Metadata>)> {
    let (header, start) = parse_header(bytes)?;
    let data = &bytes[start..];
    let mut tensors = BTreeMap::new();
    let mut metadata = None;
    let mut spans = Vec::new();
    for (name, value) in header {
        if name == "__metadata__" {
            metadata = Some(value.as_object().cloned().ok_or_else(|| Error::Weights {
                what: "header __metadata__".into(),
                detail: "is not an object".into(),
            })?);
            continue;
        }
        let e: Entry = serde_json::from_value(value).map_err(|err| Error::Weights {
            what: format!("tensor {name}"),
            detail: format!("bad header entry: {err}"),
        })?;
        let width = match e.dtype.as_str() {
            "F16" | "BF16" => 2,
            "F32" | "I32" => 4,
            other => {
                return bad(
                    format!("tensor {name}"),
                    format!("dtype {other} is not supported (F16, BF16, F32)"),
                )
            }
        };
        let [lo, hi] = e.data_offsets;
        if hi < lo || hi > data.len() {
            return bad(
                format!("tensor {name}"),
                format!(
                    "data [{lo}, {hi}) lies outside the {}-byte data section (truncated file?)",
                    data.len()
                ),
            );
        }
        let size = e
            .shape
            .iter()
            .try_fold(width, |acc: usize, d| acc.checked_mul(*d));
        if size != Some(hi - lo) {
            return bad(
                format!("tensor {name}"),
                format!(
                    "shape {:?} of {} does not fit the {} bytes the file holds for it",
                    e.shape,
                    e.dtype,
                    hi - lo
                ),
            );
        }
        spans.push((lo, hi, name.clone()));
        let raw = &data[lo..hi];
        let values: Vec<f32> = match e.dtype.as_str() {
            "F16" => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            "BF16" => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            "I32" => raw
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            _ => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return bad(
                format!("tensor {name}"),
                format!("element {i} is {} (not finite)", values[i]),
            );
        }
        tensors.insert(
            name,
            StoredTensor {
                shape: e.shape,
                data: values,
            },
        );
    }
    // The tensors tile the data section: no overlaps, no gaps, nothing after the last one.
    spans.sort();
    let mut at = 0;
    for (lo, hi, name) in &spans {
        if *lo != at {
            return bad(format!("tensor {name}"), format!("data starts at byte {lo} of the data section, expected {at} (overlapping or a gap)"));
        }
        at = *hi;
    }
    if at != data.len() {
        return bad(
            "data section",
            format!(
                "{} bytes after the last tensor (the file is longer than its header says)",
                data.len() - at
            ),
        );
    }
    Ok((tensors, metadata))
}

impl WeightsFile {
    /// Parses and validates a weights file (tensors against the config happen in `Network::build`).
    pub fn parse(bytes: &[u8]) -> Result<WeightsFile> {
        let (tensors, metadata) = read_tensors(bytes)?;
        let json = metadata
            .as_ref()
            .and_then(|m| m.get("scorelab"))
            .and_then(|v| v.as_str())
            .ok_or_else(|| Error::Weights {
                what: "metadata \"scorelab\"".into(),
                detail: "missing: this is not a scorelab model file".into(),
            })?;
        Ok(WeightsFile {
            config: ModelConfig::parse(json)?,
            tensors,
        })
    }
}

/// Writes f32 tensors (`(name, shape, values)`, in the framework's layout) and a config as a
/// safetensors file that [`WeightsFile::parse`] reads back.
pub fn write(tensors: &[(String, Vec<usize>, Vec<f32>)], config: &ModelConfig) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({ "scorelab": serde_json::to_string(config).expect("a config serializes") }),
    );
    let mut at = 0;
    for (name, shape, values) in tensors {
        let end = at + 4 * values.len();
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [at, end] }),
        );
        at = end;
    }
    let mut text = serde_json::to_string(&header).expect("a header serializes");
    // Pad the header so the data section starts 8-byte aligned, as the format recommends.
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + at);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    for (_, _, values) in tensors {
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}
