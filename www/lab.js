// A promise-based client of the worker. If the worker dies, its wasm module traps (a Rust panic)
// or its GPU device is lost, the client starts a new worker, re-initialises it (a new device, or
// the CPU backend if none is left) and reloads the models it had, and rejects the calls that were
// pending with a message saying so; later calls work. `onRestart(initResult)` tells the page.
export class LabClient {
  constructor(url = './worker.js') {
    this.url = url;
    this.next = 1;
    this.pending = new Map();
    this.replay = { init: null, loads: new Map() }; // what a new worker needs to catch up
    this.restarts = 0;
    this.onRestart = null;
    this.spawn();
  }

  spawn() {
    this.worker = new Worker(this.url, { type: 'module' });
    this.worker.onmessage = (e) => this.onMessage(e.data);
    this.worker.onerror = (e) => { e.preventDefault(); this.restart(e.message || 'the worker failed'); };
  }

  /** Replaces a dead or poisoned worker; pending calls fail, the lab comes back as it was. */
  restart(reason) {
    this.worker.terminate();
    this.restarts += 1;
    const message = `the lab stopped (${reason}) and was restarted; run it again`;
    for (const p of this.pending.values()) p.reject(new Error(message));
    this.pending.clear();
    this.spawn();
    const { init, loads } = this.replay;
    if (init) this.start('init', init).done.then((r) => this.onRestart && this.onRestart(r), () => {});
    for (const args of loads.values()) this.start('load', args).done.catch(() => {});
  }

  post(id, op, args) { this.worker.postMessage({ id, op, args }); }

  onMessage(msg) {
    if (msg.kind === 'fatal') { this.restart(msg.message); return; }
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.kind === 'result') {
      this.pending.delete(msg.id);
      if (p.op === 'init') this.replay.init = p.args;
      if (p.op === 'load') this.replay.loads.set(p.args.name, p.args);
      p.resolve(msg.result);
    } else if (msg.kind === 'error') { this.pending.delete(msg.id); p.reject(new Error(msg.message)); }
    else if (p.onEvent) p.onEvent(msg);
  }

  /** Starts an operation; returns {id, done: Promise}. `onEvent` receives step and preview events. */
  start(op, args, onEvent) {
    const id = this.next++;
    const done = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, onEvent, op, args }));
    this.post(id, op, args);
    return { id, done };
  }

  call(op, args, onEvent) { return this.start(op, args, onEvent).done; }

  cancel(id) { this.post(0, 'cancel', { target: id }); }
}
