// Single-head self-attention core in one dispatch: for image n and query token i,
//   out[n, i, :] = sum_j softmax_j(q_i . k_j * scale) v_j
// with q, k, v the thirds of the last dimension of qkv [n, hw, 3c] (c a multiple of 4, read as
// vec4). One workgroup per (i, n):
// the scores go to workgroup memory (at most MAX_TOKENS keys), then a max and a sum reduction,
// then each invocation mixes the values of its output channels. Replaces two products and a
// softmax (three dispatches and an hw x hw buffer per image).

struct Params {
    n: u32, hw: u32, c: u32, _pad: u32,
    scale: f32, _p0: u32, _p1: u32, _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

const WG: u32 = 64u;
const MAX_TOKENS: u32 = 1024u;
var<workgroup> scores: array<f32, 1024>;
var<workgroup> partial: array<f32, 64>;

/// Reduces one value per invocation with `max` (op 0) or `+` (op 1).
fn reduce(lid: u32, v: f32, op: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let o = partial[lid + s];
            partial[lid] = select(partial[lid] + o, max(partial[lid], o), op == 0u);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = wid.x;
    let nn = wid.y;
    // In vec4 units: c is a multiple of 4 (the host falls back to two products otherwise).
    let c4 = p.c / 4u;
    let row = 3u * c4;
    let base = nn * p.hw * row;
    let q = base + i * row;
    var m = -3.4e38;
    for (var j = lid; j < p.hw; j += WG) {
        let k = base + j * row + c4;
        var d = 0.0;
        for (var ch = 0u; ch < c4; ch++) { d += dot(qkv[q + ch], qkv[k + ch]); }
        let sj = d * p.scale;
        scores[j] = sj;
        m = max(m, sj);
    }
    m = reduce(lid, m, 0u);
    var total = 0.0;
    for (var j = lid; j < p.hw; j += WG) {
        let e = exp(scores[j] - m);
        scores[j] = e;
        total += e;
    }
    total = reduce(lid, total, 1u);
    let inv = 1.0 / total;
    for (var ch = lid; ch < c4; ch += WG) {
        var acc = vec4<f32>(0.0);
        for (var j = 0u; j < p.hw; j++) { acc += scores[j] * qkv[base + j * row + 2u * c4 + ch]; }
        let o = ((nn * p.hw + i) * c4 + ch) * 4u;
        let v = acc * inv;
        out[o] = v.x;
        out[o + 1u] = v.y;
        out[o + 2u] = v.z;
        out[o + 3u] = v.w;
    }
}
