// Counts the WebGPU calls that cost CPU time or stall the queue (wrapping the prototypes, so it
// must run before the lab opens its device), for the browser tests and `./build.sh bench`.
// A fence (onSubmittedWorkDone) that resolves with no later submit means the device ran out of
// queued work: a drain. `submitCalledAt` and `submitReturnedAt` are the performance.now() on
// entering and leaving the latest submit: the call itself is the browser's (it hands the commands
// to the GPU process), the time before it is the caller's encoding.
export function count_webgpu_calls() {
  if (globalThis.webgpuCounts) return;
  const c = globalThis.webgpuCounts = {
    createBuffer: 0, createBindGroup: 0, writeBuffer: 0, submit: 0, dispatchWorkgroups: 0,
    onSubmittedWorkDone: 0, mapAsync: 0, drains: 0, submitCalledAt: 0, submitReturnedAt: 0,
  };
  const wrap = (proto, name, after, before) => {
    const f = proto[name];
    proto[name] = function (...args) {
      c[name]++;
      if (before) before();
      const r = f.apply(this, args);
      return after ? after(r) : r;
    };
  };
  wrap(GPUDevice.prototype, 'createBuffer');
  wrap(GPUDevice.prototype, 'createBindGroup');
  wrap(GPUQueue.prototype, 'writeBuffer');
  wrap(GPUQueue.prototype, 'submit', (r) => { c.submitReturnedAt = performance.now(); return r; },
    () => { c.submitCalledAt = performance.now(); });
  wrap(GPUComputePassEncoder.prototype, 'dispatchWorkgroups');
  wrap(GPUBuffer.prototype, 'mapAsync');
  wrap(GPUQueue.prototype, 'onSubmittedWorkDone', (p) => {
    const submits = c.submit;
    return p.then((v) => { if (c.submit === submits) c.drains++; return v; });
  });
}

/** The counts so far as JSON (null before `count_webgpu_calls`). */
export function webgpu_counts() {
  return JSON.stringify(globalThis.webgpuCounts ?? null);
}
