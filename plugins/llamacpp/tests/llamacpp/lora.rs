//! LoRA adapters applied per request, with real GGUF adapter files written here: small
//! random low-rank updates to SmolLM2's attention query projections. Random weights say
//! nothing about quality, but they prove that an adapter reaches the computation, at
//! its scale, together with others, and that it is gone when a request leaves it out.

use std::path::PathBuf;

use hearth_sdk::abi_stable::std_types::RVec;
use hearth_sdk::{AdapterUse, ErrorKind, GenerateRequest};

use crate::common::{load, raw, run, SMOLLM2};

/// SmolLM2-135M's width and depth, which the adapter's shapes must match.
const EMBEDDING: u64 = 576;
const LAYERS: usize = 30;
const RANK: u64 = 4;

/// A GGUF v3 file: metadata strings and f32 tensors, laid out as llama.cpp reads them.
struct Gguf {
    strings: Vec<(&'static str, String)>,
    floats: Vec<(&'static str, f32)>,
    tensors: Vec<(String, [u64; 2], Vec<f32>)>,
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

impl Gguf {
    fn bytes(&self) -> Vec<u8> {
        const STRING: u32 = 8;
        const FLOAT32: u32 = 6;
        const ALIGNMENT: usize = 32;
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&((self.strings.len() + self.floats.len()) as u64).to_le_bytes());
        for (key, value) in &self.strings {
            put_string(&mut out, key);
            out.extend_from_slice(&STRING.to_le_bytes());
            put_string(&mut out, value);
        }
        for (key, value) in &self.floats {
            put_string(&mut out, key);
            out.extend_from_slice(&FLOAT32.to_le_bytes());
            out.extend_from_slice(&value.to_le_bytes());
        }
        let mut offset = 0usize;
        for (name, shape, data) in &self.tensors {
            put_string(&mut out, name);
            out.extend_from_slice(&2u32.to_le_bytes());
            shape.iter().for_each(|dim| out.extend_from_slice(&dim.to_le_bytes()));
            out.extend_from_slice(&0u32.to_le_bytes()); // f32
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += (data.len() * 4).div_ceil(ALIGNMENT) * ALIGNMENT;
        }
        for (_, _, data) in &self.tensors {
            out.resize(out.len().div_ceil(ALIGNMENT) * ALIGNMENT, 0);
            data.iter().for_each(|value| out.extend_from_slice(&value.to_le_bytes()));
        }
        out
    }
}

/// Deterministic values in [-0.5, 0.5) from a seed (a 64-bit LCG).
fn noise(seed: u64, count: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Write a LoRA adapter for SmolLM2 and return its path.
fn write_adapter(name: &str, seed: u64, architecture: &str) -> PathBuf {
    let tensors = (0..LAYERS)
        .flat_map(|layer| {
            let base = format!("blk.{layer}.attn_q.weight");
            let seed = seed + layer as u64;
            [
                (format!("{base}.lora_a"), [EMBEDDING, RANK], noise(seed, EMBEDDING * RANK)),
                (format!("{base}.lora_b"), [RANK, EMBEDDING], noise(seed + 1000, EMBEDDING * RANK)),
            ]
        })
        .collect();
    let adapter = Gguf {
        strings: vec![
            ("general.type", "adapter".into()),
            ("general.architecture", architecture.into()),
            ("adapter.type", "lora".into()),
        ],
        floats: vec![("adapter.lora.alpha", RANK as f32)],
        tensors,
    };
    let path =
        std::env::temp_dir().join(format!("hearth-llamacpp-{}-{name}.gguf", std::process::id()));
    std::fs::write(&path, adapter.bytes()).unwrap();
    path
}

fn with_adapters(adapters: &[(&str, &PathBuf, f32)]) -> GenerateRequest {
    let mut request = raw("The three primary colours are", 8);
    request.adapters = RVec::from(
        adapters
            .iter()
            .map(|(name, path, scale)| AdapterUse {
                name: (*name).into(),
                path: path.to_str().unwrap().into(),
                scale: *scale,
            })
            .collect::<Vec<_>>(),
    );
    request
}

#[test]
fn adapters_change_the_answer_at_their_scale_together_and_only_when_asked() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 256);
    let first = write_adapter("first", 1, "llama");
    let second = write_adapter("second", 77, "llama");
    let text =
        |adapters: &[(&str, &PathBuf, f32)]| run(&*model, &with_adapters(adapters)).unwrap().0;

    let base = text(&[]);
    let with_first = text(&[("first", &first, 1.0)]);
    assert_ne!(with_first, base, "the adapter changed nothing");
    assert_eq!(text(&[("first", &first, 0.0)]), base, "scale 0 must switch it off");
    let with_second = text(&[("second", &second, 1.0)]);
    let with_both = text(&[("first", &first, 1.0), ("second", &second, 1.0)]);
    assert!(with_both != with_first && with_both != with_second, "both: {with_both:?}");
    assert_eq!(text(&[]), base, "a request without adapters must not keep the last ones");
    assert_eq!(text(&[("first", &first, 1.0)]), with_first, "a cached adapter behaves the same");

    let _ = std::fs::remove_file(first);
    let _ = std::fs::remove_file(second);
}

#[test]
fn an_adapter_for_another_architecture_is_an_invalid_request_naming_it() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = load(SMOLLM2, 256);
    let foreign = write_adapter("foreign", 5, "gemma3");
    let error = run(&*model, &with_adapters(&[("foreign-tone", &foreign, 1.0)])).unwrap_err();
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
    assert!(error.message.contains("foreign-tone"), "{error}");
    let _ = std::fs::remove_file(foreign);
}
