// The Inpaint and Interpolate tabs.
import { drawImage, exampleValues, imageValues, tileCanvases } from './draw.js';

const $ = (id) => document.getElementById(id);

function imageModels(ctx) { return ctx.models.filter((m) => m !== 'toy2d'); }

function fillModels(select, ctx) {
  select.innerHTML = '';
  for (const m of imageModels(ctx)) select.add(new Option(m, m));
}

// ---------- inpainting ----------
export function setupInpaint(ctx) {
  const { client, loadModel } = ctx;
  const st = { values: null, mask: null, shape: null, model: null, erase: false, running: null, result: null };
  fillModels($('ip-model'), ctx);
  const view = $('ip-canvas');

  const redraw = () => {
    if (!st.values) return;
    const [h, w] = st.shape;
    const small = document.createElement('canvas');
    drawImage(small, st.values, st.shape);
    const g = view.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(small, 0, 0, view.width, view.height);
    g.fillStyle = 'rgba(230, 40, 40, 0.55)';
    const sx = view.width / w, sy = view.height / h;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (st.mask[y * w + x] < 0.5) g.fillRect(x * sx, y * sy, sx, sy);
  };

  async function load() {
    const model = $('ip-model').value;
    const config = await loadModel(model);
    const shape = [config.data.height, config.data.width, config.data.channels];
    let values;
    if ($('ip-upload').files.length) values = await imageValues($('ip-upload').files[0], ...shape);
    else if ($('ip-source').value === 'generated' && ctx.lastGenerated(model)) values = ctx.lastGenerated(model);
    else values = await exampleValues(model, Number($('ip-example').value) % 16, ...shape);
    Object.assign(st, { values, shape, model, mask: new Float32Array(shape[0] * shape[1]).fill(1) });
    $('ip-colorize').hidden = config.data.channels !== 3;
    redraw();
    view.dataset.loaded = model;
  }

  // Painting: pointer events cover mouse, pen and touch.
  const paint = (e) => {
    if (!st.mask) return;
    const r = view.getBoundingClientRect();
    const [h, w] = st.shape;
    const cx = (e.clientX - r.left) / r.width * w, cy = (e.clientY - r.top) / r.height * h;
    const rad = Number($('ip-brush').value) / 2;
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
      if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= rad * rad) st.mask[y * w + x] = st.erase ? 1 : 0;
    }
    redraw();
  };
  let down = false;
  view.addEventListener('pointerdown', (e) => { down = true; view.setPointerCapture(e.pointerId); paint(e); });
  view.addEventListener('pointermove', (e) => { if (down) paint(e); });
  view.addEventListener('pointerup', () => { down = false; });
  $('ip-erase').addEventListener('click', () => { st.erase = !st.erase; $('ip-erase').setAttribute('aria-pressed', String(st.erase)); });
  $('ip-clear').addEventListener('click', () => { if (st.mask) { st.mask.fill(1); redraw(); } });
  $('ip-invert').addEventListener('click', () => { if (st.mask) { st.mask = st.mask.map((m) => 1 - m); redraw(); } });
  $('ip-load').addEventListener('click', load);
  $('ip-model').addEventListener('change', load);
  $('ip-example').addEventListener('change', () => { $('ip-upload').value = ''; load(); });
  $('ip-upload').addEventListener('change', load);

  async function run(op) {
    if (!ctx.checkForm($('ip-run').closest('form'), $('ip-status'))) return;
    if (!st.values) await load();
    const [h, w, c] = st.shape;
    if (op === 'colorize') {
      // Colour comes from the model; only the luminance (mean of r, g, b) of the image is kept.
      st.values = st.values.map((_, i) => { const p = i - (i % 3); return (st.values[p] + st.values[p + 1] + st.values[p + 2]) / 3; });
      st.mask.fill(1);
      redraw();
    }
    const maskFull = new Float32Array(h * w * c);
    for (let i = 0; i < h * w; i++) for (let k = 0; k < c; k++) maskFull[i * c + k] = st.mask[i];
    const method = $('ip-method').value === 'repaint' ? { kind: 'repaint', jump: Number($('ip-jump').value), resample: Number($('ip-resample').value) } : { kind: 'replace' };
    const options = { sampler: { method: $('ip-sampler').value, steps: Number($('ip-steps').value) }, method, seed: Number($('ip-seed').value) >>> 0 };
    const result = $('ip-result');
    const t0 = performance.now();
    $('ip-run').disabled = true; $('ip-colorize').disabled = true; $('ip-cancel').disabled = false;
    const args = op === 'inpaint' ? { model: st.model, images: st.values, mask: maskFull, options, previewEvery: 2 } : { model: st.model, images: st.values, options, previewEvery: 2 };
    const job = client.start(op, args, (ev) => {
      if (ev.kind === 'step') $('ip-status').textContent = `step ${ev.info.step}/${ev.info.total} · ${ev.info.evals} evaluations`;
      if (ev.kind === 'preview') drawScaled(result, ev.values, st.shape);
    });
    st.running = job.id;
    try {
      const out = await job.done;
      drawScaled(result, out.values, st.shape);
      st.result = out.values;
      $('ip-status').textContent = `done in ${((performance.now() - t0) / 1000).toFixed(1)} s`;
      $('ip-download').disabled = false;
      result.dataset.done = String(Date.now());
    } catch (e) {
      $('ip-status').textContent = e.message === 'cancelled' ? 'cancelled' : `error: ${e.message}`;
      $('ip-status').classList.toggle('error', e.message !== 'cancelled');
    } finally {
      st.running = null;
      $('ip-run').disabled = false; $('ip-colorize').disabled = false; $('ip-cancel').disabled = true;
    }
  }
  $('ip-run').addEventListener('click', () => run('inpaint'));
  $('ip-colorize').addEventListener('click', () => run('colorize'));
  $('ip-cancel').addEventListener('click', () => { if (st.running) client.cancel(st.running); });
  $('ip-download').addEventListener('click', () => ctx.downloadCanvas($('ip-result'), `scorelab-${st.model}-inpaint.png`));
  // The likelihood of the loaded image (example, generated or uploaded), mask ignored.
  $('ip-bpd').addEventListener('click', async () => {
    if (!st.values) await load();
    $('ip-bpd').disabled = true;
    try {
      const r = await ctx.measureBitsPerDim(st.model, st.values, (t) => { $('ip-status').textContent = t; });
      $('ip-status').textContent = `this image: ${r.text}`;
      $('ip-status').dataset.bpd = String(r.bpd);
    } catch (e) {
      $('ip-status').textContent = `error: ${e.message}`;
      $('ip-status').classList.add('error');
    } finally { $('ip-bpd').disabled = false; }
  });
  return { load };
}

function drawScaled(canvas, values, shape) {
  const small = document.createElement('canvas');
  drawImage(small, values, shape);
  const g = canvas.getContext('2d');
  g.imageSmoothingEnabled = false;
  g.drawImage(small, 0, 0, canvas.width, canvas.height);
}

// ---------- interpolation ----------
/** PSNR in dB of `y` against `x`, values in [-1, 1] (peak-to-peak 2). */
function psnr(x, y) {
  let se = 0;
  for (let i = 0; i < x.length; i++) se += (x[i] - y[i]) ** 2;
  return 10 * Math.log10(4 / Math.max(se / x.length, 1e-12));
}

export function setupInterpolate(ctx) {
  const { client, loadModel } = ctx;
  const st = { frames: [], shape: null, running: null };
  fillModels($('it-model'), ctx);
  // Each long call of a run (two encodings, one decoding) can be cancelled within a step.
  const call = async (op, args, onEvent) => {
    const job = client.start(op, args, onEvent);
    st.running = job.id;
    try { return await job.done; } finally { st.running = null; }
  };
  $('it-cancel').addEventListener('click', () => { if (st.running) client.cancel(st.running); });
  const onModel = async () => ctx.fillClasses($('it-class'), await loadModel($('it-model').value));
  $('it-model').addEventListener('change', onModel);
  onModel();

  // An endpoint's latent (a seed's starting noise, or an image encoded through the ODE) and its
  // image (null for a seed).
  async function endpoint(kind, n, file, model, config, options) {
    if (kind === 'seed') return { latent: (await client.call('seedLatent', { model, seed: Number(n) >>> 0 })).values, image: null };
    const shape = [config.data.height, config.data.width, config.data.channels];
    let x;
    if (kind === 'upload') {
      if (!file) throw new Error('choose an image file for the upload endpoint');
      x = await imageValues(file, ...shape);
    } else if (kind === 'generated') {
      x = ctx.lastGenerated(model);
      if (!x) throw new Error(`generate a ${model} image first (Generate tab)`);
    } else x = await exampleValues(model, Number(n) % 16, ...shape);
    return { latent: (await call('transport', { model, values: x, encode: true, options })).values, image: x };
  }

  const show = (i) => {
    if (!st.frames.length) return;
    drawScaled($('it-canvas'), st.frames[i], st.shape);
    $('it-pos').value = `${i} / ${st.frames.length - 1}`;
  };
  $('it-slider').addEventListener('input', () => show(Number($('it-slider').value)));
  $('it-download').addEventListener('click', () => {
    const frames = [...$('it-strip').querySelectorAll('canvas')];
    if (frames.length) ctx.downloadCanvas(tileCanvases(frames, frames.length), `scorelab-${$('it-model').value}-interpolation.png`);
  });

  $('it-run').addEventListener('click', async () => {
    if (!ctx.checkForm($('it-run').closest('form'), $('it-status'))) return;
    const model = $('it-model').value;
    const config = await loadModel(model);
    const cls = $('it-class').value === '' ? null : Number($('it-class').value);
    const options = { solver: $('it-solver').value, steps: Number($('it-steps').value), class: cls };
    const frames = Number($('it-frames').value);
    $('it-run').disabled = true; $('it-cancel').disabled = false;
    const t0 = performance.now();
    try {
      $('it-status').classList.remove('error');
      $('it-status').textContent = 'encoding the endpoints…';
      const a = await endpoint($('it-a-kind').value, $('it-a').value, $('it-a-file').files[0], model, config, options);
      const b = await endpoint($('it-b-kind').value, $('it-b').value, $('it-b-file').files[0], model, config, options);
      $('it-status').textContent = `decoding ${frames} frames…`;
      const positions = Array.from({ length: frames }, (_, i) => i / (frames - 1));
      const out = await call('interpolate', { model, a: a.latent, b: b.latent, positions, options }, (ev) => {
        if (ev.kind === 'step') $('it-status').textContent = `decoding ${frames} frames: step ${ev.info.step} · ${ev.info.evals} evaluations`;
      });
      st.shape = [config.data.height, config.data.width, config.data.channels];
      const per = st.shape[0] * st.shape[1] * st.shape[2];
      st.frames = positions.map((_, i) => out.values.slice(i * per, (i + 1) * per));
      const strip = $('it-strip');
      strip.innerHTML = '';
      st.frames.forEach((f, i) => { const c = document.createElement('canvas'); drawImage(c, f, st.shape); c.title = `frame ${i}`; strip.appendChild(c); });
      Object.assign($('it-slider'), { max: String(frames - 1), value: '0', disabled: false });
      show(0);
      // The end frames decode the encoded endpoints: how faithful the round trip is.
      const trips = [[a.image, st.frames[0], 'A'], [b.image, st.frames[frames - 1], 'B']].filter(([x]) => x);
      const psnrs = trips.map(([x, y, name]) => [name, psnr(x, y)]);
      const fidelity = psnrs.length ? `; round trip ${psnrs.map(([name, db]) => `${name} ${db.toFixed(1)} dB`).join(', ')} PSNR` : '';
      $('it-canvas').dataset.psnr = psnrs.map(([, db]) => db.toFixed(2)).join(',');
      $('it-status').textContent = `${frames} frames cached in ${((performance.now() - t0) / 1000).toFixed(1)} s (${out.evals} evaluations for the strip)${fidelity}: scrub the slider`;
      $('it-canvas').dataset.frames = String(frames);
      $('it-download').disabled = false;
    } catch (e) {
      $('it-status').textContent = e.message === 'cancelled' ? 'cancelled' : `error: ${e.message}`;
      $('it-status').classList.toggle('error', e.message !== 'cancelled');
    } finally { $('it-run').disabled = false; $('it-cancel').disabled = true; }
  });
}
