//! Recorded evaluations: a network evaluation for one (model, input shapes) is traced once into a
//! list of dispatches with their own buffers, one uniform buffer and bind groups made up front,
//! and then replayed: per evaluation only the inputs are copied in and the output out.

use std::cell::RefCell;
use std::num::NonZeroU64;
use std::rc::Rc;

use wgpu::util::DeviceExt;

use super::kernels::{Kernel, PipelineCache};
use super::{Dispatch, GpuTensor, Pool};

/// Bind group of a kernel: its uniform block at `offset` of `uniforms`, then `buffers` whole.
pub(super) fn bind_group(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    uniforms: &wgpu::Buffer,
    offset: u64,
    size: u64,
    buffers: &[wgpu::Buffer],
) -> wgpu::BindGroup {
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: uniforms,
            offset,
            size: NonZeroU64::new(size),
        }),
    }];
    entries.extend(
        buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.as_entire_binding(),
            }),
    );
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout,
        entries: &entries,
    })
}

/// One traced dispatch, bound when the trace is finished.
struct Traced {
    kernel: Kernel,
    uniform_offset: u64,
    uniform_size: u64,
    buffers: Vec<wgpu::Buffer>,
    groups: [u32; 3],
}

/// An evaluation being traced: its dispatches, their uniform blocks, and the pool its tensors
/// come from (so no buffer of the plan is ever handed to other work).
pub(super) struct Recorder {
    pub(super) pool: Rc<RefCell<Pool>>,
    traced: Vec<Traced>,
    uniforms: Vec<u8>,
}

impl Recorder {
    pub(super) fn new(pool: Rc<RefCell<Pool>>) -> Recorder {
        Recorder {
            pool,
            traced: Vec::new(),
            uniforms: Vec::new(),
        }
    }

    pub(super) fn record(
        &mut self,
        kernel: Kernel,
        params: &[u8],
        align: usize,
        buffers: Vec<wgpu::Buffer>,
        groups: [u32; 3],
    ) {
        let uniform_offset = self.uniforms.len() as u64;
        self.uniforms.extend_from_slice(params);
        self.uniforms
            .resize(self.uniforms.len().next_multiple_of(align), 0);
        self.traced.push(Traced {
            kernel,
            uniform_offset,
            uniform_size: params.len() as u64,
            buffers,
            groups,
        });
    }

    /// The plan: one uniform buffer for every dispatch, and every bind group, made now.
    pub(super) fn finish(
        self,
        device: &wgpu::Device,
        pipelines: &mut PipelineCache,
        owner: u64,
        inputs: Vec<GpuTensor>,
        output: GpuTensor,
    ) -> Plan {
        let uniforms = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("plan uniforms"),
            contents: if self.uniforms.is_empty() {
                &[0; 16]
            } else {
                &self.uniforms
            },
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let dispatches = self
            .traced
            .into_iter()
            .map(|t| {
                let p = pipelines.get(device, t.kernel);
                Dispatch {
                    kernel: t.kernel,
                    bind_group: bind_group(
                        device,
                        &p.layout,
                        &uniforms,
                        t.uniform_offset,
                        t.uniform_size,
                        &t.buffers,
                    ),
                    pipeline: p.pipeline.clone(),
                    groups: t.groups,
                }
            })
            .collect();
        Plan {
            owner,
            inputs,
            output,
            dispatches,
            pool: self.pool,
            _uniforms: uniforms,
        }
    }
}

/// A recorded evaluation, replayed by copying into `inputs`, running `dispatches` and copying
/// `output` out (callers may hold outputs of several replays at once).
pub(super) struct Plan {
    owner: u64,
    pub(super) inputs: Vec<GpuTensor>,
    pub(super) output: GpuTensor,
    pub(super) dispatches: Vec<Dispatch>,
    /// Owns every intermediate buffer of the evaluation.
    pool: Rc<RefCell<Pool>>,
    _uniforms: wgpu::Buffer,
}

impl Plan {
    pub(super) fn matches(&self, owner: u64, shapes: &[&[usize]]) -> bool {
        self.owner == owner
            && self.inputs.len() == shapes.len()
            && self.inputs.iter().zip(shapes).all(|(t, s)| t.shape == *s)
    }

    pub(super) fn owner(&self) -> u64 {
        self.owner
    }

    /// Bytes of the plan's own tensor buffers.
    pub(super) fn bytes(&self) -> u64 {
        self.pool.borrow().stats.bytes
    }
}
