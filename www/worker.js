// The worker owns the wasm module, the GPU device and the models, so the page never freezes.
// Requests run one at a time (the lab is a single mutable object); a cancel only sets a flag that
// the running request's progress callback reads between sampler steps.
import init, { open_lab, samplers, destroy_device } from './pkg/scorelab.js';

let lab = null;
let wasm = null;
let queue = Promise.resolve();
const cancelled = new Set();
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
    lab = await open_lab(backend || null);
    return { backend: lab.backend(), samplers: samplers() };
  },
  async load({ name, url, sha256 }) {
    const bytes = await fetchModel(url, sha256);
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
    return lab.likelihood(model, values, options, cls ?? null, seed ?? 0, progressFor(id, {}));
  },
  // For the page tests: what a Rust panic looks like from here.
  async simulateTrap() { throw new WebAssembly.RuntimeError('unreachable'); },
  // For the page tests: what the lab holds (GPU tensor buffers, wasm memory).
  async memory() { return { gpu: lab.gpu_memory(), wasmBytes: wasm.memory.buffer.byteLength }; },
  async densityGrid({ model, options, cls }, id) {
    return lab.density_grid(model, options, cls ?? null, progressFor(id, {}));
  },
};

self.onmessage = (e) => {
  const { id, op, args } = e.data;
  if (op === 'cancel') { cancelled.add(args.target); return; }
  // For the page tests, at once even mid-run: lose the GPU device as a driver reset would.
  if (op === 'destroyDevice') { destroy_device(); return; }
  queue = queue.then(async () => {
    try {
      if (!ops[op]) throw new Error(`unknown operation ${op}`);
      if (op !== 'init' && !lab) throw new Error('the lab is not initialised');
      const result = await ops[op](args || {}, id);
      const transfer = result && result.values ? [result.values.buffer] : [];
      self.postMessage({ id, kind: 'result', result }, transfer);
    } catch (err) {
      // A trap (a Rust panic) leaves the module unusable: the client replaces this worker.
      if (err instanceof WebAssembly.RuntimeError) self.postMessage({ id, kind: 'fatal', message: `internal error in ${op}: ${err.message}` });
      // A lost device never comes back: a new worker opens a new one (or falls back to the CPU).
      else if (lab && lab.device_lost()) self.postMessage({ id, kind: 'fatal', message: `the GPU device was lost during ${op}: ${String(err && err.message || err)}` });
      else self.postMessage({ id, kind: 'error', message: String(err && err.message || err) });
    } finally {
      cancelled.delete(id);
    }
  });
};
