// Playground -> Train: the user draws points (or picks a preset) and trains a 2-D score model on
// them in the worker's engine (src/train/): denoising or sliced score matching under the VP,
// sub-VP or VE SDE. Training runs in chunks of steps, so the loss curve and fresh samples update
// as it goes and Stop takes effect between chunks; Train again resumes the same run, Reset starts
// over. The trained model is loaded as "trained" and can be downloaded and loaded back.

const $ = (id) => document.getElementById(id);

const CHUNK = 100; // steps per call to the worker
const SAMPLES_EVERY = 500; // steps between sample previews
const POINTS = 2000; // points a preset draws

/** A small seeded generator (mulberry32) and its normal draws, so presets repeat. */
function generator(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const normal = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

/** `POINTS` points of a preset, in the canvas's [-4, 4]^2. */
function preset(name) {
  const { uniform, normal } = generator(7);
  const out = [];
  for (let i = 0; i < POINTS; i++) {
    let x, y;
    if (name === 'moons') {
      const a = Math.PI * uniform(), upper = i % 2 === 0;
      x = upper ? 1.6 * Math.cos(a) - 0.8 : 1.6 * (1 - Math.cos(a)) - 0.8;
      y = upper ? 1.6 * Math.sin(a) - 0.4 : -1.6 * Math.sin(a) + 0.4;
      x += 0.1 * normal(); y += 0.1 * normal();
    } else if (name === 'gaussians') {
      const c = [[-1.5, 0.5, 0.4, 0.3], [1.5, 1.0, 0.2, 0.5], [0.2, -1.8, 0.3, 0.3]][i % 10 < 5 ? 0 : i % 10 < 8 ? 1 : 2];
      x = c[0] + c[2] * normal(); y = c[1] + c[3] * normal();
    } else if (name === 'ring') {
      const a = 2 * Math.PI * uniform();
      x = 2.2 * Math.cos(a) + 0.12 * normal(); y = 2.2 * Math.sin(a) + 0.12 * normal();
    } else {
      const r = 0.3 + 2.8 * uniform(), a = 3 * r;
      x = r * Math.cos(a) + 0.08 * normal(); y = r * Math.sin(a) + 0.08 * normal();
    }
    out.push(x, y);
  }
  return out;
}

export function setupTrain(ctx) {
  const { client, canvas, toPx, fromPx, onModel } = ctx;
  const st = { points: [], running: false, started: false, losses: [], samples: null, file: null, pen: false };

  const drawScene = () => {
    const g = canvas.getContext('2d');
    g.fillStyle = '#fff'; g.fillRect(0, 0, canvas.width, canvas.height);
    g.fillStyle = 'rgba(90, 90, 90, 0.45)';
    for (let i = 0; i + 1 < st.points.length; i += 2) { const [x, y] = toPx(st.points[i], st.points[i + 1]); g.fillRect(x - 1, y - 1, 2, 2); }
    if (st.samples) {
      g.fillStyle = '#b8274a';
      for (let i = 0; i + 1 < st.samples.length; i += 2) { const [x, y] = toPx(st.samples[i], st.samples[i + 1]); g.fillRect(x - 1.5, y - 1.5, 3, 3); }
    }
    canvas.dataset.points = String(st.points.length / 2);
    ctx.note(st.samples
      ? `the training data (grey, ${st.points.length / 2} points), samples of the model being trained (red) and its score field at t = ${Number($('pg-t').value).toFixed(3)} (arrows)`
      : `the training data: ${st.points.length / 2} points`);
  };

  const drawCurve = () => {
    const c = $('tr-curve'), g = c.getContext('2d');
    g.fillStyle = '#fff'; g.fillRect(0, 0, c.width, c.height);
    const l = st.losses;
    if (l.length < 2) return;
    // The mean of each window of steps, so the curve shows the trend rather than batch noise.
    const w = Math.max(1, Math.floor(l.length / c.width) || 1), means = [];
    for (let i = 0; i + w <= l.length; i += w) means.push(l.slice(i, i + w).reduce((a, b) => a + b, 0) / w);
    const lo = Math.min(...means), hi = Math.max(...means), span = hi - lo || 1;
    g.strokeStyle = '#2747b8'; g.lineWidth = 1.5; g.beginPath();
    means.forEach((v, i) => {
      const x = (i / (means.length - 1)) * (c.width - 8) + 4, y = 6 + (1 - (v - lo) / span) * (c.height - 12);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
    g.fillStyle = '#333'; g.font = '11px sans-serif';
    g.fillText(`loss ${hi.toFixed(3)}`, 6, 12); g.fillText(`${lo.toFixed(3)}`, 6, c.height - 4);
  };

  const status = (text, error = false) => { $('tr-status').textContent = text; $('tr-status').classList.toggle('error', error); };

  const options = () => {
    const [loss, projection] = $('tr-loss').value.split('-');
    return { loss, projection: projection || 'rademacher', sde: $('tr-sde').value, width: Number($('tr-width').value), batch: Number($('tr-batch').value), steps: Number($('tr-steps').value), seed: 0 };
  };

  const setButtons = () => {
    $('tr-train').disabled = st.running;
    $('tr-stop').disabled = !st.running;
    $('tr-train').textContent = st.started && !st.running ? 'Resume' : 'Train';
    for (const id of ['tr-data', 'tr-loss', 'tr-sde', 'tr-width', 'tr-batch']) $(id).disabled = st.running || st.started;
  };

  /** Exports the EMA weights (loaded as "trained") and draws fresh samples over the data. */
  async function refreshModel() {
    const r = await client.call('trainExport', { name: 'trained' });
    st.file = r.file;
    onModel(r.config);
    const s = await client.call('sample', { model: 'trained', options: { sampler: { method: 'sde', steps: 100 }, n: 500, seed: 7 } });
    st.samples = s.values;
    st.config = r.config;
    drawScene();
    await ctx.drawField(r.config);
    // How well the samples land on the data: the median distance to the nearest data point.
    const near = [];
    for (let i = 0; i + 1 < st.samples.length; i += 2) {
      let best = Infinity;
      for (let j = 0; j + 1 < st.points.length; j += 2) best = Math.min(best, Math.hypot(st.samples[i] - st.points[j], st.samples[i + 1] - st.points[j + 1]));
      near.push(best);
    }
    near.sort((a, b) => a - b);
    st.fit = near[near.length >> 1];
    canvas.dataset.fit = String(st.fit);
    const mean = (v) => v.reduce((a, b) => a + b, 0) / v.length;
    $('tr-curve').dataset.lossFirst = String(mean(st.losses.slice(0, 100)));
    $('tr-curve').dataset.lossLast = String(mean(st.losses.slice(-100)));
    $('tr-download').disabled = false;
  }

  async function train() {
    if (st.points.length < 20) { status('Draw some points first (hold and drag on the canvas), or pick a preset.', true); return; }
    if (st.started && st.losses.length >= options().steps) { status(`The run has its ${st.losses.length} steps: raise Steps to train further, or Reset.`, true); return; }
    st.running = true;
    setButtons();
    try {
      const opts = options();
      if (!st.started) {
        const r = await client.call('trainStart', { points: new Float32Array(st.points), options: opts });
        st.started = true; st.losses = []; st.backend = r.backend;
        setButtons();
      }
      const t0 = performance.now(), from = st.losses.length;
      while (st.running && st.losses.length < opts.steps) {
        const r = await client.call('trainSteps', { steps: Math.min(CHUNK, opts.steps - st.losses.length) });
        st.losses.push(...r.losses);
        drawCurve();
        const rate = (st.losses.length - from) / ((performance.now() - t0) / 1000);
        const last = r.losses.reduce((a, b) => a + b, 0) / r.losses.length;
        status(`step ${r.steps}/${opts.steps}: loss ${last.toFixed(4)}, learning rate ${r.lr.toExponential(1)}, ${rate.toFixed(0)} steps/s on the ${st.backend === 'cpu' ? 'CPU engine' : 'WebGPU engine'}`);
        $('tr-curve').dataset.steps = String(r.steps);
        if (r.steps % SAMPLES_EVERY === 0 || r.steps >= opts.steps) await refreshModel();
      }
      if (st.losses.length % SAMPLES_EVERY !== 0) await refreshModel();
      const secs = (performance.now() - t0) / 1000;
      status(`${st.running ? 'Trained' : 'Stopped at'} ${st.losses.length} steps (${secs.toFixed(1)} s this run). Red: 500 samples of the trained model (reverse SDE, 100 steps), median distance to the nearest data point ${st.fit.toFixed(3)}; grey: the data. Model "trained here" is selected above.`);
      canvas.dataset.trained = String(st.losses.length);
    } catch (e) {
      status(`training: ${e.message}`, true);
    } finally {
      st.running = false;
      setButtons();
    }
  }

  function reset() {
    ctx.showTrainView();
    delete canvas.dataset.trained;
    st.running = false; st.started = false; st.losses = []; st.samples = null;
    st.points = $('tr-data').value === 'draw' ? [] : preset($('tr-data').value);
    drawScene(); drawCurve(); setButtons();
    status($('tr-data').value === 'draw' ? 'Hold and drag on the canvas to draw points.' : `${st.points.length / 2} points of the preset.`);
  }

  // Drawing: a spray of points around the pen while it is down (data mode "draw", not started).
  const { uniform, normal } = generator(11);
  const spray = (e) => {
    const r = canvas.getBoundingClientRect();
    const [x, y] = fromPx((e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height);
    for (let k = 0; k < 4; k++) st.points.push(x + 0.08 * normal(), y + 0.08 * normal());
    drawScene();
  };
  const drawing = () => $('tr-data').value === 'draw' && !st.started;
  canvas.addEventListener('pointerdown', (e) => {
    if (!drawing()) return;
    if (!ctx.trainView()) { ctx.showTrainView(); drawScene(); }
    st.pen = true;
    canvas.setPointerCapture(e.pointerId);
    spray(e);
  });
  canvas.addEventListener('pointermove', (e) => { if (st.pen && drawing() && uniform() < 0.9) spray(e); });
  canvas.addEventListener('pointerup', () => { st.pen = false; });

  $('tr-data').addEventListener('change', reset);
  $('tr-train').addEventListener('click', () => { ctx.showTrainView(); drawScene(); train(); });
  $('tr-stop').addEventListener('click', () => { st.running = false; });
  $('tr-reset').addEventListener('click', reset);
  $('tr-download').addEventListener('click', () => {
    if (!st.file) return;
    const a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([st.file], { type: 'application/octet-stream' }));
    a.download = 'scorelab-trained-2d.safetensors';
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  });
  $('tr-open').addEventListener('click', () => $('tr-file').click());
  $('tr-file').addEventListener('change', async () => {
    const f = $('tr-file').files[0];
    if (!f) return;
    try {
      const r = await client.call('load', { name: 'trained', bytes: new Uint8Array(await f.arrayBuffer()) });
      if (r.config.data.kind !== 'points' || r.config.data.dim !== 2) throw new Error(`${f.name} is not a 2-D model`);
      onModel(r.config);
      status(`Loaded ${f.name} (${r.config.sde.type.toUpperCase()} SDE, ${r.config.training.steps ?? '?'} steps) as the model "trained here".`);
    } catch (e) {
      status(`loading ${f.name}: ${e.message}`, true);
    }
    $('tr-file').value = '';
  });
  setButtons();
  return { redraw: drawScene, reset };
}
