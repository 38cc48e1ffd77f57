//! The device profile: what the machine is ([`host_profile`], from sysinfo) plus what
//! every loaded backend found on it ([`BackendProbe`], filled by the plugin layer).
//!
//! [`DeviceProfile::view`] adds what routing derives from the probes (each backend's
//! formats, each device's role) for `hearth profile --json` and `GET /api/profile`.

use hearth_sdk::{DeviceInfo, DeviceKind, HostProfile, Probe};
use serde::Serialize;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Profiles this machine: RAM, CPU, OS and architecture.
pub fn host_profile() -> HostProfile {
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_memory(MemoryRefreshKind::nothing().with_ram())
            .with_cpu(CpuRefreshKind::nothing()),
    );
    let logical = sys.cpus().len();
    // Inference threads scale with physical cores; hyper-threads add little.
    let cores = System::physical_core_count().filter(|&n| n > 0).unwrap_or(logical.max(1));
    let cpu_brand = sys.cpus().first().map(|c| c.brand().trim().to_string()).unwrap_or_default();
    let os = std::env::consts::OS;
    let arch = std::env::consts::ARCH;
    HostProfile {
        os: os.into(),
        arch: arch.into(),
        cpu_brand: cpu_brand.into(),
        cpu_cores: u32::try_from(cores).unwrap_or(u32::MAX),
        cpu_features: cpu_features().into_iter().map(Into::into).collect(),
        ram_total_bytes: sys.total_memory(),
        ram_available_bytes: sys.available_memory(),
        apple_silicon: os == "macos" && arch == "aarch64",
    }
}

/// The SIMD features CPU backends care about, detected at run time.
fn cpu_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut found = Vec::new();
        if std::arch::is_x86_feature_detected!("avx") {
            found.push("avx");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            found.push("avx2");
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            found.push("avx512f");
        }
        if std::arch::is_x86_feature_detected!("fma") {
            found.push("fma");
        }
        if std::arch::is_x86_feature_detected!("f16c") {
            found.push("f16c");
        }
        found
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            vec!["neon"]
        } else {
            Vec::new()
        }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Vec::new()
    }
}

/// One loaded backend and what its probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendProbe {
    /// The backend's routing id, e.g. `llamacpp`.
    pub backend: String,
    /// Model formats it loads, e.g. `gguf`.
    pub formats: Vec<String>,
    pub probe: Probe,
}

impl BackendProbe {
    /// The real accelerator (not CPU, not a software GPU) with the most memory.
    pub fn best_accelerator(&self) -> Option<&DeviceInfo> {
        self.probe
            .devices
            .iter()
            .filter(|d| d.kind.is_accelerator())
            .max_by_key(|d| d.memory_total_bytes)
    }

    /// A backend whose plugin could not even describe itself: never routable.
    pub fn unavailable(backend: &str, reason: String) -> BackendProbe {
        BackendProbe {
            backend: backend.to_string(),
            formats: Vec::new(),
            probe: Probe { available: false, devices: Default::default(), reason: reason.into() },
        }
    }

    /// The probe's devices as plain data.
    pub fn device_views(&self) -> Vec<DeviceInfo> {
        self.probe.devices.to_vec()
    }

    pub fn has_accelerator(&self) -> bool {
        self.best_accelerator().is_some()
    }

    /// True when the backend's only GPU is implemented in software (e.g. lavapipe).
    pub fn software_gpu_only(&self) -> bool {
        !self.has_accelerator()
            && self.probe.devices.iter().any(|d| d.kind == DeviceKind::SoftwareGpu)
    }
}

/// The host plus every loaded backend's probe.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceProfile {
    pub host: HostProfile,
    pub backends: Vec<BackendProbe>,
}

impl DeviceProfile {
    /// This machine with no backends probed yet.
    pub fn detect() -> DeviceProfile {
        DeviceProfile { host: host_profile(), backends: Vec::new() }
    }

    pub fn backend(&self, id: &str) -> Option<&BackendProbe> {
        self.backends.iter().find(|b| b.backend == id)
    }

    /// Memory of `backend`'s best accelerator, if it has one and reports its size.
    pub fn accelerator_memory(&self, backend: &str) -> Option<u64> {
        self.backend(backend)?.best_accelerator().map(|d| d.memory_total_bytes).filter(|&m| m > 0)
    }

    /// A serialisable copy for JSON output.
    pub fn view(&self) -> DeviceProfileView {
        DeviceProfileView {
            host: self.host.clone(),
            backends: self
                .backends
                .iter()
                .map(|b| BackendView {
                    backend: b.backend.clone(),
                    formats: b.formats.clone(),
                    available: b.probe.available,
                    reason: b.probe.reason.to_string(),
                    devices: b.device_views(),
                })
                .collect(),
        }
    }
}

/// Plain-Rust mirror of [`DeviceProfile`] for serde.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceProfileView {
    pub host: HostProfile,
    pub backends: Vec<BackendView>,
}

/// Plain-Rust mirror of a [`BackendProbe`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendView {
    pub backend: String,
    pub formats: Vec<String>,
    pub available: bool,
    pub reason: String,
    pub devices: Vec<DeviceInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(kind: DeviceKind, gb: u64) -> DeviceInfo {
        DeviceInfo {
            kind,
            name: kind.as_str().into(),
            memory_total_bytes: gb << 30,
            memory_free_bytes: gb << 30,
        }
    }

    fn probe(devices: Vec<DeviceInfo>) -> BackendProbe {
        BackendProbe {
            backend: "webgpu".into(),
            formats: vec!["gguf".into()],
            probe: Probe {
                available: true,
                devices: devices.into_iter().collect(),
                reason: "".into(),
            },
        }
    }

    #[test]
    fn this_machine_has_ram_cores_and_an_os() {
        let h = host_profile();
        assert!(h.ram_total_bytes > 0);
        assert!(h.ram_available_bytes <= h.ram_total_bytes);
        assert!(h.cpu_cores >= 1);
        assert_eq!(h.os.as_str(), std::env::consts::OS);
        assert_eq!(h.apple_silicon, cfg!(all(target_os = "macos", target_arch = "aarch64")));
    }

    #[test]
    fn the_best_accelerator_is_the_real_gpu_with_the_most_memory() {
        let b = probe(vec![
            gpu(DeviceKind::Cpu, 64),
            gpu(DeviceKind::IntegratedGpu, 2),
            gpu(DeviceKind::DiscreteGpu, 16),
        ]);
        assert_eq!(b.best_accelerator().map(|d| d.kind), Some(DeviceKind::DiscreteGpu));
        assert!(!b.software_gpu_only());
    }

    #[test]
    fn a_software_adapter_is_not_an_accelerator() {
        let b = probe(vec![gpu(DeviceKind::SoftwareGpu, 8)]);
        assert!(!b.has_accelerator());
        assert!(b.software_gpu_only());
        let profile = DeviceProfile { host: HostProfile::default(), backends: vec![b] };
        assert_eq!(profile.accelerator_memory("webgpu"), None);
    }

    #[test]
    fn the_view_serialises_device_kinds_by_name() {
        let profile = DeviceProfile {
            host: HostProfile::default(),
            backends: vec![probe(vec![gpu(DeviceKind::DiscreteGpu, 16)])],
        };
        let json = serde_json::to_value(profile.view()).unwrap();
        assert_eq!(json["backends"][0]["devices"][0]["kind"], "discrete-gpu");
        assert_eq!(json["backends"][0]["available"], true);
    }
}
