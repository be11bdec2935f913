//! Recording dispatches: each op's kernel, parameters, bind group and workgroup count, queued in
//! order for the next submit (or traced into a plan).

use super::{
    pair_parts, plan, Command, Dispatch, Gpu, GpuTensor, Residual, MAX_GROUPS, UNIFORM_ARENA_BYTES,
    WG,
};

use super::kernels::{
    ConvEntry, ConvParams, Elementwise, ElementwiseParams, Kernel, MatmulParams, SamplerKernel,
    SamplerParams,
};
use crate::error::{Error, Result};
use crate::ops::{self, Conv2d, Matmul};

impl Gpu {
    /// Records one dispatch of `kernel` with a uniform block and buffer bindings in layout order:
    /// into the recording if one is open, else into `pending` with its uniforms in the arena.
    pub(super) fn dispatch<P: bytemuck::Pod>(
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
    pub(super) fn conv_with(
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
    pub(super) fn product(
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
    pub(super) fn flat_groups(len: usize) -> [u32; 3] {
        let groups = (len as u64).div_ceil(WG).max(1);
        let x = groups.min(MAX_GROUPS);
        [x as u32, groups.div_ceil(x) as u32, 1]
    }

    pub(super) fn elementwise(
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
    pub(super) fn sampler_op(
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
}
