// The worker owns the wasm module, the GPU device and the models, so the page never freezes.
// Requests run one at a time (a lab is a single mutable object); a cancel only sets a flag that
// the running request's progress callback reads between sampler steps.
//
// Backends: asked for one ('webgpu' or 'cpu'), the worker opens that lab only. Otherwise ('auto') it
// opens a WebGPU lab and a CPU lab, loads each model into both, times one evaluation on each and
// runs that model on the faster from then on (unless the page passes a choice it remembered).
import init, { open_lab, samplers, destroy_device } from './pkg/scorelab.js';

let labs = {}; // by backend kind: 'webgpu' and/or 'cpu'
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

/** ms of one evaluation of `model` at batch 1 on each lab, after a warm-up; the median of three
 *  when the first timings are within 2x of each other (a clear gap needs no more). */
async function timeEvaluations(model, config) {
  const d = config.data;
  const per = d.kind === 'points' ? d.dim : d.height * d.width * d.channels;
  const x = new Float32Array(per).map((_, i) => Math.sin(i));
  const once = async (lab) => { const t0 = performance.now(); await lab.eps(model, x, 0.5, {}); return performance.now() - t0; };
  const times = {};
  for (const [k, lab] of Object.entries(labs)) { await once(lab); times[k] = [await once(lab)]; }
  const firsts = Object.values(times).map((t) => t[0]);
  if (Math.max(...firsts) < 2 * Math.min(...firsts)) {
    for (const [k, lab] of Object.entries(labs)) times[k].push(await once(lab), await once(lab));
  }
  return Object.fromEntries(Object.entries(times).map(([k, t]) => [k, t.sort((a, b) => a - b)[t.length >> 1]]));
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
function progressFor(id, { previewEvery = 0, trace = false }) {
  return (event) => {
    if (event.kind === 'preview' || event.kind === 'trace') {
      self.postMessage({ id, kind: event.kind, step: event.step, t: event.t, values: event.values }, [event.values.buffer]);
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
  async init({ backend }) {
    wasm = await init();
    for (const lab of Object.values(labs)) lab.free();
    labs = {};
    runsOn.clear();
    const first = await open_lab(backend === 'cpu' ? 'cpu' : null); // WebGPU, or the CPU if none
    labs[first.backend().kind] = first;
    if (!backend && labs.webgpu) labs.cpu = await open_lab('cpu');
    return { backends: Object.fromEntries(Object.entries(labs).map(([k, l]) => [k, l.backend()])), samplers: samplers() };
  },
  /** Loads a model into every lab; with two, runs it on `prefer` or else on the one measured faster. */
  async load({ name, url, sha256, prefer }) {
    const bytes = await fetchModel(url, sha256);
    const kinds = Object.keys(labs);
    let config = null;
    for (const k of kinds) config = labs[k].load_model(name, bytes);
    let measured = null;
    let kind = kinds[0];
    if (kinds.length > 1 && kinds.includes(prefer)) kind = prefer;
    else if (kinds.length > 1) {
      measured = await timeEvaluations(name, config);
      kind = kinds.reduce((a, b) => (measured[b] < measured[a] ? b : a));
    }
    runsOn.set(name, kind);
    return { config, bytes: bytes.length, backend: kind, measured };
  },
  async sample({ model, options, previewEvery, trace }, id) {
    const t0 = performance.now();
    const out = await labFor(model).sample(model, options, progressFor(id, { previewEvery, trace }));
    return { ...out, ms: performance.now() - t0 };
  },
  async eps({ model, x, t, options }) {
    return { values: await labFor(model).eps(model, x, t, options || {}) };
  },
  async inpaint({ model, images, mask, options, previewEvery }, id) {
    return labFor(model).inpaint(model, images, mask, options, progressFor(id, { previewEvery }));
  },
  async colorize({ model, images, options, previewEvery }, id) {
    return labFor(model).colorize(model, images, options, progressFor(id, { previewEvery }));
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
  // For the page tests: what a Rust panic looks like from here.
  async simulateTrap() { throw new WebAssembly.RuntimeError('unreachable'); },
  // For the page tests: what the GPU lab holds (tensor buffers) and the wasm memory.
  async memory() { return { gpu: labs.webgpu ? labs.webgpu.gpu_memory() : null, wasmBytes: wasm.memory.buffer.byteLength }; },
};

self.onmessage = (e) => {
  const { id, op, args } = e.data;
  if (op === 'cancel') { cancelled.add(args.target); return; }
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
