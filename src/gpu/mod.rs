//! The GPU backend: tensors in storage buffers, ops recorded as dispatches and submitted in order,
//! and a bounded pool of buffers for reuse.
//!
//! Buffer reuse is safe because everything runs in submission order: a tensor's buffer returns to
//! the pool when the last handle drops, and the next op that takes it is recorded after every op
//! that read it. Writes into a reused buffer flush first, because `write_buffer` runs before the
//! commands of its submit.

pub mod context;
pub mod kernels;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use wgpu::util::DeviceExt;

pub use context::{AdapterReport, GpuContext};
use kernels::{
    ConvParams, Elementwise, ElementwiseParams, GroupNormParams, Kernel, MatmulParams,
    PipelineCache, SamplerKernel, SamplerParams,
};

use crate::backend::{check_blend, check_reshape, check_rows, check_upload, Backend};
use crate::error::{Error, Result};
use crate::ops::{self, Conv2d, GroupNorm, Matmul};

/// Free bytes the pool keeps for reuse; a buffer returned past this is let go, so memory stays
/// bounded however many batch sizes a long session goes through.
const POOL_MAX_FREE_BYTES: u64 = 256 << 20;

/// Free tensor buffers by byte size, and a count of every tensor buffer the backend holds.
#[derive(Default)]
struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: GpuMemory,
}

/// Tensor buffers held by the GPU backend: in use or free in the pool (transient uniform and
/// readback buffers are not counted: they are let go after their submit).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct GpuMemory {
    pub buffers: usize,
    pub bytes: u64,
    pub free_buffers: usize,
    pub free_bytes: u64,
}

impl Pool {
    fn take(&mut self, bytes: u64) -> Option<wgpu::Buffer> {
        let buffer = self.free.get_mut(&bytes)?.pop()?;
        self.stats.free_buffers -= 1;
        self.stats.free_bytes -= bytes;
        Some(buffer)
    }

    fn created(&mut self, bytes: u64) {
        self.stats.buffers += 1;
        self.stats.bytes += bytes;
    }

    fn give_back(&mut self, buffer: wgpu::Buffer) {
        let bytes = buffer.size();
        if self.stats.free_bytes + bytes > POOL_MAX_FREE_BYTES {
            // Dropping the handle frees the buffer once no recorded command uses it.
            self.stats.buffers -= 1;
            self.stats.bytes -= bytes;
            return;
        }
        self.stats.free_buffers += 1;
        self.stats.free_bytes += bytes;
        self.free.entry(bytes).or_default().push(buffer);
    }
}

struct Slot {
    buffer: wgpu::Buffer,
    pool: Rc<RefCell<Pool>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.borrow_mut().give_back(self.buffer.clone());
    }
}

/// A tensor in a GPU storage buffer (f32, row-major in its shape).
#[derive(Clone)]
pub struct GpuTensor {
    slot: Rc<Slot>,
    shape: Vec<usize>,
}

impl GpuTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.slot.buffer
    }
}

/// One recorded compute dispatch, waiting for the next flush.
struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

pub struct Gpu {
    ctx: Rc<GpuContext>,
    pipelines: PipelineCache,
    pool: Rc<RefCell<Pool>>,
    pending: Vec<Dispatch>,
    /// Bound where an optional input (bias, add) is absent.
    dummy: wgpu::Buffer,
    /// Sinusoidal frequency tables by embedding width (see `ops::timestep_frequencies`).
    frequencies: HashMap<usize, GpuTensor>,
    /// The readback buffer, reused by every read and replaced only by a larger one.
    staging: Option<wgpu::Buffer>,
}

const WG: u64 = 256;
const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);
const MAX_GROUPS: u64 = 65535;

impl Gpu {
    pub fn new(ctx: Rc<GpuContext>) -> Gpu {
        let dummy = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Gpu {
            ctx,
            pipelines: PipelineCache::default(),
            pool: Rc::default(),
            pending: Vec::new(),
            dummy,
            frequencies: HashMap::new(),
            staging: None,
        }
    }

    pub fn context(&self) -> &Rc<GpuContext> {
        &self.ctx
    }

    /// What the backend holds in tensor buffers now.
    pub fn memory(&self) -> GpuMemory {
        self.pool.borrow().stats
    }

    fn tensor(&self, buffer: wgpu::Buffer, shape: Vec<usize>) -> GpuTensor {
        GpuTensor {
            slot: Rc::new(Slot {
                buffer,
                pool: self.pool.clone(),
            }),
            shape,
        }
    }

    /// An output tensor, reusing a free buffer of its size (contents undefined until written).
    fn alloc(&mut self, shape: Vec<usize>) -> Result<GpuTensor> {
        let bytes = self.checked_bytes(&shape)?;
        let reused = self.pool.borrow_mut().take(bytes);
        let buffer = reused.unwrap_or_else(|| {
            self.pool.borrow_mut().created(bytes);
            self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: TENSOR_USAGE,
                mapped_at_creation: false,
            })
        });
        Ok(self.tensor(buffer, shape))
    }

    /// A tensor holding `data`: a free buffer of its size written in queue order (a flush), or a
    /// new buffer filled at creation (no flush).
    fn alloc_init(&mut self, data: &[f32], shape: Vec<usize>) -> Result<GpuTensor> {
        check_upload(data.len(), &shape)?;
        let bytes = self.checked_bytes(&shape)?;
        let reused = self.pool.borrow_mut().take(bytes);
        if let Some(buffer) = reused {
            let t = self.tensor(buffer, shape);
            self.write(&t, data)?;
            return Ok(t);
        }
        let mut contents = bytemuck::cast_slice::<f32, u8>(data).to_vec();
        contents.resize(bytes as usize, 0);
        self.pool.borrow_mut().created(bytes);
        let buffer = self
            .ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &contents,
                usage: TENSOR_USAGE,
            });
        Ok(self.tensor(buffer, shape))
    }

    /// Buffer size for a shape (16-byte multiple), checked against the device's binding limit.
    fn checked_bytes(&self, shape: &[usize]) -> Result<u64> {
        let len: usize = shape.iter().product();
        let bytes = (len.max(1) * 4).next_multiple_of(16) as u64;
        let limit = self.ctx.device.limits().max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::Gpu(format!("tensor {shape:?} needs {bytes} bytes, over the device's {limit}-byte binding limit; use a smaller batch")));
        }
        Ok(bytes)
    }

    /// Records one dispatch of `kernel` with a uniform block and buffer bindings in layout order.
    fn dispatch<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        params: &P,
        inputs: &[Option<&GpuTensor>],
        out: &[&GpuTensor],
        groups: [u32; 3],
    ) {
        debug_assert_eq!(
            std::mem::size_of::<P>() % 16,
            0,
            "uniform blocks are 16-byte multiples"
        );
        let uniform = self
            .ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::bytes_of(params),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let p = self.pipelines.get(&self.ctx.device, kernel);
        let mut buffers: Vec<&wgpu::Buffer> = vec![&uniform];
        buffers.extend(inputs.iter().map(|t| t.map_or(&self.dummy, |t| t.buffer())));
        buffers.extend(out.iter().map(|t| t.buffer()));
        debug_assert_eq!(
            buffers.len(),
            kernel.bindings().len(),
            "{kernel:?} bindings"
        );
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind_group = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &p.layout,
                entries: &entries,
            });
        self.pending.push(Dispatch {
            pipeline: p.pipeline.clone(),
            bind_group,
            groups,
        });
    }

    /// Workgroup counts for one invocation per element, folded into 2-D past 65535 groups.
    fn flat_groups(len: usize) -> [u32; 3] {
        let groups = (len as u64).div_ceil(WG).max(1);
        let x = groups.min(MAX_GROUPS);
        [x as u32, groups.div_ceil(x) as u32, 1]
    }

    fn elementwise(
        &mut self,
        entry: Elementwise,
        params: ElementwiseParams,
        a: &GpuTensor,
        b: Option<&GpuTensor>,
        shape: Vec<usize>,
        threads: usize,
    ) -> Result<GpuTensor> {
        let out = self.alloc(shape)?;
        self.dispatch(
            Kernel::Elementwise(entry),
            &params,
            &[Some(a), b],
            &[&out],
            Self::flat_groups(threads),
        );
        Ok(out)
    }

    /// A `sampler.wgsl` entry over `threads` invocations with up to five inputs.
    fn sampler_op(
        &mut self,
        entry: SamplerKernel,
        params: SamplerParams,
        inputs: &[Option<&GpuTensor>; 5],
        shape: Vec<usize>,
        threads: usize,
    ) -> Result<GpuTensor> {
        let out = self.alloc(shape)?;
        self.dispatch(
            Kernel::Sampler(entry),
            &params,
            inputs,
            &[&out],
            Self::flat_groups(threads),
        );
        Ok(out)
    }

    /// Encodes everything recorded so far into one compute pass and submits it.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let commands = std::mem::take(&mut self.pending);
        self.submit(commands.iter());
    }

    fn submit<'a>(&self, dispatches: impl Iterator<Item = &'a Dispatch>) {
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for d in dispatches {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            }
        }
        self.ctx.queue.submit([enc.finish()]);
    }

    /// Overwrites a tensor's values from the host, in order with recorded work.
    fn write(&mut self, t: &GpuTensor, data: &[f32]) -> Result<()> {
        check_upload(data.len(), &t.shape)?;
        self.flush();
        self.ctx
            .queue
            .write_buffer(t.buffer(), 0, bytemuck::cast_slice(data));
        Ok(())
    }
}

impl Backend for Gpu {
    type Tensor = GpuTensor;

    fn shape(t: &GpuTensor) -> &[usize] {
        &t.shape
    }

    fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<GpuTensor> {
        self.alloc_init(data, shape.to_vec())
    }

    async fn read(&mut self, t: &GpuTensor) -> Result<Vec<f32>> {
        self.flush();
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
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(t.buffer(), 0, &staging, 0, bytes);
        self.ctx.queue.submit([enc.finish()]);
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

    fn reshape(&mut self, t: &GpuTensor, shape: &[usize]) -> Result<GpuTensor> {
        check_reshape(&t.shape, shape)?;
        Ok(GpuTensor {
            slot: t.slot.clone(),
            shape: shape.to_vec(),
        })
    }

    fn conv2d(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: &GpuTensor,
        spec: Conv2d,
    ) -> Result<GpuTensor> {
        let [n, ho, wo, cout] = spec.check(&x.shape, &w.shape, &bias.shape)?;
        let [_, h, wd, cin] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let out = self.alloc(vec![n, ho, wo, cout])?;
        let pix_groups = ((n * ho * wo) as u64).div_ceil(32);
        if pix_groups > MAX_GROUPS {
            return Err(Error::Param {
                name: "batch".into(),
                detail: format!("{n} images of {h}x{wd} exceed one dispatch; use a smaller batch"),
            });
        }
        let u = |v: usize| v as u32;
        let params = ConvParams {
            n: u(n),
            h: u(h),
            w: u(wd),
            cin: u(cin),
            ho: u(ho),
            wo: u(wo),
            cout: u(cout),
            _pad: 0,
        };
        let groups = [(cout as u32).div_ceil(32), pix_groups as u32, 1];
        let vec4 = cin % 4 == 0 && cout % 4 == 0;
        self.dispatch(
            Kernel::Conv2d {
                ksize: spec.ksize as u32,
                stride: spec.stride as u32,
                vec4,
            },
            &params,
            &[Some(x), Some(w), Some(bias)],
            &[&out],
            groups,
        );
        Ok(out)
    }

    fn matmul(
        &mut self,
        a: &GpuTensor,
        b: &GpuTensor,
        bias: Option<&GpuTensor>,
        spec: &Matmul,
    ) -> Result<GpuTensor> {
        spec.check(a.len(), b.len(), bias.map(|t| t.shape.as_slice()))?;
        let row_groups = (spec.m as u64).div_ceil(32);
        if row_groups > MAX_GROUPS || spec.batch as u64 > MAX_GROUPS {
            return Err(Error::Param {
                name: "batch".into(),
                detail: format!(
                    "a {}x{} product over {} batches exceeds one dispatch; use a smaller batch",
                    spec.m, spec.n, spec.batch
                ),
            });
        }
        let out = self.alloc(vec![spec.batch, spec.m, spec.n])?;
        let (va, vb) = (spec.a, spec.b);
        let u = |v: usize| v as u32;
        let params = MatmulParams {
            m: u(spec.m),
            n: u(spec.n),
            k: u(spec.k),
            batch: u(spec.batch),
            a_off: u(va.offset),
            a_bs: u(va.batch_stride),
            a_rs: u(va.row_stride),
            a_cs: u(va.col_stride),
            b_off: u(vb.offset),
            b_bs: u(vb.batch_stride),
            b_rs: u(vb.row_stride),
            b_cs: u(vb.col_stride),
            has_bias: bias.is_some() as u32,
            scale: spec.scale,
            _p0: 0,
            _p1: 0,
        };
        let groups = [
            (spec.n as u32).div_ceil(32),
            row_groups as u32,
            spec.batch as u32,
        ];
        self.dispatch(
            Kernel::Matmul,
            &params,
            &[Some(a), Some(b), bias],
            &[&out],
            groups,
        );
        Ok(out)
    }

    fn group_norm(
        &mut self,
        x: &GpuTensor,
        gamma: &GpuTensor,
        beta: &GpuTensor,
        add: Option<&GpuTensor>,
        spec: GroupNorm,
    ) -> Result<GpuTensor> {
        let (n, hw, c) = spec.check(
            &x.shape,
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
        let stats = self.alloc(vec![n * spec.groups, 2])?;
        let out = self.alloc(x.shape.clone())?;
        let params = GroupNormParams {
            n: n as u32,
            hw: hw as u32,
            c: c as u32,
            groups: spec.groups as u32,
            has_add: add.is_some() as u32,
            silu: spec.silu as u32,
            eps: spec.eps,
            _pad: 0,
        };
        let inputs = [Some(x), add, Some(gamma), Some(beta)];
        self.dispatch(
            Kernel::GroupNormStats,
            &params,
            &inputs,
            &[&stats, &out],
            [(n * spec.groups) as u32, 1, 1],
        );
        self.dispatch(
            Kernel::GroupNormApply,
            &params,
            &inputs,
            &[&stats, &out],
            Self::flat_groups(x.len()),
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
                let f = self.alloc_init(&ops::timestep_frequencies(dim), vec![dim / 2])?;
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
