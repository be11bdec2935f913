//! The op set shared by the CPU reference and the GPU kernels: parameter structs and the shape
//! checks, in one place so both backends accept and reject exactly the same calls.
//!
//! Layouts: images are NHWC `[n, h, w, c]`; matrices are row-major `[rows, cols]`; a linear layer's
//! weight is stored `[in, out]` (transposed once at load from the framework's `[out, in]`), and a
//! convolution's weight `[k * k * cin, cout]` with rows ordered (ky, kx, ci).

use crate::error::{shape_err, Result};

/// Convolution with zero padding `ksize / 2` (PyTorch's `padding=k//2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    pub ksize: usize,
    pub stride: usize,
}

impl Conv2d {
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let pad = self.ksize / 2;
        (
            (h + 2 * pad - self.ksize) / self.stride + 1,
            (w + 2 * pad - self.ksize) / self.stride + 1,
        )
    }

    /// Checks x `[n,h,w,cin]`, w `[k*k*cin, cout]`, bias `[cout]`; returns the output shape.
    pub fn check(&self, x: &[usize], w: &[usize], bias: &[usize]) -> Result<[usize; 4]> {
        const OP: &str = "conv2d";
        if !matches!(self.ksize, 1 | 3) || !matches!(self.stride, 1 | 2) {
            return shape_err(
                OP,
                format!(
                    "kernel {}x{} stride {} is not supported (1 or 3, stride 1 or 2)",
                    self.ksize, self.ksize, self.stride
                ),
            );
        }
        let &[n, h, wd, cin] = x else {
            return shape_err(OP, format!("input must be NHWC, got {x:?}"));
        };
        if w.len() != 2 || w[0] != self.ksize * self.ksize * cin {
            return shape_err(
                OP,
                format!(
                    "weight must be [{}, cout] for cin {cin}, got {w:?}",
                    self.ksize * self.ksize * cin
                ),
            );
        }
        if bias != [w[1]] {
            return shape_err(OP, format!("bias must be [{}], got {bias:?}", w[1]));
        }
        if n * h * wd * cin == 0 || w[1] == 0 {
            return shape_err(OP, format!("empty tensor: input {x:?}, weight {w:?}"));
        }
        let (ho, wo) = self.out_hw(h, wd);
        Ok([n, ho, wo, w[1]])
    }
}

/// A 3x3 convolution (stride 1, zero padding 1) of an image upsampled 2x (nearest) is four 2x2
/// convolutions of the image itself, one per output phase (a, b) = (row % 2, column % 2): output
/// pixel (2y + a, 2x + b) sees stored rows y + a - 1 and y + a (columns likewise), and the 3x3 taps
/// that land on the same stored pixel add up. Along one axis, phase 0 takes tap 0 for its first
/// row and taps 1 + 2 for its second; phase 1 takes taps 0 + 1, then tap 2. 16 instead of 36
/// multiply-adds per output pixel and channel pair, exactly (up to the order of the sums).
pub mod upsample_phases {
    use crate::error::{shape_err, Result};

    /// Taps per phase and dimension.
    pub const TAPS: usize = 2;
    /// Weight rows per input channel: 4 phases x 2 x 2 taps.
    pub const ROWS: usize = 4 * TAPS * TAPS;

    /// The 3x3 taps (along one axis) that phase `a` sums into its tap `r`.
    fn taps(a: usize, r: usize) -> std::ops::RangeInclusive<usize> {
        match (a, r) {
            (0, 0) => 0..=0,
            (0, _) => 1..=2,
            (_, 0) => 0..=1,
            _ => 2..=2,
        }
    }

    /// Phase weights `[ROWS * cin, cout]`, row `((phase * 2 + r) * 2 + s) * cin + ci` with
    /// phase = 2a + b, from 3x3 weights `[9 * cin, cout]` (row `(ky * 3 + kx) * cin + ci`).
    pub fn weights(w3: &[f32], cin: usize, cout: usize) -> Vec<f32> {
        assert_eq!(w3.len(), 9 * cin * cout, "3x3 weights [9 * cin, cout]");
        let mut out = vec![0.0f32; ROWS * cin * cout];
        for phase in 0..4 {
            let (a, b) = (phase / 2, phase % 2);
            for r in 0..TAPS {
                for s in 0..TAPS {
                    let row0 = ((phase * TAPS + r) * TAPS + s) * cin;
                    for ky in taps(a, r) {
                        for kx in taps(b, s) {
                            let src0 = (ky * 3 + kx) * cin;
                            for ci in 0..cin {
                                let dst = &mut out[(row0 + ci) * cout..][..cout];
                                let src = &w3[(src0 + ci) * cout..][..cout];
                                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Checks x `[n, h, w, cin]`, phase weights `[ROWS * cin, cout]`, bias `[cout]`; returns the
    /// output shape `[n, 2h, 2w, cout]`. The rest is the 3x3 convolution's own check.
    pub fn check(x: &[usize], w: &[usize], bias: &[usize]) -> Result<[usize; 4]> {
        let [_, _, _, cin] = super::check_nhwc("upsample_conv2d", x)?;
        if w.len() != 2 || w[0] != ROWS * cin {
            return shape_err(
                "upsample_conv2d",
                format!(
                    "phase weights must be [{}, cout] for cin {cin}, got {w:?}",
                    ROWS * cin
                ),
            );
        }
        let spec = super::Conv2d {
            ksize: 3,
            stride: 1,
        };
        let [n, h, wd, cout] = spec.check(x, &[9 * cin, w[1]], bias)?;
        Ok([n, 2 * h, 2 * wd, cout])
    }

    #[cfg(test)]
    mod tests {
        /// With every 3x3 weight 1, each phase tap counts the 3x3 taps it sums: 1, 2, 2, 4 in an
        /// order that mirrors with the phase.
        #[test]
        fn phase_taps_sum_the_right_3x3_taps() {
            let w = super::weights(&[1.0; 9], 1, 1);
            assert_eq!(
                w,
                [1., 2., 2., 4., 2., 1., 4., 2., 2., 4., 1., 2., 4., 2., 2., 1.]
            );
            // Channel layout: one 3x3 tap at (ky, kx) = (2, 0) of input channel 1, output 0.
            let (cin, cout) = (2, 3);
            let mut w3 = vec![0.0; 9 * cin * cout];
            w3[((2 * 3) * cin + 1) * cout] = 5.0;
            let w = super::weights(&w3, cin, cout);
            let nonzero: Vec<usize> = (0..w.len()).filter(|&i| w[i] != 0.0).collect();
            // Tap ky 2 is the second row tap of both row phases; kx 0 the first column tap of both.
            let row = |phase: usize, r: usize, s: usize| ((phase * 2 + r) * 2 + s) * cin + 1;
            let expect: Vec<usize> = [row(0, 1, 0), row(1, 1, 0), row(2, 1, 0), row(3, 1, 0)]
                .iter()
                .map(|r| r * cout)
                .collect();
            assert_eq!(nonzero, expect);
        }
    }
}

/// A strided view of a batch of matrices inside a flat buffer:
/// element (b, r, c) is at `offset + b * batch_stride + r * row_stride + c * col_stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub offset: usize,
    pub batch_stride: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl View {
    /// A contiguous row-major `[rows, cols]` matrix per batch entry.
    pub fn row_major(rows: usize, cols: usize) -> View {
        View {
            offset: 0,
            batch_stride: rows * cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The index one past the largest element the view touches for `[batch, rows, cols]`.
    fn extent(&self, batch: usize, rows: usize, cols: usize) -> usize {
        self.offset
            + (batch - 1) * self.batch_stride
            + (rows - 1) * self.row_stride
            + (cols - 1) * self.col_stride
            + 1
    }
}

/// `out[b] = scale * A[b] (m x k) * B[b] (k x n) (+ bias[n])`; the output is contiguous `[batch, m, n]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Matmul {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: View,
    pub b: View,
    pub scale: f32,
}

impl Matmul {
    /// Plain `[m, k] x [k, n]`.
    pub fn plain(m: usize, k: usize, n: usize) -> Matmul {
        Matmul {
            batch: 1,
            m,
            n,
            k,
            a: View::row_major(m, k),
            b: View::row_major(k, n),
            scale: 1.0,
        }
    }

    pub fn check(&self, a_len: usize, b_len: usize, bias: Option<&[usize]>) -> Result<()> {
        const OP: &str = "matmul";
        if self.batch * self.m * self.n * self.k == 0 {
            return shape_err(
                OP,
                format!(
                    "empty product: batch {} m {} n {} k {}",
                    self.batch, self.m, self.n, self.k
                ),
            );
        }
        let need_a = self.a.extent(self.batch, self.m, self.k);
        let need_b = self.b.extent(self.batch, self.k, self.n);
        if need_a > a_len {
            return shape_err(
                OP,
                format!("A view reaches element {need_a} but A has {a_len}"),
            );
        }
        if need_b > b_len {
            return shape_err(
                OP,
                format!("B view reaches element {need_b} but B has {b_len}"),
            );
        }
        if let Some(bias) = bias {
            if bias != [self.n] {
                return shape_err(OP, format!("bias must be [{}], got {bias:?}", self.n));
            }
        }
        Ok(())
    }
}

/// Checks a linear layer: x `[.., in]`, w `[in, out]`; returns (rows, in, out).
pub fn check_linear(
    x: &[usize],
    w: &[usize],
    bias: Option<&[usize]>,
) -> Result<(usize, usize, usize)> {
    const OP: &str = "linear";
    let (Some(&k), [wk, n]) = (x.last(), w) else {
        return shape_err(
            OP,
            format!("input {x:?} and weight {w:?} must be [.., in] and [in, out]"),
        );
    };
    if k != *wk {
        return shape_err(
            OP,
            format!("input has {k} features but the weight expects {wk} ({w:?})"),
        );
    }
    if let Some(b) = bias {
        if b != [*n] {
            return shape_err(OP, format!("bias must be [{n}], got {b:?}"));
        }
    }
    let rows = x.iter().product::<usize>() / k.max(1);
    if rows == 0 || k == 0 || *n == 0 {
        return shape_err(OP, format!("empty tensor: input {x:?}, weight {w:?}"));
    }
    Ok((rows, k, *n))
}

/// GroupNorm with an optional per-(n, c) add before normalising and an optional SiLU after.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    pub groups: usize,
    pub eps: f32,
    pub silu: bool,
    /// First column of `add` to read: add is `[n, s]` with `s >= add_offset + c`, so one product
    /// can hold the time-embedding projections of every block side by side.
    pub add_offset: usize,
}

impl GroupNorm {
    /// Checks x `[n, h, w, c]` (or `[n, c]`), gamma/beta `[c]`, add `[n, s]`; returns (n, h*w, c).
    pub fn check(
        &self,
        x: &[usize],
        gamma: &[usize],
        beta: &[usize],
        add: Option<&[usize]>,
    ) -> Result<(usize, usize, usize)> {
        const OP: &str = "group_norm";
        let (n, hw, c) = match *x {
            [n, h, w, c] => (n, h * w, c),
            [n, c] => (n, 1, c),
            _ => return shape_err(OP, format!("input must be [n,h,w,c] or [n,c], got {x:?}")),
        };
        if self.groups == 0 || c % self.groups != 0 {
            return shape_err(
                OP,
                format!("{c} channels do not split into {} groups", self.groups),
            );
        }
        if gamma != [c] || beta != [c] {
            return shape_err(
                OP,
                format!("gamma and beta must be [{c}], got {gamma:?} and {beta:?}"),
            );
        }
        if let Some(a) = add {
            if !matches!(*a, [an, s] if an == n && s >= self.add_offset + c) {
                return shape_err(
                    OP,
                    format!(
                        "add must be [{n}, s] with s >= {} (offset {} + {c} channels), got {a:?}",
                        self.add_offset + c,
                        self.add_offset
                    ),
                );
            }
        }
        if n * hw * c == 0 {
            return shape_err(OP, format!("empty input {x:?}"));
        }
        Ok((n, hw, c))
    }
}

/// Checks that two tensors have the same shape (element-wise ops).
pub fn check_same(op: &'static str, a: &[usize], b: &[usize]) -> Result<()> {
    if a != b {
        return shape_err(op, format!("shapes differ: {a:?} vs {b:?}"));
    }
    Ok(())
}

/// `combine3`'s operands: `y` and `z` (when given) shaped like `x`.
/// Element-wise arithmetic of training: `out[i] = f(x[i], y[i], z[i])` (z where the op names it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pointwise {
    /// `y silu'(x)`: SiLU's backward pass, and the forward-mode tangent `silu'(x) y`.
    SiluGrad,
    /// `y z silu''(x)`: the second-order term of the backward pass through a tangent.
    SiluHess,
    /// `a x + b y^2` (Adam's second moment).
    SquareMix { a: f32, b: f32 },
    /// `x - lr y / (sqrt(z) + eps)` (Adam's update, bias corrections folded into lr and eps).
    AdamApply { lr: f32, eps: f32 },
}

impl Pointwise {
    pub fn uses_z(&self) -> bool {
        matches!(self, Pointwise::SiluHess | Pointwise::AdamApply { .. })
    }

    /// The same shape for every operand, and z exactly where the op uses it.
    pub fn check(&self, x: &[usize], y: &[usize], z: Option<&[usize]>) -> Result<()> {
        check_same("pointwise", x, y)?;
        match (self.uses_z(), z) {
            (true, Some(z)) => check_same("pointwise", x, z),
            (false, None) => Ok(()),
            (needs, _) => shape_err(
                "pointwise",
                format!(
                    "{self:?} takes {} operands",
                    if needs { "three" } else { "two" }
                ),
            ),
        }
    }
}

pub fn check_combine3(x: &[usize], y: &[usize], z: Option<&[usize]>) -> Result<()> {
    check_same("combine3", x, y)?;
    z.map_or(Ok(()), |z| check_same("combine3", x, z))
}

/// Checks an NHWC tensor and returns its dims.
pub fn check_nhwc(op: &'static str, x: &[usize]) -> Result<[usize; 4]> {
    match x {
        &[n, h, w, c] => Ok([n, h, w, c]),
        _ => shape_err(op, format!("input must be NHWC, got {x:?}")),
    }
}

/// Checks two NHWC tensors for a channel concat; returns the output shape.
pub fn check_concat(a: &[usize], b: &[usize]) -> Result<[usize; 4]> {
    let [n, h, w, ca] = check_nhwc("concat_channels", a)?;
    let [n2, h2, w2, cb] = check_nhwc("concat_channels", b)?;
    if (n, h, w) != (n2, h2, w2) {
        return shape_err(
            "concat_channels",
            format!("batch/spatial dims differ: {a:?} vs {b:?}"),
        );
    }
    Ok([n, h, w, ca + cb])
}

/// Checks an embedding lookup: labels `[n]`, table `[rows, dim]`; returns (n, rows, dim).
/// Label values are checked where they enter from the user ([`check_labels`]).
pub fn check_embedding(labels: &[usize], table: &[usize]) -> Result<(usize, usize, usize)> {
    match (labels, table) {
        (&[n], &[rows, dim]) if n * rows * dim > 0 => Ok((n, rows, dim)),
        _ => shape_err(
            "embedding",
            format!("labels must be [n] and table [rows, dim], got {labels:?} and {table:?}"),
        ),
    }
}

/// Checks that every label is an integer row index below `rows`.
pub fn check_labels(labels: &[f32], rows: usize) -> Result<()> {
    for (i, &l) in labels.iter().enumerate() {
        if !(l >= 0.0 && l.fract() == 0.0 && (l as usize) < rows) {
            return shape_err(
                "embedding",
                format!("label {i} is {l}, not an index below {rows}"),
            );
        }
    }
    Ok(())
}

/// Checks a sinusoidal embedding request: t `[n]`, even dim >= 2.
pub fn check_timestep(t: &[usize], dim: usize) -> Result<usize> {
    let &[n] = t else {
        return shape_err("timestep_embedding", format!("t must be [n], got {t:?}"));
    };
    if dim < 2 || !dim.is_multiple_of(2) {
        return shape_err(
            "timestep_embedding",
            format!("dim must be even and >= 2, got {dim}"),
        );
    }
    Ok(n)
}

/// The frequencies of the sinusoidal time embedding, `f_j = exp(-ln(10000) j / half)` for
/// `j < dim / 2`, computed as the training code does (f32 product, then exp), correctly rounded.
pub fn timestep_frequencies(dim: usize) -> Vec<f32> {
    let half = dim / 2;
    (0..half)
        .map(|j| ((-(10000f64.ln()) as f32 * j as f32 / half as f32) as f64).exp() as f32)
        .collect()
}

/// The row length of a softmax over the last dimension of `shape`; an error for empty rows.
pub fn softmax_len(shape: &[usize]) -> Result<usize> {
    match shape.last() {
        Some(&len) if len > 0 => Ok(len),
        _ => shape_err("softmax_rows", format!("empty rows in {shape:?}")),
    }
}
