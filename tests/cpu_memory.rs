#![cfg(not(target_arch = "wasm32"))]
//! The fast CPU backend's steady state: after a warm-up, evaluating a network again allocates no
//! tensor memory — every op output reuses a buffer its earlier evaluation released. Counted with a
//! global allocator that tallies the allocations of tensor size (at least `LARGE` bytes; what is
//! left below that is `matrixmultiply`'s packing scratch, at most 144 KiB a call, and small
//! vectors).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use scorelab::lab::Session;
use scorelab::FastCpu;

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);
static LARGE_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
const LARGE: usize = 256 << 10;

fn count(size: usize) {
    ALLOCATED.fetch_add(size, Ordering::Relaxed);
    if size >= LARGE {
        LARGE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn fast_cpu_evaluations_reuse_their_buffers() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/digits.safetensors"
    ))
    .expect("the shipped digits model");
    let mut lab = Session::new(FastCpu::default());
    let per = lab.load_model("digits", &bytes).unwrap().sample_len();
    let n = 4;
    let x: Vec<f32> = (0..n * per).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut per_eval = vec![];
    for _ in 0..4 {
        let (bytes, large) = (&ALLOCATED, &LARGE_ALLOCATIONS);
        let before = (bytes.load(Ordering::Relaxed), large.load(Ordering::Relaxed));
        pollster::block_on(lab.eps("digits", &x, 0.5, Some(3), 2.0)).unwrap();
        let after = (bytes.load(Ordering::Relaxed), large.load(Ordering::Relaxed));
        per_eval.push((after.0 - before.0, after.1 - before.1));
    }
    eprintln!("(bytes, allocations of 256 KiB or more) per evaluation: {per_eval:?}");
    // A batch of 4 with guidance evaluates 8 images: a 32x32x32 activation is 1 MiB.
    assert!(
        per_eval[0].1 > 10,
        "the first evaluation allocates its tensors"
    );
    for &(_, large) in &per_eval[1..] {
        assert_eq!(
            large, 0,
            "tensor-sized allocations after the first evaluation: {per_eval:?}"
        );
    }
}
