// Browser benchmark: the page's lab in headless Chromium, on WebGPU and on the CPU backend, side by
// side in one run. Prints a markdown table of median ms per network evaluation (the worker's `eps`)
// and of one Generate click (8 digits, DDIM 20) from click to finished grid.
// With ORT_WEB (onnxruntime-web's dist folder) and ONNX (a folder with digits.onnx from
// `python -m train.bench --onnx`), the same browser also times onnxruntime-web on that network
// (wasm with 1 and 2 threads, cross-origin isolated; WebGPU), after checking its output against
// the page's. With ENGINE_BEFORE (another build's www folder) the WebGPU engine table compares the
// two alternately. Run by `./build.sh bench` after `./build.sh build`.
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from '../tests/e2e/server.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPS = 7;
// The engine table's evaluations: its CPU-side times are tenths of a millisecond, where one
// descheduling of the worker on this 2-core machine moves a median of 7.
const ENGINE_REPS = 15;
const args = (process.env.BROWSER_ARGS || '--enable-unsafe-webgpu --no-sandbox --disable-dev-shm-usage').split(' ');
const server = await serve(path.join(ROOT, 'www'));
const base = `http://127.0.0.1:${server.address().port}/`;
// Cross-origin isolated origins: onnxruntime-web's wasm threads need it, and the engine table
// needs the 5 us timer it brings (performance.now() is coarsened to 100 us without it).
const ISOLATED = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };
const engineServer = await serve(path.join(ROOT, 'www'), ISOLATED);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
const median = (v) => [...v].sort((a, b) => a - b)[v.length >> 1];

/** Median ms of `eps` on `model` at batch `n`, and of one Generate click, for one backend. */
async function measure(backend, model, batches, workers) {
  const page = await browser.newPage();
  await page.goto(`${base}?backend=${backend}&workers=${workers}#model=${model}&sampler=ddim&steps=20&seed=1&batch=8&class=3`);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
  await page.waitForFunction((m) => window.scorelab.configs.has(m), model, { timeout: 120_000 });
  const kind = await page.evaluate((m) => window.scorelab.runsOn.get(m).backend, model);
  const evals = {};
  for (const n of batches) {
    evals[n] = await page.evaluate(async ({ model, n, reps }) => {
      const c = window.scorelab.client;
      const d = window.scorelab.configs.get(model).data;
      const per = d.kind === 'points' ? d.dim : d.height * d.width * d.channels;
      const x = new Float32Array(n * per).map((_, i) => Math.sin(i));
      const times = [];
      for (let r = 0; r <= reps; r++) {
        const t0 = performance.now();
        await c.call('eps', { model, x: x.slice(), t: 0.5, options: {} });
        if (r > 0) times.push(performance.now() - t0);
      }
      return times;
    }, { model, n, reps: REPS });
  }
  const clicks = [];
  for (let r = 0; r < 3; r++) {
    const prev = await page.$eval('#output', (o) => o.dataset.done || '');
    const t0 = Date.now();
    await page.click('#generate');
    await page.waitForFunction((p) => (document.querySelector('#output').dataset.done || '') !== p, prev, { timeout: 600_000 });
    clicks.push(Date.now() - t0);
  }
  await page.close();
  return { kind, evals: Object.fromEntries(Object.entries(evals).map(([n, t]) => [n, median(t)])), click: median(clicks) };
}

/** Median ms of one onnxruntime-web evaluation of digits.onnx at batch `n`, and its output for
 *  the benchmark's input at batch 1 (checked against the page's). */
async function measureOrt(origin, ep, threads, batches) {
  const page = await browser.newPage();
  await page.goto(`${origin}index.html`);
  const out = await page.evaluate(async ({ ep, threads, batches, reps }) => {
    if (!crossOriginIsolated && threads > 1) throw new Error('not cross-origin isolated');
    const ort = await import('/ort.all.min.mjs');
    ort.env.wasm.numThreads = threads;
    ort.env.wasm.wasmPaths = '/';
    const session = await ort.InferenceSession.create('/digits.onnx', { executionProviders: [ep] });
    const feeds = (n) => ({
      x: new ort.Tensor('float32', new Float32Array(n * 1024).map((_, i) => Math.sin(i % 1024)), [n, 1, 32, 32]),
      t: new ort.Tensor('float32', new Float32Array(n).fill(0.5), [n]),
      labels: new ort.Tensor('int64', new BigInt64Array(n).fill(10n), [n]),
    });
    const first = Array.from((await session.run(feeds(1))).eps.data);
    const evals = {};
    for (const n of batches) {
      const f = feeds(n);
      const times = [];
      for (let r = 0; r <= reps; r++) {
        const t0 = performance.now();
        await session.run(f);
        if (r > 0) times.push(performance.now() - t0);
      }
      evals[n] = times.sort((a, b) => a - b)[times.length >> 1];
    }
    return { evals, first };
  }, { ep, threads, batches, reps: REPS });
  await page.close();
  return out;
}

/** The page's eps for the benchmark input (batch 1, t 0.5, no class). */
async function pageEps() {
  const page = await browser.newPage();
  await page.goto(`${base}?backend=cpu#model=digits`);
  await page.waitForFunction(() => window.scorelab && window.scorelab.configs.has('digits'), null, { timeout: 120_000 });
  const v = await page.evaluate(async () => Array.from((await window.scorelab.client.call('eps', { model: 'digits', x: new Float32Array(1024).map((_, i) => Math.sin(i)), t: 0.5, options: {} })).values));
  await page.close();
  return v;
}

/** The WebGPU engine's CPU side, counted in the worker (gpu_counters.js): per evaluation at batch
 *  `n`, the median ms from the call to its submit and to its result, and the dispatches, buffers and bind groups
 *  created, submits and uploads, from the second evaluation on. */
async function measureEngine(batches, origin = `http://127.0.0.1:${engineServer.address().port}/`) {
  const page = await browser.newPage();
  await page.goto(`${origin}models/index.json`); // any same-origin document
  const out = await page.evaluate(async ({ batches, reps }) => {
    const { LabClient } = await import('/lab.js');
    const c = new LabClient('/worker.js');
    await c.call('init', { backend: 'webgpu', countGpu: true });
    const bytes = new Uint8Array(await (await fetch('/models/digits.safetensors')).arrayBuffer());
    await c.call('load', { name: 'digits', bytes });
    const res = {};
    for (const n of batches) {
      const x = new Float32Array(n * 1024).map((_, i) => Math.sin(i));
      const encode = [];
      const submitCall = [];
      const wall = [];
      let first = null;
      let last = null;
      for (let r = 0; r <= reps; r++) {
        const t0 = performance.now();
        const o = await c.call('eps', { model: 'digits', x: x.slice(), t: 0.5, options: {} });
        if (r === 0) { first = o.counts; continue; }
        wall.push(performance.now() - t0);
        encode.push(o.encodeMs);
        submitCall.push(o.submitMs);
        last = o.counts;
      }
      const per = (k) => (last[k] - first[k]) / reps;
      res[n] = { encode, submitCall, wall, dispatches: per('dispatchWorkgroups'), createBuffer: per('createBuffer'), createBindGroup: per('createBindGroup'), submit: per('submit'), writeBuffer: per('writeBuffer') };
    }
    c.worker.terminate();
    return res;
  }, { batches, reps: ENGINE_REPS });
  await page.close();
  for (const r of Object.values(out)) { r.encode = median(r.encode); r.submitCall = median(r.submitCall); r.wall = median(r.wall); }
  return out;
}

const version = browser.version();
const rows = []; // [backend, workers, measurements]
const cores = Math.min(4, await (async () => { const p = await browser.newPage(); const n = await p.evaluate(() => navigator.hardwareConcurrency); await p.close(); return n; })());
// BACKENDS=cpu skips the (slow, on a software adapter) WebGPU rows while tuning the CPU backend;
// ENGINE_ONLY=1 skips the page's rows and measures only the WebGPU engine table below.
for (const backend of process.env.ENGINE_ONLY ? [] : (process.env.BACKENDS || 'webgpu,cpu').split(',')) {
  for (const workers of backend === 'cpu' && cores > 1 ? [1, cores] : [1]) rows.push([backend, workers, await measure(backend, 'digits', [1, 8], workers)]);
}
const ortRows = [];
if (process.env.ORT_WEB && process.env.ONNX) {
  // One folder with onnxruntime-web's files, the model and an empty page, served cross-origin
  // isolated so that its wasm threads can run.
  const dir = fs.mkdtempSync('/tmp/scorelab-ort-');
  for (const f of fs.readdirSync(process.env.ORT_WEB)) if (/^ort/.test(f) && !f.endsWith('.map')) fs.copyFileSync(path.join(process.env.ORT_WEB, f), path.join(dir, f));
  fs.copyFileSync(path.join(process.env.ONNX, 'digits.onnx'), path.join(dir, 'digits.onnx'));
  fs.writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>onnxruntime-web</title>');
  const ortServer = await serve(dir, ISOLATED);
  const origin = `http://127.0.0.1:${ortServer.address().port}/`;
  const want = await pageEps();
  for (const [name, ep, threads] of [['onnxruntime-web wasm, 1 thread', 'wasm', 1], ['onnxruntime-web wasm, 2 threads', 'wasm', 2], ['onnxruntime-web WebGPU', 'webgpu', 1]]) {
    if (!rows.some(([backend]) => backend === (ep === 'wasm' ? 'cpu' : 'webgpu'))) continue;
    const r = await measureOrt(origin, ep, threads, [1, 8]);
    const diff = r.first.reduce((m, v, i) => Math.max(m, Math.abs(v - want[i])), 0);
    if (!(diff < 1e-3)) throw new Error(`${name}: output differs from the page's by ${diff}`);
    ortRows.push([name, r.evals, diff]);
  }
  ortServer.close();
}
console.log(`Headless Chromium ${version}, digits U-Net; median of ${REPS} evaluations, 3 clicks.\n`);
console.log('| backend in the page | eps, batch 1 (ms) | eps, batch 8 (ms) | Generate 8 digits, DDIM 20 (s) |');
console.log('|---|---|---|---|');
for (const [name, workers, r] of rows) console.log(`| scorelab, ${name === 'cpu' ? `CPU backend (wasm SIMD, ${workers} worker${workers > 1 ? 's' : ''})` : 'WebGPU'} | ${r.evals[1].toFixed(1)} | ${r.evals[8].toFixed(1)} | ${(r.click / 1000).toFixed(2)} |`);
for (const [name, evals] of ortRows) console.log(`| ${name} | ${evals[1].toFixed(1)} | ${evals[8].toFixed(1)} | |`);
const gpu = rows.find((r) => r[0] === 'webgpu')?.[2];
const cpu = rows.find((r) => r[0] === 'cpu' && r[1] === 1)?.[2];
const pool = rows.find((r) => r[0] === 'cpu' && r[1] > 1);
if (gpu && cpu) console.log(`\nCPU backend vs WebGPU in this browser: ${(gpu.evals[1] / cpu.evals[1]).toFixed(1)}x at batch 1, ${(gpu.evals[8] / cpu.evals[8]).toFixed(1)}x at batch 8, ${(gpu.click / cpu.click).toFixed(1)}x per Generate.`);
for (const [name, evals, diff] of ortRows) {
  const [ours, label] = name.includes('WebGPU') ? [gpu, 'scorelab WebGPU'] : [cpu, 'scorelab CPU'];
  if (!ours) continue;
  console.log(`${name} (output within ${diff.toExponential(1)} of the page's) / ${label}, time ratio (above 1: scorelab is faster): ${(evals[1] / ours.evals[1]).toFixed(2)} at batch 1, ${(evals[8] / ours.evals[8]).toFixed(2)} at batch 8.`);
  if (pool && !name.includes('WebGPU')) console.log(`${name} / scorelab CPU with ${pool[1]} workers: ${(evals[1] / pool[2].evals[1]).toFixed(2)} at batch 1, ${(evals[8] / pool[2].evals[8]).toFixed(2)} at batch 8.`);
}
if (process.env.ENGINE_ONLY || rows.some(([backend]) => backend === 'webgpu')) {
  // ENGINE_BEFORE: the www folder of another build (say, the commit before a kernel change); its
  // engine and this one are then measured alternately, twice each, in this browser.
  const before = process.env.ENGINE_BEFORE ? await serve(process.env.ENGINE_BEFORE, ISOLATED) : null;
  const runs = [];
  if (before) {
    const beforeBase = `http://127.0.0.1:${before.address().port}/`;
    for (const round of [1, 2]) {
      runs.push([`before ${round}`, await measureEngine([1, 8], beforeBase)]);
      runs.push([`after ${round}`, await measureEngine([1, 8])]);
    }
    before.close();
  } else {
    runs.push(['', await measureEngine([1, 8])]);
  }
  console.log(`\nWebGPU engine, CPU side, per digits evaluation (median of ${ENGINE_REPS}, after the first)${before ? `; before = ${process.env.ENGINE_BEFORE}` : ''}:\n`);
  console.log('| run | batch | call to submit (ms) | the submit call (ms) | call to result (ms) | dispatches | createBuffer | createBindGroup | submits | writeBuffer |');
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  // A build from before the submit call was timed on its own has no figure for it.
  const ms = (v, digits) => (Number.isFinite(v) ? v.toFixed(digits) : 'n/a');
  for (const [run, engine] of runs) {
    for (const [n, r] of Object.entries(engine)) console.log(`| ${run} | ${n} | ${ms(r.encode, 2)} | ${ms(r.submitCall, 2)} | ${ms(r.wall, 0)} | ${r.dispatches} | ${r.createBuffer} | ${r.createBindGroup} | ${r.submit} | ${r.writeBuffer} |`);
  }
}
await browser.close();
server.close();
engineServer.close();
