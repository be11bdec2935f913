//! The model config stored as JSON under the metadata key `"scorelab"` of a weights file
//! (written by `train/export.py`; README "The weights file").

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelConfig {
    pub format_version: u32,
    pub name: String,
    pub arch: Arch,
    /// What the network predicts; only "eps" (the noise) is supported.
    pub parameterization: String,
    pub sde: SdeConfig,
    pub data: DataInfo,
    pub classes: Classes,
    #[serde(default)]
    pub training: serde_json::Value,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Arch {
    /// DDPM-style U-Net (see `train/nets.py` UNet).
    Unet {
        in_ch: usize,
        base: usize,
        mults: Vec<usize>,
        num_res: usize,
        attn_res: Vec<usize>,
        image_size: usize,
        num_classes: usize,
        groups: usize,
        norm_eps: f32,
        time_scale: f32,
    },
    /// Residual MLP over points (see `train/nets.py` ScoreMLP).
    Mlp {
        dim: usize,
        width: usize,
        depth: usize,
        num_classes: usize,
        time_base: usize,
        time_scale: f32,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SdeConfig {
    #[serde(rename = "type")]
    pub kind: String,
    pub beta_min: f64,
    pub beta_max: f64,
    pub t_eps: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataInfo {
    /// "image" or "points".
    pub kind: String,
    #[serde(default)]
    pub height: usize,
    #[serde(default)]
    pub width: usize,
    #[serde(default)]
    pub channels: usize,
    #[serde(default)]
    pub dim: usize,
    pub dataset: String,
    pub source: String,
    pub license: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Classes {
    pub names: Vec<String>,
    /// The label meaning "no class" (unconditional / guidance reference).
    pub null_index: usize,
}

fn field_err<T>(what: &str, detail: impl Into<String>) -> Result<T> {
    Err(Error::Weights {
        what: format!("config field {what}"),
        detail: detail.into(),
    })
}

impl ModelConfig {
    /// Parses and checks the config JSON (format version first, so a newer file gets a clear error).
    pub fn parse(json: &str) -> Result<ModelConfig> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::Weights {
            what: "metadata \"scorelab\"".into(),
            detail: format!("not valid JSON: {e}"),
        })?;
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == FORMAT_VERSION as u64 => {}
            Some(v) => {
                return field_err(
                    "format_version",
                    format!(
                        "version {v} is not supported (this build reads version {FORMAT_VERSION})"
                    ),
                )
            }
            None => return field_err("format_version", "missing"),
        }
        let cfg: ModelConfig = serde_json::from_value(value).map_err(|e| Error::Weights {
            what: "config".into(),
            detail: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        if self.parameterization != "eps" {
            return field_err(
                "parameterization",
                format!(
                    "{:?} is not supported (only \"eps\")",
                    self.parameterization
                ),
            );
        }
        if self.sde.kind != "vp" {
            return field_err(
                "sde.type",
                format!("{:?} is not supported (only \"vp\")", self.sde.kind),
            );
        }
        let s = &self.sde;
        if !(s.beta_min > 0.0 && s.beta_max > s.beta_min && s.t_eps > 0.0 && s.t_eps < 1.0) {
            return field_err(
                "sde",
                format!("needs 0 < beta_min < beta_max and 0 < t_eps < 1, got {s:?}"),
            );
        }
        if self.classes.null_index != self.classes.names.len()
            || self.num_classes() != self.classes.names.len()
        {
            return field_err(
                "classes",
                format!(
                    "{} names, null_index {}, arch num_classes {}",
                    self.classes.names.len(),
                    self.classes.null_index,
                    self.num_classes()
                ),
            );
        }
        match &self.arch {
            Arch::Unet {
                in_ch,
                base,
                mults,
                num_res,
                image_size,
                groups,
                ..
            } => {
                if *in_ch == 0 || *base == 0 || mults.is_empty() || *num_res == 0 || *groups == 0 {
                    return field_err(
                        "arch",
                        "in_ch, base, mults, num_res and groups must be non-zero",
                    );
                }
                if mults.iter().any(|m| (base * m) % groups != 0 || *m == 0) {
                    return field_err(
                        "arch.groups",
                        format!(
                            "every level's channels (base * mult) must split into {groups} groups"
                        ),
                    );
                }
                if image_size % (1 << (mults.len() - 1)) != 0 {
                    return field_err(
                        "arch.image_size",
                        format!("{image_size} does not halve {} times", mults.len() - 1),
                    );
                }
                if self.data.kind != "image"
                    || self.data.height != *image_size
                    || self.data.width != *image_size
                    || self.data.channels != *in_ch
                {
                    return field_err("data", format!("an image model of {image_size}x{image_size}x{in_ch} needs matching data.kind/height/width/channels"));
                }
            }
            Arch::Mlp {
                dim,
                width,
                depth,
                time_base,
                ..
            } => {
                if *dim == 0 || *width == 0 || *depth == 0 || *time_base < 2 || time_base % 2 != 0 {
                    return field_err(
                        "arch",
                        "dim, width, depth must be non-zero and time_base even",
                    );
                }
                if self.data.kind != "points" || self.data.dim != *dim {
                    return field_err("data", format!("a point model of dim {dim} needs data.kind \"points\" and data.dim {dim}"));
                }
            }
        }
        Ok(())
    }

    pub fn num_classes(&self) -> usize {
        match self.arch {
            Arch::Unet { num_classes, .. } | Arch::Mlp { num_classes, .. } => num_classes,
        }
    }

    /// The shape of one sample: `[h, w, c]` for images, `[dim]` for points.
    pub fn sample_shape(&self) -> Vec<usize> {
        match self.arch {
            Arch::Unet {
                in_ch, image_size, ..
            } => vec![image_size, image_size, in_ch],
            Arch::Mlp { dim, .. } => vec![dim],
        }
    }

    pub fn sample_len(&self) -> usize {
        self.sample_shape().iter().product()
    }
}
