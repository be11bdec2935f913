// Helpers shared by several shader files (prepended to them at build time; see gpu/kernels.rs).

// WGSL's sin/cos only promise 2^-11 absolute error, and only inside [-pi, pi], so both are computed
// here: Cody-Waite reduction by pi/2 (the high part has 8 bits, so q * HI is exact for |q| < 2^16),
// then Taylor polynomials on [-pi/4, pi/4] (truncation error below 2e-9).
const PIO2_HI: f32 = 1.5703125;
const PIO2_LO: f32 = 4.8382679489661923e-4;

fn sin_poly(r: f32) -> f32 {
    let r2 = r * r;
    return r * (1.0 + r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0)))));
}

fn cos_poly(r: f32) -> f32 {
    let r2 = r * r;
    return 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
}

// sin(x + quarter * pi / 2): quarter = 0 gives sin, 1 gives cos.
fn accurate_sin(x: f32, quarter: u32) -> f32 {
    let q = round(x * 0.63661977236758134);
    let r = (x - q * PIO2_HI) - q * PIO2_LO;
    let k = (u32(i32(q) & 3) + quarter) & 3u;
    let v = select(sin_poly(r), cos_poly(r), (k & 1u) == 1u);
    return select(v, -v, k >= 2u);
}
