#![cfg(not(target_arch = "wasm32"))]
//! Mutated weights files through the public loader and one sampling step: no panic, no abort,
//! no hang, memory bounded by the file, and no NaN returned as if it were an image.
//! `SCORELAB_FUZZ_CASES` sets the number of cases (default 10,000; the README quotes a 1,000,000
//! run), `SCORELAB_FUZZ_SEED` the seed, `SCORELAB_FUZZ_UNET_EVERY` how often the U-Net is the
//! base file (default every 20th case).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use scorelab::rng::Rng;

/// The system allocator, keeping the live and the peak byte counts.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(live, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let live = LIVE.fetch_add(new - l.size(), Relaxed) + new - l.size();
            PEAK.fetch_max(live, Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Relaxed);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const TOY: &[u8] = include_bytes!("../models/toy2d.safetensors");
const DIGITS: &[u8] = include_bytes!("../models/digits.safetensors");

#[test]
fn mutated_weights_files_are_refused_cleanly() {
    let cases: usize = std::env::var("SCORELAB_FUZZ_CASES")
        .map(|v| v.parse().unwrap())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("SCORELAB_FUZZ_SEED")
        .map(|v| v.parse().unwrap())
        .unwrap_or(1);
    let unet_every: usize = std::env::var("SCORELAB_FUZZ_UNET_EVERY")
        .map(|v| v.parse().unwrap())
        .unwrap_or(20);
    let mut rng = Rng::new(seed);
    std::panic::set_hook(Box::new(|_| {})); // panics are counted and reported below
    let (mut panics, mut slowest, mut worst_ratio) = (Vec::new(), Duration::ZERO, 0f64);
    let mut outcomes: BTreeMap<&str, [usize; 3]> = BTreeMap::new(); // loaded, refused, non-finite
    for case in 0..cases {
        // Mostly the small model; every `unet_every`-th case the U-Net (70 ms a case).
        let base = if case % unet_every == unet_every - 1 {
            DIGITS
        } else {
            TOY
        };
        let (bytes, kind) = common::mutate::mutate(base, &mut rng);
        let before = LIVE.load(Relaxed);
        PEAK.store(before, Relaxed);
        let t0 = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            pollster::block_on(common::mutate::load_and_step(&bytes))
        }));
        slowest = slowest.max(t0.elapsed());
        // Working memory beyond the file itself, relative to the file (one step included).
        worst_ratio = worst_ratio.max((PEAK.load(Relaxed) - before) as f64 / base.len() as f64);
        let counts = outcomes.entry(kind).or_default();
        match result {
            Ok(Ok(())) => counts[0] += 1,
            Ok(Err(e)) if e.contains("NaN or infinite") => counts[2] += 1,
            Ok(Err(_)) => counts[1] += 1,
            Err(p) => panics.push(format!(
                "case {case} ({kind}): {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    let _ = std::panic::take_hook();
    eprintln!("{cases} mutated files (seed {seed}): {} panics; slowest case {:.0} ms; peak working memory {worst_ratio:.1}x the file", panics.len(), slowest.as_secs_f64() * 1e3);
    for (kind, [ok, refused, nonfinite]) in &outcomes {
        eprintln!(
            "  {kind}: {ok} loaded and stepped, {refused} refused, {nonfinite} stopped on NaN/Inf"
        );
    }
    assert!(
        panics.is_empty(),
        "{} panics, first: {:?}",
        panics.len(),
        &panics[..panics.len().min(5)]
    );
    assert!(slowest < Duration::from_secs(10), "a case took {slowest:?}");
    assert!(
        worst_ratio < 16.0,
        "a case used {worst_ratio:.1}x the file's size"
    );
}
