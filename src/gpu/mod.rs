//! The GPU backend: tensors in storage buffers, ops recorded as commands and submitted in order,
//! network evaluations planned once and replayed, and a bounded pool of buffers for reuse.
//!
//! Buffer reuse is safe because everything runs in submission order: a tensor's buffer returns to
//! the pool when the last handle drops, and the next op that takes it is recorded after every op
//! that read it. Uploads and the uniforms of unplanned dispatches go through two arenas written
//! once per submit (`write_buffer` runs before the commands of its submit, after earlier submits),
//! so neither needs a buffer of its own nor an extra submit.

pub mod context;
pub mod kernels;
mod plan;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use wgpu::util::DeviceExt;

pub use context::{AdapterReport, GpuContext};
use kernels::{
    AttentionParams, ConvEntry, ConvParams, Elementwise, ElementwiseParams, GroupNormParams,
    Kernel, MatmulParams, PipelineCache, SamplerKernel, SamplerParams,
};
use plan::{Plan, Recorder};

use crate::backend::{
    attend_by_parts, check_blend, check_reshape, check_rows, check_upload, Backend, Channels,
};
use crate::error::{Error, Result};
use crate::ops::{self, Conv2d, GroupNorm, Matmul, Pointwise};

/// Free bytes the pool keeps for reuse; a buffer returned past this is let go, so memory stays
/// bounded however many batch sizes a long session goes through.
const POOL_MAX_FREE_BYTES: u64 = 256 << 20;

/// Free tensor buffers by byte size, and a count of every tensor buffer the pool has made.
struct Pool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: GpuMemory,
    /// Free bytes kept for reuse; a buffer returned past this is let go.
    max_free: u64,
}

/// Tensor buffers held by the GPU backend: in use or free in the shared pool, and those owned by
/// recorded evaluations (the arenas, the readback buffer and the weights' uniforms are fixed and
/// small, and not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct GpuMemory {
    pub buffers: usize,
    pub bytes: u64,
    pub free_buffers: usize,
    pub free_bytes: u64,
    /// Recorded evaluations kept for replay, and the bytes of their own buffers.
    pub plans: usize,
    pub plan_bytes: u64,
}

impl Pool {
    fn new(max_free: u64) -> Rc<RefCell<Pool>> {
        Rc::new(RefCell::new(Pool {
            free: HashMap::new(),
            stats: GpuMemory::default(),
            max_free,
        }))
    }

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
        if self.stats.free_bytes + bytes > self.max_free {
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

/// A tensor in a GPU storage buffer (f32, or f16 for weights, row-major in its shape).
#[derive(Clone)]
pub struct GpuTensor {
    slot: Rc<Slot>,
    shape: Vec<usize>,
    /// Stored as f16 (weights on a device with shader-f16; see [`Backend::upload_weights`]).
    half: bool,
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

    /// Submits and waits for every dispatch on its own and adds its time to its kernel's total:
    /// where an evaluation's device time goes on this adapter (`cargo bench --bench ops --
    /// "kernel times"`). Much slower than normal submission; native only.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn time_kernels(&mut self, on: bool) {
        self.kernel_times = on.then(HashMap::new);
    }

    /// Device ms and dispatches by kernel since [`Gpu::time_kernels`] or the last call, most time
    /// first.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn kernel_times(&mut self) -> Vec<(String, f64, usize)> {
        let mut v: Vec<_> = self
            .kernel_times
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, (ms, count))| (format!("{k:?}"), ms, count))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// `flush` with every command submitted on its own and every dispatch timed.
    #[cfg(not(target_arch = "wasm32"))]
    fn flush_timed(&mut self, commands: Vec<Command>) {
        let device = &self.ctx.device;
        let times = self.kernel_times.as_mut().expect("timing is on");
        let mut run = |record: &dyn Fn(&mut wgpu::CommandEncoder)| {
            let mut enc =
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            record(&mut enc);
            let start = std::time::Instant::now();
            let index = self.ctx.queue.submit([enc.finish()]);
            let _ = device.poll(wgpu::PollType::Wait {
                submission_index: Some(index.clone()),
                timeout: None,
            });
            self.unpaced = Some(index);
            start.elapsed().as_secs_f64() * 1e3
        };
        for c in &commands {
            let dispatches = match c {
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    bytes,
                } => {
                    run(&|enc| enc.copy_buffer_to_buffer(src, *src_offset, dst, 0, *bytes));
                    continue;
                }
                Command::Dispatch(d) => std::slice::from_ref(d),
                Command::Replay(plan) => plan.dispatches.as_slice(),
            };
            for d in dispatches {
                let ms = run(&|enc| {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                    pass.set_pipeline(&d.pipeline);
                    d.encode(&mut pass);
                });
                let total = times.entry(d.kernel).or_default();
                total.0 += ms;
                total.1 += 1;
            }
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

    /// Records one dispatch of `kernel` with a uniform block and buffer bindings in layout order:
    /// into the recording if one is open, else into `pending` with its uniforms in the arena.
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
        let mut buffers: Vec<wgpu::Buffer> = inputs
            .iter()
            .map(|t| t.map_or(&self.dummy, |t| t.buffer()).clone())
            .collect();
        buffers.extend(out.iter().map(|t| t.buffer().clone()));
        debug_assert_eq!(
            buffers.len() + 1,
            kernel.bindings().len(),
            "{kernel:?} bindings"
        );
        let align = self.uniform_alignment();
        if let Some(rec) = &mut self.recording {
            rec.record(kernel, bytemuck::bytes_of(params), align, buffers, groups);
            return;
        }
        if (self.uniform_bytes.len() + align) as u64 > UNIFORM_ARENA_BYTES {
            self.flush();
        }
        let offset = self.uniform_bytes.len() as u64;
        self.uniform_bytes
            .extend_from_slice(bytemuck::bytes_of(params));
        self.uniform_bytes
            .resize(self.uniform_bytes.len().next_multiple_of(align), 0);
        let pipeline = self.pipelines.get(&self.ctx.device, kernel);
        let bind_group = plan::bind_group(
            &self.ctx.device,
            &pipeline.layout,
            &self.uniform_arena,
            offset,
            std::mem::size_of::<P>() as u64,
            &buffers,
        );
        self.pending.push(Command::Dispatch(Dispatch {
            kernel,
            pipeline: pipeline.pipeline.clone(),
            bind_group,
            groups,
        }));
    }

    /// A convolution with its residual connection fused into its output; with `upsampled`, the
    /// 3x3 convolution of x upsampled 2x, from the phase weights of [`ops::upsample_phases`].
    fn conv_with(
        &mut self,
        x: &GpuTensor,
        w: &GpuTensor,
        bias: &GpuTensor,
        residual: Residual,
        spec: Conv2d,
        upsampled: bool,
    ) -> Result<GpuTensor> {
        let [n, ho, wo, cout] = if upsampled {
            ops::upsample_phases::check(&x.shape, &w.shape, &bias.shape)?
        } else {
            spec.check(&x.shape, &w.shape, &bias.shape)?
        };
        let (code, [cin2, cin2b], inputs) = match residual {
            Residual::None => (0, [0, 0], [None; 4]),
            Residual::Add(a) => {
                ops::check_same("conv2d_add", &a.shape, &[n, ho, wo, cout])?;
                (1, [0, 0], [Some(a), None, None, None])
            }
            Residual::Skip {
                x: sx,
                w: sw,
                bias: sb,
            } => {
                if sw.half != w.half {
                    return Err(Error::Gpu(
                        "a convolution and its skip projection store their weights alike".into(),
                    ));
                }
                let one = Conv2d {
                    ksize: 1,
                    stride: 1,
                };
                let (sx, sxb, sx_shape) = pair_parts(sx)?;
                let shape = one.check(&sx_shape, &sw.shape, &sb.shape)?;
                ops::check_same("conv2d_skip", &shape, &[n, ho, wo, cout])?;
                let cin2 = sx.shape[3];
                (
                    2,
                    [cin2, sx_shape[3] - cin2],
                    [Some(sx), Some(sw), Some(sb), sxb],
                )
            }
        };
        let [_, h, wd, cin] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let out = self.alloc(vec![n, ho, wo, cout])?;
        // The pixels a dispatch walks: the output's, or one phase's (the stored image's) for
        // each of 4 workgroup rows in z.
        let (grid_pixels, phases) = if upsampled {
            (n * h * wd, 4)
        } else {
            (n * ho * wo, 1)
        };
        let pix_groups = (grid_pixels as u64).div_ceil(32);
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
            cin2: u(cin2),
            cin2b: u(cin2b),
            _p0: 0,
            _p1: 0,
            _p2: 0,
        };
        let groups = [(cout as u32).div_ceil(32), pix_groups as u32, phases];
        let entry = if self.kernels.tiled_conv {
            ConvEntry::Tiled
        } else if cin % 4 == 0 && cout % 4 == 0 && cin2 % 4 == 0 && cin2b % 4 == 0 {
            ConvEntry::Vec4
        } else {
            ConvEntry::Scalar
        };
        let [a, sw, sb, ab] = inputs;
        self.dispatch(
            Kernel::Conv2d {
                ksize: spec.ksize as u32,
                stride: spec.stride as u32,
                entry,
                upsample: upsampled,
                residual: code,
                half: w.half,
            },
            &params,
            &[Some(x), Some(w), Some(bias), a, sw, sb, ab],
            &[&out],
            groups,
        );
        Ok(out)
    }

    /// A product with its epilogue: bias, an added tensor of the output's size, SiLU.
    fn product(
        &mut self,
        a: &GpuTensor,
        b: &GpuTensor,
        bias: Option<&GpuTensor>,
        add: Option<&GpuTensor>,
        silu: bool,
        spec: &Matmul,
    ) -> Result<GpuTensor> {
        spec.check(a.len(), b.len(), bias.map(|t| t.shape.as_slice()))?;
        debug_assert!(add.is_none_or(|t| t.len() == spec.batch * spec.m * spec.n));
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
            has_add: add.is_some() as u32,
            silu: silu as u32,
        };
        let groups = [
            (spec.n as u32).div_ceil(32),
            row_groups as u32,
            spec.batch as u32,
        ];
        self.dispatch(
            Kernel::Matmul { half: b.half },
            &params,
            &[Some(a), Some(b), bias, add],
            &[&out],
            groups,
        );
        Ok(out)
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
