// The Restore tab: super-resolution, denoising and deblurring (sampling p(x | y) for a measurement
// y of an image) and SDEdit from a sketch. The input is an example, the last generated image, an
// upload or a drawing; the page measures it (or takes a small upload as the measurement itself),
// restores a few variations and says how closely each one reproduces the measurement.
import { drawImage, exampleValues, fromImageData, imageValues, tileCanvases } from './draw.js';

const $ = (id) => document.getElementById(id);

const HELP = {
  sdedit: 'The image is noised to the strength (0 keeps it, 1 is pure noise) and denoised: a rough drawing becomes a sample that follows its layout. "Keep region" paints what must stay exactly as drawn.',
  superres: 'The measurement is the image averaged over factor x factor blocks. Projection and RePaint keep it exactly (every result averages back to it); the likelihood gradient keeps it approximately. An upload no larger than the model size / factor is taken as the measurement itself.',
  denoise: 'The measurement is the image plus Gaussian noise of std σ (images span -1 to 1). The task\'s own method starts the reverse process at the time whose noise level is σ (exact with a stochastic sampler); the likelihood gradient starts from pure noise.',
  deblur: 'The measurement is the image blurred by a Gaussian of the width. The blur has no stable inverse, so the likelihood gradient keeps the measurement (approximately) whatever method is chosen.',
};

export function setupRestore(ctx) {
  const { client, loadModel } = ctx;
  const st = { model: null, shape: null, values: null, direct: null, keep: null, keepMode: false, running: null, sketch: null, measured: null };
  const view = $('ed-canvas');
  for (const m of ctx.models.filter((m) => m !== 'toy2d')) $('ed-model').add(new Option(m, m));

  const task = () => $('ed-task').value;
  const showFields = () => {
    for (const el of $('ed-form').querySelectorAll('[data-task]')) {
      el.hidden = !el.dataset.task.split(' ').includes(task());
      // A method the task cannot take (only a block mean can be projected onto) is not offered.
      if (el.tagName === 'OPTION') el.disabled = el.hidden;
    }
    if ($('ed-method').selectedOptions[0].disabled) $('ed-method').value = '';
    for (const el of $('ed-form').querySelectorAll('[data-source]')) el.hidden = el.dataset.source !== $('ed-source').value;
    $('ed-help').textContent = HELP[task()];
  };

  // The input canvas: the image (or the drawing) with the kept region tinted green.
  const redraw = () => {
    if (!st.shape) return;
    const g = view.getContext('2d');
    g.imageSmoothingEnabled = false;
    if ($('ed-source').value === 'sketch') g.drawImage(st.sketch, 0, 0, view.width, view.height);
    else {
      const small = document.createElement('canvas');
      if (st.direct) drawImage(small, st.direct.values, st.direct.shape);
      else drawImage(small, st.values, st.shape);
      g.drawImage(small, 0, 0, view.width, view.height);
    }
    if (st.keep && st.keep.some((k) => k > 0)) {
      const [h, w] = st.shape;
      const sx = view.width / w, sy = view.height / h;
      g.fillStyle = 'rgba(40, 200, 80, 0.4)';
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if (st.keep[y * w + x] > 0) g.fillRect(x * sx, y * sy, sx, sy);
    }
  };

  async function load() {
    const model = $('ed-model').value;
    const config = await loadModel(model);
    const shape = [config.data.height, config.data.width, config.data.channels];
    const [h, w, c] = shape;
    ctx.fillClasses($('ed-class'), config);
    Object.assign(st, { model, shape, direct: null, keep: new Float32Array(h * w) });
    const source = $('ed-source').value;
    if (source === 'sketch') {
      // A blank page in the data's background colour; the pen draws in the other.
      st.sketch = new OffscreenCanvas(view.width, view.height);
      const g = st.sketch.getContext('2d');
      const light = model === 'emoji';
      g.fillStyle = light ? '#ffffff' : '#000000';
      g.fillRect(0, 0, view.width, view.height);
      if (!$('ed-color').dataset.touched) $('ed-color').value = light ? '#e8a317' : '#ffffff';
      st.values = null;
    } else if (source === 'upload') {
      const file = $('ed-upload').files[0];
      if (!file) throw new Error('choose an image file to upload');
      const factor = Number($('ed-factor').value);
      const bitmap = await createImageBitmap(file);
      if (task() === 'superres' && bitmap.width <= w / factor && bitmap.height <= h / factor) {
        const small = [h / factor, w / factor, c];
        st.direct = { values: await imageValues(file, ...small), shape: small };
        st.values = null;
      } else st.values = await imageValues(file, h, w, c);
    } else if (source === 'generated') {
      st.values = ctx.lastGenerated(model);
      if (!st.values) throw new Error(`generate a ${model} image first (Generate tab)`);
    } else st.values = await exampleValues(model, Number($('ed-example').value) % 16, h, w, c);
    view.dataset.loaded = `${model}:${source}`;
    redraw();
  }
  const loadSafely = () => load().catch((e) => { $('ed-status').textContent = `error: ${e.message}`; $('ed-status').classList.add('error'); });

  // Drawing: the pen on the sketch, or the kept region; pointer events cover mouse, pen and touch.
  let last = null;
  const at = (e) => { const r = view.getBoundingClientRect(); return [(e.clientX - r.left) / r.width, (e.clientY - r.top) / r.height]; };
  const draw = (e) => {
    if (!st.shape) return;
    const [u, v] = at(e);
    const [h, w] = st.shape;
    if (st.keepMode) {
      const rad = Number($('ed-pen').value);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x + 0.5 - u * w) ** 2 + (y + 0.5 - v * h) ** 2 <= rad * rad) st.keep[y * w + x] = 1;
    } else if ($('ed-source').value === 'sketch') {
      const g = st.sketch.getContext('2d');
      g.strokeStyle = $('ed-color').value;
      g.lineCap = 'round';
      g.lineWidth = Number($('ed-pen').value) * view.width / w;
      g.beginPath();
      const [pu, pv] = last || [u, v];
      g.moveTo(pu * view.width, pv * view.height);
      g.lineTo(u * view.width, v * view.height);
      g.stroke();
    }
    last = [u, v];
    redraw();
  };
  view.addEventListener('pointerdown', (e) => { last = null; view.setPointerCapture(e.pointerId); view.dataset.drawing = '1'; draw(e); });
  view.addEventListener('pointermove', (e) => { if (view.dataset.drawing) draw(e); });
  view.addEventListener('pointerup', () => { delete view.dataset.drawing; last = null; });
  $('ed-color').addEventListener('input', () => { $('ed-color').dataset.touched = '1'; });
  $('ed-keep').addEventListener('click', () => { st.keepMode = !st.keepMode; $('ed-keep').setAttribute('aria-pressed', String(st.keepMode)); });
  $('ed-clear').addEventListener('click', () => { if (st.keep && st.keep.some((k) => k > 0)) { st.keep.fill(0); redraw(); } else loadSafely(); });
  $('ed-load').addEventListener('click', loadSafely);
  for (const id of ['ed-model', 'ed-source', 'ed-example', 'ed-upload']) $(id).addEventListener('change', () => { showFields(); loadSafely(); });
  $('ed-task').addEventListener('change', () => {
    // Denoising needs noise to remove; the other measurements start noiseless.
    $('ed-noise').value = task() === 'denoise' ? '0.2' : '0';
    showFields();
    if ($('ed-source').value === 'upload') loadSafely();
  });
  showFields();

  // The input at the model's size: the drawing scaled down (smoothly), or the loaded image.
  const inputValues = () => {
    if ($('ed-source').value !== 'sketch') return st.values;
    const [h, w, c] = st.shape;
    const small = new OffscreenCanvas(w, h);
    const g = small.getContext('2d');
    g.imageSmoothingEnabled = true;
    g.imageSmoothingQuality = 'high';
    g.drawImage(st.sketch, 0, 0, w, h);
    return fromImageData(g.getImageData(0, 0, w, h).data, c);
  };

  const taskOptions = () => {
    switch (task()) {
      case 'superres': return { kind: 'superres', factor: Number($('ed-factor').value) };
      case 'denoise': return { kind: 'denoise', noise: Number($('ed-noise').value) };
      case 'deblur': return { kind: 'deblur', width: Number($('ed-width').value) };
      default: return { kind: 'sdedit', strength: Number($('ed-strength').value) };
    }
  };
  const methodOptions = () => {
    switch (task() === 'sdedit' ? '' : $('ed-method').value) {
      case 'replace': return { kind: 'replace' };
      case 'repaint': return { kind: 'repaint', jump: 5, resample: 2 };
      case 'gradient': return { kind: 'gradient', scale: Number($('ed-scale').value) };
      default: return task() === 'deblur' ? { kind: 'gradient', scale: Number($('ed-scale').value) } : null;
    }
  };

  const rms = (a, b) => { let s = 0; for (let i = 0; i < a.length; i++) s += (a[i] - b[i]) ** 2; return Math.sqrt(s / a.length); };
  const psnr = (a, b) => 10 * Math.log10(4 / Math.max(rms(a, b) ** 2, 1e-12));

  async function run() {
    const status = $('ed-status');
    if (!ctx.checkForm($('ed-form'), status)) return;
    status.classList.remove('error');
    $('ed-run').disabled = true; $('ed-cancel').disabled = false;
    const t0 = performance.now();
    try {
      if (!st.shape || st.model !== $('ed-model').value) await load();
      const { model, shape } = st;
      const [h, w, c] = shape;
      const tk = taskOptions();
      const noise = Number($('ed-noise').value);
      const seed = Number($('ed-seed').value) >>> 0;
      const n = Number($('ed-n').value);
      if (tk.kind !== 'superres' && st.direct) await load(); // a small upload is a super-resolution measurement only
      const x = st.direct ? null : inputValues();
      // The measurement: of the input, or the small upload itself.
      let y = st.direct;
      if (!y) y = tk.kind === 'sdedit' ? { values: x, shape } : await client.call('measure', { model, task: tk, noise, images: x, seed });
      drawImage($('ed-measured'), y.values, y.shape.length === 3 ? y.shape : shape);
      $('ed-measured-cap').textContent = tk.kind === 'sdedit' ? 'input at the model size' : `measurement (${y.shape[0]}x${y.shape[1]})`;
      const keep = tk.kind === 'sdedit' && st.keep.some((k) => k > 0);
      let mask = null;
      if (keep) {
        mask = new Float32Array(h * w * c);
        for (let i = 0; i < h * w; i++) for (let k = 0; k < c; k++) mask[i * c + k] = st.keep[i];
      }
      const ys = new Float32Array(y.values.length * n);
      for (let i = 0; i < n; i++) ys.set(y.values, i * y.values.length);
      const cls = $('ed-class').value === '' ? null : Number($('ed-class').value);
      const options = { task: tk, sampler: { method: $('ed-sampler').value, steps: Number($('ed-steps').value) }, method: methodOptions(), noise, seed, class: cls };
      const job = client.start('restore', { model, y: ys, mask, options, previewEvery: 0 }, (ev) => {
        if (ev.kind === 'step') status.textContent = `step ${ev.info.step}/${ev.info.total} · ${ev.info.evals} evaluations`;
      });
      st.running = job.id;
      const out = await job.done;
      const per = h * w * c;
      const results = Array.from({ length: n }, (_, i) => out.values.slice(i * per, (i + 1) * per));
      const strip = $('ed-results');
      strip.innerHTML = '';
      for (const r of results) { const cv = document.createElement('canvas'); drawImage(cv, r, shape); strip.appendChild(cv); }
      const notes = [`${n} result${n > 1 ? 's' : ''} in ${((performance.now() - t0) / 1000).toFixed(1)} s`];
      if (tk.kind !== 'sdedit') {
        // How closely each result reproduces the measurement: A x against y.
        const again = await client.call('measure', { model, task: tk, noise: 0, images: out.values, seed: 0 });
        const m = y.values.length;
        const dist = results.map((_, i) => rms(again.values.slice(i * m, (i + 1) * m), y.values));
        const exact = options.method ? options.method.kind !== 'gradient' : tk.kind === 'superres';
        const promise = tk.kind === 'denoise' && !options.method ? 'the noisy image is not to be reproduced' : exact ? 'projection: exact' : 'gradient: approximate';
        notes.push(`rms of A x − y: ${dist.map((d) => d.toExponential(1)).join(', ')} (${promise})`);
        strip.dataset.rms = dist.join(',');
      }
      if (x && $('ed-source').value !== 'sketch') {
        const db = results.map((r) => psnr(x, r));
        notes.push(`PSNR against the input: ${db.map((d) => d.toFixed(1)).join(', ')} dB`);
        strip.dataset.psnr = db.join(',');
      }
      status.textContent = notes.join(' · ');
      $('ed-download').disabled = false;
      strip.dataset.done = String(Date.now());
    } catch (e) {
      status.textContent = e.message === 'cancelled' ? 'cancelled' : `error: ${e.message}`;
      status.classList.toggle('error', e.message !== 'cancelled');
    } finally {
      st.running = null;
      $('ed-run').disabled = false; $('ed-cancel').disabled = true;
    }
  }
  $('ed-run').addEventListener('click', run);
  $('ed-cancel').addEventListener('click', () => { if (st.running) client.cancel(st.running); });
  $('ed-download').addEventListener('click', () => {
    const small = document.createElement('canvas');
    if ($('ed-source').value === 'sketch' || !st.values) { small.width = st.shape[1]; small.height = st.shape[0]; small.getContext('2d').drawImage(view, 0, 0, small.width, small.height); } else drawImage(small, st.values, st.shape);
    const measured = document.createElement('canvas');
    measured.width = st.shape[1]; measured.height = st.shape[0];
    const g = measured.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage($('ed-measured'), 0, 0, measured.width, measured.height);
    const tiles = [small, measured, ...$('ed-results').querySelectorAll('canvas')];
    ctx.downloadCanvas(tileCanvases(tiles, tiles.length), `scorelab-${st.model}-${task()}.png`);
  });
  return { load: loadSafely };
}
