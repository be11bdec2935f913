// Browser benchmark: the page's lab in headless Chromium, on WebGPU and on the CPU backend, side by
// side in one run. Prints a markdown table of median ms per network evaluation (the worker's `eps`)
// and of one Generate click (8 digits, DDIM 20) from click to finished grid.
// Run by `./build.sh bench` after `./build.sh build`.
import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from '../tests/e2e/server.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPS = 7;
const args = (process.env.BROWSER_ARGS || '--enable-unsafe-webgpu --no-sandbox --disable-dev-shm-usage').split(' ');
const server = await serve(path.join(ROOT, 'www'));
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true, args });
const median = (v) => [...v].sort((a, b) => a - b)[v.length >> 1];

/** Median ms of `eps` on `model` at batch `n`, and of one Generate click, for one backend. */
async function measure(backend, model, batches) {
  const page = await browser.newPage();
  await page.goto(`${base}?backend=${backend}#model=${model}&sampler=ddim&steps=20&seed=1&batch=8&class=3`);
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

const version = browser.version();
const rows = [];
for (const backend of ['webgpu', 'cpu']) rows.push([backend, await measure(backend, 'digits', [1, 8])]);
console.log(`Headless Chromium ${version}, digits U-Net; median of ${REPS} evaluations, 3 clicks.\n`);
console.log('| backend in the page | eps, batch 1 (ms) | eps, batch 8 (ms) | Generate 8 digits, DDIM 20 (s) |');
console.log('|---|---|---|---|');
for (const [name, r] of rows) console.log(`| ${name} (${r.kind}) | ${r.evals[1].toFixed(1)} | ${r.evals[8].toFixed(1)} | ${(r.click / 1000).toFixed(2)} |`);
const [gpu, cpu] = rows.map((r) => r[1]);
console.log(`\nCPU backend vs WebGPU in this browser: ${(gpu.evals[1] / cpu.evals[1]).toFixed(1)}x at batch 1, ${(gpu.evals[8] / cpu.evals[8]).toFixed(1)}x at batch 8, ${(gpu.click / cpu.click).toFixed(1)}x per Generate.`);
await browser.close();
server.close();
