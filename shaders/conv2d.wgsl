// 2-D convolution, NHWC, zero padding KSIZE/2, as an implicit GEMM (im2col on the fly):
//   out[p, co] = bias[co] + sum_{ky,kx,ci} x[n, oy*S+ky-P, ox*S+kx-P, ci] * w[(ky*K+kx)*Cin+ci, co]
// where p = (n, oy, ox) is flattened. Weights are pre-transposed at load to [K*K*Cin, Cout].
// Each invocation computes 4 output pixels x 4 output channels in registers.

override KSIZE: u32 = 3u;
override STRIDE: u32 = 1u;

struct Params {
    n: u32, h: u32, w: u32, cin: u32,
    ho: u32, wo: u32, cout: u32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let co0 = gid.x * 4u;
    let pix0 = gid.y * 4u;
    let npix = p.n * p.ho * p.wo;
    if (co0 >= p.cout || pix0 >= npix) { return; }
    let pad = i32(KSIZE / 2u);
    var cols: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) { cols[j] = min(co0 + j, p.cout - 1u); }
    // Per output pixel: image origin of its receptive field.
    var nbase: array<u32, 4>;
    var iy0: array<i32, 4>;
    var ix0: array<i32, 4>;
    for (var i = 0u; i < 4u; i++) {
        let q = min(pix0 + i, npix - 1u);
        let ox = q % p.wo;
        let oy = (q / p.wo) % p.ho;
        let nn = q / (p.wo * p.ho);
        nbase[i] = nn * p.h * p.w * p.cin;
        iy0[i] = i32(oy * STRIDE) - pad;
        ix0[i] = i32(ox * STRIDE) - pad;
    }
    var acc: array<vec4<f32>, 4>;
    for (var ky = 0u; ky < KSIZE; ky++) {
        for (var kx = 0u; kx < KSIZE; kx++) {
            var src: array<u32, 4>;
            var ok: array<bool, 4>;
            for (var i = 0u; i < 4u; i++) {
                let iy = iy0[i] + i32(ky);
                let ix = ix0[i] + i32(kx);
                let inside = iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w);
                ok[i] = inside;
                src[i] = select(0u, nbase[i] + (u32(iy) * p.w + u32(ix)) * p.cin, inside);
            }
            let wrow0 = (ky * KSIZE + kx) * p.cin;
            for (var ci = 0u; ci < p.cin; ci++) {
                let wr = (wrow0 + ci) * p.cout;
                let wv = vec4<f32>(wt[wr + cols[0]], wt[wr + cols[1]], wt[wr + cols[2]], wt[wr + cols[3]]);
                acc[0] += select(0.0, x[src[0] + ci], ok[0]) * wv;
                acc[1] += select(0.0, x[src[1] + ci], ok[1]) * wv;
                acc[2] += select(0.0, x[src[2] + ci], ok[2]) * wv;
                acc[3] += select(0.0, x[src[3] + ci], ok[3]) * wv;
            }
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let q = pix0 + i;
        if (q >= npix) { break; }
        for (var j = 0u; j < 4u; j++) {
            let co = co0 + j;
            if (co >= p.cout) { break; }
            out[q * p.cout + co] = acc[i][j] + bias[co];
        }
    }
}
