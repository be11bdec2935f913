// Per-step arithmetic of the samplers (counter-based Gaussian noise, linear combinations,
// per-sample reductions, the adaptive solver's error ratio, masked blending) and of training
// (ops::Pointwise: SiLU derivatives, Adam).
// Layout: (params, in0..in4, out); absent inputs are bound to a dummy buffer.

struct Params {
    len: u32, u0: u32, u1: u32, u2: u32,
    f0: f32, f1: f32, f2: f32, f3: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read> in3: array<f32>;
@group(0) @binding(5) var<storage, read> in4: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// (hi, lo) of the 64-bit product a * b, from 16-bit halves (WGSL has no 64-bit integers).
fn mul_hi_lo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let p0 = al * bl;
    let p1 = al * bh;
    let p2 = ah * bl;
    let p3 = ah * bh;
    let mid = (p0 >> 16u) + (p1 & 0xffffu) + (p2 & 0xffffu);
    return vec2<u32>(p3 + (p1 >> 16u) + (p2 >> 16u) + (mid >> 16u), a * b);
}

// Philox 4x32-10 (Salmon et al. 2011).
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var r = 0u; r < 10u; r++) {
        let m0 = mul_hi_lo(0xD2511F53u, c.x);
        let m1 = mul_hi_lo(0xCD9E8D57u, c.z);
        c = vec4<u32>(m1.x ^ c.y ^ k.x, m1.y, m0.x ^ c.w ^ k.y, m0.y);
        k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
    }
    return c;
}

// A standard normal for (seed, stream, element) by Box-Muller; mirrored by rng::normal_at.
fn normal_at(seed: u32, stream: u32, element: u32) -> f32 {
    let r = philox(vec4<u32>(element, 0u, 0u, 0u), vec2<u32>(seed, stream));
    let u1 = (f32(r.x >> 8u) + 1.0) * 5.9604644775390625e-8; // (0, 1]
    let u2 = f32(r.y >> 8u) * 5.9604644775390625e-8;          // [0, 1)
    return sqrt(-2.0 * log(u1)) * accurate_sin(6.2831855 * u2, 1u);
}

// Noise for a batch: u0 = elements per sample, u1 = seed of sample 0 (sample i uses seed + i),
// u2 = stream. Independent of batch size and of a sample's position in the batch.
@compute @workgroup_size(256, 1, 1)
fn randn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    out[i] = normal_at(p.u1 + i / p.u0, p.u2, i % p.u0);
}

// out = f0 * in0 + f1 * in1 + f2 * in2 (u0 = 1 when in2 is bound).
@compute @workgroup_size(256, 1, 1)
fn combine3(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    var v = p.f0 * in0[i] + p.f1 * in1[i];
    if (p.u0 == 1u) { v += p.f2 * in2[i]; }
    out[i] = v;
}

// Per-sample dot products: one workgroup per sample (row of u0 elements), fixed-order tree sum.
var<workgroup> partial: array<f32, 256>;
@compute @workgroup_size(256, 1, 1)
fn row_dot(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let row = wid.x;
    let base = row * p.u0;
    var s = 0.0;
    for (var j = lid.x; j < p.u0; j += WG) { s += in0[base + j] * in1[base + j]; }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var w = WG / 2u; w > 0u; w /= 2u) {
        if (lid.x < w) { partial[lid.x] += partial[lid.x + w]; }
        workgroupBarrier();
    }
    if (lid.x == 0u) { out[row] = partial[0]; }
}

// Error ratio of an adaptive step: in0 / (f1 + f0 * max(|in1|, |in2|)) with f0 = rtol, f1 = atol.
@compute @workgroup_size(256, 1, 1)
fn error_ratio(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    out[i] = in0[i] / (p.f1 + p.f0 * max(abs(in1[i]), abs(in2[i])));
}

// Masked blend: out = m * in1 + (1 - m) * in0, with the mask in2 repeating every u0 elements
// (one mask for the whole batch).
@compute @workgroup_size(256, 1, 1)
fn blend(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let m = in2[i % p.u0];
    out[i] = m * in1[i] + (1.0 - m) * in0[i];
}

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }

// ops::Pointwise, selected by u0: 0 in1 silu'(in0); 1 in1 in2 silu''(in0); 2 f0 in0 + f1 in1^2;
// 3 in0 - f0 in1 / (sqrt(in2) + f1).
@compute @workgroup_size(256, 1, 1)
fn pointwise(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let x = in0[i];
    let y = in1[i];
    switch p.u0 {
        case 0u: {
            let s = sigmoid(x);
            out[i] = y * s * (1.0 + x * (1.0 - s));
        }
        case 1u: {
            let s = sigmoid(x);
            out[i] = y * in2[i] * s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s));
        }
        case 2u: { out[i] = p.f0 * x + p.f1 * y * y; }
        default: { out[i] = x - p.f0 * y / (sqrt(in2[i]) + p.f1); }
    }
}
