//! The files the CLI reads and writes: PNG images and grids, masks, float32 `.npy` arrays.

use std::path::{Path, PathBuf};

use scorelab::model::ModelConfig;
use scorelab::{image, Error, Result};

/// Border of the PNG grids the CLI writes and reads.
pub(super) const GAP: usize = 2;

/// A file error, naming the option it came from and the path.
pub(super) fn io_error(name: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        detail: format!("{e} (--{name})"),
    }
}

pub(super) fn write_png(path: &Path, rgba: &[u8], w: usize, h: usize) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| io_error("out", path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .and_then(|mut w| w.write_image_data(rgba))
        .map_err(|e| io_error("out", path, e))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Reads a PNG of any colour type as 8-bit RGBA; returns the pixels, width and height.
pub(super) fn read_png(path: &Path) -> Result<(Vec<u8>, usize, usize)> {
    let file = std::fs::File::open(path).map_err(|e| io_error("image", path, e))?;
    let mut dec = png::Decoder::new(std::io::BufReader::new(file));
    dec.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = dec.read_info().map_err(|e| io_error("image", path, e))?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| io_error("image", path, e))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let px = &buf[..info.buffer_size()];
    let rgba = match info.color_type {
        png::ColorType::Rgba => px.to_vec(),
        png::ColorType::Rgb => px.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        png::ColorType::Grayscale => px.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        png::ColorType::GrayscaleAlpha => px
            .chunks(2)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        png::ColorType::Indexed => {
            return Err(io_error("image", path, "indexed colour was not expanded"))
        }
    };
    Ok((rgba, w, h))
}

/// Reads images as model values, concatenated. A PNG at the model's size is one image; a larger
/// one must be a grid as `sample` writes it (tiles with a 2-pixel border), whose tiles are read in
/// order, skipping blank (all-white) tiles.
pub(super) fn read_images(paths: &[PathBuf], cfg: &ModelConfig) -> Result<Vec<f32>> {
    let d = &cfg.data;
    if d.kind == "points" {
        return Err(Error::Param {
            name: "model".into(),
            detail: "this command works on image models".into(),
        });
    }
    let (tw, th) = (d.width + GAP, d.height + GAP);
    let mut values = Vec::new();
    for path in paths {
        let (rgba, w, h) = read_png(path)?;
        if (w, h) == (d.width, d.height) {
            values.extend(image::from_rgba(&rgba, d.channels));
            continue;
        }
        if w < GAP || h < GAP || !(w - GAP).is_multiple_of(tw) || !(h - GAP).is_multiple_of(th) {
            return Err(io_error(
                "image",
                path,
                format!(
                    "is {w}x{h}: give {}x{} images or a grid written by `sample`",
                    d.width, d.height
                ),
            ));
        }
        for row in 0..(h - GAP) / th {
            for col in 0..(w - GAP) / tw {
                let (x0, y0) = (GAP + col * tw, GAP + row * th);
                let tile: Vec<u8> = (y0..y0 + d.height)
                    .flat_map(|y| rgba[(y * w + x0) * 4..(y * w + x0 + d.width) * 4].to_vec())
                    .collect();
                if tile.iter().any(|&b| b != 255) {
                    values.extend(image::from_rgba(&tile, d.channels));
                }
            }
        }
    }
    Ok(values)
}

/// Reads exactly one image (see [`read_images`]).
pub(super) fn read_one_image(path: &Path, cfg: &ModelConfig) -> Result<Vec<f32>> {
    let values = read_images(&[path.to_path_buf()], cfg)?;
    if values.len() != cfg.sample_len() {
        return Err(io_error(
            "image",
            path,
            format!("holds {} images; give one", values.len() / cfg.sample_len()),
        ));
    }
    Ok(values)
}

/// Writes samples as a grid with `cols` columns (images) or a scatter plot / CSV (points).
pub(super) fn write_samples(
    out: &Path,
    cfg: &ModelConfig,
    values: &[f32],
    cols: usize,
) -> Result<()> {
    let d = &cfg.data;
    // float32 [n, ..sample shape], no 8-bit rounding (for evaluation scripts).
    if out.extension().is_some_and(|e| e == "npy") {
        let mut shape = vec![values.len() / cfg.sample_len()];
        shape.extend(cfg.sample_shape());
        return write_npy(out, values, &shape);
    }
    if d.kind == "points" {
        if out.extension().is_some_and(|e| e == "csv") {
            let text: String = values
                .chunks(d.dim)
                .map(|p| {
                    p.iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                        + "\n"
                })
                .collect();
            return std::fs::write(out, text)
                .map_err(|e| io_error("out", out, e))
                .map(|_| eprintln!("wrote {}", out.display()));
        }
        return write_png(out, &image::scatter(values, 512, 4.0), 512, 512);
    }
    let n = values.len() / cfg.sample_len();
    let (rgba, w, h) = image::grid(values, n, (d.height, d.width, d.channels), cols, GAP);
    write_png(out, &rgba, w, h)
}

/// A mask PNG at the model's size: 1 where it is not black (keep), 0 elsewhere.
pub(super) fn read_mask(path: &Path, cfg: &ModelConfig) -> Result<Vec<f32>> {
    Ok(read_one_image(path, cfg)?
        .iter()
        .map(|&v| if v > 0.0 { 1.0 } else { 0.0 })
        .collect())
}

/// Reads a little-endian f32 `.npy` file (C order): its values and shape.
pub(super) fn read_npy(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    let bytes = std::fs::read(path).map_err(|e| io_error("image", path, e))?;
    let bad = |why: &str| io_error("image", path, format!("is not a float32 .npy file: {why}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no .npy magic"));
    }
    let (len_at, start) = if bytes[6] == 1 { (8, 10) } else { (8, 12) };
    let header_len = if bytes[6] == 1 {
        u16::from_le_bytes([bytes[len_at], bytes[len_at + 1]]) as usize
    } else {
        u32::from_le_bytes(bytes[len_at..len_at + 4].try_into().expect("4 bytes")) as usize
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + header_len)
            .ok_or_else(|| bad("short header"))?,
    )
    .map_err(|_| bad("header is not text"))?;
    if !header.contains("'descr': '<f4'") || header.contains("'fortran_order': True") {
        return Err(bad("needs dtype <f4 in C order"));
    }
    let dims = header
        .split("'shape': (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = dims
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().map_err(|_| bad("shape is not numbers")))
        .collect::<Result<_>>()?;
    let data = &bytes[start + header_len..];
    if data.len() != shape.iter().product::<usize>() * 4 {
        return Err(bad("data length does not match the shape"));
    }
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(bad("non-finite values"));
    }
    Ok((values, shape))
}

/// The values of a `.npy` file of samples `[k, ..sample]` (any k).
pub(super) fn read_npy_samples(path: &Path, sample: [usize; 3]) -> Result<Vec<f32>> {
    let (values, shape) = read_npy(path)?;
    if shape.len() != 4 || shape[1..] != sample {
        let [h, w, c] = sample;
        return Err(io_error(
            "image",
            path,
            format!("has shape {shape:?}: it must be [k, {h}, {w}, {c}]"),
        ));
    }
    Ok(values)
}

/// Writes f32 values as a `.npy` file of the given shape.
pub(super) fn write_npy(path: &Path, values: &[f32], shape: &[usize]) -> Result<()> {
    let dims: String = shape.iter().map(|d| format!("{d},")).collect();
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}");
    // Magic, version, length, header: padded with spaces to a multiple of 64, ending in a newline.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, bytes).map_err(|e| io_error("out", path, e))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
