//! The native command-line sampler: the same crate, on any wgpu adapter or the CPU backend.
//! (Compiled to nothing on wasm, where the page is the interface.)

#[cfg(not(target_arch = "wasm32"))]
mod cli;

fn main() {
    #[cfg(not(target_arch = "wasm32"))]
    cli::main();
}
