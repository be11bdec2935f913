//! A small seeded random source (SplitMix64 with Box–Muller normals). Seeded runs give the same
//! numbers on every platform, which the samplers, the page and the tests rely on.

#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    spare: Option<f64>,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng {
            state: seed ^ 0x853c_49e6_748f_ea9b,
            spare: None,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal.
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let u1 = 1.0 - self.uniform(); // (0, 1]
        let u2 = self.uniform();
        let r = (-2.0 * u1.ln()).sqrt();
        let a = std::f64::consts::TAU * u2;
        self.spare = Some(r * a.sin());
        r * a.cos()
    }

    pub fn normals(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.normal() as f32).collect()
    }

    pub fn uniforms(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len)
            .map(|_| lo + (hi - lo) * self.uniform() as f32)
            .collect()
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }
}

/// Philox 4x32-10 (Salmon et al. 2011), the counter-based generator the GPU uses (`sampler.wgsl`).
pub fn philox(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let m0 = 0xD251_1F53u64 * c[0] as u64;
        let m1 = 0xCD9E_8D57u64 * c[2] as u64;
        c = [
            (m1 >> 32) as u32 ^ c[1] ^ k[0],
            m1 as u32,
            (m0 >> 32) as u32 ^ c[3] ^ k[1],
            m0 as u32,
        ];
        k = [
            k[0].wrapping_add(0x9E37_79B9),
            k[1].wrapping_add(0xBB67_AE85),
        ];
    }
    c
}

/// The standard normal for (seed, stream, element), computed exactly as the GPU does (Box–Muller on
/// two 24-bit uniforms), so noise agrees across backends to float rounding.
pub fn normal_at(seed: u32, stream: u32, element: u32) -> f32 {
    let r = philox([element, 0, 0, 0], [seed, stream]);
    let u1 = ((r[0] >> 8) as f32 + 1.0) * 5.960_464_5e-8;
    let u2 = (r[1] >> 8) as f32 * 5.960_464_5e-8;
    let radius = ((-2.0 * (u1 as f64).ln()) as f32).sqrt();
    radius * ((6.283_185_5f32 * u2) as f64).cos() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn philox_known_answers() {
        // Known-answer vectors of the Random123 distribution (kat_vectors, philox4x32_10).
        assert_eq!(
            philox([0; 4], [0; 2]),
            [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
        );
        assert_eq!(
            philox([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox(
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0]
            ),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn noise_is_standard_normal() {
        let z: Vec<f64> = (0..200_000).map(|i| normal_at(7, 3, i) as f64).collect();
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / z.len() as f64;
        let kurt = z.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / z.len() as f64 / var.powi(2);
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.01 && (kurt - 3.0).abs() < 0.05,
            "mean {mean} var {var} kurtosis {kurt}"
        );
    }
}
