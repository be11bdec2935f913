//! The reference CPU backend: every op runs at once through [`crate::reference`], the oracle the
//! other backends are tested against (and a backend of its own for the CLI's `--backend reference`).

use std::rc::Rc;

use crate::backend::{check_blend, check_reshape, check_rows, check_upload, Backend, Channels};
use crate::error::Result;
use crate::ops::{self, Conv2d, GroupNorm, Matmul, Pointwise};
use crate::reference;

/// Lets the browser run its queued tasks (a cancel message, above all) before the next step: the
/// CPU backend never waits on anything, so without this a run would hold the worker to its end.
/// A message to ourselves is a task without `setTimeout`'s 4 ms clamp.
#[cfg(target_arch = "wasm32")]
async fn yield_to_event_loop() {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let Ok(channel) = web_sys::MessageChannel::new() else {
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
            return;
        };
        channel.port1().set_onmessage(Some(&resolve));
        if channel
            .port2()
            .post_message(&wasm_bindgen::JsValue::NULL)
            .is_err()
        {
            let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// A CPU tensor: shared, immutable data plus a shape.
#[derive(Clone, Debug)]
pub struct CpuTensor {
    pub data: Rc<Vec<f32>>,
    pub shape: Vec<usize>,
}

/// The CPU backend: every op runs at once through `reference`.
#[derive(Default)]
pub struct Cpu;

impl Cpu {
    pub(crate) fn make(data: Vec<f32>, shape: Vec<usize>) -> CpuTensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        CpuTensor {
            data: Rc::new(data),
            shape,
        }
    }
}

impl Backend for Cpu {
    type Tensor = CpuTensor;

    fn shape(t: &CpuTensor) -> &[usize] {
        &t.shape
    }

    fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<CpuTensor> {
        check_upload(data.len(), shape)?;
        Ok(Self::make(data.to_vec(), shape.to_vec()))
    }

    async fn read(&mut self, t: &CpuTensor) -> Result<Vec<f32>> {
        Ok(t.data.as_ref().clone())
    }

    async fn sync(&mut self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        yield_to_event_loop().await;
        Ok(())
    }

    fn reshape(&mut self, t: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        check_reshape(&t.shape, shape)?;
        Ok(CpuTensor {
            data: t.data.clone(),
            shape: shape.to_vec(),
        })
    }

    fn conv2d(
        &mut self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: &CpuTensor,
        spec: Conv2d,
    ) -> Result<CpuTensor> {
        let out = spec.check(&x.shape, &w.shape, &bias.shape)?;
        let dims = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        Ok(Self::make(
            reference::conv2d(&x.data, dims, &w.data, &bias.data, out[3], spec),
            out.to_vec(),
        ))
    }

    fn matmul(
        &mut self,
        a: &CpuTensor,
        b: &CpuTensor,
        bias: Option<&CpuTensor>,
        spec: &Matmul,
    ) -> Result<CpuTensor> {
        spec.check(a.data.len(), b.data.len(), bias.map(|t| t.shape.as_slice()))?;
        let out = reference::matmul(&a.data, &b.data, bias.map(|t| t.data.as_slice()), spec);
        Ok(Self::make(out, vec![spec.batch, spec.m, spec.n]))
    }

    fn group_norm(
        &mut self,
        x: &Channels<CpuTensor>,
        gamma: &CpuTensor,
        beta: &CpuTensor,
        add: Option<&CpuTensor>,
        spec: GroupNorm,
    ) -> Result<CpuTensor> {
        let x = self.joined(x)?;
        let dims = spec.check(
            &x.shape,
            &gamma.shape,
            &beta.shape,
            add.map(|a| a.shape.as_slice()),
        )?;
        let out = reference::group_norm(
            &x.data,
            dims,
            &gamma.data,
            &beta.data,
            add.map(|a| a.data.as_slice()),
            spec,
        );
        Ok(Self::make(out, x.shape.clone()))
    }

    fn silu(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        Ok(Self::make(reference::silu(&x.data), x.shape.clone()))
    }

    fn axpby(&mut self, x: &CpuTensor, y: &CpuTensor, a: f32, b: f32) -> Result<CpuTensor> {
        ops::check_same("axpby", &x.shape, &y.shape)?;
        let mut out = vec![0.0; x.data.len()];
        reference::axpby(&x.data, &y.data, a, b, &mut out);
        Ok(Self::make(out, x.shape.clone()))
    }

    fn upsample2x(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        let [n, h, w, c] = ops::check_nhwc("upsample2x", &x.shape)?;
        let mut out = vec![0.0; 4 * x.data.len()];
        reference::upsample2x(&x.data, [n, h, w, c], &mut out);
        Ok(Self::make(out, vec![n, 2 * h, 2 * w, c]))
    }

    fn concat_channels(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        let shape = ops::check_concat(&a.shape, &b.shape)?;
        let mut out = vec![0.0; a.data.len() + b.data.len()];
        reference::concat_channels(&a.data, a.shape[3], &b.data, b.shape[3], &mut out);
        Ok(Self::make(out, shape.to_vec()))
    }

    fn softmax_rows(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        let len = ops::softmax_len(&x.shape)?;
        Ok(Self::make(
            reference::softmax_rows(&x.data, len),
            x.shape.clone(),
        ))
    }

    fn embedding(&mut self, labels: &CpuTensor, table: &CpuTensor) -> Result<CpuTensor> {
        let (n, rows, dim) = ops::check_embedding(&labels.shape, &table.shape)?;
        ops::check_labels(&labels.data, rows)?;
        Ok(Self::make(
            reference::embedding(&labels.data, &table.data, dim),
            vec![n, dim],
        ))
    }

    fn timestep_embedding(&mut self, t: &CpuTensor, dim: usize, scale: f32) -> Result<CpuTensor> {
        let n = ops::check_timestep(&t.shape, dim)?;
        Ok(Self::make(
            reference::timestep_embedding(&t.data, dim, scale),
            vec![n, dim],
        ))
    }

    fn randn(&mut self, shape: &[usize], seed: u32, stream: u32) -> Result<CpuTensor> {
        let (n, per) = check_rows("randn", shape, shape)?;
        Ok(Self::make(
            reference::randn(n, per, seed, stream),
            shape.to_vec(),
        ))
    }

    fn combine3(
        &mut self,
        x: &CpuTensor,
        y: &CpuTensor,
        z: Option<&CpuTensor>,
        coeffs: [f32; 3],
    ) -> Result<CpuTensor> {
        ops::check_combine3(&x.shape, &y.shape, z.map(|z| z.shape.as_slice()))?;
        let mut out = vec![0.0; x.data.len()];
        let z = z.map(|z| z.data.as_slice());
        reference::combine3(&x.data, &y.data, z, coeffs, &mut out);
        Ok(Self::make(out, x.shape.clone()))
    }

    fn pointwise(
        &mut self,
        op: Pointwise,
        x: &CpuTensor,
        y: &CpuTensor,
        z: Option<&CpuTensor>,
    ) -> Result<CpuTensor> {
        op.check(&x.shape, &y.shape, z.map(|z| z.shape.as_slice()))?;
        let mut out = vec![0.0; x.data.len()];
        reference::pointwise(op, &x.data, &y.data, z.map(|z| z.data.as_slice()), &mut out);
        Ok(Self::make(out, x.shape.clone()))
    }

    fn row_dot(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        let (n, len) = check_rows("row_dot", &a.shape, &b.shape)?;
        Ok(Self::make(
            reference::row_dot(&a.data, &b.data, len),
            vec![n],
        ))
    }

    fn error_ratio(
        &mut self,
        err: &CpuTensor,
        a: &CpuTensor,
        b: &CpuTensor,
        rtol: f32,
        atol: f32,
    ) -> Result<CpuTensor> {
        ops::check_same("error_ratio", &err.shape, &a.shape)?;
        ops::check_same("error_ratio", &err.shape, &b.shape)?;
        Ok(Self::make(
            reference::error_ratio(&err.data, &a.data, &b.data, rtol, atol),
            err.shape.clone(),
        ))
    }

    fn blend(&mut self, x: &CpuTensor, y: &CpuTensor, mask: &CpuTensor) -> Result<CpuTensor> {
        check_blend(&x.shape, &y.shape, &mask.shape)?;
        Ok(Self::make(
            reference::blend(&x.data, &y.data, &mask.data),
            x.shape.clone(),
        ))
    }
}
