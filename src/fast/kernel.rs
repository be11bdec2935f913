//! Our GEMM kernel for convolutions: `c[m, n] += a b`, where element `(i, p)` of `a` is
//! `a[offsets[p] + i]` — a column-major matrix (`offsets[p] = p * lda`) or the zero-padded channel
//! planes of a stride-1 convolution's input read in place (see `FastCpu::conv2d_in_place`), so no
//! patch matrix is built and nothing is packed. `b` (the weights) and `c` are row-major.
//!
//! Tiles of `MR` rows by two vectors of columns; each `a` element is broadcast by a splat load. The
//! tile keeps its accumulators, two `b` vectors and one broadcast in the 16 vector registers of
//! x86-64 (32 with AVX-512): in wasm 4 x 8 (measured fastest in V8: 6 x 8 and `matrixmultiply`'s
//! 8 x 8 spill and were 1.3x slower), natively 8 x 32 with AVX-512 and 6 x 16 with AVX2+FMA
//! (picked at run time; products whose width is no multiple of the tile's go to `matrixmultiply`).
//! k runs in blocks of [`KC`]; each output sums its products in the same order whatever the tile,
//! so a sample's result does not depend on the batch it is in.

/// One SIMD vector of f32 lanes.
trait Lanes: Copy {
    const WIDTH: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// `*p` in every lane.
    unsafe fn splat(p: *const f32) -> Self;
    /// `self + a b`.
    unsafe fn mul_add(self, a: Self, b: Self) -> Self;
    /// `*p += self`.
    unsafe fn add_to(self, p: *mut f32);
}

/// The instruction sets the kernel is built for.
#[derive(Clone, Copy)]
enum Isa {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    Simd128,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

/// The kernel for products `n` columns wide on this machine: the widest whose tile width (two
/// vectors) divides `n`, or None.
fn isa_for(n: usize) -> Option<Isa> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if n.is_multiple_of(8) {
        return Some(Isa::Simd128);
    }
    #[cfg(target_arch = "x86_64")]
    {
        if n.is_multiple_of(32) && is_x86_feature_detected!("avx512f") {
            return Some(Isa::Avx512);
        }
        if n.is_multiple_of(16)
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            return Some(Isa::Avx2Fma);
        }
    }
    None
}

/// Whether the kernel runs here for products `n` columns wide.
pub fn fits(n: usize) -> bool {
    isa_for(n).is_some()
}

/// `c[m, n] += a b` (see the module doc); only where [`fits`]`(n)`.
pub fn gemm(
    (m, n): (usize, usize),
    a: &[f32],
    offsets: &[usize],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let isa = isa_for(n).unwrap_or_else(|| panic!("the kernel does not run here for n = {n}"));
    let k = offsets.len();
    if m == 0 || k == 0 {
        return;
    }
    assert!(ldb >= n && ldc >= n);
    assert!(offsets.iter().all(|&o| o + m <= a.len()));
    assert!((k - 1) * ldb + n <= b.len());
    assert!((m - 1) * ldc + n <= c.len());
    let dims = (m, n);
    // SAFETY: the asserts keep every load and store inside the slices, and `isa_for` checked that
    // the instructions exist here.
    unsafe {
        match isa {
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Simd128 => tiles::<wasm::V128, 4>(dims, a, offsets, b, ldb, c, ldc),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => x86::gemm_avx512(dims, a, offsets, b, ldb, c, ldc),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => x86::gemm_avx2(dims, a, offsets, b, ldb, c, ldc),
        }
    }
}

/// Taps per block of k: a block's rows of `b` and the lines of `a` it reads stay in the L1 cache.
/// Each output then sums block by block into `c` (the same order for every tile).
const KC: usize = 64;

/// Every tile of `c`: `MR` rows at a time, then the leftover rows; k in blocks of [`KC`].
#[inline(always)]
#[allow(dead_code)]
unsafe fn tiles<V: Lanes, const MR: usize>(
    (m, n): (usize, usize),
    a: &[f32],
    offsets: &[usize],
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    for (block, offsets) in offsets.chunks(KC).enumerate() {
        let b = &b[block * KC * ldb..];
        for j in (0..n).step_by(2 * V::WIDTH) {
            tile_column::<V, MR>(
                m,
                a,
                offsets,
                b.as_ptr().add(j),
                ldb,
                c.as_mut_ptr().add(j),
                ldc,
            );
        }
    }
}

/// One column of tiles: rows `0..m`, two vectors of columns from `b` and `c`.
#[inline(always)]
unsafe fn tile_column<V: Lanes, const MR: usize>(
    m: usize,
    a: &[f32],
    offsets: &[usize],
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut i = 0;
    while i + MR <= m {
        tile::<V, MR>(offsets, a.as_ptr().add(i), b, ldb, c.add(i * ldc), ldc);
        i += MR;
    }
    let (ap, cp) = (a.as_ptr().add(i), c.add(i * ldc));
    match m - i {
        0 => {}
        1 => tile::<V, 1>(offsets, ap, b, ldb, cp, ldc),
        2 => tile::<V, 2>(offsets, ap, b, ldb, cp, ldc),
        3 => tile::<V, 3>(offsets, ap, b, ldb, cp, ldc),
        4 => tile::<V, 4>(offsets, ap, b, ldb, cp, ldc),
        _ => tile::<V, 5>(offsets, ap, b, ldb, cp, ldc),
    }
}

/// `R` rows by two vectors of columns of `c` += the tile's products over all of k.
#[inline(always)]
unsafe fn tile<V: Lanes, const R: usize>(
    offsets: &[usize],
    a: *const f32,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut acc = [[V::zero(); 2]; R];
    for (p, &offset) in offsets.iter().enumerate() {
        let bp = b.add(p * ldb);
        let (b0, b1) = (V::load(bp), V::load(bp.add(V::WIDTH)));
        let ap = a.add(offset);
        for (r, row) in acc.iter_mut().enumerate() {
            let x = V::splat(ap.add(r));
            row[0] = row[0].mul_add(x, b0);
            row[1] = row[1].mul_add(x, b1);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let cp = c.add(r * ldc);
        row[0].add_to(cp);
        row[1].add_to(cp.add(V::WIDTH));
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use super::Lanes;
    use core::arch::wasm32::*;

    #[derive(Clone, Copy)]
    pub struct V128(v128);

    impl Lanes for V128 {
        const WIDTH: usize = 4;
        #[inline(always)]
        unsafe fn zero() -> Self {
            V128(f32x4_splat(0.0))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            V128(v128_load(p as *const v128))
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            V128(v128_load32_splat(p as *const u32))
        }
        /// A separate multiply and add (relaxed-SIMD's fused form is not in every browser).
        #[inline(always)]
        unsafe fn mul_add(self, a: Self, b: Self) -> Self {
            V128(f32x4_add(self.0, f32x4_mul(a.0, b.0)))
        }
        #[inline(always)]
        unsafe fn add_to(self, p: *mut f32) {
            let q = p as *mut v128;
            v128_store(q, f32x4_add(v128_load(q), self.0));
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use std::arch::x86_64::*;

    #[derive(Clone, Copy)]
    pub struct Avx2(__m256);

    impl Lanes for Avx2 {
        const WIDTH: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            Avx2(_mm256_setzero_ps())
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx2(_mm256_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            Avx2(_mm256_broadcast_ss(&*p))
        }
        #[inline(always)]
        unsafe fn mul_add(self, a: Self, b: Self) -> Self {
            Avx2(_mm256_fmadd_ps(a.0, b.0, self.0))
        }
        #[inline(always)]
        unsafe fn add_to(self, p: *mut f32) {
            _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), self.0));
        }
    }

    #[derive(Clone, Copy)]
    pub struct Avx512(__m512);

    impl Lanes for Avx512 {
        const WIDTH: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            Avx512(_mm512_setzero_ps())
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            Avx512(_mm512_loadu_ps(p))
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            Avx512(_mm512_set1_ps(*p))
        }
        #[inline(always)]
        unsafe fn mul_add(self, a: Self, b: Self) -> Self {
            Avx512(_mm512_fmadd_ps(a.0, b.0, self.0))
        }
        #[inline(always)]
        unsafe fn add_to(self, p: *mut f32) {
            _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), self.0));
        }
    }

    /// The tiles compiled with AVX-512, so every `Lanes` call inlines into them.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gemm_avx512(
        dims: (usize, usize),
        a: &[f32],
        offsets: &[usize],
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        super::tiles::<Avx512, 8>(dims, a, offsets, b, ldb, c, ldc);
    }

    /// The tiles compiled with AVX2 and FMA, so every `Lanes` call inlines into them.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gemm_avx2(
        dims: (usize, usize),
        a: &[f32],
        offsets: &[usize],
        b: &[f32],
        ldb: usize,
        c: &mut [f32],
        ldc: usize,
    ) {
        super::tiles::<Avx2, 6>(dims, a, offsets, b, ldb, c, ldc);
    }
}
