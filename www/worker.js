// The worker owns the wasm module, the GPU device and the models, so the page never freezes.
// Requests run one at a time (the lab is a single mutable object); a cancel only sets a flag that
// the running request's progress callback reads between sampler steps.
import init, { open_lab, samplers } from './pkg/scorelab.js';

let lab = null;
let queue = Promise.resolve();
const cancelled = new Set();
const MODEL_CACHE = 'scorelab-models-v1';

async function fetchModel(url) {
  // Cached after the first load (Cache API where available, e.g. not on file://).
  if (self.caches) {
    const cache = await caches.open(MODEL_CACHE);
    let res = await cache.match(url);
    if (!res) {
      res = await fetch(url);
      if (!res.ok) throw new Error(`could not load ${url}: HTTP ${res.status}`);
      await cache.put(url, res.clone());
    }
    return new Uint8Array(await res.arrayBuffer());
  }
  const res = await fetch(url);
  if (!res.ok) throw new Error(`could not load ${url}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
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
    await init();
    lab = await open_lab(backend || null);
    return { backend: lab.backend(), samplers: samplers() };
  },
  async load({ name, url }) {
    const bytes = await fetchModel(url);
    return { config: lab.load_model(name, bytes), bytes: bytes.length };
  },
  async sample({ model, options, previewEvery, trace }, id) {
    const t0 = performance.now();
    const out = await lab.sample(model, options, progressFor(id, { previewEvery, trace }));
    return { ...out, ms: performance.now() - t0 };
  },
  async eps({ model, x, t, options }) {
    return { values: await lab.eps(model, x, t, options || {}) };
  },
  async inpaint({ model, images, mask, options, previewEvery }, id) {
    return lab.inpaint(model, images, mask, options, progressFor(id, { previewEvery }));
  },
  async colorize({ model, images, options, previewEvery }, id) {
    return lab.colorize(model, images, options, progressFor(id, { previewEvery }));
  },
  async transport({ model, values, encode, options }, id) {
    return lab.transport(model, values, encode, options, progressFor(id, {}));
  },
  async interpolate({ model, a, b, positions, options }, id) {
    return lab.interpolate(model, a, b, positions, options, progressFor(id, {}));
  },
  async seedLatent({ model, seed }) {
    return { values: lab.seed_latent(model, seed) };
  },
  async likelihood({ model, values, options, cls, seed }, id) {
    return lab.likelihood(model, values, options, cls ?? null, seed || 0, progressFor(id, {}));
  },
  async densityGrid({ model, options, cls }, id) {
    return lab.density_grid(model, options, cls ?? null, progressFor(id, {}));
  },
};

self.onmessage = (e) => {
  const { id, op, args } = e.data;
  if (op === 'cancel') { cancelled.add(args.target); return; }
  queue = queue.then(async () => {
    try {
      if (!ops[op]) throw new Error(`unknown operation ${op}`);
      if (op !== 'init' && !lab) throw new Error('the lab is not initialised');
      const result = await ops[op](args || {}, id);
      const transfer = result && result.values ? [result.values.buffer] : [];
      self.postMessage({ id, kind: 'result', result }, transfer);
    } catch (err) {
      self.postMessage({ id, kind: 'error', message: String(err && err.message || err) });
    } finally {
      cancelled.delete(id);
    }
  });
};
