//! The model config stored as JSON under the metadata key `"scorelab"` of a weights file
//! (written by `train/export.py`; README "The weights file").

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::schedule::SdeConfig;
use crate::schedule::{Schedule, Sde};

pub const FORMAT_VERSION: u32 = 1;

/// Every field is read and checked: a field this build does not know is an error, never ignored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub format_version: u32,
    pub name: String,
    pub arch: Arch,
    /// What the network predicts; only "eps" (the noise) is supported.
    pub parameterization: String,
    pub time_input: TimeInput,
    pub sde: SdeConfig,
    pub data: DataInfo,
    pub classes: Classes,
    /// How the model was trained (steps, batch, learning rate...): a record for people.
    #[serde(default)]
    pub training: serde_json::Value,
}

/// How t reaches the network: the continuous time scaled by `scale` into a sinusoidal embedding.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TimeInput {
    /// Only "continuous" (t in [t_eps, 1], not a discrete step index).
    pub kind: String,
    /// Must equal the architecture's `time_scale`, which the network applies.
    pub scale: f32,
    /// The formula, in words.
    pub embedding: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
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
    /// A noise-conditional image classifier `p(y | x_t, t)` for classifier guidance (see
    /// `train/classifier.py`); its parameterization is "logits".
    Classifier {
        in_ch: usize,
        image_size: usize,
        /// Channels of the input convolution, then of each stride-2 convolution.
        channels: Vec<usize>,
        num_classes: usize,
        time_base: usize,
        temb: usize,
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
#[serde(deny_unknown_fields)]
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
    /// Images: the model's value range, [-1, 1] (the only one supported).
    #[serde(default)]
    pub value_range: Option<[f32; 2]>,
    /// Images: the memory layout, "NHWC" (the only one supported).
    #[serde(default)]
    pub layout: Option<String>,
    pub dataset: String,
    pub source: String,
    pub license: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
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

    /// The SDE the model was trained on (checked when the config was parsed).
    pub fn schedule(&self) -> Schedule {
        Schedule::from_config(&self.sde).expect("the sde section was validated at parse")
    }

    fn validate(&self) -> Result<()> {
        let wanted = if self.is_classifier() {
            "logits"
        } else {
            "eps"
        };
        if self.parameterization != wanted {
            return field_err(
                "parameterization",
                format!(
                    "{:?} is not supported (only \"{wanted}\" for this arch)",
                    self.parameterization
                ),
            );
        }
        let s = &self.sde;
        let schedule = Schedule::from_config(s)?;
        let sensible = match schedule.sde {
            Sde::Vp { beta_min, beta_max } | Sde::SubVp { beta_min, beta_max } => {
                beta_min > 0.0
                    && beta_max > beta_min
                    && beta_max <= 1e4
                    && s.sigma_min.is_none()
                    && s.sigma_max.is_none()
            }
            Sde::Ve {
                sigma_min,
                sigma_max,
            } => {
                sigma_min > 0.0
                    && sigma_max > sigma_min
                    && sigma_max <= 1e4
                    && s.beta_min.is_none()
                    && s.beta_max.is_none()
            }
        };
        if !(sensible && s.t_eps > 0.0 && s.t_eps < 1.0) {
            return field_err(
                "sde",
                format!("needs 0 < beta_min < beta_max <= 10000 (vp, subvp) or 0 < sigma_min < sigma_max <= 10000 (ve), only those, and 0 < t_eps < 1, got {s:?}"),
            );
        }
        if !(2..=100_000).contains(&s.discrete_steps) {
            return field_err(
                "sde.discrete_steps",
                format!("{} must be 2..=100000", s.discrete_steps),
            );
        }
        let time_scale = match self.arch {
            Arch::Unet { time_scale, .. }
            | Arch::Mlp { time_scale, .. }
            | Arch::Classifier { time_scale, .. } => time_scale,
        };
        if self.time_input.kind != "continuous" {
            return field_err(
                "time_input.kind",
                format!(
                    "{:?} is not supported (only \"continuous\")",
                    self.time_input.kind
                ),
            );
        }
        if self.time_input.scale != time_scale || !(time_scale.is_finite() && time_scale > 0.0) {
            return field_err(
                "time_input.scale",
                format!(
                    "{} must be positive and equal arch.time_scale {time_scale}",
                    self.time_input.scale
                ),
            );
        }
        if self.data.value_range.is_some_and(|r| r != [-1.0, 1.0]) {
            return field_err(
                "data.value_range",
                format!(
                    "{:?} is not supported (only [-1, 1])",
                    self.data.value_range
                ),
            );
        }
        if self.data.layout.as_ref().is_some_and(|l| l != "NHWC") {
            return field_err(
                "data.layout",
                format!("{:?} is not supported (only \"NHWC\")", self.data.layout),
            );
        }
        if self.classes.names.len() > 65_536 {
            return field_err(
                "classes.names",
                format!("{} classes is more than 65536", self.classes.names.len()),
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
                // Bounds far above any model this runs, so that no size computed from them overflows.
                if *in_ch > 64
                    || *base > 4096
                    || mults.len() > 8
                    || mults.iter().any(|m| *m > 64)
                    || *num_res > 16
                    || *image_size > 1024
                    || *image_size == 0
                {
                    return field_err("arch", format!("in_ch {in_ch} (<= 64), base {base} (<= 4096), {} levels (<= 8) of mults <= 64, num_res {num_res} (<= 16), image_size {image_size} (1..=1024)", mults.len()));
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
                if *dim == 0
                    || *dim > 4096
                    || *width == 0
                    || *width > 65_536
                    || *depth == 0
                    || *depth > 256
                    || *time_base < 2
                    || *time_base > 65_536
                    || time_base % 2 != 0
                {
                    return field_err(
                        "arch",
                        "dim (<= 4096), width (<= 65536), depth (<= 256) must be non-zero and time_base even (<= 65536)",
                    );
                }
                if self.data.kind != "points" || self.data.dim != *dim {
                    return field_err("data", format!("a point model of dim {dim} needs data.kind \"points\" and data.dim {dim}"));
                }
            }
            Arch::Classifier {
                in_ch,
                image_size,
                channels,
                num_classes,
                time_base,
                temb,
                ..
            } => {
                let levels = channels.len().saturating_sub(1);
                if *in_ch == 0
                    || *in_ch > 64
                    || channels.len() < 2
                    || channels.len() > 8
                    || channels.iter().any(|c| *c == 0 || *c > 4096)
                    || *num_classes < 2
                    || *time_base < 2
                    || *time_base > 65_536
                    || time_base % 2 != 0
                    || *temb == 0
                    || *temb > 65_536
                    || *image_size == 0
                    || *image_size > 1024
                    || image_size % (1 << levels) != 0
                {
                    return field_err("arch", format!("a classifier needs in_ch 1..=64, 2 to 8 channel counts in 1..=4096, num_classes >= 2, an even time_base, temb 1..=65536 and an image_size (<= 1024) that halves {levels} times"));
                }
                if self.data.kind != "image"
                    || self.data.height != *image_size
                    || self.data.width != *image_size
                    || self.data.channels != *in_ch
                {
                    return field_err("data", format!("a classifier of {image_size}x{image_size}x{in_ch} images needs matching data.kind/height/width/channels"));
                }
            }
        }
        Ok(())
    }

    pub fn num_classes(&self) -> usize {
        match self.arch {
            Arch::Unet { num_classes, .. }
            | Arch::Mlp { num_classes, .. }
            | Arch::Classifier { num_classes, .. } => num_classes,
        }
    }

    /// Whether this is a classifier (for guidance) rather than a score network.
    pub fn is_classifier(&self) -> bool {
        matches!(self.arch, Arch::Classifier { .. })
    }

    /// The shape of one sample: `[h, w, c]` for images, `[dim]` for points.
    pub fn sample_shape(&self) -> Vec<usize> {
        match self.arch {
            Arch::Unet {
                in_ch, image_size, ..
            }
            | Arch::Classifier {
                in_ch, image_size, ..
            } => vec![image_size, image_size, in_ch],
            Arch::Mlp { dim, .. } => vec![dim],
        }
    }

    pub fn sample_len(&self) -> usize {
        self.sample_shape().iter().product()
    }
}
