//! GPU time per kernel, from timestamps the GPU writes before and after each dispatch.
//!
//! With `HEARTH_WEBGPU_PROFILE=1` (and an adapter with timestamp queries) every batch
//! runs each dispatch in a compute pass of its own with its begin and end timestamps,
//! waits for them, and adds each dispatch's time to its kernel's total. Every
//! [`REPORT_BATCHES`] batches a table goes to standard error: per kernel, dispatches and
//! µs a batch; then the sum of the dispatches against the span from the first begin to
//! the last end, whose difference is what the GPU spent between dispatches (barriers,
//! launches). Waiting for every batch makes the run slower than without; the kernels'
//! own times are what it is for. `examples/kernel_speed.rs` reads the totals instead.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Batches a printed report covers.
pub const REPORT_BATCHES: u32 = 64;

/// The most dispatches of a batch that get timestamps (wgpu's limit on a query set is
/// 4096 queries, two a dispatch); the rest run untimed.
pub const MAX_TIMED: usize = 2048;

/// Totals over the batches since the last report.
#[derive(Default, Debug, Clone)]
pub struct Totals {
    /// Per kernel name: dispatches and nanoseconds.
    pub kernels: HashMap<String, (u64, f64)>,
    /// Batches, their dispatches' summed time and their spans, in nanoseconds.
    pub batches: u32,
    pub busy_ns: f64,
    pub span_ns: f64,
}

impl Totals {
    /// The report: kernels by time, then busy time against span, all per batch.
    pub fn report(&self) -> String {
        let per = f64::from(self.batches.max(1));
        let mut kernels: Vec<_> = self.kernels.iter().collect();
        kernels.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
        let mut text = format!("GPU profile over {} batches, per batch:\n", self.batches);
        for (name, (count, ns)) in kernels {
            let share = 100.0 * ns / self.busy_ns.max(1.0);
            let _ = writeln!(
                text,
                "  {name:<32} {:7.1} dispatches {:10.1} µs {share:5.1} %",
                *count as f64 / per,
                ns / per / 1e3,
            );
        }
        let _ = writeln!(
            text,
            "  dispatches {:.1} µs, first begin to last end {:.1} µs, between dispatches {:.1} µs",
            self.busy_ns / per / 1e3,
            self.span_ns / per / 1e3,
            (self.span_ns - self.busy_ns) / per / 1e3,
        );
        text
    }
}

/// Kernel names, the query set and the running totals.
pub struct Profiler {
    names: Mutex<HashMap<wgpu::ComputePipeline, String>>,
    pub(crate) queries: wgpu::QuerySet,
    totals: Mutex<Totals>,
    /// Nanoseconds a timestamp tick.
    period: f64,
    /// Whether to print a report every [`REPORT_BATCHES`] batches.
    print: bool,
}

impl Profiler {
    /// Whether `HEARTH_WEBGPU_PROFILE` asks for profiling.
    pub fn wanted() -> bool {
        std::env::var("HEARTH_WEBGPU_PROFILE").is_ok_and(|value| value == "1")
    }

    /// A profiler for a device opened with `TIMESTAMP_QUERY`.
    pub fn new(device: &wgpu::Device, queue: &wgpu::Queue, print: bool) -> Self {
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("dispatch timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count: (MAX_TIMED * 2) as u32,
        });
        Self {
            names: Mutex::default(),
            queries,
            totals: Mutex::default(),
            period: f64::from(queue.get_timestamp_period()),
            print,
        }
    }

    /// Remember `pipeline`'s name for the reports.
    pub fn name(&self, pipeline: &wgpu::ComputePipeline, name: &str) {
        self.names.lock().expect("profiler lock").insert(pipeline.clone(), name.to_owned());
    }

    /// Add one batch: the pipelines of its timed dispatches and their begin and end
    /// ticks, in order.
    pub fn record(&self, pipelines: &[&wgpu::ComputePipeline], ticks: &[u64]) {
        let names = self.names.lock().expect("profiler lock");
        let mut totals = self.totals.lock().expect("profiler lock");
        let ns = |ticks: u64| ticks as f64 * self.period;
        for (pipeline, pair) in pipelines.iter().zip(ticks.chunks_exact(2)) {
            let name = names.get(*pipeline).map_or("unnamed", String::as_str);
            let entry = totals.kernels.entry(name.to_owned()).or_default();
            entry.0 += 1;
            let took = ns(pair[1].saturating_sub(pair[0]));
            entry.1 += took;
            totals.busy_ns += took;
        }
        if let (Some(first), Some(last)) = (ticks.first(), ticks.last()) {
            totals.span_ns += ns(last.saturating_sub(*first));
        }
        totals.batches += 1;
        if self.print && totals.batches == REPORT_BATCHES {
            eprint!("{}", totals.report());
            *totals = Totals::default();
        }
    }

    /// The totals so far, starting new ones.
    pub fn take(&self) -> Totals {
        std::mem::take(&mut *self.totals.lock().expect("profiler lock"))
    }
}
