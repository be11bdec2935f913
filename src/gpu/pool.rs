//! GPU tensors and the bounded pool their buffers return to when the last handle drops.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Free bytes the pool keeps for reuse; a buffer returned past this is let go, so memory stays
/// bounded however many batch sizes a long session goes through.
pub(super) const POOL_MAX_FREE_BYTES: u64 = 256 << 20;

/// Free tensor buffers by byte size, and a count of every tensor buffer the pool has made.
pub(super) struct Pool {
    pub(super) free: HashMap<u64, Vec<wgpu::Buffer>>,
    pub(super) stats: GpuMemory,
    /// Free bytes kept for reuse; a buffer returned past this is let go.
    pub(super) max_free: u64,
}

/// Tensor buffers held by the GPU backend: in use or free in the shared pool, and those owned by
/// recorded evaluations (the arenas, the readback buffer and the weights' uniforms are fixed and
/// small, and not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct GpuMemory {
    pub buffers: usize,
    pub bytes: u64,
    pub free_buffers: usize,
    pub free_bytes: u64,
    /// Recorded evaluations kept for replay, and the bytes of their own buffers.
    pub plans: usize,
    pub plan_bytes: u64,
}

impl Pool {
    pub(super) fn new(max_free: u64) -> Rc<RefCell<Pool>> {
        Rc::new(RefCell::new(Pool {
            free: HashMap::new(),
            stats: GpuMemory::default(),
            max_free,
        }))
    }

    pub(super) fn take(&mut self, bytes: u64) -> Option<wgpu::Buffer> {
        let buffer = self.free.get_mut(&bytes)?.pop()?;
        self.stats.free_buffers -= 1;
        self.stats.free_bytes -= bytes;
        Some(buffer)
    }

    pub(super) fn created(&mut self, bytes: u64) {
        self.stats.buffers += 1;
        self.stats.bytes += bytes;
    }

    pub(super) fn give_back(&mut self, buffer: wgpu::Buffer) {
        let bytes = buffer.size();
        if self.stats.free_bytes + bytes > self.max_free {
            // Dropping the handle frees the buffer once no recorded command uses it.
            self.stats.buffers -= 1;
            self.stats.bytes -= bytes;
            return;
        }
        self.stats.free_buffers += 1;
        self.stats.free_bytes += bytes;
        self.free.entry(bytes).or_default().push(buffer);
    }
}

pub(super) struct Slot {
    pub(super) buffer: wgpu::Buffer,
    pub(super) pool: Rc<RefCell<Pool>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.pool.borrow_mut().give_back(self.buffer.clone());
    }
}

/// A tensor in a GPU storage buffer (f32, or f16 for weights, row-major in its shape).
#[derive(Clone)]
pub struct GpuTensor {
    pub(super) slot: Rc<Slot>,
    pub(super) shape: Vec<usize>,
    /// Stored as f16 (weights on a device with shader-f16; see [`Backend::upload_weights`]).
    pub(super) half: bool,
}

impl GpuTensor {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.slot.buffer
    }
}
