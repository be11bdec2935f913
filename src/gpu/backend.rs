//! The [`Backend`] interface on the GPU: every op a recorded dispatch (or a replay of a planned
//! network evaluation), readbacks through one reused staging buffer, steps paced, not drained.

use super::{
    kernels, pair_parts, Command, Gpu, GpuTensor, InFlight, Residual, MAX_GROUPS,
    MAX_STEPS_IN_FLIGHT,
};

use super::kernels::{
    AttentionParams, Elementwise, ElementwiseParams, GroupNormParams, Kernel, SamplerKernel,
    SamplerParams,
};
use crate::backend::{
    attend_by_parts, check_blend, check_reshape, check_rows, check_upload, Backend, Channels,
};
use crate::error::{Error, Result};
use crate::ops::{self, Conv2d, GroupNorm, Matmul, Pointwise};

impl Backend for Gpu {
    type Tensor = GpuTensor;

    fn shape(t: &GpuTensor) -> &[usize] {
        &t.shape
    }

    fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        self.alloc_init(data, shape.to_vec())
    }

    fn upload_weights(&mut self, data: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        if !self.half_weights {
            return self.upload(data, shape);
        }
        check_upload(data.len(), shape)?;
        self.check_not_recording()?;
        let contents = data
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let mut t = self.created_with(contents, shape.to_vec());
        t.half = true;
        Ok(t)
    }

    async fn read(&mut self, t: &GpuTensor) -> Result<Vec<f32>> {
        if t.half {
            return Err(Error::Gpu("f16 weights are not read back".into()));
        }
        let bytes = (t.len() * 4) as u64;
        // Taken out while in use: a read that fails leaves it mapped, and it is then dropped.
        let staging = match self.staging.take() {
            Some(b) if b.size() >= bytes => b,
            _ => self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size: bytes.next_multiple_of(16),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        // The copy rides in the same submit as the work that produces t.
        self.pending.push(Command::Copy {
            src: t.buffer().clone(),
            src_offset: 0,
            dst: staging.clone(),
            bytes,
        });
        self.flush();
        // Everything submitted so far will have run when the map completes.
        self.in_flight.clear();
        self.unpaced = None;
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        let mapped = rx
            .await
            .map_err(|_| Error::Gpu("readback was dropped (device lost?)".into()))?;
        self.ctx.check()?;
        mapped.map_err(|e| Error::Gpu(format!("readback failed: {e}")))?;
        let view = staging
            .get_mapped_range(..bytes)
            .map_err(|e| Error::Gpu(format!("readback mapping: {e}")))?;
        let out = view
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        drop(view);
        staging.unmap();
        self.staging = Some(staging);
        Ok(out)
    }

    async fn sync(&mut self) -> Result<()> {
        self.flush();
        self.in_flight.clear();
        self.unpaced = None;
        let (tx, rx) = futures_channel::oneshot::channel();
        self.ctx.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        rx.await
            .map_err(|_| Error::Gpu("the device stopped responding (lost?)".into()))?;
        self.ctx.check()
    }

    /// Submits the step and keeps at most `MAX_STEPS_IN_FLIGHT` steps queued: waits for the
    /// oldest only past that, so the device never drains between steps.
    async fn pace(&mut self) -> Result<()> {
        self.flush();
        if let Some(index) = self.unpaced.take() {
            let (tx, done) = futures_channel::oneshot::channel();
            self.ctx.queue.on_submitted_work_done(move || {
                let _ = tx.send(());
            });
            self.in_flight.push_back(InFlight { index, done });
        }
        while self.in_flight.len() > MAX_STEPS_IN_FLIGHT {
            let oldest = self.in_flight.pop_front().expect("more than the bound");
            self.wait(oldest).await?;
        }
        self.ctx.check()
    }

    /// Replays the recorded evaluation (recording it first if needed): copies in, the plan's
    /// dispatches, and a copy of its output into a tensor of the caller's own.
    fn replayed(
        &mut self,
        owner: u64,
        inputs: &[&GpuTensor],
        f: impl FnOnce(&mut Self, &[&GpuTensor]) -> Result<GpuTensor>,
    ) -> Result<GpuTensor> {
        let plan = self.plan_for(owner, inputs, f)?;
        for (src, dst) in inputs.iter().zip(&plan.inputs) {
            self.pending.push(Command::Copy {
                src: src.buffer().clone(),
                src_offset: 0,
                dst: dst.buffer().clone(),
                bytes: (src.len() * 4) as u64,
            });
        }
        self.pending.push(Command::Replay(plan.clone()));
        let out = self.alloc(plan.output.shape.clone())?;
        self.pending.push(Command::Copy {
            src: plan.output.buffer().clone(),
            src_offset: 0,
            dst: out.buffer().clone(),
            bytes: (out.len() * 4) as u64,
        });
        Ok(out)
    }

    fn forget(&mut self, owner: u64) {
        self.plans.retain(|p| p.owner() != owner);
    }

    fn reshape(&mut self, t: &GpuTensor, shape: &[usize]) -> Result<GpuTensor> {
        check_reshape(&t.shape, shape)?;
        Ok(GpuTensor {
            slot: t.slot.clone(),
            shape: shape.to_vec(),
            half: t.half,
        })
    }

    fn conv2d(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: &GpuTensor,
        spec: Conv2d,
    ) -> Result<GpuTensor> {
        self.conv_with(x, w, bias, Residual::None, spec, false)
    }

    fn conv2d_add(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: &GpuTensor,
        add: &GpuTensor,
        spec: Conv2d,
    ) -> Result<GpuTensor> {
        self.conv_with(x, w, bias, Residual::Add(add), spec, false)
    }

    fn conv2d_skip(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: &GpuTensor,
        skip_x: &Channels<GpuTensor>,
        skip_w: &GpuTensor,
        skip_bias: &GpuTensor,
        spec: Conv2d,
    ) -> Result<GpuTensor> {
        let skip = Residual::Skip {
            x: skip_x,
            w: skip_w,
            bias: skip_bias,
        };
        self.conv_with(x, w, bias, skip, spec, false)
    }

    fn upsample_conv2d(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: &GpuTensor,
    ) -> Result<GpuTensor> {
        let spec = Conv2d {
            ksize: 3,
            stride: 1,
        };
        self.conv_with(x, w, bias, Residual::None, spec, true)
    }

    /// The phase weights of [`ops::upsample_phases`], kept f32: a sum of f16 weights may not be
    /// an f16.
    fn upload_upsample_conv_weights(
        &mut self,
        w3: &[f32],
        cin: usize,
        cout: usize,
    ) -> Result<GpuTensor> {
        use ops::upsample_phases::{weights, ROWS};
        self.upload(&weights(w3, cin, cout), &[ROWS * cin, cout])
    }

    fn matmul(
        &mut self,
        a: &GpuTensor,
        b: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &Matmul,
    ) -> Result<GpuTensor> {
        self.product(a, b, bias, None, false, spec)
    }

    fn linear_fused(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: Option<&GpuTensor>,
        add: Option<&GpuTensor>,
        silu: bool,
    ) -> Result<GpuTensor> {
        let (rows, k, n) = ops::check_linear(&x.shape, &w.shape, bias.map(|b| b.shape.as_slice()))?;
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("checked: at least one dim") = n;
        if let Some(t) = add {
            ops::check_same("linear_fused", &t.shape, &shape)?;
        }
        let y = self.product(x, w, bias, add, silu, &Matmul::plain(rows, k, n))?;
        self.reshape(&y, &shape)
    }

    fn group_norm(
        &mut self,
        x: &Channels<GpuTensor>,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        add: Option<&GpuTensor>,
        spec: GroupNorm,
    ) -> Result<GpuTensor> {
        let (x, xb, shape) = pair_parts(x)?;
        let (n, hw, c) = spec.check(
            &shape,
            &gamma.shape,
            &beta.shape,
            add.map(|a| a.shape.as_slice()),
        )?;
        if (n * spec.groups) as u64 > MAX_GROUPS {
            return Err(Error::Param {
                name: "batch".into(),
                detail: format!(
                    "group_norm over {n} x {} groups exceeds one dispatch",
                    spec.groups
                ),
            });
        }
        let out = self.alloc(shape)?;
        let params = GroupNormParams {
            n: n as u32,
            hw: hw as u32,
            c: c as u32,
            groups: spec.groups as u32,
            has_add: add.is_some() as u32,
            silu: spec.silu as u32,
            eps: spec.eps,
            add_stride: add.map_or(0, |a| a.shape[1] as u32),
            add_offset: spec.add_offset as u32,
            ca: *x.shape.last().expect("checked: at least two dims") as u32,
            _p1: 0,
            _p2: 0,
        };
        self.dispatch(
            Kernel::GroupNorm,
            &params,
            &[Some(x), add, Some(gamma), Some(beta), xb],
            &[&out],
            [(n * spec.groups) as u32, 1, 1],
        );
        Ok(out)
    }

    /// One fused dispatch where the adapter class runs it faster, the scores fit the kernel's
    /// workgroup memory and c is a multiple of 4.
    fn attend(&mut self, qkv: &GpuTensor, [n, h, w, c]: [usize; 4]) -> Result<GpuTensor> {
        let hw = h * w;
        ops::check_same("attend", &qkv.shape, &[n, h, w, 3 * c])?;
        if !self.kernels.fused_attention
            || hw > kernels::ATTENTION_MAX_TOKENS
            || hw as u64 > MAX_GROUPS
            || n as u64 > MAX_GROUPS
            || c % 4 != 0
        {
            return attend_by_parts(self, qkv, [n, h, w, c]);
        }
        let out = self.alloc(vec![n, h, w, c])?;
        let params = AttentionParams {
            n: n as u32,
            hw: hw as u32,
            c: c as u32,
            _pad: 0,
            scale: 1.0 / (c as f32).sqrt(),
            _p0: 0,
            _p1: 0,
            _p2: 0,
        };
        self.dispatch(
            Kernel::Attention,
            &params,
            &[Some(qkv)],
            &[&out],
            [hw as u32, n as u32, 1],
        );
        Ok(out)
    }

    fn silu(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        self.elementwise(
            Elementwise::Silu,
            ElementwiseParams {
                len: x.len() as u32,
                ..Default::default()
            },
            x,
            None,
            x.shape.clone(),
            x.len(),
        )
    }

    fn axpby(&mut self, x: &GpuTensor, y: &GpuTensor, a: f32, b: f32) -> Result<GpuTensor> {
        ops::check_same("axpby", &x.shape, &y.shape)?;
        self.elementwise(
            Elementwise::Axpby,
            ElementwiseParams {
                len: x.len() as u32,
                f0: a,
                f1: b,
                ..Default::default()
            },
            x,
            Some(y),
            x.shape.clone(),
            x.len(),
        )
    }

    fn upsample2x(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        let [n, h, w, c] = ops::check_nhwc("upsample2x", &x.shape)?;
        let len = x.len() * 4;
        self.elementwise(
            Elementwise::Upsample2x,
            ElementwiseParams {
                len: len as u32,
                u0: h as u32,
                u1: w as u32,
                u2: c as u32,
                ..Default::default()
            },
            x,
            None,
            vec![n, 2 * h, 2 * w, c],
            len,
        )
    }

    fn concat_channels(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        let shape = ops::check_concat(&a.shape, &b.shape)?;
        let len = a.len() + b.len();
        self.elementwise(
            Elementwise::ConcatChannels,
            ElementwiseParams {
                len: len as u32,
                u0: a.shape[3] as u32,
                u1: b.shape[3] as u32,
                ..Default::default()
            },
            a,
            Some(b),
            shape.to_vec(),
            len,
        )
    }

    /// The pair itself: the GroupNorm and the skip convolution read both tensors in place.
    fn channel_pair(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<Channels<GpuTensor>> {
        ops::check_concat(&a.shape, &b.shape)?;
        Ok(Channels::Pair(a.clone(), b.clone()))
    }

    fn softmax_rows(&mut self, x: &GpuTensor) -> Result<GpuTensor> {
        let len = ops::softmax_len(&x.shape)?;
        let rows = x.len() / len;
        self.elementwise(
            Elementwise::SoftmaxRows,
            ElementwiseParams {
                len: rows as u32,
                u0: len as u32,
                ..Default::default()
            },
            x,
            None,
            x.shape.clone(),
            rows,
        )
    }

    fn embedding(&mut self, labels: &GpuTensor, table: &GpuTensor) -> Result<GpuTensor> {
        let (n, rows, dim) = ops::check_embedding(&labels.shape, &table.shape)?;
        self.elementwise(
            Elementwise::Embedding,
            ElementwiseParams {
                len: (n * dim) as u32,
                u0: dim as u32,
                u1: rows as u32,
                ..Default::default()
            },
            labels,
            Some(table),
            vec![n, dim],
            n * dim,
        )
    }

    fn timestep_embedding(&mut self, t: &GpuTensor, dim: usize, scale: f32) -> Result<GpuTensor> {
        let n = ops::check_timestep(&t.shape, dim)?;
        let freqs = match self.frequencies.get(&dim) {
            Some(f) => f.clone(),
            None => {
                // A constant shared by every plan: made outside any recording.
                let recording = self.recording.take();
                let f = self.alloc_init(&ops::timestep_frequencies(dim), vec![dim / 2]);
                self.recording = recording;
                let f = f?;
                self.frequencies.insert(dim, f.clone());
                f
            }
        };
        self.elementwise(
            Elementwise::TimestepEmbedding,
            ElementwiseParams {
                len: (n * dim) as u32,
                u0: dim as u32,
                f0: scale,
                ..Default::default()
            },
            t,
            Some(&freqs),
            vec![n, dim],
            n * dim,
        )
    }

    fn randn(&mut self, shape: &[usize], seed: u32, stream: u32) -> Result<GpuTensor> {
        let (n, per) = check_rows("randn", shape, shape)?;
        self.sampler_op(
            SamplerKernel::Randn,
            SamplerParams {
                len: (n * per) as u32,
                u0: per as u32,
                u1: seed,
                u2: stream,
                ..Default::default()
            },
            &[None; 5],
            shape.to_vec(),
            n * per,
        )
    }

    fn combine3(
        &mut self,
        x: &GpuTensor,
        y: &GpuTensor,
        z: Option<&GpuTensor>,
        [a, b, c]: [f32; 3],
    ) -> Result<GpuTensor> {
        ops::check_combine3(&x.shape, &y.shape, z.map(|z| z.shape.as_slice()))?;
        self.sampler_op(
            SamplerKernel::Combine3,
            SamplerParams {
                len: x.len() as u32,
                u0: z.is_some() as u32,
                f0: a,
                f1: b,
                f2: c,
                ..Default::default()
            },
            &[Some(x), Some(y), z, None, None],
            x.shape.clone(),
            x.len(),
        )
    }

    fn pointwise(
        &mut self,
        op: Pointwise,
        x: &GpuTensor,
        y: &GpuTensor,
        z: Option<&GpuTensor>,
    ) -> Result<GpuTensor> {
        op.check(&x.shape, &y.shape, z.map(|z| z.shape.as_slice()))?;
        // u0 selects the operation in the shader's switch.
        let (code, f0, f1) = match op {
            Pointwise::SiluGrad => (0, 0.0, 0.0),
            Pointwise::SiluHess => (1, 0.0, 0.0),
            Pointwise::SquareMix { a, b } => (2, a, b),
            Pointwise::AdamApply { lr, eps } => (3, lr, eps),
        };
        self.sampler_op(
            SamplerKernel::Pointwise,
            SamplerParams {
                len: x.len() as u32,
                u0: code,
                f0,
                f1,
                ..Default::default()
            },
            &[Some(x), Some(y), z, None, None],
            x.shape.clone(),
            x.len(),
        )
    }

    fn row_dot(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor> {
        let (n, len) = check_rows("row_dot", &a.shape, &b.shape)?;
        if n as u64 > MAX_GROUPS {
            return Err(Error::Param {
                name: "batch".into(),
                detail: format!("{n} samples exceed one dispatch"),
            });
        }
        let out = self.alloc(vec![n])?;
        let params = SamplerParams {
            len: n as u32,
            u0: len as u32,
            ..Default::default()
        };
        self.dispatch(
            Kernel::Sampler(SamplerKernel::RowDot),
            &params,
            &[Some(a), Some(b), None, None, None],
            &[&out],
            [n as u32, 1, 1],
        );
        Ok(out)
    }

    fn error_ratio(
        &mut self,
        err: &GpuTensor,
        a: &GpuTensor,
        b: &GpuTensor,
        rtol: f32,
        atol: f32,
    ) -> Result<GpuTensor> {
        ops::check_same("error_ratio", &err.shape, &a.shape)?;
        ops::check_same("error_ratio", &err.shape, &b.shape)?;
        self.sampler_op(
            SamplerKernel::ErrorRatio,
            SamplerParams {
                len: err.len() as u32,
                f0: rtol,
                f1: atol,
                ..Default::default()
            },
            &[Some(err), Some(a), Some(b), None, None],
            err.shape.clone(),
            err.len(),
        )
    }

    fn blend(&mut self, x: &GpuTensor, y: &GpuTensor, mask: &GpuTensor) -> Result<GpuTensor> {
        let per = check_blend(&x.shape, &y.shape, &mask.shape)?;
        self.sampler_op(
            SamplerKernel::Blend,
            SamplerParams {
                len: x.len() as u32,
                u0: per as u32,
                ..Default::default()
            },
            &[Some(x), Some(y), Some(mask), None, None],
            x.shape.clone(),
            x.len(),
        )
    }
}
