//! What a backend says it runs, so the host can skip a model file the backend would
//! refuse instead of finding out by a failed load.
//!
//! A backend lists its capabilities among its
//! [`BackendInfo::features`](crate::BackendInfo::features) as
//! `arch:<general.architecture>` and `gguf-type:<ggml type name>` entries. Listing none of a kind claims nothing about it: the host then lets
//! the backend decide at load, as before capabilities existed, so a plugin built before
//! them keeps working.

use super::ggml::GgmlType;
use super::gguf::Gguf;

const ARCHITECTURE: &str = "arch:";
const GGUF_TYPE: &str = "gguf-type:";

/// The feature entry that says a backend runs GGUF files of `architecture`.
pub fn architecture_feature(architecture: &str) -> String {
    format!("{ARCHITECTURE}{architecture}")
}

/// The feature entry that says a backend reads tensors of `ty`.
pub fn gguf_type_feature(ty: GgmlType) -> String {
    format!("{GGUF_TYPE}{}", ty.name())
}

/// What a GGUF file needs from a backend: its architecture and its tensor types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufNeeds {
    pub architecture: Option<String>,
    /// Each type once, in the order first met.
    pub types: Vec<GgmlType>,
}

impl GgufNeeds {
    pub fn of(gguf: &Gguf) -> Self {
        let mut types = Vec::new();
        for tensor in gguf.tensors() {
            if !types.contains(&tensor.ty) {
                types.push(tensor.ty);
            }
        }
        Self { architecture: gguf.str("general.architecture").ok().map(str::to_string), types }
    }

    /// Why a backend with `features` cannot run this file, or `None` when it can (or
    /// claims nothing either way).
    pub fn unmet_by<S: AsRef<str>>(&self, features: &[S]) -> Option<String> {
        let claimed = |prefix: &str| -> Vec<&str> {
            features.iter().filter_map(|feature| feature.as_ref().strip_prefix(prefix)).collect()
        };
        let architectures = claimed(ARCHITECTURE);
        if let Some(architecture) = &self.architecture {
            if !architectures.is_empty() && !architectures.contains(&architecture.as_str()) {
                return Some(format!(
                    "architecture {architecture} (it runs {})",
                    architectures.join(", ")
                ));
            }
        }
        let types = claimed(GGUF_TYPE);
        let missing: Vec<&str> = self
            .types
            .iter()
            .map(|ty| ty.name())
            .filter(|name| !types.is_empty() && !types.contains(name))
            .collect();
        if !missing.is_empty() {
            return Some(format!(
                "tensor type {} (it reads {})",
                missing.join(", "),
                types.join(", ")
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(architecture: &str, types: &[GgmlType]) -> GgufNeeds {
        GgufNeeds { architecture: Some(architecture.into()), types: types.to_vec() }
    }

    #[test]
    fn a_file_is_unmet_by_name_when_its_architecture_or_a_tensor_type_is_not_claimed() {
        let features = [
            "lora".to_string(),
            architecture_feature("llama"),
            architecture_feature("gemma3"),
            gguf_type_feature(GgmlType::Q4_0),
            gguf_type_feature(GgmlType::F32),
        ];
        assert_eq!(needs("llama", &[GgmlType::Q4_0, GgmlType::F32]).unmet_by(&features), None);
        let why = needs("gemma3n", &[GgmlType::Q4_0]).unmet_by(&features).unwrap();
        assert_eq!(why, "architecture gemma3n (it runs llama, gemma3)");
        let why = needs("gemma3", &[GgmlType::Q4K, GgmlType::F32]).unmet_by(&features).unwrap();
        assert_eq!(why, "tensor type Q4_K (it reads Q4_0, F32)");
    }

    #[test]
    fn a_backend_that_claims_nothing_is_left_to_decide_at_load() {
        let features = ["lora".to_string()];
        assert_eq!(needs("anything", &[GgmlType::Iq1S]).unmet_by(&features), None);
    }
}
