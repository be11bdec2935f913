// 2-D convolution, NHWC, zero padding KSIZE/2, as an implicit GEMM (im2col on the fly):
//   out[p, co] = bias[co] + sum_{ky,kx,ci} x[n, oy*S+ky-P, ox*S+kx-P, ci] * w[(ky*K+kx)*Cin+ci, co]
// where p = (n, oy, ox) is flattened, plus a residual connection: add[p, co] (RESIDUAL 1), or
// a projected skip connection sum_ci add[p, ci] skip_w[ci, co] + skip_b[co] over `cin2` channels
// (RESIDUAL 2: a residual block's 1x1 skip convolution, fused), whose input may be two tensors
// side by side along channels read in place (the U-Net's [h, skip]): `cin2` channels from `add`,
// then `cin2b` from `add_b` (0 for one tensor). Weights are pre-transposed at load to
// [K*K*Cin, Cout].
// Each invocation computes 4 output pixels x 4 output channels in registers. `main` handles any
// channel counts; `main_vec4` (Cin, Cout and any Cin2 multiples of 4) reads 4 input channels and a
// 4x4 weight block per load, a quarter of the loads per multiply-add; `main_tiled` (any channel
// counts) stages tiles of input and weights in workgroup memory (see `gpu::KernelChoices`).
// Blocks of 8 pixels in `main_vec4` (each weight block used 8 times per load) were measured and
// dropped: on lavapipe a 3x3 convolution (8x16x16x64 -> 64) took 34-41 ms against 40-44 ms and a
// digits evaluation at batch 8 1,167-1,202 against 1,441-1,460 ms, but in Chromium on SwiftShader,
// the software adapter users have, a digits evaluation at batch 8 took 3,677 / 3,974 ms against
// 3,383 / 3,590 ms with 4 (alternating); 16 pixels, and 8 pixels x 8 channels, were slower still
// on lavapipe (47 ms; 51-79 ms).

override KSIZE: u32 = 3u;
override STRIDE: u32 = 1u;
// 1: a 3x3 convolution of the input upsampled 2x (nearest), as four 2x2 convolutions of the
// stored image, one per output phase (a, b) (`ops::upsample_phases`, which sums the weights): the
// dispatch's z is the phase 2a + b, its pixels are the stored image's (h, w), and pixel (y, x)
// writes output (2y + a, 2x + b) of (ho, wo) = (2h, 2w) from rows y + a - 1, y + a and columns
// x + b - 1, x + b. No upsampled copy, and 16 instead of 36 multiply-adds per pixel and channel.
override UPSAMPLE: u32 = 0u;
// What is added to the output: 0 nothing, 1 `add`, 2 the projected skip connection (see above).
// A constant, so each pipeline carries only its own epilogue.
override RESIDUAL: u32 = 0u;

struct Params {
    n: u32, h: u32, w: u32, cin: u32,
    ho: u32, wo: u32, cout: u32, cin2: u32,
    cin2b: u32, _p0: u32, _p1: u32, _p2: u32,
}

// The weights' storage type: f32, or f16 in the shader-f16 variant (`kernels.rs` swaps this line
// and enables f16); every weight load converts to f32, so accumulation stays f32.
alias W = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<W>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> add: array<f32>;
@group(0) @binding(5) var<storage, read> skip_w: array<W>;
@group(0) @binding(6) var<storage, read> skip_b: array<f32>;
@group(0) @binding(7) var<storage, read> add_b: array<f32>;
@group(0) @binding(8) var<storage, read_write> out: array<f32>;
// The same buffers seen as vec4 by `main_vec4` (WGSL allows aliased bindings across entry points).
@group(0) @binding(1) var<storage, read> x4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> wt4: array<vec4<W>>;
@group(0) @binding(4) var<storage, read> add4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> skip_w4: array<vec4<W>>;
@group(0) @binding(7) var<storage, read> add_b4: array<vec4<f32>>;


/// The projected skip connection (RESIDUAL 2) for output pixels opix and channels cols:
/// each weight row is loaded once for the four pixels, as in the main loop. One loop per input
/// buffer: a WGSL function cannot take a storage buffer as an argument.
fn skip_block(opix: array<u32, 4>, cols: array<u32, 4>) -> array<vec4<f32>, 4> {
    var rows: array<u32, 4>;
    var rows_b: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        rows[i] = opix[i] * p.cin2;
        rows_b[i] = opix[i] * p.cin2b;
    }
    var acc: array<vec4<f32>, 4>;
    for (var ci = 0u; ci < p.cin2; ci++) {
        let wr = ci * p.cout;
        let wv = vec4<f32>(f32(skip_w[wr + cols[0]]), f32(skip_w[wr + cols[1]]), f32(skip_w[wr + cols[2]]), f32(skip_w[wr + cols[3]]));
        acc[0] += add[rows[0] + ci] * wv;
        acc[1] += add[rows[1] + ci] * wv;
        acc[2] += add[rows[2] + ci] * wv;
        acc[3] += add[rows[3] + ci] * wv;
    }
    for (var ci = 0u; ci < p.cin2b; ci++) {
        let wr = (p.cin2 + ci) * p.cout;
        let wv = vec4<f32>(f32(skip_w[wr + cols[0]]), f32(skip_w[wr + cols[1]]), f32(skip_w[wr + cols[2]]), f32(skip_w[wr + cols[3]]));
        acc[0] += add_b[rows_b[0] + ci] * wv;
        acc[1] += add_b[rows_b[1] + ci] * wv;
        acc[2] += add_b[rows_b[2] + ci] * wv;
        acc[3] += add_b[rows_b[3] + ci] * wv;
    }
    let b = vec4<f32>(skip_b[cols[0]], skip_b[cols[1]], skip_b[cols[2]], skip_b[cols[3]]);
    for (var i = 0u; i < 4u; i++) { acc[i] += b; }
    return acc;
}

/// The 4x4 weight block at vec4 row `wr` of the skip weights (rows of `cout4`).
fn skip_w_block(wr: u32, cout4: u32) -> mat4x4<f32> {
    return mat4x4<f32>(vec4<f32>(skip_w4[wr]), vec4<f32>(skip_w4[wr + cout4]), vec4<f32>(skip_w4[wr + 2u * cout4]), vec4<f32>(skip_w4[wr + 3u * cout4]));
}

/// `skip_block` for `main_vec4` (cin2, cin2b and cout multiples of 4): 4x4 weight blocks and 4
/// input channels per load.
fn skip_block4(opix: array<u32, 4>, co4: u32) -> array<vec4<f32>, 4> {
    let cin24 = p.cin2 / 4u;
    let cin2b4 = p.cin2b / 4u;
    let cout4 = p.cout / 4u;
    var rows: array<u32, 4>;
    var rows_b: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        rows[i] = opix[i] * cin24;
        rows_b[i] = opix[i] * cin2b4;
    }
    var acc: array<vec4<f32>, 4>;
    var wr = co4;
    for (var c4 = 0u; c4 < cin24; c4++) {
        let w = skip_w_block(wr, cout4);
        wr += 4u * cout4;
        acc[0] += w * add4[rows[0] + c4];
        acc[1] += w * add4[rows[1] + c4];
        acc[2] += w * add4[rows[2] + c4];
        acc[3] += w * add4[rows[3] + c4];
    }
    for (var c4 = 0u; c4 < cin2b4; c4++) {
        let w = skip_w_block(wr, cout4);
        wr += 4u * cout4;
        acc[0] += w * add_b4[rows_b[0] + c4];
        acc[1] += w * add_b4[rows_b[1] + c4];
        acc[2] += w * add_b4[rows_b[2] + c4];
        acc[3] += w * add_b4[rows_b[3] + c4];
    }
    let c0 = co4 * 4u;
    let b = vec4<f32>(skip_b[c0], skip_b[c0 + 1u], skip_b[c0 + 2u], skip_b[c0 + 3u]);
    for (var i = 0u; i < 4u; i++) { acc[i] += b; }
    return acc;
}

/// Taps per dimension.
fn taps() -> u32 {
    return select(KSIZE, 2u, UPSAMPLE == 1u);
}

/// The (height, width) of the pixel grid a dispatch walks: the output's, or for UPSAMPLE the
/// stored image's (one phase of the output per dispatch z).
fn grid() -> vec2<u32> {
    return select(vec2<u32>(p.ho, p.wo), vec2<u32>(p.h, p.w), UPSAMPLE == 1u);
}

/// Pixels in the grid.
fn grid_pixels() -> u32 {
    let g = grid();
    return p.n * g.x * g.y;
}

/// Where grid pixel `q` (clamped to the last) of `phase` reads its receptive field: image n,
/// top-left y, x (of the stored image).
fn field_origin(q_in: u32, phase: u32) -> vec3<i32> {
    let g = grid();
    let q = min(q_in, grid_pixels() - 1u);
    let gx = q % g.y;
    let gy = (q / g.y) % g.x;
    let img = i32(q / (g.x * g.y));
    if (UPSAMPLE == 1u) {
        return vec3<i32>(img, i32(gy + phase / 2u) - 1, i32(gx + phase % 2u) - 1);
    }
    let pad = i32(KSIZE / 2u);
    return vec3<i32>(img, i32(gy * STRIDE) - pad, i32(gx * STRIDE) - pad);
}

/// The output pixel that grid pixel `q` of `phase` writes.
fn out_pixel(q: u32, phase: u32) -> u32 {
    if (UPSAMPLE == 0u) {
        return q;
    }
    let x = q % p.w;
    let y = (q / p.w) % p.h;
    let img = q / (p.w * p.h);
    return (img * p.ho + 2u * y + phase / 2u) * p.wo + 2u * x + phase % 2u;
}

/// The first weight row of tap (ky, kx) of `phase` (0 without UPSAMPLE).
fn weight_row(phase: u32, ky: u32, kx: u32) -> u32 {
    let t = taps();
    return ((phase * t + ky) * t + kx) * p.cin;
}

/// Pixel index (n, iy, ix) of tap (ky, kx) from an origin, or -1 where it falls in the zero padding.
fn tap_pixel(o: vec3<i32>, ky: u32, kx: u32) -> i32 {
    let iy = o.y + i32(ky);
    let ix = o.z + i32(kx);
    let inside = iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w);
    return select(-1, (o.x * i32(p.h) + iy) * i32(p.w) + ix, inside);
}

/// The output pixels of grid pixels pix0..pix0+3 of `phase` (past the end: the last one's).
fn out_pixels(pix0: u32, phase: u32) -> array<u32, 4> {
    var opix: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) { opix[i] = out_pixel(min(pix0 + i, grid_pixels() - 1u), phase); }
    return opix;
}

/// Writes a 4-pixel x 4-channel block of sums with the bias and the residual connection added;
/// pixels and channels past the end are dropped.
fn store_block(pix0: u32, co0: u32, phase: u32, acc: array<vec4<f32>, 4>) {
    let npix = grid_pixels();
    let opix = out_pixels(pix0, phase);
    var cols: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) { cols[j] = min(co0 + j, p.cout - 1u); }
    var skip: array<vec4<f32>, 4>;
    if (RESIDUAL == 2u) { skip = skip_block(opix, cols); }
    for (var i = 0u; i < 4u; i++) {
        if (pix0 + i >= npix) { break; }
        for (var j = 0u; j < 4u; j++) {
            let co = co0 + j;
            if (co >= p.cout) { break; }
            let o = opix[i] * p.cout + co;
            var v = acc[i][j] + bias[co];
            if (RESIDUAL == 1u) { v += add[o]; }
            if (RESIDUAL == 2u) { v += skip[i][j]; }
            out[o] = v;
        }
    }
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co0 = gid.x * 4u;
    let pix0 = gid.y * 4u;
    let phase = gid.z;
    if (co0 >= p.cout || pix0 >= grid_pixels()) { return; }
    var cols: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) { cols[j] = min(co0 + j, p.cout - 1u); }
    var origin: array<vec3<i32>, 4>;
    for (var i = 0u; i < 4u; i++) { origin[i] = field_origin(pix0 + i, phase); }
    var acc: array<vec4<f32>, 4>;
    for (var ky = 0u; ky < taps(); ky++) {
        for (var kx = 0u; kx < taps(); kx++) {
            var src: array<u32, 4>;
            var ok: array<bool, 4>;
            for (var i = 0u; i < 4u; i++) {
                let t = tap_pixel(origin[i], ky, kx);
                ok[i] = t >= 0;
                src[i] = u32(max(t, 0)) * p.cin;
            }
            let wrow0 = weight_row(phase, ky, kx);
            for (var ci = 0u; ci < p.cin; ci++) {
                let wr = (wrow0 + ci) * p.cout;
                let wv = vec4<f32>(f32(wt[wr + cols[0]]), f32(wt[wr + cols[1]]), f32(wt[wr + cols[2]]), f32(wt[wr + cols[3]]));
                acc[0] += select(0.0, x[src[0] + ci], ok[0]) * wv;
                acc[1] += select(0.0, x[src[1] + ci], ok[1]) * wv;
                acc[2] += select(0.0, x[src[2] + ci], ok[2]) * wv;
                acc[3] += select(0.0, x[src[3] + ci], ok[3]) * wv;
            }
        }
    }
    store_block(pix0, co0, phase, acc);
}

@compute @workgroup_size(8, 8, 1)
fn main_vec4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co0 = gid.x * 4u;
    let pix0 = gid.y * 4u;
    let phase = gid.z;
    let npix = grid_pixels();
    if (co0 >= p.cout || pix0 >= npix) { return; }
    let cin4 = p.cin / 4u;
    let cout4 = p.cout / 4u;
    var origin: array<vec3<i32>, 4>;
    for (var i = 0u; i < 4u; i++) { origin[i] = field_origin(pix0 + i, phase); }
    let zero = vec4<f32>(0.0);
    var acc: array<vec4<f32>, 4>;
    for (var ky = 0u; ky < taps(); ky++) {
        for (var kx = 0u; kx < taps(); kx++) {
            var src: array<u32, 4>;
            var ok: array<bool, 4>;
            for (var i = 0u; i < 4u; i++) {
                let t = tap_pixel(origin[i], ky, kx);
                ok[i] = t >= 0;
                src[i] = u32(max(t, 0)) * cin4;
            }
            // Row of weight block (ky, kx, ci) for output channels co0..co0+3, in vec4 units.
            var wr = weight_row(phase, ky, kx) * cout4 + gid.x;
            for (var c4 = 0u; c4 < cin4; c4++) {
                let w = mat4x4<f32>(vec4<f32>(wt4[wr]), vec4<f32>(wt4[wr + cout4]), vec4<f32>(wt4[wr + 2u * cout4]), vec4<f32>(wt4[wr + 3u * cout4]));
                wr += 4u * cout4;
                acc[0] += w * select(zero, x4[src[0] + c4], ok[0]);
                acc[1] += w * select(zero, x4[src[1] + c4], ok[1]);
                acc[2] += w * select(zero, x4[src[2] + c4], ok[2]);
                acc[3] += w * select(zero, x4[src[3] + c4], ok[3]);
            }
        }
    }
    let b = vec4<f32>(bias[co0], bias[co0 + 1u], bias[co0 + 2u], bias[co0 + 3u]);
    let opix = out_pixels(pix0, phase);
    var skip: array<vec4<f32>, 4>;
    if (RESIDUAL == 2u) {
        skip = skip_block4(opix, gid.x);
    }
    for (var i = 0u; i < 4u; i++) {
        if (pix0 + i >= npix) { break; }
        let o = opix[i] * p.cout + co0;
        var v = acc[i] + b;
        if (RESIDUAL == 1u) { v += add4[o / 4u]; }
        if (RESIDUAL == 2u) { v += skip[i]; }
        out[o] = v.x;
        out[o + 1u] = v.y;
        out[o + 2u] = v.z;
        out[o + 3u] = v.w;
    }
}

// The workgroup-tiled variant (any channel counts): the workgroup's 32 pixels x 32 output
// channels are computed from tiles of KC input channels staged in workgroup memory, so each input
// value and weight is read from storage once per workgroup instead of once per invocation that
// needs it (8x fewer storage reads), then 4x4 register blocks as in `main`.
const KC: u32 = 16u;
var<workgroup> x_tile: array<array<f32, 32>, KC>;
var<workgroup> w_tile: array<array<f32, 32>, KC>;

@compute @workgroup_size(8, 8, 1)
fn main_tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let co_base = wg.x * 32u;
    let pix_base = wg.y * 32u;
    // As a loader, this invocation fills column `col` of both tiles in rows row0, row0 + 2, ...
    let me = lid.y * 8u + lid.x;
    let col = me % 32u;
    let row0 = me / 32u;
    let origin = field_origin(pix_base + col, wg.z);
    let wcol = min(co_base + col, p.cout - 1u);
    var acc: array<vec4<f32>, 4>;
    // No early return: every invocation reaches every barrier; the store drops what is past the end.
    for (var ky = 0u; ky < taps(); ky++) {
        for (var kx = 0u; kx < taps(); kx++) {
            let t = tap_pixel(origin, ky, kx);
            let src = u32(max(t, 0)) * p.cin;
            let wrow0 = weight_row(wg.z, ky, kx);
            for (var c0 = 0u; c0 < p.cin; c0 += KC) {
                for (var r = row0; r < KC; r += 2u) {
                    let ci = c0 + r;
                    let inside = ci < p.cin;
                    let cc = min(ci, p.cin - 1u);
                    x_tile[r][col] = select(0.0, x[src + cc], inside && t >= 0);
                    w_tile[r][col] = select(0.0, f32(wt[(wrow0 + cc) * p.cout + wcol]), inside);
                }
                workgroupBarrier();
                for (var k = 0u; k < KC; k++) {
                    let c = lid.x * 4u;
                    let wv = vec4<f32>(w_tile[k][c], w_tile[k][c + 1u], w_tile[k][c + 2u], w_tile[k][c + 3u]);
                    let q = lid.y * 4u;
                    acc[0] += x_tile[k][q] * wv;
                    acc[1] += x_tile[k][q + 1u] * wv;
                    acc[2] += x_tile[k][q + 2u] * wv;
                    acc[3] += x_tile[k][q + 3u] * wv;
                }
                workgroupBarrier();
            }
        }
    }
    store_block(pix_base + lid.y * 4u, co_base + lid.x * 4u, wg.z, acc);
}
