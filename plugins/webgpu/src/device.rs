//! The wgpu device: adapter choice, what the probe reports, and buffers whose sizes
//! are counted so `memory()` can say what the model holds on the device.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use hearth_sdk::abi_stable::std_types::RVec;
use hearth_sdk::{DeviceInfo, DeviceKind, PluginError, Probe};
use wgpu::util::DeviceExt;

use crate::cache::CacheType;
use crate::plan::{KernelPlan, MatvecShape, Offers};
use crate::profile::Profiler;

/// An adapter and the facts the probe reports about it.
pub struct AdapterFacts {
    pub adapter: wgpu::Adapter,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
}

/// The features cooperative matrices of f16 need.
const MATRIX_FEATURES: wgpu::Features = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::SUBGROUP);

impl AdapterFacts {
    /// What the adapter offers the kernels.
    pub fn offers(&self) -> Offers {
        let features = self.adapter.features();
        let matrices = features.contains(MATRIX_FEATURES)
            && self.info.subgroup_min_size == 32
            && self.info.subgroup_max_size == 32
            && self.adapter.cooperative_matrix_properties().iter().any(|shape| {
                (shape.m_size, shape.n_size, shape.k_size) == (16, 16, 16)
                    && shape.ab_type == wgpu::CooperativeScalarType::F16
                    && shape.cr_type == wgpu::CooperativeScalarType::F32
            });
        Offers { subgroups: features.contains(wgpu::Features::SUBGROUP), matrices }
    }

    /// The kernels a device of this adapter runs.
    pub fn plan(&self) -> Result<KernelPlan, String> {
        KernelPlan::choose(self.info.device_type, self.offers())
    }
}

/// The adapters of `backends` (as far as `WGPU_BACKEND` allows them).
fn adapters_on(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    descriptor.backends &= backends;
    if descriptor.backends.is_empty() {
        return Vec::new();
    }
    let instance = wgpu::Instance::new(descriptor);
    pollster::block_on(instance.enumerate_adapters(backends))
}

/// Find the best adapter: a real GPU before a software one. `Err` says why none. GL is
/// asked only where Vulkan, Metal and DX12 have no adapter: it computes with fewer
/// features, and opening EGL without a display can panic inside wgpu (two hosts in one
/// process probing at once on a headless machine did).
pub fn find_adapter() -> Result<AdapterFacts, String> {
    let mut adapters = adapters_on(wgpu::Backends::PRIMARY);
    if adapters.is_empty() {
        adapters = adapters_on(wgpu::Backends::SECONDARY);
    }
    let rank = |info: &wgpu::AdapterInfo| match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let adapter = adapters
        .into_iter()
        .filter(|adapter| {
            adapter
                .get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        })
        .min_by_key(|adapter| rank(&adapter.get_info()))
        .ok_or_else(|| {
            "no wgpu adapter with compute shaders (no Vulkan, Metal, DX12 or GL driver found)"
                .to_string()
        })?;
    Ok(AdapterFacts { info: adapter.get_info(), limits: adapter.limits(), adapter })
}

pub fn device_kind(device_type: wgpu::DeviceType) -> DeviceKind {
    match device_type {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
        wgpu::DeviceType::VirtualGpu => DeviceKind::VirtualGpu,
        wgpu::DeviceType::Cpu => DeviceKind::SoftwareGpu,
        wgpu::DeviceType::Other => DeviceKind::Other,
    }
}

/// The probe: the adapter, its kind and backend, its limits, and its memory where the
/// backend lets us read it (`memory.rs`; 0 means not known).
pub fn probe() -> Probe {
    match find_adapter() {
        Err(reason) => Probe { available: false, devices: RVec::new(), reason: reason.into() },
        Ok(facts) => {
            let plan = match facts.plan() {
                Ok(plan) => plan,
                Err(reason) => {
                    return Probe { available: false, devices: RVec::new(), reason: reason.into() }
                }
            };
            let kind = device_kind(facts.info.device_type);
            let memory = crate::memory::device_memory(&facts.adapter);
            let memory_text = match &memory {
                Some(memory) => {
                    let free = memory.free_bytes.map_or(String::new(), |free| {
                        format!(", {:.1} GiB free", free as f64 / GIB)
                    });
                    format!("{:.1} GiB device memory{free}", memory.total_bytes as f64 / GIB)
                }
                None => "memory size not known on this backend".to_string(),
            };
            let reason = format!(
                "{} adapter `{}` on {:?} ({}), driver {} {}; max storage binding {} MiB, max buffer {} MiB; {memory_text}; {plan}",
                kind.as_str(),
                facts.info.name,
                facts.info.backend,
                if kind == DeviceKind::SoftwareGpu { "runs on the CPU: correct, not fast" } else { "hardware" },
                facts.info.driver,
                facts.info.driver_info,
                facts.limits.max_storage_buffer_binding_size >> 20,
                facts.limits.max_buffer_size >> 20,
            );
            let device = DeviceInfo {
                kind,
                name: facts.info.name.into(),
                memory_total_bytes: memory.as_ref().map_or(0, |memory| memory.total_bytes),
                memory_free_bytes: memory.and_then(|memory| memory.free_bytes).unwrap_or(0),
            };
            Probe { available: true, devices: RVec::from(vec![device]), reason: reason.into() }
        }
    }
}

const GIB: f64 = (1u64 << 30) as f64;

/// A device and queue, with a running count of the bytes allocated on it.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The kernels chosen for this adapter, and the decode product's shape.
    pub plan: KernelPlan,
    pub matvec: MatvecShape,
    /// What the KV cache holds.
    pub cache: CacheType,
    /// GPU time per kernel, where `HEARTH_WEBGPU_PROFILE=1` asks for it and the adapter
    /// has timestamp queries.
    pub profiler: Option<Profiler>,
    allocated: Arc<AtomicU64>,
}

/// A device buffer that gives its bytes back to the count when dropped.
pub struct GpuBuffer {
    pub buffer: wgpu::Buffer,
    allocated: Arc<AtomicU64>,
}

impl GpuBuffer {
    pub fn size(&self) -> u64 {
        self.buffer.size()
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        // wgpu frees the memory once no submitted work uses the buffer any more.
        self.allocated.fetch_sub(self.buffer.size(), Ordering::Relaxed);
    }
}

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    /// Open the best adapter with its full limits (the defaults cap storage bindings at
    /// 128 MiB, below what large embedding tables need), its subgroup operations, f16
    /// and cooperative matrices where it has them.
    pub fn new() -> Result<Self, PluginError> {
        let facts = find_adapter().map_err(PluginError::unsupported)?;
        let offers = facts.offers();
        let plan = facts.plan().map_err(PluginError::invalid_request)?;
        let matvec = MatvecShape::from_env().map_err(PluginError::invalid_request)?;
        let f16 = facts.adapter.features().contains(wgpu::Features::SHADER_F16);
        let cache = CacheType::choose(f16).map_err(PluginError::invalid_request)?;
        let mut features = wgpu::Features::empty();
        if offers.subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if f16 {
            features |= wgpu::Features::SHADER_F16;
        }
        let mut experimental_features = wgpu::ExperimentalFeatures::disabled();
        if offers.matrices {
            features |= MATRIX_FEATURES;
            // SAFETY: wgpu calls its cooperative matrices experimental (their shader
            // semantics may still change); the kernel using them is checked against
            // the f32 kernels by the kernel tests on every device that offers them.
            experimental_features = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let profiling = Profiler::wanted()
            && facts.adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        if profiling {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("hearth-webgpu"),
            required_features: features,
            required_limits: facts.limits.clone(),
            experimental_features,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(facts.adapter.request_device(&descriptor))
            .map_err(|error| PluginError::internal(format!("wgpu device: {error}")))?;
        let profiler = profiling.then(|| Profiler::new(&device, &queue, true));
        Ok(Self {
            device,
            queue,
            info: facts.info,
            limits: facts.limits,
            plan,
            matvec,
            cache,
            profiler,
            allocated: Arc::new(AtomicU64::new(0)),
        })
    }

    /// What the device has enabled of what its adapter offers.
    pub fn offers(&self) -> Offers {
        let features = self.device.features();
        Offers {
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            matrices: features.contains(MATRIX_FEATURES),
        }
    }

    /// Bytes currently allocated through this device.
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    fn track(&self, buffer: wgpu::Buffer) -> GpuBuffer {
        self.allocated.fetch_add(buffer.size(), Ordering::Relaxed);
        GpuBuffer { buffer, allocated: self.allocated.clone() }
    }

    /// A zeroed storage buffer of at least `bytes` (rounded up to a whole word).
    pub fn storage(&self, label: &str, bytes: u64) -> GpuBuffer {
        let size = bytes.max(4).next_multiple_of(4);
        self.track(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: STORAGE,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `bytes`, padded with one spare word so unaligned word
    /// reads at the very end stay inside it.
    pub fn upload(&self, label: &str, bytes: &[u8]) -> GpuBuffer {
        let mut padded = Vec::with_capacity(bytes.len() + 8);
        padded.extend_from_slice(bytes);
        padded.resize(bytes.len().next_multiple_of(4) + 4, 0);
        self.track(self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &padded,
            usage: STORAGE,
        }))
    }

    /// A host-readable buffer of `bytes` that copies can fill.
    pub fn readback(&self, bytes: u64) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Copy `count` f32 values starting at element `offset` of `buffer` back to the host.
    pub fn read_f32(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        count: usize,
    ) -> Result<Vec<f32>, PluginError> {
        let bytes = (count * 4) as u64;
        let staging = self.readback(bytes);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, offset * 4, &staging, 0, bytes);
        self.queue.submit([encoder.finish()]);
        self.read_mapped(&staging, count)
    }

    /// The first `count` f32 values of a [`Gpu::readback`] buffer, once the work
    /// submitted so far is done; the buffer is unmapped again for the next copy.
    pub fn read_mapped(
        &self,
        staging: &wgpu::Buffer,
        count: usize,
    ) -> Result<Vec<f32>, PluginError> {
        self.read_mapped_after(staging, count, None)
    }

    /// [`Gpu::read_mapped`] once submission `after` is done, where the staging buffer's
    /// last writer is that submission: work submitted after it may still run.
    pub fn read_mapped_after(
        &self,
        staging: &wgpu::Buffer,
        count: usize,
        after: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<f32>, PluginError> {
        let slice = staging.slice(..(count * 4) as u64);
        let (sender, receiver) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            // The receiver waits below; if it is gone there is nobody to tell.
            let _ = sender.send(result);
        });
        self.device
            .poll(wgpu::PollType::Wait { submission_index: after, timeout: None })
            .map_err(|error| PluginError::internal(format!("wgpu poll: {error}")))?;
        receiver
            .recv()
            .map_err(|_| PluginError::internal("wgpu dropped the readback"))?
            .map_err(|error| PluginError::internal(format!("wgpu readback: {error}")))?;
        let values = {
            let view = slice
                .get_mapped_range()
                .map_err(|error| PluginError::internal(format!("wgpu readback: {error}")))?;
            bytemuck::cast_slice::<u8, f32>(&view).to_vec()
        };
        staging.unmap();
        Ok(values)
    }
}
