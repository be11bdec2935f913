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
struct Entry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [usize; 2],
}

/// Parses the safetensors header: (header JSON, data section start).
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
    let end = 8 + len as usize;
    let text = std::str::from_utf8(&bytes[8..end]).map_err(|_| Error::Weights {
        what: "header".into(),
        detail: "is not UTF-8 (not a safetensors file?)".into(),
    })?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| Error::Weights {
            what: "header".into(),
            detail: format!("is not valid JSON: {e}"),
        })?;
    Ok((map, end))
}

/// Reads every tensor of a safetensors file, widened to f32 (F16, BF16 and F32 are accepted).
pub fn read_tensors(
    bytes: &[u8],
) -> Result<(
    BTreeMap<String, StoredTensor>,
    Option<serde_json::Map<String, serde_json::Value>>,
)> {
    let (header, start) = parse_header(bytes)?;
    let data = &bytes[start..];
    let mut tensors = BTreeMap::new();
    let mut metadata = None;
    for (name, value) in header {
        if name == "__metadata__" {
            metadata = value.as_object().cloned();
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
        let count: usize = e.shape.iter().product();
        if hi < lo || hi > data.len() {
            return bad(
                format!("tensor {name}"),
                format!(
                    "data [{lo}, {hi}) lies outside the {}-byte data section (truncated file?)",
                    data.len()
                ),
            );
        }
        if hi - lo != count * width {
            return bad(
                format!("tensor {name}"),
                format!(
                    "shape {:?} of {} needs {} bytes, the file holds {}",
                    e.shape,
                    e.dtype,
                    count * width,
                    hi - lo
                ),
            );
        }
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
