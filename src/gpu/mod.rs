//! The GPU backend: tensors in storage buffers, ops recorded as commands and submitted in order,
//! network evaluations planned once and replayed, and a bounded pool of buffers for reuse.
//!
//! Buffer reuse is safe because everything runs in submission order: a tensor's buffer returns to
//! the pool when the last handle drops, and the next op that takes it is recorded after every op
//! that read it. Uploads and the uniforms of unplanned dispatches go through two arenas written
//! once per submit (`write_buffer` runs before the commands of its submit, after earlier submits),
//! so neither needs a buffer of its own nor an extra submit.

mod backend;
pub mod context;
pub mod kernels;
mod plan;
mod pool;
mod record;
#[cfg(not(target_arch = "wasm32"))]
mod timing;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use wgpu::util::DeviceExt;

pub use context::{AdapterReport, GpuContext};
use kernels::{Kernel, PipelineCache};
use plan::{Plan, Recorder};
pub use pool::{GpuMemory, GpuTensor};
use pool::{Pool, Slot, POOL_MAX_FREE_BYTES};

use crate::backend::{check_upload, Channels};
use crate::error::{Error, Result};
use crate::ops::{self};

/// One compute dispatch with everything bound.
struct Dispatch {
    /// What runs: the key of [`Gpu::time_kernels`]'s totals (native only).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    kernel: Kernel,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

impl Dispatch {
    fn encode(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.groups[0], self.groups[1], self.groups[2]);
    }
}

/// Work waiting for the next submit, in order.
enum Command {
    Dispatch(Dispatch),
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        bytes: u64,
    },
    /// Every dispatch of a recorded evaluation (its inputs are copied in before, its output out
    /// after, by `Copy` commands).
    Replay(Rc<Plan>),
}

/// The op variants the GPU backend chooses between where the faster one depends on the adapter,
/// per adapter class. Software adapters' entries are measured (below and README, "GPU engine");
/// hardware GPUs get the variants that make fewer dispatches and fewer storage reads, which is
/// what their time goes to (not measured here: no hardware GPU was at hand).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelChoices {
    /// Attention in one dispatch, the scores kept in workgroup memory, rather than two products
    /// and a row softmax. On lavapipe 3.6 vs 2.2 ms (8x8 tokens, 64 channels); in Chromium on
    /// SwiftShader whole runs 5-7 % slower (4 digits, DDPM 15); natively on SwiftShader the 4
    /// fused dispatches of a digits evaluation (batch 8) took 404-441 ms, all products and
    /// softmaxes by parts about 125-190 ms.
    pub fused_attention: bool,
    /// Convolutions with input and weight tiles staged in workgroup memory (`main_tiled`: each
    /// value read from storage once per workgroup) rather than each invocation reading its own
    /// (`main`, `main_vec4`). On lavapipe a digits evaluation took, tiled against not, 526-581
    /// vs 245-261 ms at batch 1 and 3,167-3,775 vs 1,172-1,770 ms at batch 8: software adapters
    /// emulate the barriers and gain nothing from the reuse.
    pub tiled_conv: bool,
}

impl KernelChoices {
    pub const HARDWARE: KernelChoices = KernelChoices {
        fused_attention: true,
        tiled_conv: true,
    };
    pub const SOFTWARE: KernelChoices = KernelChoices {
        fused_attention: false,
        tiled_conv: false,
    };

    pub fn for_adapter(software: bool) -> KernelChoices {
        if software {
            KernelChoices::SOFTWARE
        } else {
            KernelChoices::HARDWARE
        }
    }
}

pub struct Gpu {
    ctx: Rc<GpuContext>,
    pipelines: PipelineCache,
    pool: Rc<RefCell<Pool>>,
    pending: Vec<Command>,
    /// Bound where an optional input (bias, add) is absent.
    dummy: wgpu::Buffer,
    /// Sinusoidal frequency tables by embedding width (see `ops::timestep_frequencies`).
    frequencies: HashMap<usize, GpuTensor>,
    /// The readback buffer, reused by every read and replaced only by a larger one.
    staging: Option<wgpu::Buffer>,
    /// Uniform blocks of the unplanned dispatches waiting in `pending`, at aligned offsets of
    /// `uniform_arena`; written with one `write_buffer` per submit.
    uniform_arena: wgpu::Buffer,
    uniform_bytes: Vec<u8>,
    /// Small uploads waiting in `pending`, copied from `upload_arena` to their tensors in order.
    upload_arena: wgpu::Buffer,
    upload_bytes: Vec<u8>,
    /// Recorded evaluations, least recently used first.
    plans: Vec<Rc<Plan>>,
    /// Set while an evaluation is being recorded: dispatches and allocations go to it.
    recording: Option<Recorder>,
    /// Steps submitted and not yet known to be done (see [`Backend::pace`]).
    in_flight: VecDeque<InFlight>,
    /// The last submit, if no step boundary has claimed it yet.
    unpaced: Option<wgpu::SubmissionIndex>,
    /// Weights stored as f16 (the device has shader-f16): half the memory and bandwidth, the
    /// same results, since the shipped weights are f16 and every load converts to f32.
    half_weights: bool,
    /// The device's limits, read once (on the web each read crosses into JS).
    limits: wgpu::Limits,
    /// Which variant of an op to dispatch, by adapter class.
    kernels: KernelChoices,
    /// With [`Gpu::time_kernels`] on: device time (ms) and dispatch count by kernel.
    #[cfg(not(target_arch = "wasm32"))]
    kernel_times: Option<HashMap<Kernel, (f64, usize)>>,
}

/// What a convolution adds to its output (see `conv2d.wgsl`).
enum Residual<'a> {
    None,
    Add(&'a GpuTensor),
    /// A 1x1 convolution of `x`: a projected skip connection.
    Skip {
        x: &'a Channels<GpuTensor>,
        w: &'a GpuTensor,
        bias: &'a GpuTensor,
    },
}

/// A kernel input's first tensor, its second where it is a pair, and the shape of the two joined.
fn pair_parts(x: &Channels<GpuTensor>) -> Result<(&GpuTensor, Option<&GpuTensor>, Vec<usize>)> {
    Ok(match x {
        Channels::One(t) => (t, None, t.shape.clone()),
        Channels::Pair(a, b) => (a, Some(b), ops::check_concat(&a.shape, &b.shape)?.to_vec()),
    })
}

/// A submitted step and the signal that it has run.
struct InFlight {
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    index: wgpu::SubmissionIndex,
    done: futures_channel::oneshot::Receiver<()>,
}

const WG: u64 = 256;
const TENSOR_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);
const MAX_GROUPS: u64 = 65535;
/// Room for the uniforms of 256 unplanned dispatches between submits.
const UNIFORM_ARENA_BYTES: u64 = 64 << 10;
/// Uploads up to a quarter of this go through the arena; larger ones (weights) are written directly.
const UPLOAD_ARENA_BYTES: u64 = 1 << 20;
/// Recorded evaluations kept (one per model and batch shape in use).
const MAX_PLANS: usize = 8;
/// Sampler steps queued on the device before the next step waits for the oldest: enough to keep
/// it busy, few enough that a cancel takes effect soon and nothing piles up.
const MAX_STEPS_IN_FLIGHT: usize = 2;

impl Gpu {
    pub fn new(ctx: Rc<GpuContext>) -> Gpu {
        let buffer = |label, size, usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let dummy = buffer("dummy", 16, wgpu::BufferUsages::STORAGE);
        let uniform_arena = buffer(
            "uniforms",
            UNIFORM_ARENA_BYTES,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        let upload_arena = buffer(
            "uploads",
            UPLOAD_ARENA_BYTES,
            wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
        );
        Gpu {
            pipelines: PipelineCache::default(),
            pool: Pool::new(POOL_MAX_FREE_BYTES),
            pending: Vec::new(),
            dummy,
            frequencies: HashMap::new(),
            staging: None,
            uniform_arena,
            uniform_bytes: Vec::new(),
            upload_arena,
            upload_bytes: Vec::new(),
            plans: Vec::new(),
            recording: None,
            in_flight: VecDeque::new(),
            unpaced: None,
            half_weights: ctx.device.features().contains(wgpu::Features::SHADER_F16),
            limits: ctx.device.limits(),
            kernels: KernelChoices::for_adapter(ctx.report.software),
            #[cfg(not(target_arch = "wasm32"))]
            kernel_times: None,
            ctx,
        }
    }

    /// Whether weights uploaded from now on are stored as f16.
    pub fn half_weights(&self) -> bool {
        self.half_weights
    }

    /// Stores weights uploaded from now on as f16 (where the device allows) or f32: the f32 path
    /// is the reference the f16 one is tested against.
    pub fn set_half_weights(&mut self, on: bool) -> Result<()> {
        if on
            && !self
                .ctx
                .device
                .features()
                .contains(wgpu::Features::SHADER_F16)
        {
            return Err(Error::Gpu("this device has no shader-f16".into()));
        }
        self.half_weights = on;
        Ok(())
    }

    /// The op variants this backend dispatches.
    pub fn kernels(&self) -> KernelChoices {
        self.kernels
    }

    /// Dispatches other variants (for tests of every variant on any adapter); evaluations
    /// recorded earlier keep the variants they were recorded with.
    pub fn set_kernels(&mut self, kernels: KernelChoices) {
        self.kernels = kernels;
    }

    pub fn context(&self) -> &Rc<GpuContext> {
        &self.ctx
    }

    /// What the backend holds in tensor buffers now.
    pub fn memory(&self) -> GpuMemory {
        let mut m = self.pool.borrow().stats;
        m.plans = self.plans.len();
        m.plan_bytes = self.plans.iter().map(|p| p.bytes()).sum();
        m
    }

    /// Dispatches in the recorded evaluation of `owner` with these input shapes, if one is kept.
    pub fn planned_dispatches(&self, owner: u64, shapes: &[&[usize]]) -> Option<usize> {
        self.plans
            .iter()
            .find(|p| p.matches(owner, shapes))
            .map(|p| p.dispatches.len())
    }

    /// The pool new tensors come from: the recording's own while recording.
    fn current_pool(&self) -> &Rc<RefCell<Pool>> {
        match &self.recording {
            Some(rec) => &rec.pool,
            None => &self.pool,
        }
    }

    fn tensor(pool: &Rc<RefCell<Pool>>, buffer: wgpu::Buffer, shape: Vec<usize>) -> GpuTensor {
        GpuTensor {
            slot: Rc::new(Slot {
                buffer,
                pool: pool.clone(),
            }),
            shape,
            half: false,
        }
    }

    /// An output tensor, reusing a free buffer of its size (contents undefined until written).
    fn alloc(&mut self, shape: Vec<usize>) -> Result<GpuTensor> {
        let bytes = self.checked_bytes(&shape)?;
        let pool = self.current_pool().clone();
        let reused = pool.borrow_mut().take(bytes);
        let buffer = reused.unwrap_or_else(|| {
            pool.borrow_mut().created(bytes);
            self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: TENSOR_USAGE,
                mapped_at_creation: false,
            })
        });
        Ok(Self::tensor(&pool, buffer, shape))
    }

    /// A tensor holding `data`: a free buffer of its size filled in queue order, or a new buffer
    /// filled at creation.
    fn alloc_init(&mut self, data: &[f32], shape: Vec<usize>) -> Result<GpuTensor> {
        check_upload(data.len(), &shape)?;
        self.check_not_recording()?;
        let bytes = self.checked_bytes(&shape)?;
        let reused = self.pool.borrow_mut().take(bytes);
        if let Some(buffer) = reused {
            self.stage_upload(&buffer, bytemuck::cast_slice(data));
            return Ok(Self::tensor(&self.pool, buffer, shape));
        }
        Ok(self.created_with(bytemuck::cast_slice(data).to_vec(), shape))
    }

    /// A new pooled tensor buffer filled at creation with `contents` (zero-padded to a 16-byte
    /// multiple).
    fn created_with(&mut self, mut contents: Vec<u8>, shape: Vec<usize>) -> GpuTensor {
        let bytes = (contents.len().max(1) as u64).next_multiple_of(16);
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
        Self::tensor(&self.pool, buffer, shape)
    }

    /// Uploads belong outside recorded evaluations: a replay would not repeat them.
    fn check_not_recording(&self) -> Result<()> {
        match self.recording {
            Some(_) => Err(Error::Gpu(
                "an upload inside a recorded evaluation would be replayed stale".into(),
            )),
            None => Ok(()),
        }
    }

    /// Writes `data` to the start of `dst` in order with the recorded work: small uploads ride in
    /// the upload arena (no flush), large ones flush and write directly.
    fn stage_upload(&mut self, dst: &wgpu::Buffer, data: &[u8]) {
        let bytes = data.len() as u64;
        if bytes == 0 {
            return;
        }
        if bytes > UPLOAD_ARENA_BYTES / 4 {
            self.flush();
            self.ctx.queue.write_buffer(dst, 0, data);
            return;
        }
        if self.upload_bytes.len() as u64 + bytes > UPLOAD_ARENA_BYTES {
            self.flush();
        }
        let src_offset = self.upload_bytes.len() as u64;
        self.upload_bytes.extend_from_slice(data);
        self.pending.push(Command::Copy {
            src: self.upload_arena.clone(),
            src_offset,
            dst: dst.clone(),
            bytes,
        });
    }

    /// Buffer size for a shape (16-byte multiple), checked against the device's binding limit.
    fn checked_bytes(&self, shape: &[usize]) -> Result<u64> {
        let len: usize = shape.iter().product();
        let bytes = (len.max(1) * 4).next_multiple_of(16) as u64;
        let limit = self.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::Gpu(format!("tensor {shape:?} needs {bytes} bytes, over the device's {limit}-byte binding limit; use a smaller batch")));
        }
        Ok(bytes)
    }

    /// Offsets of uniform blocks in one buffer must be multiples of this.
    fn uniform_alignment(&self) -> usize {
        self.limits.min_uniform_buffer_offset_alignment as usize
    }

    /// Writes the arenas and submits everything recorded so far as one command buffer.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        for (arena, bytes) in [
            (&self.uniform_arena, &mut self.uniform_bytes),
            (&self.upload_arena, &mut self.upload_bytes),
        ] {
            if !bytes.is_empty() {
                self.ctx.queue.write_buffer(arena, 0, bytes);
                bytes.clear();
            }
        }
        let commands = std::mem::take(&mut self.pending);
        #[cfg(not(target_arch = "wasm32"))]
        if self.kernel_times.is_some() {
            return self.flush_timed(commands);
        }
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut rest = commands.as_slice();
        while let Some(first) = rest.first() {
            if let Command::Copy {
                src,
                src_offset,
                dst,
                bytes,
            } = first
            {
                enc.copy_buffer_to_buffer(src, *src_offset, dst, 0, *bytes);
                rest = &rest[1..];
                continue;
            }
            // Consecutive dispatches share one compute pass.
            let run = rest
                .iter()
                .position(|c| matches!(c, Command::Copy { .. }))
                .unwrap_or(rest.len());
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            let dispatches = rest[..run].iter().flat_map(|c| match c {
                Command::Dispatch(d) => std::slice::from_ref(d),
                Command::Replay(plan) => plan.dispatches.as_slice(),
                Command::Copy { .. } => unreachable!("copies end a run"),
            });
            // A pipeline is set only where it changes: on the web every call crosses into JS.
            let mut current = None;
            for d in dispatches {
                if current != Some(&d.pipeline) {
                    pass.set_pipeline(&d.pipeline);
                    current = Some(&d.pipeline);
                }
                d.encode(&mut pass);
            }
            drop(pass);
            rest = &rest[run..];
        }
        self.unpaced = Some(self.ctx.queue.submit([enc.finish()]));
    }

    /// The recorded evaluation for `owner` and these inputs, recording it on first use.
    fn plan_for(
        &mut self,
        owner: u64,
        inputs: &[&GpuTensor],
        f: impl FnOnce(&mut Self, &[&GpuTensor]) -> Result<GpuTensor>,
    ) -> Result<Rc<Plan>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape.as_slice()).collect();
        if let Some(i) = self.plans.iter().position(|p| p.matches(owner, &shapes)) {
            let plan = self.plans.remove(i);
            self.plans.push(plan.clone());
            return Ok(plan);
        }
        if self.recording.is_some() {
            return Err(Error::Gpu("recorded evaluations do not nest".into()));
        }
        self.recording = Some(Recorder::new(Pool::new(u64::MAX)));
        let traced = (|| {
            let ins = inputs
                .iter()
                .map(|t| self.alloc(t.shape.clone()))
                .collect::<Result<Vec<_>>>()?;
            let refs: Vec<&GpuTensor> = ins.iter().collect();
            let out = f(self, &refs)?;
            Ok((ins, out))
        })();
        let rec = self.recording.take().expect("recording was open");
        let (ins, out) = traced?;
        let plan = Rc::new(rec.finish(&self.ctx.device, &mut self.pipelines, owner, ins, out));
        if self.plans.len() == MAX_PLANS {
            self.plans.remove(0);
        }
        self.plans.push(plan.clone());
        Ok(plan)
    }

    /// Waits until submission `index` has run (native: polls the device; web: the signal).
    async fn wait(&self, step: InFlight) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.ctx
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(step.index),
                timeout: None,
            })
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        step.done
            .await
            .map_err(|_| Error::Gpu("the device stopped responding (lost?)".into()))?;
        self.ctx.check()
    }
}
