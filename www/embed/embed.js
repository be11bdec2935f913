// @ts-check
// scorelab in a page of your own: load a model, draw eight digits, show them in a row.
import init, { open_lab, to_rgba } from '../pkg/scorelab.js';

await init();
const gpu = await open_lab(null); // WebGPU, or the CPU backend where there is none
// A software adapter (SwiftShader, lavapipe) is slower than the CPU backend's wasm SIMD.
const lab = gpu.backend().adapter?.software ? await open_lab('cpu') : gpu;
const weights = new Uint8Array(await (await fetch('../models/digits.safetensors')).arrayBuffer());
const { data } = lab.load_model('digits', weights);
const options = { sampler: { method: /** @type {const} */ ('dpm2m'), steps: 15 }, seed: 1, n: 8, class: 7 };
const { values, n } = await lab.sample('digits', options, () => undefined);
const rgba = to_rgba(values, data.height, data.width, data.channels); // one image after another
const canvas = /** @type {HTMLCanvasElement} */ (document.getElementById('grid'));
Object.assign(canvas, { width: n * data.width, height: data.height });
const size = data.width * data.height * 4;
for (let i = 0; i < n; i++) {
  const pixels = Uint8ClampedArray.from(rgba.subarray(i * size, (i + 1) * size));
  /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')).putImageData(new ImageData(pixels, data.width), i * data.width, 0);
}
/** @type {HTMLElement} */ (document.getElementById('status')).textContent = `${n} samples on ${lab.backend().kind}`;
