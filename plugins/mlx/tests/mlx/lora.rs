//! LoRA adapters applied per request, with real GGUF adapter files written here (small
//! random low-rank updates to SmolLM2's query and down projections, in llama.cpp's
//! format), checked against the llama.cpp plugin given the same files and scales.

use std::path::PathBuf;

use hearth_mlx::model::MlxModel;
use hearth_sdk::{AdapterUse, ErrorKind, GenerateRequest, Model};

use crate::common::{raw, smollm2_path, Collect};

/// SmolLM2-135M's shapes, which the adapter's must match.
const EMBEDDING: u64 = 576;
const FEED_FORWARD: u64 = 1536;
const LAYERS: usize = 30;
const RANK: u64 = 4;

fn put_string(out: &mut Vec<u8>, text: &str) {
    out.extend((text.len() as u64).to_le_bytes());
    out.extend(text.as_bytes());
}

/// A GGUF v3 adapter: string metadata, `adapter.lora.alpha`, f32 tensors `[ne0, ne1]`.
fn adapter_bytes(architecture: &str, tensors: &[(String, [u64; 2], Vec<f32>)]) -> Vec<u8> {
    const ALIGNMENT: usize = 32;
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend(4u64.to_le_bytes());
    for (key, value) in [
        ("general.type", "adapter"),
        ("general.architecture", architecture),
        ("adapter.type", "lora"),
    ] {
        put_string(&mut out, key);
        out.extend(8u32.to_le_bytes());
        put_string(&mut out, value);
    }
    put_string(&mut out, "adapter.lora.alpha");
    out.extend(6u32.to_le_bytes());
    out.extend((RANK as f32).to_le_bytes());
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        put_string(&mut out, name);
        out.extend(2u32.to_le_bytes());
        shape.iter().for_each(|dim| out.extend(dim.to_le_bytes()));
        out.extend(0u32.to_le_bytes());
        out.extend((offset as u64).to_le_bytes());
        offset += (data.len() * 4).next_multiple_of(ALIGNMENT);
    }
    for (_, _, data) in tensors {
        out.resize(out.len().next_multiple_of(ALIGNMENT), 0);
        data.iter().for_each(|value| out.extend(value.to_le_bytes()));
    }
    out
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

/// Write an adapter for SmolLM2's `attn_q` and `ffn_down` and return its path.
fn write_adapter(name: &str, seed: u64, architecture: &str) -> PathBuf {
    let tensors: Vec<_> = (0..LAYERS)
        .flat_map(|layer| {
            let seed = seed + layer as u64 * 10;
            [("attn_q", EMBEDDING, EMBEDDING), ("ffn_down", FEED_FORWARD, EMBEDDING)]
                .into_iter()
                .flat_map(move |(part, inputs, outputs)| {
                    let base = format!("blk.{layer}.{part}.weight");
                    [
                        (format!("{base}.lora_a"), [inputs, RANK], noise(seed, inputs * RANK)),
                        // Small enough that the answer stays fluent, so greedy choices are
                        // clear-cut and the two backends can be compared token for token.
                        (
                            format!("{base}.lora_b"),
                            [RANK, outputs],
                            noise(seed + 1, outputs * RANK).iter().map(|v| v * 0.2).collect(),
                        ),
                    ]
                })
        })
        .collect();
    let path = std::env::temp_dir().join(format!("hearth-mlx-{}-{name}.gguf", std::process::id()));
    std::fs::write(&path, adapter_bytes(architecture, &tensors)).unwrap();
    path
}

/// Six tokens: enough to see an adapter's effect; longer greedy runs of the two backends
/// part at near-ties (llama.cpp rounds activations to 8 bits in its quantized matmuls).
fn with_adapters(adapters: &[(&str, &PathBuf, f32)]) -> GenerateRequest {
    let mut request = raw("The three primary colours are", 6, &[]);
    request.adapters = adapters
        .iter()
        .map(|(name, path, scale)| AdapterUse {
            name: (*name).into(),
            path: path.to_str().unwrap().into(),
            scale: *scale,
        })
        .collect();
    request
}

fn text(model: &dyn Model, request: &GenerateRequest) -> String {
    let mut sink = Collect::default();
    model.generate(request, &mut sink).unwrap();
    sink.pieces.concat()
}

#[test]
fn adapters_change_the_answer_at_their_scale_as_llama_cpp_does_and_only_when_asked() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let mlx = MlxModel::load(&smollm2_path(), 256).unwrap();
    let llama = hearth_backend_check::llamacpp::load_with_plugin(&smollm2_path());
    let first = write_adapter("first", 1, "llama");
    let second = write_adapter("second", 77, "llama");

    let base = text(&mlx, &with_adapters(&[]));
    for adapters in
        [vec![("first", &first, 0.5)], vec![("first", &first, 0.5), ("second", &second, 0.25)]]
    {
        let ours = text(&mlx, &with_adapters(&adapters));
        let theirs = text(&llama, &with_adapters(&adapters));
        println!("base {base:?}\n  mlx:       {ours:?}\n  llama.cpp: {theirs:?}");
        assert_ne!(ours, base, "the adapters changed nothing");
        assert_eq!(ours, theirs, "MLX and llama.cpp disagree under the same adapters");
    }
    assert_eq!(
        text(&mlx, &with_adapters(&[("first", &first, 0.0)])),
        base,
        "scale 0 switches it off"
    );
    assert_eq!(
        text(&mlx, &with_adapters(&[])),
        base,
        "a request without adapters does not keep the last ones"
    );
    std::fs::remove_file(first).unwrap();
    std::fs::remove_file(second).unwrap();
}

#[test]
fn an_adapter_for_another_architecture_is_an_invalid_request_naming_it() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let model = MlxModel::load(&smollm2_path(), 256).unwrap();
    let foreign = write_adapter("foreign", 5, "qwen3");
    let mut sink = Collect::default();
    let error =
        model.generate(&with_adapters(&[("foreign-tone", &foreign, 1.0)]), &mut sink).unwrap_err();
    std::fs::remove_file(foreign).unwrap();
    assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
    assert!(error.message.contains("foreign-tone") && error.message.contains("qwen3"), "{error}");
}

/// The adapter's `attn_q` rows come in llama.cpp's permuted order; on an MLX-format
/// model they must be put back in Hugging Face order to mean the same update.
#[test]
fn a_gguf_adapter_on_the_mlx_format_folder_answers_as_on_the_gguf_model() {
    if hearth_sdk::testing::real_models().is_none() {
        return;
    }
    let folder = MlxModel::load_mlx(&crate::fixture::smollm2_mlx(true), 256).unwrap();
    let gguf = MlxModel::load(&smollm2_path(), 256).unwrap();
    let adapter = write_adapter("folder", 3, "llama");
    let request = with_adapters(&[("first", &adapter, 0.5)]);
    let (ours, theirs) = (text(&folder, &request), text(&gguf, &request));
    println!("folder: {ours:?}\ngguf:   {theirs:?}");
    assert_ne!(ours, text(&folder, &with_adapters(&[])), "the adapter changed nothing");
    assert_eq!(ours, theirs);
    std::fs::remove_file(adapter).unwrap();
}
