//! The WGSL kernels: which file and entry point each uses, its override constants and its binding
//! layout, plus the cache that compiles each pipeline once.

use std::collections::HashMap;
use std::rc::Rc;

/// The shader files, embedded at compile time (`common.wgsl` is prepended where its helpers are used).
pub const SHADERS: &[(&str, &str)] = &[
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("conv2d", include_str!("../../shaders/conv2d.wgsl")),
    ("group_norm", include_str!("../../shaders/group_norm.wgsl")),
    (
        "elementwise",
        concat!(
            include_str!("../../shaders/common.wgsl"),
            include_str!("../../shaders/elementwise.wgsl")
        ),
    ),
    (
        "sampler",
        concat!(
            include_str!("../../shaders/common.wgsl"),
            include_str!("../../shaders/sampler.wgsl")
        ),
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

use Binding::{Read, ReadWrite, Uniform};

/// One compute pipeline: a shader entry point specialised by its override constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matmul,
    /// `vec4`: the entry point for channel counts that are multiples of 4.
    Conv2d {
        ksize: u32,
        stride: u32,
        vec4: bool,
    },
    GroupNormStats,
    GroupNormApply,
    /// An entry point of `elementwise.wgsl`.
    Elementwise(&'static str),
    /// An entry point of `sampler.wgsl`.
    Sampler(&'static str),
}

impl Kernel {
    fn file(&self) -> &'static str {
        match self {
            Kernel::Matmul => "matmul",
            Kernel::Conv2d { .. } => "conv2d",
            Kernel::GroupNormStats | Kernel::GroupNormApply => "group_norm",
            Kernel::Elementwise(_) => "elementwise",
            Kernel::Sampler(_) => "sampler",
        }
    }

    fn entry(&self) -> &'static str {
        match self {
            Kernel::Matmul | Kernel::Conv2d { vec4: false, .. } => "main",
            Kernel::Conv2d { vec4: true, .. } => "main_vec4",
            Kernel::GroupNormStats => "stats_main",
            Kernel::GroupNormApply => "apply_main",
            Kernel::Elementwise(e) | Kernel::Sampler(e) => e,
        }
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        match *self {
            Kernel::Conv2d { ksize, stride, .. } => {
                vec![("KSIZE", ksize as f64), ("STRIDE", stride as f64)]
            }
            _ => vec![],
        }
    }

    pub fn bindings(&self) -> &'static [Binding] {
        match self {
            Kernel::Matmul | Kernel::Conv2d { .. } => &[Uniform, Read, Read, Read, ReadWrite],
            Kernel::GroupNormStats | Kernel::GroupNormApply => {
                &[Uniform, Read, Read, Read, Read, ReadWrite, ReadWrite]
            }
            Kernel::Elementwise(_) => &[Uniform, Read, Read, ReadWrite],
            Kernel::Sampler(_) => &[Uniform, Read, Read, Read, Read, Read, ReadWrite],
        }
    }
}

pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Compiles each shader module and each pipeline once per device.
#[derive(Default)]
pub struct PipelineCache {
    modules: HashMap<&'static str, wgpu::ShaderModule>,
    pipelines: HashMap<Kernel, Rc<Pipeline>>,
}

impl PipelineCache {
    pub fn get(&mut self, device: &wgpu::Device, kernel: Kernel) -> Rc<Pipeline> {
        if let Some(p) = self.pipelines.get(&kernel) {
            return p.clone();
        }
        let file = kernel.file();
        let module = self.modules.entry(file).or_insert_with(|| {
            let src = SHADERS
                .iter()
                .find(|(n, _)| *n == file)
                .expect("every kernel names an embedded shader")
                .1;
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            })
        });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Read => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: true },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage { read_only: false },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.entry()),
            entries: &entries,
        });
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: None,
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let constants = kernel.constants();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry()),
            layout: Some(&pl),
            module,
            entry_point: Some(kernel.entry()),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                zero_initialize_workgroup_memory: true,
            },
            cache: None,
        });
        let p = Rc::new(Pipeline { pipeline, layout });
        self.pipelines.insert(kernel, p.clone());
        p
    }
}
