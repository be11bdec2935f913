//! Adapter and device. WebGPU's default limits are requested explicitly, so native validation
//! rejects what a browser would reject.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// What the page and the CLI show about the adapter in use.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    /// A CPU-emulated adapter (lavapipe, SwiftShader, WARP): correct but slow.
    pub software: bool,
    pub features: Vec<String>,
}

pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub report: AdapterReport,
    /// The first device error (validation, out of memory, device lost), reported at the next read.
    pub(crate) error: Arc<Mutex<Option<String>>>,
    /// Set when the device is lost (driver reset, `destroy`): nothing on it works again.
    lost: Arc<AtomicBool>,
}

impl GpuContext {
    /// Picks an adapter (honours `WGPU_BACKEND` natively) and opens a device with WebGPU's default limits.
    pub async fn new() -> Result<GpuContext> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::Gpu(format!("no WebGPU adapter available ({e})")))?;
        let info = adapter.get_info();
        // f16 storage for the weights where the adapter has it (see `Gpu::half_weights`).
        let required_features = adapter.features() & wgpu::Features::SHADER_F16;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("scorelab"),
                required_features,
                required_limits: wgpu::Limits::default(),
                experimental_features: wgpu::ExperimentalFeatures::default(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Gpu(format!("could not open a device on {} ({e})", info.name)))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = sink.lock().unwrap();
            if slot.is_none() {
                *slot = Some(e.to_string());
            }
        }));
        let sink = error.clone();
        let lost = Arc::new(AtomicBool::new(false));
        let lost_flag = lost.clone();
        device.set_device_lost_callback(move |reason, msg| {
            lost_flag.store(true, Ordering::SeqCst);
            let mut slot = sink.lock().unwrap();
            if slot.is_none() {
                *slot = Some(format!("device lost ({reason:?}): {msg}"));
            }
        });
        let report = AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            software: info.device_type == wgpu::DeviceType::Cpu,
            features: adapter
                .features()
                .iter_names()
                .map(|(n, _)| n.to_string())
                .collect(),
        };
        Ok(GpuContext {
            device,
            queue,
            report,
            error,
            lost,
        })
    }

    /// Whether the device was lost: the caller must open a new context to go on.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Returns the first device error seen so far, if any.
    pub fn check(&self) -> Result<()> {
        match self.error.lock().unwrap().as_ref() {
            Some(e) => Err(Error::Gpu(e.clone())),
            None => Ok(()),
        }
    }
}
