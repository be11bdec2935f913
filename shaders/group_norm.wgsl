// GroupNorm over NHWC in one dispatch, with an optional per-(n, c) add before normalising (the
// time-embedding add of a residual block: columns add_offset.. of rows add_stride long) and an optional fused SiLU after the affine map.
// One workgroup per (n, g) reads its group three times: the mean, then the mean of squared
// deviations (no E[x^2] - E[x]^2 cancellation), then y = (x + add[n, c] - mean) * rstd * gamma[c]
// + beta[c], and silu(y) if asked. The groups of these networks are a few thousand values, so
// one workgroup per group keeps every invocation busy without a second dispatch.

struct Params {
    n: u32, hw: u32, c: u32, groups: u32,
    has_add: u32, silu: u32, eps: f32, add_stride: u32,
    add_offset: u32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> add: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

fn value(nn: u32, pix: u32, ch: u32) -> f32 {
    var v = x[(nn * p.hw + pix) * p.c + ch];
    if (p.has_add != 0u) { v += add[nn * p.add_stride + p.add_offset + ch]; }
    return v;
}

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) { partial[lid] += partial[lid + s]; }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

/// One workgroup per (n, g): the statistics, then the normalised values of the whole group.
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let nn = wid.x / p.groups;
    let g = wid.x % p.groups;
    let cg = p.c / p.groups;
    let count = p.hw * cg;
    var s = 0.0;
    for (var i = lid; i < count; i += WG) {
        s += value(nn, i / cg, g * cg + i % cg);
    }
    let mean = workgroup_sum(lid, s) / f32(count);
    var d2 = 0.0;
    for (var i = lid; i < count; i += WG) {
        let d = value(nn, i / cg, g * cg + i % cg) - mean;
        d2 += d * d;
    }
    let rstd = inverseSqrt(workgroup_sum(lid, d2) / f32(count) + p.eps);
    for (var i = lid; i < count; i += WG) {
        let ch = g * cg + i % cg;
        var y = (value(nn, i / cg, ch) - mean) * rstd * gamma[ch] + beta[ch];
        if (p.silu != 0u) { y = y / (1.0 + exp(-y)); }
        out[(nn * p.hw + i / cg) * p.c + ch] = y;
    }
}
