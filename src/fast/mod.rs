//! The fast CPU backend: the reference's tensors and simple element-wise ops, with GroupNorm and
//! SiLU in f32 and convolutions and matrix products as f32 GEMM. Stride-1 convolutions run our own
//! kernel (`kernel`: SIMD128 in wasm, AVX2+FMA natively when the CPU has it) reading the input in
//! place; the rest (stride-2 convolutions through a patch matrix, attention and linear products
//! with strided operands) goes to `matrixmultiply`.
//!
//! The reference (`Cpu`) stays the oracle: f64 accumulation, plain loops. This backend accumulates
//! in f32, so it agrees with the reference to rounding (tested to a relative 1e-4 over the kernel
//! sweep and the golden tensors), not bit for bit.

mod kernel;

use std::rc::Rc;

use crate::backend::{Backend, Channels};
use crate::cpu::{Cpu, CpuTensor};
use crate::error::Result;
use crate::ops::{self, Conv2d, GroupNorm, Matmul, Pointwise};
use crate::reference;

/// Floats of channel planes per chunk of images: a convolution of many images is done a few
/// images at a time, so the scratch stays small (16 MB) whatever the batch.
const SCRATCH_FLOATS: usize = 4 << 20;

/// The fast CPU backend; tensors are the reference backend's [`CpuTensor`]s.
#[derive(Default)]
pub struct FastCpu {
    reference: Cpu,
    /// A convolution's input as channel planes, and its patch matrix; reused between convolutions.
    planes: Vec<f32>,
    patches: Vec<f32>,
    /// Where each column of a GEMM's left operand starts (see [`kernel`]).
    offsets: Vec<usize>,
    /// Every op output's buffer, for reuse once its tensors are dropped: a sampling loop's steps
    /// need the same sizes again, so the steady state allocates no tensor memory.
    outputs: Vec<Rc<Vec<f32>>>,
}

/// Products with at most this many rows skip `matrixmultiply` (whose packing of b costs more
/// than the product, and allocates b-sized scratch).
const SMALL_M: usize = 8;

/// `c[m, n] += alpha a b` with strided operands (`c` row-major, `n` wide).
#[allow(clippy::too_many_arguments)]
fn gemm(
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
) {
    assert!(m * n <= c.len());
    assert!((m - 1) * rsa + (k - 1) * csa < a.len());
    assert!((k - 1) * rsb + (n - 1) * csb < b.len());
    if m <= SMALL_M && csb == 1 {
        // A few rows (the time embedding's layers): rows of b added in place, nothing packed,
        // so no scratch the size of b.
        for (r, row) in c.chunks_exact_mut(n).take(m).enumerate() {
            for kk in 0..k {
                let av = alpha * a[r * rsa + kk * csa];
                let brow = &b[kk * rsb..kk * rsb + n];
                row.iter_mut().zip(brow).for_each(|(o, &bv)| *o += av * bv);
            }
        }
        return;
    }
    // SAFETY: the asserts keep every element the product touches inside its slice.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            1.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// `c[m, n] += a b` for a column-major `a` (`m x k`, column stride `lda`), a row-major `b` (`k x n`,
/// row stride `ldb`) and a row-major `c` (row stride `ldc`): a convolution's patch block times its
/// weights. Our own kernel where it runs (see [`kernel`]), else `matrixmultiply`.
#[allow(clippy::too_many_arguments)]
fn gemm_columns(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    offsets: &mut Vec<usize>,
) {
    if kernel::fits(n) {
        offsets.clear();
        offsets.extend((0..k).map(|p| p * lda));
        kernel::gemm((m, n), a, offsets, b, ldb, c, ldc);
        return;
    }
    assert_eq!(ldc, n);
    gemm((m, k, n), 1.0, a, (1, lda), b, (ldb, 1), c);
}

/// A stride-1 convolution's input as zero-padded channel planes, `[cin][n][h + 2 pad][w + 2 pad]`:
/// the `wo` inputs under one tap for one output row are then one contiguous run, so the GEMM can
/// read them in place instead of from a patch matrix.
fn padded_planes(x: &[f32], [n, h, wd, cin]: [usize; 4], pad: usize, out: &mut Vec<f32>) {
    let (hp, wp) = (h + 2 * pad, wd + 2 * pad);
    out.clear();
    out.resize(cin * n * hp * wp, 0.0);
    for b in 0..n {
        for y in 0..h {
            let src = &x[(b * h + y) * wd * cin..][..wd * cin];
            for ci in 0..cin {
                let dst = &mut out[((ci * n + b) * hp + y + pad) * wp + pad..][..wd];
                for (d, &v) in dst.iter_mut().zip(src[ci..].iter().step_by(cin)) {
                    *d = v;
                }
            }
        }
    }
}

/// Transposes a row-major `rows x cols` matrix into `out` (`cols x rows`), a block of rows at a
/// time so that both sides stay in cache.
fn transpose(src: &[f32], rows: usize, cols: usize, out: &mut Vec<f32>) {
    const BLOCK: usize = 16;
    out.resize(rows * cols, 0.0);
    for r0 in (0..rows).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(rows);
        for c in 0..cols {
            let dst = &mut out[c * rows + r0..c * rows + r1];
            for (d, r) in dst.iter_mut().zip(r0..r1) {
                *d = src[r * cols + c];
            }
        }
    }
}

/// Output pixels per block of the patch matrix: a block stays in cache between being written and
/// being packed by the GEMM (288 columns of 256 pixels are 288 KB).
const BLOCK_PIXELS: usize = 256;

/// One block of a convolution's patch matrix, column-major: the output rows `rows` (counted over
/// all images, `b * ho + oy`), and in column `(ky * k + kx) * cin + ci` (the row order of the
/// weights) channel `ci` of the input pixel under kernel tap `(ky, kx)`, or 0 in the padding.
/// `planes` is the input as channel planes (`[cin][n][h][w]`, see [`transpose`]), so a stride-1
/// row of a column is one copy of an input row. Column-major matters: the GEMM packs its left
/// operand in column runs, a plain copy when they are contiguous and a gather when not.
fn patch_columns(
    planes: &[f32],
    [n, h, wd, cin]: [usize; 4],
    spec: Conv2d,
    rows: std::ops::Range<usize>,
    out: &mut Vec<f32>,
) {
    let (ho, wo) = spec.out_hw(h, wd);
    let (k, s, pad) = (spec.ksize, spec.stride, (spec.ksize / 2) as isize);
    let m = rows.len() * wo;
    out.resize(k * k * cin * m, 0.0);
    for ky in 0..k {
        for kx in 0..k {
            let dx = kx as isize - pad;
            for ci in 0..cin {
                let column = &mut out[((ky * k + kx) * cin + ci) * m..][..m];
                for (row, g) in column.chunks_exact_mut(wo).zip(rows.clone()) {
                    let (b, oy) = (g / ho, g % ho);
                    let iy = (oy * s + ky) as isize - pad;
                    if !(0..h as isize).contains(&iy) {
                        row.fill(0.0);
                        continue;
                    }
                    let src = &planes[((ci * n + b) * h + iy as usize) * wd..][..wd];
                    if s == 1 {
                        // Output pixels ox whose input ox + dx lies inside the row.
                        let lo = (-dx).clamp(0, wo as isize) as usize;
                        let hi = (wd as isize - dx).clamp(lo as isize, wo as isize) as usize;
                        row[..lo].fill(0.0);
                        row[hi..].fill(0.0);
                        let from = (lo as isize + dx) as usize;
                        row[lo..hi].copy_from_slice(&src[from..from + hi - lo]);
                    } else {
                        for (ox, v) in row.iter_mut().enumerate() {
                            let ix = (ox * s) as isize + dx;
                            *v = if (0..wd as isize).contains(&ix) {
                                src[ix as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
    }
}

/// `e^x` to within 2 ulp-ish (relative 3e-7) without a library call, so loops over it vectorise
/// (in wasm `f32::exp` is a software routine and dominated SiLU): `x = n ln 2 + r` with `|r| <=
/// ln 2 / 2`, a degree-6 polynomial for `e^r`, and `2^n` written into the exponent bits.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by adding and removing 1.5 * 2^23 (`round` is a library call on wasm32 and
    // on baseline x86-64); the sum's low mantissa bits then hold n itself.
    const ROUND: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    // r = x - n ln 2, with ln 2 split in two so the product stays exact.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n: n + 127 (in 1..=254 after the clamp) into the exponent field, in integer operations
    // only (`n as i32` saturates, which does not vectorise).
    p * f32::from_bits(shifted.to_bits().wrapping_add(127) << 23)
}

fn silu(v: f32) -> f32 {
    v / (1.0 + exp(-v))
}

/// GroupNorm of `[n, hw, c]` (optional per-(n, c) add first, as in the reference, SiLU after) in f32: per-channel sums
/// over contiguous rows, two passes for the variance, then one fused scale-and-shift per channel.
fn group_norm(
    x: &[f32],
    (n, hw, c): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    add: Option<&[f32]>,
    spec: GroupNorm,
    out: &mut [f32],
) {
    let cg = c / spec.groups;
    let count = (hw * cg) as f32;
    let (mut sum, mut scale, mut shift) = (vec![0f32; c], vec![0f32; c], vec![0f32; c]);
    for b in 0..n {
        let xb = &x[b * hw * c..(b + 1) * hw * c];
        let shifted = |ch: usize| add.map_or(0.0, |a| a[b * (a.len() / n) + spec.add_offset + ch]);
        // Group means.
        sum.fill(0.0);
        for row in xb.chunks_exact(c) {
            sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v);
        }
        let mean: Vec<f32> = (0..spec.groups)
            .map(|g| {
                (g * cg..(g + 1) * cg)
                    .map(|ch| sum[ch] + hw as f32 * shifted(ch))
                    .sum::<f32>()
                    / count
            })
            .collect();
        // Per-channel offsets from the group mean, then the group variances.
        let offset: Vec<f32> = (0..c).map(|ch| shifted(ch) - mean[ch / cg]).collect();
        sum.fill(0.0);
        for row in xb.chunks_exact(c) {
            sum.iter_mut()
                .zip(row)
                .zip(&offset)
                .for_each(|((s, &v), &o)| *s += (v + o) * (v + o));
        }
        for g in 0..spec.groups {
            let var = sum[g * cg..(g + 1) * cg].iter().sum::<f32>() / count;
            let rstd = 1.0 / (var + spec.eps).sqrt();
            for ch in g * cg..(g + 1) * cg {
                scale[ch] = rstd * gamma[ch];
                shift[ch] = offset[ch] * scale[ch] + beta[ch];
            }
        }
        let ob = &mut out[b * hw * c..(b + 1) * hw * c];
        for (orow, row) in ob.chunks_exact_mut(c).zip(xb.chunks_exact(c)) {
            for (((o, &v), &k), &d) in orow.iter_mut().zip(row).zip(&scale).zip(&shift) {
                let y = v * k + d;
                *o = if spec.silu { silu(y) } else { y };
            }
        }
    }
}

/// Every row of `out` set to `bias` (the GEMM then adds the product), or to 0 without one.
fn fill_rows(out: &mut [f32], bias: Option<&[f32]>) {
    match bias {
        Some(b) => out
            .chunks_exact_mut(b.len())
            .for_each(|row| row.copy_from_slice(b)),
        None => out.fill(0.0),
    }
}

/// Floats of free output buffers the pool keeps for reuse (64 MB); the oldest go past that.
const POOL_FREE_FLOATS: usize = 16 << 20;

impl FastCpu {
    /// A buffer for an op's output of `len` floats: an earlier output of that length that no
    /// tensor holds any more, or a new one. Stale contents: the op overwrites all of it.
    fn take(&mut self, len: usize) -> Vec<f32> {
        let free = |rc: &Rc<Vec<f32>>| rc.len() == len && Rc::strong_count(rc) == 1;
        match self.outputs.iter().position(free) {
            Some(i) => Rc::try_unwrap(self.outputs.swap_remove(i)).expect("only the pool holds it"),
            None => vec![0.0; len],
        }
    }

    /// The tensor over `data` (from [`Self::take`]); the pool keeps a reference to reuse the
    /// buffer once the tensor is gone, and lets go of the oldest free buffers past a bound.
    fn tensor(&mut self, data: Vec<f32>, shape: Vec<usize>) -> CpuTensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        let data = Rc::new(data);
        self.outputs.push(data.clone());
        let mut free_floats = 0;
        self.outputs.retain(|rc| {
            // Newest last: walking from the oldest, keep a free buffer only while under the bound.
            if Rc::strong_count(rc) > 1 {
                return true;
            }
            free_floats += rc.len();
            free_floats <= POOL_FREE_FLOATS
        });
        CpuTensor { data, shape }
    }

    /// `out += conv(x, w)` for a stride-1 convolution, with the GEMM reading its left operand from
    /// the padded channel planes in place: no patch matrix. Output row `(b, oy)` is one product of
    /// `wo` pixels: tap `(ky, kx)` of channel `ci` is at offset `(ci n hp + ky) wp + kx` from the
    /// row's first input.
    fn conv2d_in_place(
        &mut self,
        x: &[f32],
        [n, h, wd, cin]: [usize; 4],
        w: &[f32],
        spec: Conv2d,
        out: &mut [f32],
    ) {
        let (k, pad) = (spec.ksize, spec.ksize / 2);
        let (hp, wp) = (h + 2 * pad, wd + 2 * pad);
        let cout = out.len() / (n * h * wd);
        let chunk = (SCRATCH_FLOATS / (hp * wp * cin)).clamp(1, n);
        for first in (0..n).step_by(chunk) {
            let count = chunk.min(n - first);
            let images = &x[first * h * wd * cin..(first + count) * h * wd * cin];
            self.chunk_planes(images, [count, h, wd, cin], pad, k);
            // Output row g of this chunk is image g / h, line g % h.
            let dst = &mut out[first * h * wd * cout..(first + count) * h * wd * cout];
            for (g, dst) in dst.chunks_exact_mut(wd * cout).enumerate() {
                let start = ((g / h) * hp + g % h) * wp;
                let plane = &self.planes[start..];
                kernel::gemm((wd, cout), plane, &self.offsets, w, cout, dst, cout);
            }
        }
    }

    /// A chunk of images as zero-padded channel planes (`pad` on every side) and the offsets of
    /// a `taps` x `taps` window's (tap, channel) rows from a window's top-left corner, in the
    /// order of the weight rows.
    fn chunk_planes(&mut self, images: &[f32], shape: [usize; 4], pad: usize, taps: usize) {
        let [count, h, wd, cin] = shape;
        let (hp, wp) = (h + 2 * pad, wd + 2 * pad);
        padded_planes(images, shape, pad, &mut self.planes);
        self.offsets.clear();
        for ky in 0..taps {
            for kx in 0..taps {
                let tap = ky * wp + kx;
                self.offsets
                    .extend((0..cin).map(|ci| ci * count * hp * wp + tap));
            }
        }
    }

    /// [`conv2d_in_place`](Self::conv2d_in_place) for a 3x3 convolution of x upsampled 2x, from
    /// the phase weights of [`ops::upsample_phases`]: per phase (a, b) and stored row y, one
    /// product writes output row 2y + a, every other pixel from b.
    fn upsample_conv2d_in_place(
        &mut self,
        x: &[f32],
        [n, h, wd, cin]: [usize; 4],
        phase_w: &[f32],
        out: &mut [f32],
    ) {
        use ops::upsample_phases::TAPS;
        let (hp, wp) = (h + 2, wd + 2);
        let (ho, wo) = (2 * h, 2 * wd);
        let cout = out.len() / (n * ho * wo);
        let chunk = (SCRATCH_FLOATS / (hp * wp * cin)).clamp(1, n);
        for first in (0..n).step_by(chunk) {
            let count = chunk.min(n - first);
            let images = &x[first * h * wd * cin..(first + count) * h * wd * cin];
            self.chunk_planes(images, [count, h, wd, cin], 1, TAPS);
            let dst = &mut out[first * ho * wo * cout..(first + count) * ho * wo * cout];
            let rows = TAPS * TAPS * cin;
            for (phase, w) in phase_w.chunks_exact(rows * cout).enumerate() {
                let (a, b) = (phase / 2, phase % 2);
                for g in 0..count * h {
                    let (image, y) = (g / h, g % h);
                    // Tap (r, s) reads stored row y + a - 1 + r, i.e. padded row y + a + r.
                    let plane = &self.planes[(image * hp + y + a) * wp + b..];
                    let dst = &mut dst[((image * ho + 2 * y + a) * wo + b) * cout..];
                    kernel::gemm((wd, cout), plane, &self.offsets, w, cout, dst, 2 * cout);
                }
            }
        }
    }
}

impl Backend for FastCpu {
    type Tensor = CpuTensor;

    fn shape(t: &CpuTensor) -> &[usize] {
        &t.shape
    }

    fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<CpuTensor> {
        self.reference.upload(data, shape)
    }

    async fn read(&mut self, t: &CpuTensor) -> Result<Vec<f32>> {
        self.reference.read(t).await
    }

    async fn sync(&mut self) -> Result<()> {
        self.reference.sync().await
    }

    fn reshape(&mut self, t: &CpuTensor, shape: &[usize]) -> Result<CpuTensor> {
        self.reference.reshape(t, shape)
    }

    fn conv2d(
        &mut self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: &CpuTensor,
        spec: Conv2d,
    ) -> Result<CpuTensor> {
        let [n, ho, wo, cout] = spec.check(&x.shape, &w.shape, &bias.shape)?;
        let [_, h, wd, cin] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let row = spec.ksize * spec.ksize * cin;
        let mut out = self.take(n * ho * wo * cout);
        fill_rows(&mut out, Some(&bias.data));
        if spec.stride == 1 && kernel::fits(cout) {
            self.conv2d_in_place(&x.data, [n, h, wd, cin], &w.data, spec, &mut out);
            return Ok(self.tensor(out, vec![n, ho, wo, cout]));
        }
        let chunk = (SCRATCH_FLOATS / (h * wd * cin)).clamp(1, n);
        let rows_per_block = (BLOCK_PIXELS / wo).max(1);
        for first in (0..n).step_by(chunk) {
            let count = chunk.min(n - first);
            let images = &x.data[first * h * wd * cin..(first + count) * h * wd * cin];
            transpose(images, count * h * wd, cin, &mut self.planes);
            for block in (0..count * ho).step_by(rows_per_block) {
                let rows = block..(block + rows_per_block).min(count * ho);
                let pixels = rows.len() * wo;
                let dst = &mut out[(first * ho + block) * wo * cout..][..pixels * cout];
                let shape = [count, h, wd, cin];
                patch_columns(&self.planes, shape, spec, rows, &mut self.patches);
                let dims = (pixels, row, cout);
                let offsets = &mut self.offsets;
                gemm_columns(
                    dims,
                    &self.patches,
                    pixels,
                    &w.data,
                    cout,
                    dst,
                    cout,
                    offsets,
                );
            }
        }
        Ok(self.tensor(out, vec![n, ho, wo, cout]))
    }

    fn matmul(
        &mut self,
        a: &CpuTensor,
        b: &CpuTensor,
        bias: Option<&CpuTensor>,
        spec: &Matmul,
    ) -> Result<CpuTensor> {
        spec.check(a.data.len(), b.data.len(), bias.map(|t| t.shape.as_slice()))?;
        let Matmul {
            batch,
            m,
            n,
            k,
            a: va,
            b: vb,
            scale,
        } = *spec;
        let mut out = self.take(batch * m * n);
        fill_rows(&mut out, bias.map(|t| t.data.as_slice()));
        for (bt, c) in out.chunks_exact_mut(m * n).enumerate() {
            gemm(
                (m, k, n),
                scale,
                &a.data[va.offset + bt * va.batch_stride..],
                (va.row_stride, va.col_stride),
                &b.data[vb.offset + bt * vb.batch_stride..],
                (vb.row_stride, vb.col_stride),
                c,
            );
        }
        Ok(self.tensor(out, vec![batch, m, n]))
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
        let mut out = self.take(x.data.len());
        let add = add.map(|a| a.data.as_slice());
        group_norm(&x.data, dims, &gamma.data, &beta.data, add, spec, &mut out);
        Ok(self.tensor(out, x.shape.clone()))
    }

    fn silu(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        let mut out = self.take(x.data.len());
        out.iter_mut()
            .zip(x.data.iter())
            .for_each(|(o, &v)| *o = silu(v));
        Ok(self.tensor(out, x.shape.clone()))
    }

    fn axpby(&mut self, x: &CpuTensor, y: &CpuTensor, a: f32, b: f32) -> Result<CpuTensor> {
        ops::check_same("axpby", &x.shape, &y.shape)?;
        let mut out = self.take(x.data.len());
        reference::axpby(&x.data, &y.data, a, b, &mut out);
        Ok(self.tensor(out, x.shape.clone()))
    }

    /// Phase weights where the kernel runs for `cout`, else the 3x3 weights (and the upsampled
    /// copy in [`Backend::upsample_conv2d`]).
    fn upload_upsample_conv_weights(
        &mut self,
        w3: &[f32],
        cin: usize,
        cout: usize,
    ) -> Result<CpuTensor> {
        use ops::upsample_phases::{weights, ROWS};
        if kernel::fits(cout) {
            self.upload(&weights(w3, cin, cout), &[ROWS * cin, cout])
        } else {
            self.upload(w3, &[9 * cin, cout])
        }
    }

    fn upsample_conv2d(
        &mut self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: &CpuTensor,
    ) -> Result<CpuTensor> {
        let spec = Conv2d {
            ksize: 3,
            stride: 1,
        };
        let [n, h, wd, cin] = ops::check_nhwc("upsample_conv2d", &x.shape)?;
        if w.shape.first() == Some(&(9 * cin)) {
            let up = self.upsample2x(x)?;
            return self.conv2d(&up, w, bias, spec);
        }
        let [_, ho, wo, cout] = ops::upsample_phases::check(&x.shape, &w.shape, &bias.shape)?;
        let mut out = self.take(n * ho * wo * cout);
        fill_rows(&mut out, Some(&bias.data));
        self.upsample_conv2d_in_place(&x.data, [n, h, wd, cin], &w.data, &mut out);
        Ok(self.tensor(out, vec![n, ho, wo, cout]))
    }

    fn upsample2x(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        let [n, h, w, c] = ops::check_nhwc("upsample2x", &x.shape)?;
        let mut out = self.take(4 * x.data.len());
        reference::upsample2x(&x.data, [n, h, w, c], &mut out);
        Ok(self.tensor(out, vec![n, 2 * h, 2 * w, c]))
    }

    fn concat_channels(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        let shape = ops::check_concat(&a.shape, &b.shape)?;
        let mut out = self.take(a.data.len() + b.data.len());
        reference::concat_channels(&a.data, a.shape[3], &b.data, b.shape[3], &mut out);
        Ok(self.tensor(out, shape.to_vec()))
    }

    fn softmax_rows(&mut self, x: &CpuTensor) -> Result<CpuTensor> {
        let len = ops::softmax_len(&x.shape)?;
        let mut out = self.take(x.data.len());
        for (orow, row) in out.chunks_exact_mut(len).zip(x.data.chunks_exact(len)) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let mut sum = 0.0;
            for (o, &v) in orow.iter_mut().zip(row) {
                *o = exp(v - max);
                sum += *o;
            }
            let scale = 1.0 / sum;
            orow.iter_mut().for_each(|o| *o *= scale);
        }
        Ok(self.tensor(out, x.shape.clone()))
    }

    fn embedding(&mut self, labels: &CpuTensor, table: &CpuTensor) -> Result<CpuTensor> {
        self.reference.embedding(labels, table)
    }

    fn timestep_embedding(&mut self, t: &CpuTensor, dim: usize, scale: f32) -> Result<CpuTensor> {
        self.reference.timestep_embedding(t, dim, scale)
    }

    fn randn(&mut self, shape: &[usize], seed: u32, stream: u32) -> Result<CpuTensor> {
        self.reference.randn(shape, seed, stream)
    }

    fn combine3(
        &mut self,
        x: &CpuTensor,
        y: &CpuTensor,
        z: Option<&CpuTensor>,
        coeffs: [f32; 3],
    ) -> Result<CpuTensor> {
        ops::check_combine3(&x.shape, &y.shape, z.map(|z| z.shape.as_slice()))?;
        let mut out = self.take(x.data.len());
        let z = z.map(|z| z.data.as_slice());
        reference::combine3(&x.data, &y.data, z, coeffs, &mut out);
        Ok(self.tensor(out, x.shape.clone()))
    }

    fn row_dot(&mut self, a: &CpuTensor, b: &CpuTensor) -> Result<CpuTensor> {
        self.reference.row_dot(a, b)
    }

    fn pointwise(
        &mut self,
        op: Pointwise,
        x: &CpuTensor,
        y: &CpuTensor,
        z: Option<&CpuTensor>,
    ) -> Result<CpuTensor> {
        self.reference.pointwise(op, x, y, z)
    }

    fn error_ratio(
        &mut self,
        err: &CpuTensor,
        a: &CpuTensor,
        b: &CpuTensor,
        rtol: f32,
        atol: f32,
    ) -> Result<CpuTensor> {
        self.reference.error_ratio(err, a, b, rtol, atol)
    }

    fn blend(&mut self, x: &CpuTensor, y: &CpuTensor, mask: &CpuTensor) -> Result<CpuTensor> {
        self.reference.blend(x, y, mask)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exp_is_close_to_the_library_exp() {
        let mut worst = 0f64;
        for i in -870_000..=880_000 {
            let x = i as f32 * 1e-4;
            let want = (x as f64).exp();
            let got = super::exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
        }
        eprintln!("exp: worst relative error {worst:.1e}");
        assert!(worst < 5e-7, "worst relative error {worst:e}");
    }
}
