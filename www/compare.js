// Compare: the same starting noise (same seed) through two or three samplers, side by side.
import { drawImage, drawPoints, tileCanvases } from './draw.js';

const $ = (id) => document.getElementById(id);
const SLOTS = ['a', 'b', 'c'];
const DEFAULTS = { a: 'ddpm', b: 'ddim', c: 'dpm2m' };

export function setupCompare(ctx) {
  const st = { running: null, columns: [], cancelled: false };
  for (const slot of SLOTS) {
    const sel = $(`cmp-${slot}`);
    if (slot !== 'a') sel.add(new Option('none', ''));
    for (const s of ctx.samplers) sel.add(new Option(s.name, s.name));
    sel.value = DEFAULTS[slot];
  }

  async function run() {
    const { model, options } = ctx.generateSettings();
    const config = await ctx.loadModel(model);
    const points = config.data.kind === 'points';
    const shape = [config.data.height, config.data.width, config.data.channels];
    const per = points ? config.data.dim : shape[0] * shape[1] * shape[2];
    const slots = SLOTS.filter((s) => $(`cmp-${s}`).value);
    const out = $('cmp-output');
    out.innerHTML = '';
    st.columns = [];
    st.cancelled = false;
    $('cmp-run').disabled = true; $('cmp-cancel').disabled = false; $('cmp-download').disabled = true;
    try {
      for (const slot of slots) {
        const method = $(`cmp-${slot}`).value, steps = Number($(`cmp-${slot}-steps`).value);
        const col = document.createElement('div');
        const title = Object.assign(document.createElement('h3'), { textContent: `${method} · ${steps} steps` });
        const grid = Object.assign(document.createElement('div'), { className: 'grid' });
        const meta = Object.assign(document.createElement('p'), { className: 'meta', textContent: 'waiting…' });
        col.append(title, grid, meta);
        out.appendChild(col);
        const canvases = points ? [Object.assign(document.createElement('canvas'), { width: 512, height: 512, className: 'points' })]
          : Array.from({ length: options.n }, () => Object.assign(document.createElement('canvas'), { width: shape[1], height: shape[0] }));
        canvases.forEach((c) => grid.appendChild(c));
        const draw = (values) => {
          if (points) drawPoints(canvases[0], values);
          else canvases.forEach((c, i) => drawImage(c, values.subarray(i * per, (i + 1) * per), shape));
        };
        if (st.cancelled) { meta.textContent = 'cancelled'; continue; }
        let evals = 0;
        const job = ctx.client.start('sample', { model, options: { ...options, sampler: { method, steps } }, previewEvery: 0 }, (ev) => {
          if (ev.kind === 'step') { evals = ev.info.evals; meta.textContent = `step ${ev.info.step}/${ev.info.total} · ${evals} evaluations`; }
        });
        st.running = job.id;
        try {
          const result = await job.done;
          draw(result.values);
          meta.textContent = `${evals} evaluations · ${(result.ms / 1000).toFixed(2)} s`;
          col.dataset.evals = String(evals);
          st.columns.push({ method, canvases, values: result.values });
        } catch (e) {
          meta.textContent = e.message === 'cancelled' ? 'cancelled' : `error: ${e.message}`;
          if (e.message === 'cancelled') st.cancelled = true;
          else meta.classList.add('error');
        }
      }
      $('cmp-status').textContent = st.cancelled ? 'cancelled' : `compared ${st.columns.map((c) => c.method).join(', ')} from seed ${options.seed}`;
      out.dataset.done = String(Date.now());
    } finally {
      st.running = null;
      $('cmp-run').disabled = false; $('cmp-cancel').disabled = true;
      $('cmp-download').disabled = st.columns.length === 0;
    }
  }

  function download() {
    if (!st.columns.length) return;
    // One row per sampler.
    const all = st.columns.flatMap((c) => c.canvases);
    const cols = st.columns[0].canvases.length;
    const { model, options } = ctx.generateSettings();
    ctx.downloadCanvas(tileCanvases(all, cols, all[0].width > 64 ? 1 : 4), `scorelab-${model}-compare-seed${options.seed}.png`);
  }

  $('cmp-run').addEventListener('click', run);
  $('cmp-cancel').addEventListener('click', () => { st.cancelled = true; if (st.running) ctx.client.cancel(st.running); });
  $('cmp-download').addEventListener('click', download);
  return st;
}
