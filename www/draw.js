// Drawing helpers shared by the page modules.

/** sigma(t) of a model's SDE (src/sampler/schedule.rs): the std of x_t given x_0. */
export function noiseStd(sde, t) {
  if (sde.type === 've') return sde.sigma_min * Math.pow(sde.sigma_max / sde.sigma_min, t);
  const logAlpha = -t * t * (sde.beta_max - sde.beta_min) / 4 - t * sde.beta_min / 2;
  const oneMinusAlpha2 = -Math.expm1(2 * logAlpha);
  return sde.type === 'subvp' ? oneMinusAlpha2 : Math.sqrt(oneMinusAlpha2);
}

export function toRgba(values, h, w, c) {
  const out = new Uint8ClampedArray(h * w * 4);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) out[i * 4 + k] = Math.round((Math.max(-1, Math.min(1, values[i * c + (c >= 3 ? k : 0)])) + 1) * 127.5);
    out[i * 4 + 3] = 255;
  }
  return out;
}

export function drawImage(canvas, values, shape) {
  const [h, w, c] = shape;
  canvas.width = w; canvas.height = h;
  canvas.getContext('2d').putImageData(new ImageData(toRgba(values, h, w, c), w, h), 0, 0);
}

export function drawPoints(canvas, values, range = 4) {
  const ctx = canvas.getContext('2d');
  const s = canvas.width;
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, s, s);
  ctx.fillStyle = '#1e3ca0';
  for (let i = 0; i + 1 < values.length; i += 2) {
    const x = (values[i] / range + 1) / 2 * s, y = (1 - (values[i + 1] / range + 1) / 2) * s;
    ctx.fillRect(x - 1, y - 1, 2.5, 2.5);
  }
}

/** Tiles canvases into one enlarged canvas with `cols` columns (for downloads). */
export function tileCanvases(canvases, cols, scale = 4, gap = 4) {
  const [w, h] = [canvases[0].width, canvases[0].height];
  const rows = Math.ceil(canvases.length / cols);
  const out = document.createElement('canvas');
  out.width = cols * (w * scale + gap) + gap; out.height = rows * (h * scale + gap) + gap;
  const ctx = out.getContext('2d');
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, out.width, out.height);
  ctx.imageSmoothingEnabled = false;
  canvases.forEach((c, i) => ctx.drawImage(c, gap + (i % cols) * (w * scale + gap), gap + Math.floor(i / cols) * (h * scale + gap), w * scale, h * scale));
  return out;
}

/** Model values of one image from a canvas region (rgba), with `c` channels. */
export function fromImageData(data, c) {
  const n = data.length / 4, out = new Float32Array(n * c);
  for (let i = 0; i < n; i++) {
    if (c >= 3) for (let k = 0; k < 3; k++) out[i * 3 + k] = data[i * 4 + k] / 127.5 - 1;
    else out[i] = (data[i * 4] + data[i * 4 + 1] + data[i * 4 + 2]) / 3 / 127.5 - 1;
  }
  return out;
}

/** Loads an image URL or File into model values of size h x w (scaled to fit). */
export async function imageValues(src, h, w, c) {
  const img = await createImageBitmap(src instanceof Blob ? src : await (await fetch(src)).blob());
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = c >= 3 ? '#fff' : '#000';
  ctx.fillRect(0, 0, w, h);
  ctx.drawImage(img, 0, 0, w, h);
  return fromImageData(ctx.getImageData(0, 0, w, h).data, c);
}

/** Example i (0..15) of a model's data set strip (www/examples/<model>.png, 32x32 tiles). */
export async function exampleValues(model, i, h, w, c) {
  const img = await createImageBitmap(await (await fetch(`examples/${model}.png`)).blob());
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(img, i * w, 0, w, h, 0, 0, w, h);
  return fromImageData(ctx.getImageData(0, 0, w, h).data, c);
}
