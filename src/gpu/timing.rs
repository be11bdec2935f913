//! Per-dispatch timing of the recorded work (`Gpu::time_kernels`), summed by kernel: how the
//! benchmarks find where an evaluation's device time goes. Native only.

use super::{Command, Gpu};
use std::collections::HashMap;

impl Gpu {
    /// Submits and waits for every dispatch on its own and adds its time to its kernel's total:
    /// where an evaluation's device time goes on this adapter (`cargo bench --bench ops --
    /// "kernel times"`). Much slower than normal submission.
    pub fn time_kernels(&mut self, on: bool) {
        self.kernel_times = on.then(HashMap::new);
    }

    /// Device ms and dispatches by kernel since [`Gpu::time_kernels`] or the last call, most time
    /// first.
    pub fn kernel_times(&mut self) -> Vec<(String, f64, usize)> {
        let mut v: Vec<_> = self
            .kernel_times
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, (ms, count))| (format!("{k:?}"), ms, count))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }

    /// `flush` with every command submitted on its own and every dispatch timed.
    pub(super) fn flush_timed(&mut self, commands: Vec<Command>) {
        let device = &self.ctx.device;
        let times = self.kernel_times.as_mut().expect("timing is on");
        let mut run = |record: &dyn Fn(&mut wgpu::CommandEncoder)| {
            let mut enc =
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            record(&mut enc);
            let start = std::time::Instant::now();
            let index = self.ctx.queue.submit([enc.finish()]);
            let _ = device.poll(wgpu::PollType::Wait {
                submission_index: Some(index.clone()),
                timeout: None,
            });
            self.unpaced = Some(index);
            start.elapsed().as_secs_f64() * 1e3
        };
        for c in &commands {
            let dispatches = match c {
                Command::Copy {
                    src,
                    src_offset,
                    dst,
                    bytes,
                } => {
                    run(&|enc| enc.copy_buffer_to_buffer(src, *src_offset, dst, 0, *bytes));
                    continue;
                }
                Command::Dispatch(d) => std::slice::from_ref(d),
                Command::Replay(plan) => plan.dispatches.as_slice(),
            };
            for d in dispatches {
                let ms = run(&|enc| {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                    pass.set_pipeline(&d.pipeline);
                    d.encode(&mut pass);
                });
                let total = times.entry(d.kernel).or_default();
                total.0 += ms;
                total.1 += 1;
            }
        }
    }
}
