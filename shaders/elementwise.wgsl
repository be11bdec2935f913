// Memory-bound per-element ops, one entry point each, sharing one binding layout:
// (params, in0, in1, out). One invocation per output element; 2-D dispatch for large tensors.

struct Params {
    len: u32, u0: u32, u1: u32, u2: u32,
    f0: f32, f1: f32, _p0: u32, _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

const WG: u32 = 256u;

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }

// out = x * sigmoid(x)
@compute @workgroup_size(256, 1, 1)
fn silu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let v = in0[i];
    out[i] = v / (1.0 + exp(-v));
}

// out = f0 * in0 + f1 * in1  (residual add, scaling)
@compute @workgroup_size(256, 1, 1)
fn axpby(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    out[i] = p.f0 * in0[i] + p.f1 * in1[i];
}

// Nearest 2x upsample, NHWC. u0 = input H, u1 = input W, u2 = C.
@compute @workgroup_size(256, 1, 1)
fn upsample2x(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let c = i % p.u2;
    let ox = (i / p.u2) % (2u * p.u1);
    let oy = (i / (p.u2 * 2u * p.u1)) % (2u * p.u0);
    let nn = i / (p.u2 * 4u * p.u1 * p.u0);
    out[i] = in0[((nn * p.u0 + oy / 2u) * p.u1 + ox / 2u) * p.u2 + c];
}

// Channel concat of two NHWC tensors with u0 and u1 channels.
@compute @workgroup_size(256, 1, 1)
fn concat_channels(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let c = p.u0 + p.u1;
    let ch = i % c;
    let pix = i / c;
    if (ch < p.u0) {
        out[i] = in0[pix * p.u0 + ch];
    } else {
        out[i] = in1[pix * p.u1 + ch - p.u0];
    }
}

// Row gather: out[r, j] = table[label[r], j]; in0 = labels (integer-valued f32), in1 = table,
// u0 = row width, u1 = number of table rows (labels are clamped into range; checked on the CPU).
@compute @workgroup_size(256, 1, 1)
fn embedding(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let r = i / p.u0;
    let row = min(u32(in0[r]), p.u1 - 1u);
    out[i] = in1[row * p.u0 + i % p.u0];
}

// Sinusoidal embedding of s = t * f0 (f0 = time scale), u0 = dim (even), half = dim / 2:
// out[r, j] = sin(s * f_j) for j < half, cos(s * f_(j-half)) otherwise; in1 = the table f_j, computed
// on the host (exp on GPUs is only accurate to a few ulp, and s * f_j reaches ~1000 radians).
// sin/cos through accurate_sin (common.wgsl): the argument reaches ~1000 radians.
@compute @workgroup_size(256, 1, 1)
fn timestep_embedding(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat(gid, nwg);
    if (i >= p.len) { return; }
    let half = p.u0 / 2u;
    let r = i / p.u0;
    let j = i % p.u0;
    let arg = (in0[r] * p.f0) * in1[j % half];
    out[i] = accurate_sin(arg, select(1u, 0u, j < half));
}

// Numerically stable softmax over rows of length u0, one invocation per row (rows are short:
// attention over at most a few hundred tokens).
@compute @workgroup_size(256, 1, 1)
fn softmax_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat(gid, nwg);
    if (r >= p.len) { return; }
    let base = r * p.u0;
    var mx = in0[base];
    for (var j = 1u; j < p.u0; j++) { mx = max(mx, in0[base + j]); }
    var s = 0.0;
    for (var j = 0u; j < p.u0; j++) { s += exp(in0[base + j] - mx); }
    let inv = 1.0 / s;
    for (var j = 0u; j < p.u0; j++) { out[base + j] = exp(in0[base + j] - mx) * inv; }
}
