#![cfg(not(target_arch = "wasm32"))]
//! Native kernel tests: every shader validates with naga, and every GPU kernel matches its CPU twin
//! on the software Vulkan adapter (without an adapter the GPU part is skipped, except under
//! CI=true), and so does every op of the fast CPU backend.

mod common;

use scorelab::gpu::kernels::SHADERS;

#[test]
fn every_shader_parses_and_validates() {
    for (name, source) in SHADERS {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
}

#[test]
fn gpu_kernels_match_cpu_reference() {
    let Some(mut gpu) = common::gpu_or_skip() else {
        return;
    };
    eprintln!("adapter: {:?}", gpu.context().report);
    match pollster::block_on(common::run_sweep(&mut gpu)) {
        Ok(report) => report.iter().for_each(|l| eprintln!("{l}")),
        Err(failures) => panic!("GPU and CPU disagree:\n{failures}"),
    }
}

#[test]
fn fast_cpu_kernels_match_cpu_reference() {
    match pollster::block_on(common::run_sweep(&mut scorelab::FastCpu::default())) {
        Ok(report) => report.iter().for_each(|l| eprintln!("{l}")),
        Err(failures) => panic!("the fast CPU backend and the reference disagree:\n{failures}"),
    }
}
