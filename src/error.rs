//! One error type for the crate. Every variant says what went wrong and names the thing at fault
//! (the op, tensor, field or parameter), so a message can be shown to a user as it is.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// No usable GPU adapter or device (WebGPU missing, driver refused, lost device).
    Gpu(String),
    /// An op was called with tensors whose shapes do not fit together.
    Shape { op: &'static str, detail: String },
    /// A weights file or its config is unusable; `what` names the tensor or field.
    Weights { what: String, detail: String },
    /// A user-supplied parameter is out of range or unknown.
    Param { name: String, detail: String },
    /// A file could not be read or written (the CLI); `path` names it.
    Io { path: String, detail: String },
    /// A run produced NaN or infinite values; `what` says which run and where it was seen.
    NonFinite { what: String },
    /// The run was cancelled by the caller between steps.
    Cancelled,
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Gpu(m) => write!(f, "GPU: {m}"),
            Error::Shape { op, detail } => write!(f, "{op}: {detail}"),
            Error::Weights { what, detail } => write!(f, "weights file, {what}: {detail}"),
            Error::Param { name, detail } => write!(f, "parameter {name}: {detail}"),
            Error::Io { path, detail } => write!(f, "file {path}: {detail}"),
            Error::NonFinite { what } => write!(f, "{what}: the values became NaN or infinite (the model or the settings are numerically unstable)"),
            Error::Cancelled => write!(f, "cancelled"),
        }
    }
}

impl std::error::Error for Error {}

/// The values themselves when all are finite, else an error naming `what`.
pub fn finite(values: Vec<f32>, what: impl FnOnce() -> String) -> Result<Vec<f32>> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(values)
    } else {
        Err(Error::NonFinite { what: what() })
    }
}

/// Shorthand for a shape error.
pub(crate) fn shape_err<T>(op: &'static str, detail: impl Into<String>) -> Result<T> {
    Err(Error::Shape {
        op,
        detail: detail.into(),
    })
}

/// Shorthand for a parameter error.
pub fn param_err<T>(name: &str, detail: impl Into<String>) -> Result<T> {
    Err(Error::Param {
        name: name.to_string(),
        detail: detail.into(),
    })
}
