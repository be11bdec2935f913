// The page: controls, URL state, drawing. All computation happens in the worker (worker.js).
import { LabClient } from './lab.js';
import { drawImage, drawPoints, tileCanvases, noiseStd } from './draw.js';
import { setupCompare } from './compare.js';
import { setupInpaint, setupInterpolate } from './edit.js';
import { setupRestore } from './restore.js';
import { setupTrain } from './train.js';

const $ = (id) => document.getElementById(id);
const client = new LabClient();
const state = { samplers: [], configs: new Map(), loading: new Map(), runsOn: new Map(), msPerSampleEval: new Map(), running: null, last: null };
state.client = client;
window.scorelab = state; // for tests and the curious

/** One line on where the computation runs: the adapter, and per loaded model the backend that
 *  runs it (with the measurement that chose it, when one did). */
function setBackendText() {
  const el = $('backend');
  const { webgpu, cpu } = state.backends || {};
  const parts = [];
  if (webgpu) {
    const a = webgpu.adapter;
    parts.push(`WebGPU: ${a.name || a.driver || 'unnamed adapter'} (${a.device_type.toLowerCase()}${a.software ? ', a software adapter: correct but slow' : ''})`);
  } else if (cpu && cpu.fallback_reason !== 'requested') {
    parts.push(`No WebGPU here (${cpu.fallback_reason}): the CPU backend runs everything, correct and fast enough for these models`);
  }
  for (const [model, r] of state.runsOn) {
    const name = r.backend === 'cpu' ? `the CPU (wasm SIMD${state.workers > 1 ? `, batches split over ${state.workers} workers` : ''})` : 'WebGPU';
    if (r.measured) {
      const [fast, slow] = r.backend === 'cpu' ? [r.measured.cpu, r.measured.webgpu] : [r.measured.webgpu, r.measured.cpu];
      parts.push(`${model} runs on ${name}: ${fast.toFixed(1)} ms per evaluation vs ${slow.toFixed(1)} ms, ${(slow / fast).toFixed(1)}x faster, measured here`);
    } else parts.push(`${model} runs on ${name}${r.remembered ? ' (measured on an earlier visit)' : ''}`);
  }
  el.textContent = parts.join(' · ') || 'Starting…';
  el.classList.toggle('warn', !webgpu && cpu && cpu.fallback_reason !== 'requested');
}

/** Where the page asks to run: the URL's `?backend=`, else the choice saved in this browser. */
function backendMode() {
  const asked = new URLSearchParams(location.search).get('backend') || localStorage.getItem('scorelab-backend') || 'auto';
  return ['auto', 'webgpu', 'cpu'].includes(asked) ? asked : 'auto';
}

/** Key of a measured choice: per adapter and model, so another GPU measures again. */
function choiceKey(model) {
  const a = state.backends && state.backends.webgpu && state.backends.webgpu.adapter;
  return a ? `scorelab-backend:${a.name}|${a.driver}|${model}` : null;
}

/** Where the time of one evaluation of `model` on the backend running it is remembered. */
function timeKey(model) {
  const key = choiceKey(model);
  const r = state.runsOn.get(model);
  return key && r ? `${key}|${r.backend}|ms` : null;
}

// ---------- URL state ----------
const FIELDS = ['model', 'class', 'guidance', 'clf', 'sampler', 'steps', 'eta', 'tol', 'predictor', 'snr', 'corrector', 'langevin', 'steplr', 'seed', 'batch'];
function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  return Object.fromEntries(FIELDS.filter((f) => p.has(f)).map((f) => [f, p.get(f)]));
}
function writeHash() {
  const p = new URLSearchParams();
  for (const f of FIELDS) p.set(f, $(f).value);
  history.replaceState(null, '', '#' + p.toString());
}

// ---------- models ----------
async function loadModel(name) {
  if (state.configs.has(name)) return state.configs.get(name);
  if (!state.loading.has(name)) {
    const sha256 = state.index && state.index.sha256 ? state.index.sha256[name] : undefined;
    const key = choiceKey(name);
    const prefer = key ? localStorage.getItem(key) : null;
    state.loading.set(name, client.call('load', { name, url: `models/${name}.safetensors`, sha256, prefer }).then((r) => {
      state.configs.set(name, r.config);
      if (key && r.measured) localStorage.setItem(key, r.backend);
      state.runsOn.set(name, { backend: r.backend, measured: r.measured, remembered: !r.measured && prefer === r.backend });
      // The time of one evaluation: measured now, or remembered from the last visit's runs.
      if (r.measured) state.msPerSampleEval.set(name, r.measured[r.backend]);
      else if (timeKey(name) && localStorage.getItem(timeKey(name))) state.msPerSampleEval.set(name, Number(localStorage.getItem(timeKey(name))));
      showSamplerParams();
      setBackendText();
      return r.config;
    }, (e) => {
      state.loading.delete(name); // a failed load can be retried
      throw e;
    }));
  }
  return state.loading.get(name);
}

function fillClasses(select, config, withNone = true) {
  const keep = select.value;
  select.innerHTML = '';
  if (withNone) select.add(new Option('none (unconditional)', ''));
  config.classes.names.forEach((n, i) => select.add(new Option(n.replace(/_/g, ' '), String(i))));
  if ([...select.options].some((o) => o.value === keep)) select.value = keep;
}

function showSamplerParams() {
  const m = $('sampler').value;
  document.querySelectorAll('[data-for]').forEach((el) => { el.hidden = !el.dataset.for.split(' ').includes(m); });
  // The hint of a field this sampler does not have goes with the field.
  const hinted = $('field-hint').dataset.field;
  if (hinted && $(hinted).closest('[hidden]')) { $('field-hint').textContent = ''; delete $('field-hint').dataset.field; }
  const entry = state.samplers.find((s) => s.name === m);
  const few = entry && entry.min_clean_steps && Number($('steps').value) < entry.min_clean_steps;
  $('sampler-help').textContent = !entry ? '' : entry.description + (few
    ? ` — with fewer than ${entry.min_clean_steps} steps this sampler is likely to leave visible noise.` : '');
  $('estimate').textContent = estimateText();
}

/** Network evaluations of one sample in a Generate run with sampler options `o` (null for rk45,
 *  whose step count adapts), and how many samples each evaluation carries. */
function plannedWork({ options }) {
  const o = options.sampler;
  const perStep = { heun: 2, pc: 1 + (o.corrector_steps || 1), annealed: o.langevin_steps || 1 }[o.method] || 1;
  const guided = options.class !== null && options.guidance !== 1 && options.guidance !== 0; // conditional and unconditional
  return { evals: o.method === 'rk45' ? null : o.steps * perStep, samples: options.n * (guided ? 2 : 1) };
}

/** Samples evaluated at once: split over the CPU workers, whole on WebGPU. */
function parallelism(model, samples) {
  const r = state.runsOn.get(model);
  return r && r.backend === 'cpu' ? Math.min(state.workers || 1, samples) : 1;
}

/** "About 1.2 s here": the Generate settings' evaluations times the time of one, as measured on
 *  this machine when the model loaded and refined by every finished run. */
function estimateText() {
  const settings = generateSettings();
  const ms = state.msPerSampleEval.get(settings.model);
  const { evals, samples } = plannedWork(settings);
  if (!ms || !evals || !(samples > 0)) return '';
  const s = (ms * evals * samples) / parallelism(settings.model, samples) / 1000;
  return `About ${s < 10 ? s.toFixed(1) : Math.round(s)} s here: ${evals} evaluations of ${samples} sample${samples > 1 ? 's' : ''} at ${ms.toFixed(1)} ms per sample, measured on this machine.`;
}

/** Checks a form's visible fields; on a bad one, says which and why in `status` (red) and
 *  returns false, so the user sees it where they are looking. */
function checkForm(form, status) {
  const problem = invalidField(form);
  status.classList.toggle('error', Boolean(problem));
  if (problem) status.textContent = `error: ${problem.replace(/\.$/, '')}. Correct it and run again.`;
  return !problem;
}

/** The first visible field of `form` whose value its own limits reject, as a message. */
function invalidField(form) {
  for (const input of form.querySelectorAll('input')) {
    if (input.closest('[hidden]') || input.checkValidity()) continue;
    const label = input.closest('label') ? input.closest('label').firstChild.textContent.trim() : input.id;
    return `${label}: ${input.validationMessage || 'invalid value'}`;
  }
  return null;
}

function samplerOptions() {
  const num = (id) => Number($(id).value);
  const method = $('sampler').value;
  const o = { method, steps: num('steps') };
  if (method === 'ddim' || method === 'pc') o.eta = num('eta');
  if (method === 'rk45') { o.rtol = num('tol'); o.atol = num('tol'); }
  if (method === 'pc') { o.predictor = $('predictor').value; o.snr = num('snr'); o.corrector_steps = num('corrector'); }
  if (method === 'annealed') { o.langevin_steps = num('langevin'); o.step_lr = num('steplr'); }
  return o;
}

// ---------- generate ----------
/** The model and sample options set in the Generate form (also used by Compare). */
function generateSettings() {
  const cls = $('class').value === '' ? null : Number($('class').value);
  const options = { sampler: samplerOptions(), seed: Number($('seed').value) >>> 0, n: Number($('batch').value), class: cls, guidance: Number($('guidance').value) };
  const clf = classifierOf($('model').value), scale = Number($('clf').value);
  if (clf && scale > 0) options.classifier = { model: clf, scale };
  return { model: $('model').value, options };
}

/** The shipped classifier for `model` (models/<model>-classifier.safetensors), if any. */
function classifierOf(model) {
  const name = `${model}-classifier`;
  return state.index && (state.index.classifiers || []).includes(name) ? name : null;
}

/** Loads a classifier (for classifier guidance) into the worker once. */
function loadClassifier(name) {
  if (!state.loading.has(name)) {
    const sha256 = state.index && state.index.sha256 ? state.index.sha256[name] : undefined;
    state.loading.set(name, client.call('load', { name, url: `models/${name}.safetensors`, sha256 }).catch((e) => { state.loading.delete(name); throw e; }));
  }
  return state.loading.get(name);
}

async function generate() {
  if (!checkForm($('generate-form'), $('progress-text'))) return;
  const { model, options } = generateSettings();
  const config = await loadModel(model);
  if (options.classifier) await loadClassifier(options.classifier.model);
  const n = options.n;
  writeHash();
  const out = $('output');
  const points = config.data.kind === 'points';
  const canvases = points ? [Object.assign(document.createElement('canvas'), { width: 512, height: 512, className: 'points' })]
    : Array.from({ length: n }, (_, i) => Object.assign(document.createElement('canvas'), { width: config.data.width, height: config.data.height, title: `seed ${options.seed + i}` }));
  // The previous grid stays until this run has something to show (a failed run loses nothing).
  let shown = false;
  const shape = [config.data.height, config.data.width, config.data.channels];
  const per = points ? config.data.dim : shape[0] * shape[1] * shape[2];
  const draw = (values) => {
    if (!shown) { out.replaceChildren(...canvases); shown = true; }
    if (points) drawPoints(canvases[0], values);
    else canvases.forEach((c, i) => drawImage(c, values.subarray(i * per, (i + 1) * per), shape));
  };
  const t0 = performance.now();
  $('progress').value = 0;
  $('progress-text').textContent = 'starting…';
  $('generate').disabled = true; $('cancel').disabled = false; $('download').disabled = true;
  const run = client.start('sample', { model, options, previewEvery: points ? 0 : 1 }, (ev) => {
    if (ev.kind === 'step') {
      const s = (performance.now() - t0) / 1000;
      $('progress').value = ev.info.fraction;
      $('progress-text').textContent = `step ${ev.info.step}/${ev.info.total} · ${(ev.info.step / s).toFixed(1)} steps/s · ${ev.info.evals} evaluations`;
    } else if (ev.kind === 'preview') draw(ev.values);
  });
  state.running = run.id;
  try {
    const result = await run.done;
    draw(result.values);
    const { evals, samples } = plannedWork({ options });
    if (evals) {
      const ms = (result.ms * parallelism(model, samples)) / (evals * samples);
      state.msPerSampleEval.set(model, ms);
      if (timeKey(model)) localStorage.setItem(timeKey(model), String(ms));
    }
    showSamplerParams();
    state.last = { canvases, points, n, seed: options.seed, model, values: result.values, per };
    $('progress').value = 1;
    $('progress-text').textContent = `done: ${n} sample${n > 1 ? 's' : ''} in ${(result.ms / 1000).toFixed(2)} s`;
    $('download').disabled = false;
    $('bpd').disabled = points;
    out.dataset.done = String(Date.now());
  } catch (e) {
    $('progress-text').textContent = e.message === 'cancelled' ? 'cancelled' : `error: ${e.message}`;
    $('progress-text').classList.toggle('error', e.message !== 'cancelled');
    $('download').disabled = shown || !state.last;
  } finally {
    state.running = null;
    $('generate').disabled = false; $('cancel').disabled = true;
  }
}

function downloadCanvas(canvas, name) {
  canvas.toBlob((blob) => {
    const a = Object.assign(document.createElement('a'), { href: URL.createObjectURL(blob), download: name });
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  });
}

/** Bits/dim of one image (values in [-1, 1]) through the ODE likelihood: the settings the page
 *  uses wherever it measures an image. */
const LIKELIHOOD_STEPS = 20;
async function measureBitsPerDim(model, values, onStatus) {
  const r = await client.call('likelihood', { model, values, options: { steps: LIKELIHOOD_STEPS, probe: 'rademacher', dequantize: true }, seed: 0 }, (ev) => {
    if (ev.kind === 'step') onStatus(`likelihood: step ${ev.info.step}/${ev.info.total}`);
  });
  return { bpd: r.bits_per_dim[0], text: `${r.bits_per_dim[0].toFixed(3)} bits/dim (${r.evals} evaluations, ${LIKELIHOOD_STEPS} Heun steps, one Rademacher probe)` };
}

async function bitsPerDim() {
  const last = state.last;
  if (!last || last.points) return;
  $('bpd').disabled = true;
  $('bpd-text').textContent = 'measuring the likelihood of the first sample…';
  try {
    const r = await measureBitsPerDim(last.model, last.values.slice(0, last.per), (t) => { $('bpd-text').textContent = t; });
    $('bpd-text').textContent = `first sample: ${r.text}`;
    $('bpd-text').dataset.bpd = String(r.bpd);
  } catch (e) {
    $('bpd-text').textContent = `error: ${e.message}`;
  } finally { $('bpd').disabled = false; }
}

function downloadPng() {
  const last = state.last;
  if (!last) return;
  const canvas = last.points ? last.canvases[0] : tileCanvases(last.canvases, Math.ceil(Math.sqrt(last.n)));
  downloadCanvas(canvas, `scorelab-${last.model}-seed${last.seed}.png`);
}

// ---------- 2-D playground ----------
const PG = { range: 4, size: 512 };
function pgToPx(x, y) { return [(x / PG.range + 1) / 2 * PG.size, (1 - (y / PG.range + 1) / 2) * PG.size]; }

/** The playground's model: the shipped toy2d (with its class) or the one trained here. */
const pgModel = () => $('pg-model').value;
const pgClass = () => (pgModel() === 'toy2d' ? Number($('pg-class').value) : null);
const pgName = () => (pgModel() === 'toy2d' ? $('pg-class').selectedOptions[0].text : 'the model trained here');
async function pgConfig() {
  const toy = await loadModel('toy2d');
  if (!$('pg-class').options.length) fillClasses($('pg-class'), toy, false);
  $('pg-class-label').hidden = pgModel() !== 'toy2d';
  state.pgView = 'model';
  return pgModel() === 'toy2d' ? toy : state.configs.get('trained');
}

async function drawField() {
  const config = await pgConfig();
  const t = Number($('pg-t').value);
  const ctx = $('pg-canvas').getContext('2d');
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, PG.size, PG.size);
  await drawArrows(pgModel(), config, pgClass(), t);
  $('pg-canvas').dataset.field = String(t);
  delete $('pg-canvas').dataset.density;
  pgNote(`score field of ${pgName()} at t = ${t.toFixed(3)} (arrow length grows with the square root of |score|)`);
}

/** The score of `model` at time t as arrows on a 21x21 grid, over what the canvas shows. */
async function drawArrows(model, config, cls, t, colour = '#2747b8') {
  const k = 21, pts = new Float32Array(k * k * 2);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
    pts[(i * k + j) * 2] = -PG.range + (2 * PG.range) * (j + 0.5) / k;
    pts[(i * k + j) * 2 + 1] = -PG.range + (2 * PG.range) * (i + 0.5) / k;
  }
  const { values } = await client.call('eps', { model, x: pts, t, options: { class: cls } });
  const sigma = noiseStd(config.sde, t);
  const ctx = $('pg-canvas').getContext('2d');
  let maxNorm = 0;
  const scores = Array.from({ length: k * k }, (_, i) => {
    const sx = -values[2 * i] / sigma, sy = -values[2 * i + 1] / sigma;
    maxNorm = Math.max(maxNorm, Math.hypot(sx, sy));
    return [sx, sy];
  });
  const cell = PG.size / k;
  ctx.strokeStyle = colour; ctx.fillStyle = colour; ctx.lineWidth = 1.2;
  scores.forEach(([sx, sy], i) => {
    const [px, py] = pgToPx(pts[2 * i], pts[2 * i + 1]);
    const norm = Math.hypot(sx, sy) || 1;
    const len = 0.45 * cell * Math.sqrt(norm / (maxNorm || 1));
    const dx = sx / norm * len, dy = -sy / norm * len;
    ctx.beginPath(); ctx.moveTo(px, py); ctx.lineTo(px + dx, py + dy); ctx.stroke();
    ctx.beginPath(); ctx.arc(px + dx, py + dy, 1.6, 0, 2 * Math.PI); ctx.fill();
  });
}

function redrawField() {
  drawField().catch((e) => pgNote(`score field: ${e.message}`, true));
}

async function animateTrajectories() {
  await pgConfig();
  const n = 96;
  const options = { sampler: { method: $('pg-sampler').value, steps: Number($('pg-steps').value) }, seed: 1000, n, class: pgClass(), guidance: 1 };
  const paths = [];
  const ctx = $('pg-canvas').getContext('2d');
  const redraw = () => {
    ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, PG.size, PG.size);
    ctx.strokeStyle = 'rgba(39,71,184,0.18)'; ctx.lineWidth = 1;
    for (let i = 0; i < n; i++) {
      ctx.beginPath();
      paths.forEach((p, k) => { const [x, y] = pgToPx(p[2 * i], p[2 * i + 1]); k ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
      ctx.stroke();
    }
    const last = paths[paths.length - 1];
    if (last) { ctx.fillStyle = '#b8274a'; for (let i = 0; i < n; i++) { const [x, y] = pgToPx(last[2 * i], last[2 * i + 1]); ctx.fillRect(x - 1.5, y - 1.5, 3, 3); } }
  };
  $('pg-run').disabled = true;
  try {
    const result = await pgRun('sample', { model: pgModel(), options, trace: true }, (ev) => {
      if (ev.kind === 'trace') { paths.push(ev.values); redraw(); }
    });
    paths.push(result.values);
    redraw();
    $('pg-canvas').dataset.trajectories = String(paths.length);
    delete $('pg-canvas').dataset.density;
    pgNote(`${n} trajectories of ${pgName()}, ${options.sampler.method} with ${options.sampler.steps} steps`);
  } catch (e) {
    pgNote(`trajectories: ${e.message}`, e.message !== 'cancelled');
  } finally { $('pg-run').disabled = false; }
}

/** Nats below the map's maximum that get colour; lower values are clipped to the darkest. */
const DENSITY_SHOWN_NATS = 10;

/** Runs a long playground action with the Cancel button armed for it. */
async function pgRun(op, args, onEvent) {
  const run = client.start(op, args, onEvent);
  state.pgRunning = run.id;
  $('pg-cancel').disabled = false;
  try { return await run.done; } finally { state.pgRunning = null; $('pg-cancel').disabled = true; }
}

function pgNote(text, error = false) {
  $('pg-note').textContent = text;
  $('pg-note').classList.toggle('error', error);
}

/** log p of the chosen distribution on the Rust side's default grid (the canvas's [-4, 4]^2,
 *  exact divergence), coloured linearly over the top DENSITY_SHOWN_NATS nats. */
async function densityHeatmap() {
  await pgConfig();
  $('pg-density').disabled = true;
  const cls = pgClass(), name = pgName();
  pgNote(`log-density of ${name}: starting…`);
  try {
    const r = await pgRun('densityGrid', { model: pgModel(), options: {}, cls }, (ev) => {
      if (ev.kind === 'step') pgNote(`log-density of ${name}: step ${ev.info.step}/${ev.info.total}`);
    });
    const lp = r.log_p, k = Math.round(Math.sqrt(lp.length));
    const hi = lp.reduce((m, v) => Math.max(m, v), -Infinity), lo = hi - DENSITY_SHOWN_NATS;
    const img = new ImageData(k, k);
    lp.forEach((v, i) => {
      const u = Math.min(1, Math.max(0, (v - lo) / DENSITY_SHOWN_NATS));
      img.data.set([255 * Math.min(1, 1.6 * u), 255 * u * u, 90 + 120 * (1 - u), 255], i * 4);
    });
    const small = new OffscreenCanvas(k, k);
    small.getContext('2d').putImageData(img, 0, 0);
    const ctx = $('pg-canvas').getContext('2d');
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(small, 0, 0, PG.size, PG.size);
    const canvas = $('pg-canvas');
    canvas.dataset.density = String(r.evals);
    canvas.dataset.densityMax = String(hi);
    canvas.dataset.densityClass = String(cls);
    pgNote(`log p of ${name}: ${lo.toFixed(1)} nats or less (dark) to ${hi.toFixed(1)} nats (bright), on ${k}x${k} points with ${r.evals} evaluations`);
  } catch (e) {
    pgNote(`log-density: ${e.message}`, e.message !== 'cancelled');
  } finally { $('pg-density').disabled = false; }
}

// ---------- wiring ----------
function selectTab(name) {
  document.querySelectorAll('[role=tab]').forEach((b) => {
    const on = b.id === `tab-${name}`;
    b.setAttribute('aria-selected', String(on));
    $(b.getAttribute('aria-controls')).hidden = !on;
  });
  if (name === 'inpaint' && !$('ip-canvas').dataset.loaded && state.inpaint) state.inpaint.load();
  if (name === 'restore' && !$('ed-canvas').dataset.loaded && state.restore) state.restore.load();
  if (name === 'playground') redrawField();
}

async function start() {
  const firstVisit = !location.hash && !localStorage.getItem('scorelab-visited');
  localStorage.setItem('scorelab-visited', '1');
  // The forms only group controls: Enter in a field must not submit (and reload) the page.
  document.querySelectorAll('form').forEach((f) => f.addEventListener('submit', (e) => e.preventDefault()));
  document.querySelectorAll('[role=tab]').forEach((b) => b.addEventListener('click', () => selectTab(b.id.slice(4))));
  const mode = backendMode();
  $('backend-choice').value = mode;
  $('backend-choice').addEventListener('change', () => {
    // Another backend: a fresh start on it (choosing "fastest" again measures again).
    const choice = $('backend-choice').value;
    localStorage.setItem('scorelab-backend', choice);
    if (choice === 'auto') Object.keys(localStorage).filter((k) => k.startsWith('scorelab-backend:')).forEach((k) => localStorage.removeItem(k));
    const url = new URL(location.href);
    url.searchParams.set('backend', choice);
    location.href = url.href;
  });
  // ?workers=N sets the size of the CPU worker pool (default: the cores, at most 4).
  const workers = Number(new URLSearchParams(location.search).get('workers')) || undefined;
  const { backends, samplers, workers: pool } = await client.call('init', { backend: mode === 'auto' ? null : mode, pool: workers });
  state.backends = backends;
  state.workers = pool;
  setBackendText();
  // After a lost device or a crashed worker the lab comes back, perhaps on another backend.
  client.onRestart = (r) => { state.backends = r.backends; setBackendText(); };
  state.samplers = samplers;
  for (const s of samplers) $('sampler').add(new Option(s.name, s.name));
  const res = await fetch('models/index.json');
  if (!res.ok) throw new Error(`models/index.json: HTTP ${res.status}`);
  const index = await res.json();
  state.index = index;
  for (const m of index.models) $('model').add(new Option(m, m));
  const saved = readHash();
  if (!saved.model) $('model').value = index.models.includes('digits') ? 'digits' : index.models[0];
  // A first visit starts from DDPM at 15 steps: as fast as DPM-Solver++ at 15 (15 evaluations)
  // and, being stochastic, free of the background speckle the deterministic samplers left on a
  // few digits in a hundred with the first weights (64 samples, seed 1: 0 speckled vs 4 with
  // DPM-Solver++; README).
  if (!saved.sampler) {
    $('sampler').value = 'ddpm';
    $('steps').value = '15';
  }
  if (firstVisit) $('batch').value = '8';
  for (const [k, v] of Object.entries(saved)) if (k !== 'class') $(k).value = v;
  $('sampler').addEventListener('change', () => {
    // Each sampler starts from its own step count (the counts differ by 10x between samplers).
    const entry = state.samplers.find((x) => x.name === $('sampler').value);
    if (entry) $('steps').value = String(entry.default_steps);
    showSamplerParams();
  });
  for (const id of ['steps', 'batch', 'guidance', 'class', 'corrector', 'langevin']) $(id).addEventListener('input', showSamplerParams);
  // Each field's range and what it does: as a tooltip, and under the form while it has focus.
  for (const input of $('generate-form').querySelectorAll('input[data-hint]')) {
    input.title = `${input.min}–${input.max}: ${input.dataset.hint}`;
    input.addEventListener('focus', () => {
      $('field-hint').textContent = `${input.closest('label').firstChild.textContent.trim()} (${input.min} to ${input.max}): ${input.dataset.hint}.`;
      $('field-hint').dataset.field = input.id;
    });
  }
  $('class').addEventListener('change', showSamplerParams);
  showSamplerParams();
  const onModel = async () => {
    fillClasses($('class'), await loadModel($('model').value));
    $('clf-label').hidden = !classifierOf($('model').value);
    showSamplerParams();
  };
  $('model').addEventListener('change', onModel);
  await onModel();
  if (saved.class !== undefined) $('class').value = saved.class;
  $('dice').addEventListener('click', () => { $('seed').value = String(crypto.getRandomValues(new Uint32Array(1))[0]); });
  $('generate').addEventListener('click', generate);
  $('cancel').addEventListener('click', () => { if (state.running) client.cancel(state.running); });
  $('download').addEventListener('click', downloadPng);
  $('pg-t').addEventListener('input', () => { $('pg-t-out').value = Number($('pg-t').value).toFixed(3); });
  $('pg-t').addEventListener('change', redrawField);
  $('pg-class').addEventListener('change', redrawField);
  $('pg-model').addEventListener('change', redrawField);
  $('pg-field').addEventListener('click', redrawField);
  $('pg-run').addEventListener('click', animateTrajectories);
  $('pg-density').addEventListener('click', densityHeatmap);
  $('pg-cancel').addEventListener('click', () => { if (state.pgRunning) client.cancel(state.pgRunning); });
  $('pg-download').addEventListener('click', () => downloadCanvas($('pg-canvas'), 'scorelab-toy2d-playground.png'));
  $('bpd').addEventListener('click', bitsPerDim);
  const ctx = {
    client, loadModel, fillClasses, downloadCanvas, measureBitsPerDim, generateSettings, checkForm, models: index.models, samplers,
    lastGenerated: (model) => (state.last && state.last.model === model && !state.last.points ? state.last.values.slice(0, state.last.per) : null),
  };
  state.inpaint = setupInpaint(ctx);
  state.restore = setupRestore(ctx);
  setupInterpolate(ctx);
  state.compare = setupCompare(ctx);
  state.train = setupTrain({
    client,
    canvas: $('pg-canvas'),
    toPx: pgToPx,
    fromPx: (px, py) => [(px / PG.size * 2 - 1) * PG.range, (1 - py / PG.size * 2) * PG.range],
    note: (text) => pgNote(text),
    // The learned score field at the playground's t, in light blue over data and samples.
    drawField: (config) => drawArrows('trained', config, null, Number($('pg-t').value), 'rgba(39, 71, 184, 0.45)'),
    trainView: () => state.pgView === 'train',
    showTrainView: () => { state.pgView = 'train'; },
    onModel: (config) => {
      state.configs.set('trained', config);
      const option = $('pg-model').querySelector('option[value=trained]');
      option.disabled = false;
      $('pg-model').value = 'trained';
      $('pg-class-label').hidden = true;
    },
  });
  $('generate').disabled = false;
  document.body.dataset.ready = 'true';
  // A first visit (no settings in the address, never here before) shows what the lab does at
  // once: one run with the defaults.
  if (firstVisit) generate();
}

start().catch((e) => {
  $('backend').textContent = `Could not start: ${e.message}`;
  $('backend').classList.add('error');
});
