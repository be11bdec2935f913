#![cfg(not(target_arch = "wasm32"))]
//! Native kernel tests: every shader validates with naga, and every GPU kernel matches its CPU twin
//! on the software Vulkan adapter (without an adapter the GPU part is skipped, except under
//! CI=true), and so does every op of the fast CPU backend.

mod common;

use scorelab::gpu::kernels::{shader_source, PARAMS_SIZES, SHADERS};

#[test]
fn every_shader_parses_and_validates() {
    let variants = SHADERS
        .iter()
        .map(|(name, _)| (*name, false))
        .chain([("conv2d", true), ("matmul", true)]);
    for (name, half) in variants {
        let source = shader_source(name, half);
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{name} (f16 {half}): {}", e.emit_to_string(&source)));
        let caps = if half {
            naga::valid::Capabilities::SHADER_FLOAT16
        } else {
            naga::valid::Capabilities::empty()
        };
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name} (f16 {half}): {e:?}"));
    }
}

/// Each kernel's `#[repr(C)]` uniform struct has the size of its shader's `Params` as naga lays it
/// out, and the shader's struct is all 4-byte scalars, so the fields line up one for one.
#[test]
fn uniform_structs_mirror_the_shaders() {
    for (name, size) in PARAMS_SIZES {
        let source = SHADERS.iter().find(|(n, _)| n == name).expect("a shader").1;
        let module = naga::front::wgsl::parse_str(source).unwrap();
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        let (handle, ty) = module
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some("Params"))
            .unwrap_or_else(|| panic!("{name}: no Params struct"));
        let naga::TypeInner::Struct { members, .. } = &ty.inner else {
            panic!("{name}: Params is not a struct");
        };
        assert_eq!(layouter[handle].size as usize, *size, "{name}: Params size");
        assert_eq!(
            members.len() * 4,
            *size,
            "{name}: Params members are not all 4-byte scalars"
        );
        eprintln!("{name}: Params {size} bytes, {} fields", members.len());
    }
}

#[test]
fn gpu_kernels_match_cpu_reference() {
    let Some(mut gpu) = common::gpu_or_skip() else {
        return;
    };
    eprintln!("adapter: {:?}", gpu.context().report);
    match common::gpu_sweep(&mut gpu) {
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
