// GroupNorm over NHWC in two passes, with an optional per-(n, c) add before normalising (the
// time-embedding add of a residual block) and an optional fused SiLU after the affine map.
//   stats: one workgroup per (n, g): mean, then the mean of squared deviations (two-pass, no
//          E[x^2] - E[x]^2 cancellation); writes (mean, 1/sqrt(var + eps)).
//   apply: y = (x + add[n, c] - mean) * rstd * gamma[c] + beta[c], then silu(y) if asked.

struct Params {
    n: u32, hw: u32, c: u32, groups: u32,
    has_add: u32, silu: u32, eps: f32, _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> add: array<f32>;
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, 256>;

fn value(nn: u32, pix: u32, ch: u32) -> f32 {
    var v = x[(nn * p.hw + pix) * p.c + ch];
    if (p.has_add != 0u) { v += add[nn * p.c + ch]; }
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

@compute @workgroup_size(256, 1, 1)
fn stats_main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
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
    let variance = workgroup_sum(lid, d2) / f32(count);
    if (lid == 0u) {
        stats[2u * wid.x] = mean;
        stats[2u * wid.x + 1u] = inverseSqrt(variance + p.eps);
    }
}

@compute @workgroup_size(256, 1, 1)
fn apply_main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * WG;
    let total = p.n * p.hw * p.c;
    if (idx >= total) { return; }
    let ch = idx % p.c;
    let nn = idx / (p.hw * p.c);
    let sg = 2u * (nn * p.groups + ch / (p.c / p.groups));
    var v = x[idx];
    if (p.has_add != 0u) { v += add[nn * p.c + ch]; }
    var y = (v - stats[sg]) * stats[sg + 1u] * gamma[ch] + beta[ch];
    if (p.silu != 0u) { y = y / (1.0 + exp(-y)); }
    out[idx] = y;
}
