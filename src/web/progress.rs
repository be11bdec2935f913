//! Progress events to the caller's JS function (and its answer: go on, preview, trace or
//! cancel), and samples as `{values, n, shape}` objects.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::convert::to_js;
use crate::lab::Samples;
use crate::sampler::{Control, Progress, StepInfo};

/// Forwards progress to a JS function.
pub(super) struct JsProgress<'a> {
    pub(super) callback: &'a js_sys::Function,
}

impl Progress for JsProgress<'_> {
    fn step(&mut self, info: &StepInfo) -> Control {
        #[derive(Serialize)]
        struct Event<'a> {
            kind: &'static str,
            #[serde(flatten)]
            info: &'a StepInfo,
        }
        let Ok(event) = to_js(&Event { kind: "step", info }) else {
            return Control::Continue;
        };
        match self
            .callback
            .call1(&JsValue::NULL, &event)
            .ok()
            .and_then(|r| r.as_string())
            .as_deref()
        {
            Some("cancel") => Control::Cancel,
            Some("preview") => Control::Preview,
            Some("trace") => Control::Trace,
            _ => Control::Continue,
        }
    }

    fn preview(&mut self, info: &StepInfo, x0: &[f32]) {
        self.values_event("preview", info, x0);
    }

    fn trace(&mut self, info: &StepInfo, x: &[f32]) {
        self.values_event("trace", info, x);
    }
}

impl JsProgress<'_> {
    fn values_event(&self, kind: &str, info: &StepInfo, values: &[f32]) {
        let event = js_sys::Object::new();
        let set = |k: &str, v: JsValue| js_sys::Reflect::set(&event, &k.into(), &v);
        let _ = set("kind", kind.into());
        let _ = set("step", (info.step as u32).into());
        let _ = set("t", info.t.into());
        let _ = set("values", js_sys::Float32Array::from(values).into());
        let _ = self.callback.call1(&JsValue::NULL, &event);
    }
}

pub(super) fn samples_to_js(s: &Samples) -> Result<JsValue, JsError> {
    samples_with_evals_to_js(s, None)
}

/// `{values, n, shape}`, with `evals` (network evaluations spent) where the call counts them.
pub(super) fn samples_with_evals_to_js(
    s: &Samples,
    evals: Option<usize>,
) -> Result<JsValue, JsError> {
    let out = js_sys::Object::new();
    let set = |k: &str, v: JsValue| {
        js_sys::Reflect::set(&out, &k.into(), &v)
            .map(|_| ())
            .map_err(|_| JsError::new("building the result"))
    };
    set(
        "values",
        js_sys::Float32Array::from(s.values.as_slice()).into(),
    )?;
    set("n", (s.n as u32).into())?;
    set("shape", to_js(&s.shape)?)?;
    if let Some(evals) = evals {
        set("evals", (evals as u32).into())?;
    }
    Ok(out.into())
}
