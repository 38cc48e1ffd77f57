//! What the KV cache holds its values in: f16 where the device has shader-f16 (half the
//! memory and half the reads of f32, and llama.cpp's default cache), else f32, unless
//! [`CACHE_VARIABLE`] asks for one. attention.wgsl declares the cache's vectors as
//! `cache4`; the kernels set that alias to the device's type.

use crate::device::Gpu;

/// The environment variable that picks the KV cache's type: `f16` or `f32`.
pub const CACHE_VARIABLE: &str = "HEARTH_WEBGPU_KV_CACHE";

/// The KV cache's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheType {
    F16,
    F32,
}

/// The declaration attention.wgsl holds for an f32 cache.
const F32_DECLARATION: &str = "alias cache4 = vec4<f32>;";

impl CacheType {
    /// The type [`CACHE_VARIABLE`] names, else (unset or empty) f16 where the adapter
    /// has it (`f16`) and f32 where not. `Err` says what the variable holds instead, or
    /// that it asks for f16 of an adapter without it.
    pub fn choose(f16: bool) -> Result<Self, String> {
        Self::parse(std::env::var(CACHE_VARIABLE).ok().as_deref(), f16)
    }

    fn parse(value: Option<&str>, f16: bool) -> Result<Self, String> {
        match value {
            None | Some("") if f16 => Ok(Self::F16),
            None | Some("" | "f32") => Ok(Self::F32),
            Some("f16") if f16 => Ok(Self::F16),
            Some("f16") => Err(format!("{CACHE_VARIABLE} is `f16`, and this adapter has no f16")),
            Some(other) => Err(format!("{CACHE_VARIABLE} is `{other}`; it takes `f16` or `f32`")),
        }
    }

    /// The types a device can hold a cache in.
    pub fn every(gpu: &Gpu) -> Vec<Self> {
        if gpu.device.features().contains(wgpu::Features::SHADER_F16) {
            vec![Self::F16, Self::F32]
        } else {
            vec![Self::F32]
        }
    }

    /// Bytes a value takes.
    pub fn bytes(self) -> u64 {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
        }
    }

    /// `source` (attention.wgsl and what is appended to it) with the cache's vectors of
    /// this type.
    pub(crate) fn source(self, source: &str) -> String {
        assert!(source.contains(F32_DECLARATION), "attention.wgsl declares `{F32_DECLARATION}`");
        match self {
            Self::F32 => source.to_owned(),
            Self::F16 => format!(
                "enable f16;\n{}",
                source.replace(F32_DECLARATION, "alias cache4 = vec4<f16>;")
            ),
        }
    }
}

impl std::fmt::Display for CacheType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F16 => "f16 cache",
            Self::F32 => "f32 cache",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_f16_where_the_adapter_has_it_unless_the_variable_says_f32() {
        assert_eq!(CacheType::parse(None, true), Ok(CacheType::F16));
        assert_eq!(CacheType::parse(Some(""), true), Ok(CacheType::F16));
        assert_eq!(CacheType::parse(None, false), Ok(CacheType::F32));
        assert_eq!(CacheType::parse(Some("f32"), true), Ok(CacheType::F32));
        assert_eq!(CacheType::parse(Some("f16"), true), Ok(CacheType::F16));
    }

    #[test]
    fn a_cache_type_the_adapter_lacks_or_nobody_knows_is_refused_naming_the_variable() {
        for (value, f16) in [("f16", false), ("bf16", true), ("F16", true)] {
            let error = CacheType::parse(Some(value), f16).unwrap_err();
            assert!(error.contains(CACHE_VARIABLE) && error.contains(value), "{error}");
        }
    }
}
