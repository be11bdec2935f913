//! Turning JS values into checked Rust values and back: every argument of the API is checked
//! here, so a wrong one throws an `Error` that names it (wasm-bindgen's own conversions would
//! coerce a string seed to 0 or letters to NaN).

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::error::Error;

pub(super) fn js_err(e: Error) -> JsError {
    JsError::new(&e.to_string())
}

pub(super) fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

/// `undefined`, `null` or a plain object without keys: no options given.
pub(super) fn no_options(v: &JsValue) -> bool {
    if v.is_undefined() || v.is_null() {
        return true;
    }
    let Some(obj) = v.dyn_ref::<js_sys::Object>() else {
        return false;
    };
    js_sys::Object::get_prototype_of(v) == js_sys::Object::get_prototype_of(&js_sys::Object::new())
        && js_sys::Object::keys(obj).length() == 0
}

pub(super) fn from_js<T: serde::de::DeserializeOwned>(
    what: &str,
    v: JsValue,
) -> Result<T, JsError> {
    // Through JSON: serde_wasm_bindgen reads only the fields a struct declares, so unknown keys
    // would pass silently; serde_json honours deny_unknown_fields. The error names the field at
    // fault by its path (e.g. `sampler.steps`). No options skip the conversion: it is on every
    // evaluation's path and cost 20-40 us of its 0.2-0.3 ms CPU time in Chromium.
    let json = if no_options(&v) {
        serde_json::Value::Object(Default::default())
    } else {
        serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("{what}: {e}")))?
    };
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        JsError::new(&format!("{what}: {field}{}", e.inner()))
    })
}

/// Arguments arrive untyped from JS: each is checked here, and a wrong one is an error that
/// names it (wasm-bindgen's own conversions would coerce silently: `"abc"` to seed 0, `null` to an
/// empty array, a string's letters to NaN).
pub(super) mod arg {
    use wasm_bindgen::{JsCast, JsError, JsValue};

    fn wrong(name: &str, want: &str, v: &JsValue) -> JsError {
        let got = if v.is_null() {
            "null".to_string()
        } else {
            v.js_typeof().as_string().unwrap_or_default()
        };
        JsError::new(&format!("parameter {name}: expected {want}, got {got}"))
    }

    /// A string.
    pub fn text(name: &str, v: &JsValue) -> Result<String, JsError> {
        v.as_string().ok_or_else(|| wrong(name, "a string", v))
    }

    /// A boolean.
    pub fn flag(name: &str, v: &JsValue) -> Result<bool, JsError> {
        v.as_bool().ok_or_else(|| wrong(name, "true or false", v))
    }

    /// A finite number.
    pub fn number(name: &str, v: &JsValue) -> Result<f64, JsError> {
        match v.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            Some(x) => Err(JsError::new(&format!(
                "parameter {name}: {x} is not finite"
            ))),
            None => Err(wrong(name, "a number", v)),
        }
    }

    /// An integer in 0..=u32::MAX.
    pub fn uint(name: &str, v: &JsValue) -> Result<u32, JsError> {
        let x = number(name, v)?;
        if x.fract() != 0.0 || !(0.0..=u32::MAX as f64).contains(&x) {
            return Err(JsError::new(&format!(
                "parameter {name}: {x} is not an integer in 0..=4294967295"
            )));
        }
        Ok(x as u32)
    }

    /// An optional class index: `null`/`undefined` for none.
    pub fn class(name: &str, v: &JsValue) -> Result<Option<usize>, JsError> {
        if v.is_null() || v.is_undefined() {
            return Ok(None);
        }
        uint(name, v).map(|c| Some(c as usize))
    }

    /// A `Float32Array` or an array of numbers, all finite.
    pub fn f32s(name: &str, v: &JsValue) -> Result<Vec<f32>, JsError> {
        let values = match v.dyn_ref::<js_sys::Float32Array>() {
            Some(a) => a.to_vec(),
            None => numbers(name, v)?.into_iter().map(|x| x as f32).collect(),
        };
        finite(name, &values)?;
        Ok(values)
    }

    /// A `Float64Array`, `Float32Array` or array of numbers, all finite.
    pub fn numbers(name: &str, v: &JsValue) -> Result<Vec<f64>, JsError> {
        let values = if let Some(a) = v.dyn_ref::<js_sys::Float64Array>() {
            a.to_vec()
        } else if let Some(a) = v.dyn_ref::<js_sys::Float32Array>() {
            a.to_vec().into_iter().map(f64::from).collect()
        } else if let Some(array) = v.dyn_ref::<js_sys::Array>() {
            array
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_f64()
                        .ok_or_else(|| wrong(&format!("{name}[{i}]"), "a number", &x))
                })
                .collect::<Result<_, _>>()?
        } else {
            return Err(wrong(name, "a Float32Array or an array of numbers", v));
        };
        finite(name, &values)?;
        Ok(values)
    }

    fn finite<T: Copy + Into<f64>>(name: &str, values: &[T]) -> Result<(), JsError> {
        match values.iter().position(|&x| !x.into().is_finite()) {
            Some(i) => Err(JsError::new(&format!(
                "parameter {name}[{i}]: {} is not finite",
                values[i].into()
            ))),
            None => Ok(()),
        }
    }

    /// A `Uint8Array` (a file's bytes).
    pub fn bytes(name: &str, v: &JsValue) -> Result<Vec<u8>, JsError> {
        v.dyn_ref::<js_sys::Uint8Array>()
            .map(|a| a.to_vec())
            .ok_or_else(|| wrong(name, "a Uint8Array", v))
    }

    /// A function (the progress callback).
    pub fn function(name: &str, v: &JsValue) -> Result<js_sys::Function, JsError> {
        v.dyn_ref::<js_sys::Function>()
            .cloned()
            .ok_or_else(|| wrong(name, "a function", v))
    }
}
