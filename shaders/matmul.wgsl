// Batched, strided matrix product with optional bias, scale, added tensor and SiLU:
//   out[b, m, n] = act(scale * sum_k A(b, m, k) * B(b, k, n) + bias[n] + add[b, m, n])
// A(b, m, k) = a[a_off + b*a_bs + m*a_rs + k*a_cs], likewise B; arbitrary strides make transposes
// and column slices (Q/K/V inside one QKV buffer) free. Each invocation owns a 4x4 output block in
// registers (register blocking beats shared-memory tiles on software adapters and is fine on GPUs).

struct Params {
    m: u32, n: u32, k: u32, batch: u32,
    a_off: u32, a_bs: u32, a_rs: u32, a_cs: u32,
    b_off: u32, b_bs: u32, b_rs: u32, b_cs: u32,
    has_bias: u32, scale: f32, has_add: u32, silu: u32,
}

// b's storage type: f32, or f16 in the shader-f16 variant for weights (`kernels.rs` swaps this
// line and enables f16); loads convert to f32, so accumulation stays f32.
alias W = f32;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<W>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> add: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col0 = gid.x * 4u;
    let row0 = gid.y * 4u;
    let bt = gid.z;
    if (col0 >= p.n || row0 >= p.m || bt >= p.batch) { return; }
    // Clamp indices so loads stay in bounds; out-of-range rows/cols are dropped at the store.
    var arow: array<u32, 4>;
    var bcol: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        arow[i] = p.a_off + bt * p.a_bs + min(row0 + i, p.m - 1u) * p.a_rs;
        bcol[i] = p.b_off + bt * p.b_bs + min(col0 + i, p.n - 1u) * p.b_cs;
    }
    var acc: array<vec4<f32>, 4>;
    for (var kk = 0u; kk < p.k; kk++) {
        let ka = kk * p.a_cs;
        let kb = kk * p.b_rs;
        let bv = vec4<f32>(f32(b[bcol[0] + kb]), f32(b[bcol[1] + kb]), f32(b[bcol[2] + kb]), f32(b[bcol[3] + kb]));
        acc[0] += a[arow[0] + ka] * bv;
        acc[1] += a[arow[1] + ka] * bv;
        acc[2] += a[arow[2] + ka] * bv;
        acc[3] += a[arow[3] + ka] * bv;
    }
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + i;
        if (row >= p.m) { break; }
        let base = bt * p.m * p.n + row * p.n;
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + j;
            if (col >= p.n) { break; }
            var v = acc[i][j] * p.scale;
            if (p.has_bias != 0u) { v += bias[col]; }
            if (p.has_add != 0u) { v += add[base + col]; }
            if (p.silu != 0u) { v = v / (1.0 + exp(-v)); }
            out[base + col] = v;
        }
    }
}
