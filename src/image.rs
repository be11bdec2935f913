//! Pixels at the boundary: model values in [-1, 1] (NHWC) to and from 8-bit RGBA, sample grids,
//! and a scatter plot for point models.

/// One sample's values (`h * w * c`, c = 1 or 3) to RGBA bytes.
pub fn to_rgba(values: &[f32], h: usize, w: usize, c: usize) -> Vec<u8> {
    let byte = |v: f32| ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
    let mut out = Vec::with_capacity(h * w * 4);
    for px in values.chunks(c).take(h * w) {
        let (r, g, b) = if c >= 3 {
            (px[0], px[1], px[2])
        } else {
            (px[0], px[0], px[0])
        };
        out.extend([byte(r), byte(g), byte(b), 255]);
    }
    out
}

/// RGBA bytes to model values with `c` channels (grayscale is the mean of r, g, b).
pub fn from_rgba(rgba: &[u8], c: usize) -> Vec<f32> {
    let val = |b: u8| b as f32 / 127.5 - 1.0;
    let mut out = Vec::with_capacity(rgba.len() / 4 * c);
    for px in rgba.chunks(4) {
        if c >= 3 {
            out.extend([val(px[0]), val(px[1]), val(px[2])]);
        } else {
            out.push(((px[0] as f32 + px[1] as f32 + px[2] as f32) / 3.0) / 127.5 - 1.0);
        }
    }
    out
}

/// Peak signal-to-noise ratio in dB of `b` against `a`, both model values in [-1, 1] (peak-to-peak 2).
pub fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len().max(1) as f64;
    10.0 * (4.0 / mse.max(1e-20)).log10()
}

/// Lays out `n` samples in a grid with `cols` columns and a `gap`-pixel white border; returns RGBA
/// and the grid's width and height.
pub fn grid(
    values: &[f32],
    n: usize,
    (h, w, c): (usize, usize, usize),
    cols: usize,
    gap: usize,
) -> (Vec<u8>, usize, usize) {
    let cols = cols.clamp(1, n.max(1));
    let rows = n.div_ceil(cols);
    let (gw, gh) = (cols * (w + gap) + gap, rows * (h + gap) + gap);
    let mut out = vec![255u8; gw * gh * 4];
    for i in 0..n {
        let tile = to_rgba(&values[i * h * w * c..(i + 1) * h * w * c], h, w, c);
        let (ox, oy) = (gap + (i % cols) * (w + gap), gap + (i / cols) * (h + gap));
        for y in 0..h {
            let dst = ((oy + y) * gw + ox) * 4;
            out[dst..dst + w * 4].copy_from_slice(&tile[y * w * 4..(y + 1) * w * 4]);
        }
    }
    (out, gw, gh)
}

/// A `size x size` scatter plot of 2-D points over `[-range, range]^2` (y up), dark dots on white.
pub fn scatter(points: &[f32], size: usize, range: f32) -> Vec<u8> {
    let mut out = vec![255u8; size * size * 4];
    for p in points.chunks(2) {
        let px = ((p[0] / range + 1.0) * 0.5 * size as f32) as isize;
        let py = ((1.0 - (p[1] / range + 1.0) * 0.5) * size as f32) as isize;
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            let (x, y) = (px + dx, py + dy);
            if x >= 0 && y >= 0 && (x as usize) < size && (y as usize) < size {
                let i = (y as usize * size + x as usize) * 4;
                out[i..i + 3].copy_from_slice(&[30, 60, 160]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixels_round_trip() {
        let rgba: Vec<u8> = (0..64u32)
            .flat_map(|i| [(i * 4) as u8, (255 - i * 3) as u8, (i * 7 % 256) as u8, 255])
            .collect();
        assert_eq!(to_rgba(&from_rgba(&rgba, 3), 8, 8, 3), rgba);
        let gray: Vec<u8> = (0..16u8)
            .flat_map(|i| [i * 16, i * 16, i * 16, 255])
            .collect();
        assert_eq!(to_rgba(&from_rgba(&gray, 1), 4, 4, 1), gray);
    }

    #[test]
    fn psnr_of_known_error() {
        // A constant error of 0.02 on a peak-to-peak range of 2: 10 log10(4 / 0.0004) = 40 dB.
        let a = vec![0.5f32; 10];
        let b: Vec<f32> = a.iter().map(|v| v + 0.02).collect();
        assert!((psnr(&a, &b) - 40.0).abs() < 1e-4, "{}", psnr(&a, &b));
    }

    #[test]
    fn grid_places_tiles() {
        let values = vec![-1.0f32; 3 * 2 * 2];
        let (rgba, w, h) = grid(&values, 3, (2, 2, 1), 2, 1);
        assert_eq!((w, h), (7, 7));
        let px = |x: usize, y: usize| &rgba[(y * 7 + x) * 4..(y * 7 + x) * 4 + 4];
        assert_eq!(px(1, 1), &[0, 0, 0, 255]); // inside the first tile
        assert_eq!(px(0, 0), &[255, 255, 255, 255]); // the border
        assert_eq!(px(4, 4), &[255, 255, 255, 255]); // where a fourth tile would be
    }
}
