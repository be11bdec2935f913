//! The WGSL kernels: which file and entry point each uses, its override constants and its binding
//! layout, plus the cache that compiles each pipeline once.

use std::collections::HashMap;
use std::rc::Rc;

use bytemuck::{Pod, Zeroable};

/// The shader files, embedded at compile time (`common.wgsl` is prepended where its helpers are used).
pub const SHADERS: &[(&str, &str)] = &[
    ("matmul", include_str!("../../shaders/matmul.wgsl")),
    ("conv2d", include_str!("../../shaders/conv2d.wgsl")),
    ("group_norm", include_str!("../../shaders/group_norm.wgsl")),
    ("attention", include_str!("../../shaders/attention.wgsl")),
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

/// `conv2d.wgsl`'s `Params`, field for field (each uniform struct below mirrors its shader's;
/// `tests/kernels.rs` checks the sizes against naga's layout of the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct ConvParams {
    pub n: u32,
    pub h: u32,
    pub w: u32,
    pub cin: u32,
    pub ho: u32,
    pub wo: u32,
    pub cout: u32,
    /// Channels of the skip connection's input (`residual` 2): `cin2` from `add`, then `cin2b`
    /// from `add_b` (a pair read in place; 0 for one tensor).
    pub cin2: u32,
    pub cin2b: u32,
    pub _p0: u32,
    pub _p1: u32,
    pub _p2: u32,
}

/// `matmul.wgsl`'s `Params`: the sizes, each operand's view (offset, batch, row and column
/// strides), the bias flag and scale, and the epilogue's add and SiLU flags.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub batch: u32,
    pub a_off: u32,
    pub a_bs: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub b_off: u32,
    pub b_bs: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    pub has_bias: u32,
    pub scale: f32,
    pub has_add: u32,
    pub silu: u32,
}

/// `group_norm.wgsl`'s `Params`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct GroupNormParams {
    pub n: u32,
    pub hw: u32,
    pub c: u32,
    pub groups: u32,
    pub has_add: u32,
    pub silu: u32,
    pub eps: f32,
    pub add_stride: u32,
    pub add_offset: u32,
    /// Channels read from `x`; the rest (`c - ca`) from `xb` (a pair read in place).
    pub ca: u32,
    pub _p1: u32,
    pub _p2: u32,
}

/// `attention.wgsl`'s `Params`: images, tokens per image, channels, and the score scale.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct AttentionParams {
    pub n: u32,
    pub hw: u32,
    pub c: u32,
    pub _pad: u32,
    pub scale: f32,
    pub _p0: u32,
    pub _p1: u32,
    pub _p2: u32,
}

/// Most tokens `attention.wgsl` holds scores for (its workgroup array).
pub const ATTENTION_MAX_TOKENS: usize = 1024;

/// `elementwise.wgsl`'s `Params`: the element count, three integers and two floats whose meaning
/// each entry point documents.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct ElementwiseParams {
    pub len: u32,
    pub u0: u32,
    pub u1: u32,
    pub u2: u32,
    pub f0: f32,
    pub f1: f32,
    pub _p0: u32,
    pub _p1: u32,
}

/// `sampler.wgsl`'s `Params`: the element count, three integers and four floats.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SamplerParams {
    pub len: u32,
    pub u0: u32,
    pub u1: u32,
    pub u2: u32,
    pub f0: f32,
    pub f1: f32,
    pub f2: f32,
    pub f3: f32,
}

/// Each shader's uniform struct size in bytes, for the layout test.
pub const PARAMS_SIZES: &[(&str, usize)] = &[
    ("conv2d", std::mem::size_of::<ConvParams>()),
    ("matmul", std::mem::size_of::<MatmulParams>()),
    ("group_norm", std::mem::size_of::<GroupNormParams>()),
    ("attention", std::mem::size_of::<AttentionParams>()),
    ("elementwise", std::mem::size_of::<ElementwiseParams>()),
    ("sampler", std::mem::size_of::<SamplerParams>()),
];

/// The entry points of `elementwise.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elementwise {
    Silu,
    Axpby,
    Upsample2x,
    ConcatChannels,
    SoftmaxRows,
    Embedding,
    TimestepEmbedding,
}

/// The entry points of `sampler.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SamplerKernel {
    Randn,
    Combine3,
    RowDot,
    ErrorRatio,
    Blend,
    Pointwise,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    Uniform,
    Read,
    ReadWrite,
}

use Binding::{Read, ReadWrite, Uniform};

/// One compute pipeline: a shader entry point specialised by its override constants. `half`:
/// the weights (conv `wt`, matmul `b`) are stored as f16 (the shader-f16 variant of the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matmul {
        half: bool,
    },
    /// `entry`: which of the shader's entry points; `upsample`: a 3x3 convolution of the input
    /// upsampled 2x, one 2x2 phase per workgroup z; `residual`: 0 nothing added, 1 a tensor, 2 a
    /// 1x1 convolution of a second input.
    Conv2d {
        ksize: u32,
        stride: u32,
        entry: ConvEntry,
        upsample: bool,
        residual: u32,
        half: bool,
    },
    GroupNorm,
    Attention,
    Elementwise(Elementwise),
    Sampler(SamplerKernel),
}

/// The entry points of `conv2d.wgsl`, each a 32-pixel x 32-channel tile per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvEntry {
    /// Any channel counts, 4x4 register blocks.
    Scalar,
    /// Channel counts that are multiples of 4: vec4 loads, 4x4 weight blocks.
    Vec4,
    /// Any channel counts, input and weight tiles staged in workgroup memory.
    Tiled,
}

impl Kernel {
    fn file(&self) -> &'static str {
        match self {
            Kernel::Matmul { .. } => "matmul",
            Kernel::Conv2d { .. } => "conv2d",
            Kernel::GroupNorm => "group_norm",
            Kernel::Attention => "attention",
            Kernel::Elementwise(_) => "elementwise",
            Kernel::Sampler(_) => "sampler",
        }
    }

    fn entry(&self) -> &'static str {
        match self {
            Kernel::Matmul { .. }
            | Kernel::GroupNorm
            | Kernel::Attention
            | Kernel::Conv2d {
                entry: ConvEntry::Scalar,
                ..
            } => "main",
            Kernel::Conv2d {
                entry: ConvEntry::Vec4,
                ..
            } => "main_vec4",
            Kernel::Conv2d {
                entry: ConvEntry::Tiled,
                ..
            } => "main_tiled",
            Kernel::Elementwise(e) => match e {
                Elementwise::Silu => "silu",
                Elementwise::Axpby => "axpby",
                Elementwise::Upsample2x => "upsample2x",
                Elementwise::ConcatChannels => "concat_channels",
                Elementwise::SoftmaxRows => "softmax_rows",
                Elementwise::Embedding => "embedding",
                Elementwise::TimestepEmbedding => "timestep_embedding",
            },
            Kernel::Sampler(e) => match e {
                SamplerKernel::Randn => "randn",
                SamplerKernel::Combine3 => "combine3",
                SamplerKernel::RowDot => "row_dot",
                SamplerKernel::ErrorRatio => "error_ratio",
                SamplerKernel::Blend => "blend",
                SamplerKernel::Pointwise => "pointwise",
            },
        }
    }

    fn constants(&self) -> Vec<(&'static str, f64)> {
        match *self {
            Kernel::Conv2d {
                ksize,
                stride,
                upsample,
                residual,
                ..
            } => {
                vec![
                    ("KSIZE", ksize as f64),
                    ("STRIDE", stride as f64),
                    ("UPSAMPLE", upsample as u32 as f64),
                    ("RESIDUAL", residual as f64),
                ]
            }
            _ => vec![],
        }
    }

    /// Whether this pipeline reads f16 weights.
    fn half(&self) -> bool {
        matches!(
            self,
            Kernel::Matmul { half: true } | Kernel::Conv2d { half: true, .. }
        )
    }

    pub fn bindings(&self) -> &'static [Binding] {
        match self {
            Kernel::Matmul { .. } => &[Uniform, Read, Read, Read, Read, ReadWrite],
            Kernel::Conv2d { .. } => {
                &[Uniform, Read, Read, Read, Read, Read, Read, Read, ReadWrite]
            }
            Kernel::GroupNorm => &[Uniform, Read, Read, Read, Read, Read, ReadWrite],
            Kernel::Attention => &[Uniform, Read, ReadWrite],
            Kernel::Elementwise(_) => &[Uniform, Read, Read, ReadWrite],
            Kernel::Sampler(_) => &[Uniform, Read, Read, Read, Read, Read, ReadWrite],
        }
    }
}

/// A shader's text; with `half`, its shader-f16 variant: f16 enabled and the weights' storage
/// type alias `W` switched to f16 (only `conv2d` and `matmul` have one).
pub fn shader_source(file: &str, half: bool) -> String {
    let src = SHADERS
        .iter()
        .find(|(n, _)| *n == file)
        .expect("every kernel names an embedded shader")
        .1;
    if !half {
        return src.to_string();
    }
    const F32: &str = "alias W = f32;";
    assert!(src.contains(F32), "{file} has no f16 variant");
    format!("enable f16;\n{}", src.replacen(F32, "alias W = f16;", 1))
}

pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Compiles each shader module and each pipeline once per device.
#[derive(Default)]
pub struct PipelineCache {
    /// By file and whether it is the shader-f16 variant.
    modules: HashMap<(&'static str, bool), wgpu::ShaderModule>,
    pipelines: HashMap<Kernel, Rc<Pipeline>>,
}

impl PipelineCache {
    pub fn get(&mut self, device: &wgpu::Device, kernel: Kernel) -> Rc<Pipeline> {
        if let Some(p) = self.pipelines.get(&kernel) {
            return p.clone();
        }
        let file = kernel.file();
        let half = kernel.half();
        let module = self.modules.entry((file, half)).or_insert_with(|| {
            let src = shader_source(file, half);
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
