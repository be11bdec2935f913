// The worker owns the wasm module, the GPU device and the models, so the page never freezes.
// Requests run one at a time (a lab is a single mutable object); a cancel only sets a flag that
// the running request's progress callback reads between sampler steps.
//
// Backends: asked for one ('webgpu' or 'cpu'), the worker opens that lab only. Otherwise ('auto') it
// opens a WebGPU lab and a CPU lab, loads each model into both, times one evaluation on each and
// runs that model on the faster from then on (unless the page passes a choice it remembered).
//
// The CPU lab splits a batch across a small pool of helper workers (each a copy of this script with
// its own wasm instance and a copy of the weights): sample i uses seed + i and its own noise
// streams, so a split run gives the images of one worker, bit for bit. rk45 is not split (its step
// size is shared by the batch).
import init, { open_lab, samplers, destroy_device } from './pkg/scorelab.js';
import { LabClient } from './lab.js';

let labs = {}; // by backend kind: 'webgpu' and/or 'cpu'
let trainKind = null; // the lab holding the training run, if any
const runsOn = new Map(); // model name -> backend kind
let wasm = null;
let queue = Promise.resolve();
const cancelled = new Set();

/** The lab that runs `model`. */
function labFor(model) {
  const kind = runsOn.get(model);
  if (!kind) throw new Error(`parameter model: "${model}" is not loaded`);
  return labs[kind];
}

/** Floats in one sample of a model with `config`. */
function valuesPerSample(config) {
  const d = config.data;
  return d.kind === 'points' ? d.dim : d.height * d.width * d.channels;
}

/** ms of one evaluation of `model` at batch 1 on each lab, after a warm-up; the median of three
 *  when the first timings are within 2x of each other (a clear gap needs no more). */
async function timeEvaluations(model, config) {
  const x = new Float32Array(valuesPerSample(config)).map((_, i) => Math.sin(i));
  const once = async (lab) => { const t0 = performance.now(); await lab.eps(model, x, 0.5, {}); return performance.now() - t0; };
  const times = {};
  for (const [k, lab] of Object.entries(labs)) { await once(lab); times[k] = [await once(lab)]; }
  const firsts = Object.values(times).map((t) => t[0]);
  if (Math.max(...firsts) < 2 * Math.min(...firsts)) {
    for (const [k, lab] of Object.entries(labs)) times[k].push(await once(lab), await once(lab));
  }
  return Object.fromEntries(Object.entries(times).map(([k, t]) => [k, t.sort((a, b) => a - b)[t.length >> 1]]));
}

// The CPU worker pool: this worker and `helpers` (started at the first split run).
let poolSize = 1;
const helpers = [];
const modelBytes = new Map(); // model name -> weights, for the helpers
const perSample = new Map(); // model name -> floats per sample
const splitRuns = new Map(); // request id -> [{ client, id }] of its helper parts, for Cancel

/** Helper `i` with `model` loaded, started when first needed. */
async function helper(i, model) {
  if (!helpers[i]) {
    const client = new LabClient(new URL('./worker.js', import.meta.url));
    helpers[i] = { client, ready: client.call('init', { backend: 'cpu', pool: 1 }), models: new Map() };
  }
  const h = helpers[i];
  await h.ready;
  if (!h.models.has(model)) h.models.set(model, h.client.call('load', { name: model, bytes: modelBytes.get(model).slice() }));
  await h.models.get(model);
  return h.client;
}

/** Sample bounds of the parts of a batch of `n` on the CPU pool (one part when not worth it). */
function splitBounds(model, n) {
  const parts = runsOn.get(model) === 'cpu' ? Math.min(poolSize, n) : 1;
  return Array.from({ length: parts + 1 }, (_, i) => Math.round((i * n) / parts));
}

/** Runs the parts of request `id`: `own(first, count)` here and `remote(client, first, count)` on
 *  helpers, in parallel; returns the results in order. A failure or a Cancel stops every part. */
async function runParts(id, model, bounds, own, remote) {
  const parts = [];
  try {
    for (let i = 1; i + 1 < bounds.length; i++) {
      const client = await helper(i - 1, model);
      const run = remote(client, bounds[i], bounds[i + 1] - bounds[i]);
      parts.push({ client, ...run });
    }
    splitRuns.set(id, parts);
    if (cancelled.has(id)) for (const p of parts) p.client.cancel(p.id);
    return await Promise.all([own(bounds[0], bounds[1]), ...parts.map((p) => p.done)]);
  } catch (err) {
    for (const p of parts) p.client.cancel(p.id);
    await Promise.allSettled(parts.map((p) => p.done));
    throw err;
  } finally {
    splitRuns.delete(id);
  }
}

/** Joins the preview or trace events of the parts of a split run: one event for the whole batch
 *  once every part has sent its own for that step. */
function eventJoiner(id, partCount) {
  const waiting = new Map(); // `${kind} ${step}` -> values of each part
  return (part, event) => {
    const key = `${event.kind} ${event.step}`;
    if (!waiting.has(key)) waiting.set(key, new Array(partCount).fill(null));
    const got = waiting.get(key);
    got[part] = event.values;
    if (got.includes(null)) return;
    waiting.delete(key);
    const values = concat(got);
    self.postMessage({ id, kind: event.kind, step: event.step, t: event.t, values }, [values.buffer]);
  };
}

function concat(arrays) {
  const out = new Float32Array(arrays.reduce((s, a) => s + a.length, 0));
  let at = 0;
  for (const a of arrays) { out.set(a, at); at += a.length; }
  return out;
}

const MODEL_CACHE = 'scorelab-models';

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The weights at `url` whose SHA-256 is `sha256` (from models/index.json). The Cache API entry is
 *  keyed by that hash, so replaced weights are fetched anew; a failed or corrupt download is
 *  never cached, and older versions of the same file are dropped. */
async function fetchModel(url, sha256) {
  const key = sha256 ? `${url}?sha256=${sha256}` : url;
  const cache = self.caches && sha256 ? await caches.open(MODEL_CACHE) : null;
  const hit = cache && await cache.match(key);
  if (hit) {
    const bytes = new Uint8Array(await hit.arrayBuffer());
    if (await sha256Hex(bytes) === sha256) return bytes;
    await cache.delete(key); // damaged in storage: fetch again
  }
  const res = await fetch(key);
  if (!res.ok) throw new Error(`could not load ${url}: HTTP ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (sha256 && await sha256Hex(bytes) !== sha256) throw new Error(`${url} arrived damaged (its SHA-256 does not match models/index.json); try again`);
  if (cache) {
    for (const old of await cache.keys()) if (old.url.split('?')[0].endsWith(url) && !old.url.endsWith(key)) await cache.delete(old);
    await cache.put(key, new Response(bytes));
  }
  return bytes;
}

// Step events go to the page; between steps the run asks for a preview (predicted x0) or a trace
// (current x_t) when the page wants one, or stops when it was cancelled.
// In a split run, `join` receives this part's previews and traces instead.
function progressFor(id, { previewEvery = 0, trace = false }, join = null) {
  return (event) => {
    if (event.kind === 'preview' || event.kind === 'trace') {
      if (join) join(0, event);
      else self.postMessage({ id, kind: event.kind, step: event.step, t: event.t, values: event.values }, [event.values.buffer]);
      return undefined;
    }
    self.postMessage({ id, kind: 'step', info: event });
    if (cancelled.has(id)) return 'cancel';
    if (trace) return 'trace';
    if (previewEvery > 0 && (event.step % previewEvery === 0)) return 'preview';
    return undefined;
  };
}

const ops = {
  /** `countGpu`: count WebGPU calls (gpu_counters.js) from now on, for benchmarks. */
  async init({ backend, pool, countGpu }) {
    if (countGpu) (await import('./gpu_counters.js')).count_webgpu_calls();
    wasm = await init();
    poolSize = Math.max(1, Math.min(4, pool ?? (navigator.hardwareConcurrency || 1)));
    for (const lab of Object.values(labs)) lab.free();
    labs = {};
    trainKind = null;
    runsOn.clear();
    const first = await open_lab(backend === 'cpu' ? 'cpu' : null); // WebGPU, or the CPU if none
    labs[first.backend().kind] = first;
    if (!backend && labs.webgpu) labs.cpu = await open_lab('cpu');
    return { backends: Object.fromEntries(Object.entries(labs).map(([k, l]) => [k, l.backend()])), samplers: samplers(), workers: poolSize };
  },
  /** Loads a model into every lab; with two, runs it on `prefer` or else on the one measured faster. */
  async load({ name, url, sha256, prefer, bytes: given }) {
    const bytes = given || await fetchModel(url, sha256);
    modelBytes.set(name, bytes);
    for (const h of helpers) if (h) h.models.delete(name); // reloaded there when next needed
    const kinds = Object.keys(labs);
    let config = null;
    for (const k of kinds) config = labs[k].load_model(name, bytes);
    // A classifier guides the model it is asked for, on that model's lab: nothing to time.
    if (config.arch.type === 'classifier') return { config, bytes: bytes.length, backend: null, measured: null };
    let measured = null;
    let kind = kinds[0];
    if (kinds.length > 1 && kinds.includes(prefer)) kind = prefer;
    else if (kinds.length > 1) {
      measured = await timeEvaluations(name, config);
      kind = kinds.reduce((a, b) => (measured[b] < measured[a] ? b : a));
    }
    runsOn.set(name, kind);
    perSample.set(name, valuesPerSample(config));
    return { config, bytes: bytes.length, backend: kind, measured };
  },
  async sample({ model, options, previewEvery, trace }, id) {
    const t0 = performance.now();
    const lab = labFor(model);
    const n = options && Number.isInteger(options.n) ? options.n : 0;
    // rk45 shares one step size over its batch, and the helpers hold no classifier: those run whole.
    const whole = options && ((options.sampler && options.sampler.method === 'rk45') || options.classifier);
    const bounds = whole ? [0, n] : splitBounds(model, n);
    if (bounds.length <= 2) {
      const out = await lab.sample(model, options, progressFor(id, { previewEvery, trace }));
      return { ...out, ms: performance.now() - t0 };
    }
    const join = eventJoiner(id, bounds.length - 1);
    const part = (first, count) => ({ ...options, seed: ((options.seed ?? 0) + first) >>> 0, n: count });
    const outs = await runParts(id, model, bounds,
      (first, count) => lab.sample(model, part(first, count), progressFor(id, { previewEvery, trace }, join)),
      (client, first, count) => client.start('sample', { model, options: part(first, count), previewEvery, trace }, (e) => {
        if (e.kind === 'preview' || e.kind === 'trace') join(bounds.indexOf(first), e);
      }));
    return { ...outs[0], values: concat(outs.map((o) => o.values)), n, ms: performance.now() - t0 };
  },
  async eps({ model, x, t, options }, id) {
    const lab = labFor(model);
    const per = perSample.get(model);
    const bounds = per && x && x.length % per === 0 ? splitBounds(model, x.length / per) : [0, 0];
    if (bounds.length <= 2) {
      const t0 = performance.now();
      const values = await lab.eps(model, x, t, options || {});
      // With counting on: the CPU time from the call to its one submit (encoding included), and
      // of the submit call itself.
      const counts = globalThis.webgpuCounts;
      return counts
        ? { values, encodeMs: counts.submitCalledAt - t0, submitMs: counts.submitReturnedAt - counts.submitCalledAt, counts: { ...counts } }
        : { values };
    }
    const slice = (first, count) => x.slice(first * per, (first + count) * per);
    const outs = await runParts(id, model, bounds,
      async (first, count) => ({ values: await lab.eps(model, slice(first, count), t, options || {}) }),
      (client, first, count) => client.start('eps', { model, x: slice(first, count), t, options }));
    return { values: concat(outs.map((o) => o.values)) };
  },
  async inpaint({ model, images, mask, options, previewEvery }, id) {
    return labFor(model).inpaint(model, images, mask, options, progressFor(id, { previewEvery }));
  },
  async colorize({ model, images, options, previewEvery }, id) {
    return labFor(model).colorize(model, images, options, progressFor(id, { previewEvery }));
  },
  async measure({ model, task, noise, images, seed }) {
    return labFor(model).measure(model, task, noise ?? 0, images, seed ?? 0);
  },
  async restore({ model, y, mask, options, previewEvery }, id) {
    return labFor(model).restore(model, y, mask ?? null, options, progressFor(id, { previewEvery }));
  },
  async transport({ model, values, encode, options }, id) {
    return labFor(model).transport(model, values, encode, options, progressFor(id, {}));
  },
  async interpolate({ model, a, b, positions, options }, id) {
    return labFor(model).interpolate(model, a, b, positions, options, progressFor(id, {}));
  },
  async seedLatent({ model, seed }) {
    return { values: labFor(model).seed_latent(model, seed) };
  },
  async likelihood({ model, values, options, cls, seed }, id) {
    return labFor(model).likelihood(model, values, options, cls ?? null, seed ?? 0, progressFor(id, {}));
  },
  async densityGrid({ model, options, cls }, id) {
    return labFor(model).density_grid(model, options, cls ?? null, progressFor(id, {}));
  },
  // Training a 2-D model (Playground -> Train) on the CPU lab when there is one (a small MLP is
  // faster there), else on the only lab.
  async trainStart({ points, options }) {
    trainKind = labs.cpu ? 'cpu' : Object.keys(labs)[0];
    labs[trainKind].train_start(points, options);
    return { backend: trainKind };
  },
  async trainSteps({ steps }) {
    if (!trainKind) throw new Error('no training run: start one first');
    return labs[trainKind].train_steps(steps);
  },
  /** The run's EMA weights as a model file, loaded as `name` (on every lab, run on the trainer's). */
  async trainExport({ name }) {
    if (!trainKind) throw new Error('no training run: start one first');
    const bytes = await labs[trainKind].train_export(name);
    const loaded = await ops.load({ name, bytes: bytes.slice(), prefer: trainKind });
    return { ...loaded, file: bytes };
  },
  // For the page tests: what a Rust panic looks like from here.
  async simulateTrap() { throw new WebAssembly.RuntimeError('unreachable'); },
  // For the page tests: what the GPU lab holds (tensor buffers) and the wasm memory.
  async memory() { return { gpu: labs.webgpu ? labs.webgpu.gpu_memory() : null, wasmBytes: wasm.memory.buffer.byteLength }; },
};

self.onmessage = (e) => {
  const { id, op, args } = e.data;
  if (op === 'cancel') {
    cancelled.add(args.target);
    for (const p of splitRuns.get(args.target) || []) p.client.cancel(p.id);
    return;
  }
  // For the page tests, at once even mid-run: lose the GPU device as a driver reset would.
  if (op === 'destroyDevice') { destroy_device(); return; }
  queue = queue.then(async () => {
    try {
      if (!ops[op]) throw new Error(`unknown operation ${op}`);
      if (op !== 'init' && !Object.keys(labs).length) throw new Error('the lab is not initialised');
      const result = await ops[op](args || {}, id);
      const transfer = result && result.values ? [result.values.buffer] : [];
      self.postMessage({ id, kind: 'result', result }, transfer);
    } catch (err) {
      // A trap (a Rust panic) leaves the module unusable: the client replaces this worker.
      if (err instanceof WebAssembly.RuntimeError) self.postMessage({ id, kind: 'fatal', message: `internal error in ${op}: ${err.message}` });
      // A lost device never comes back: a new worker opens a new one (or falls back to the CPU).
      else if (labs.webgpu && labs.webgpu.device_lost()) self.postMessage({ id, kind: 'fatal', message: `the GPU device was lost during ${op}: ${String(err && err.message || err)}` });
      else self.postMessage({ id, kind: 'error', message: String(err && err.message || err) });
    } finally {
      cancelled.delete(id);
    }
  });
};
