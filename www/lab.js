// A promise-based client of the worker.
export class LabClient {
  constructor(url = './worker.js') {
    this.worker = new Worker(url, { type: 'module' });
    this.next = 1;
    this.pending = new Map();
    this.worker.onmessage = (e) => this.onMessage(e.data);
    this.worker.onerror = (e) => {
      for (const p of this.pending.values()) p.reject(new Error(e.message || 'worker failed'));
      this.pending.clear();
    };
  }

  onMessage(msg) {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.kind === 'result') { this.pending.delete(msg.id); p.resolve(msg.result); }
    else if (msg.kind === 'error') { this.pending.delete(msg.id); p.reject(new Error(msg.message)); }
    else if (p.onEvent) p.onEvent(msg);
  }

  /** Starts an operation; returns {id, done: Promise}. `onEvent` receives step and preview events. */
  start(op, args, onEvent) {
    const id = this.next++;
    const done = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, onEvent }));
    this.worker.postMessage({ id, op, args });
    return { id, done };
  }

  call(op, args, onEvent) { return this.start(op, args, onEvent).done; }

  cancel(id) { this.worker.postMessage({ id: 0, op: 'cancel', args: { target: id } }); }
}
