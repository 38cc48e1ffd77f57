//! MLX-format SmolLM2 folders made from the installed GGUF, so no model is downloaded:
//! `config.json` from the GGUF metadata, `tokenizer.json` saved from the SDK's
//! tokenizer, `tokenizer_config.json` with the GGUF's chat template, and
//! `model.safetensors` under Hugging Face names with Q and K rows un-permuted.
//!
//! Quantized, the re-pack is lossless: a GGUF Q4_1 block is an affine 4-bit group of 32
//! along the input dimension, `d·q + m`, which is MLX's `scales·q + biases` with the
//! block's own f16 `d` and `m` and its nibbles repacked into uint32 words; a Q8_0 block
//! `d·q` (q signed) is the 8-bit group `d·(q + 128) − 128·d` (exact in f16), declared
//! per weight in `config.json`. Dense, every matrix is dequantized and rounded to f16,
//! and the norms to bf16.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hearth_sdk::helpers::{GgmlType, Gguf, TensorInfo, Tokenizer};
use serde_json::{json, Value};

use crate::common::smollm2_path;

/// One tensor to write: safetensors dtype, shape (outermost first), little-endian bytes.
pub struct Tensor {
    pub name: String,
    pub dtype: &'static str,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// The Hugging Face name of a GGUF tensor name, written out here independently of the
/// plugin's own table so the test checks it.
fn hf_name(gguf: &str) -> String {
    let (base, suffix) = gguf.rsplit_once('.').expect("a dotted tensor name");
    let base = match base {
        "token_embd" => "model.embed_tokens".to_string(),
        "output_norm" => "model.norm".to_string(),
        "output" => "lm_head".to_string(),
        _ => {
            let (layer, part) = base
                .strip_prefix("blk.")
                .and_then(|rest| rest.split_once('.'))
                .expect("a block tensor");
            let part = match part {
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                other => panic!("unexpected tensor part {other}"),
            };
            format!("model.layers.{layer}.{part}")
        }
    };
    format!("{base}.{suffix}")
}

/// llama.cpp's converter reorders each head's Q/K rows from halves to interleaved pairs:
/// GGUF row `2i + j` of a head is Hugging Face row `j·half + i`. The GGUF row for `row`.
fn gguf_row(row: usize, head_dim: usize) -> usize {
    let (head, within) = (row / head_dim, row % head_dim);
    let half = head_dim / 2;
    head * head_dim + 2 * (within % half) + within / half
}

fn f16_to_f32(bytes: [u8; 2]) -> f32 {
    half::f16::from_le_bytes(bytes).to_f32()
}

/// A GGUF Q4_1 or Q8_0 weight as MLX's packed words, scales and biases (its rows in `order`).
fn repack(name: &str, ty: GgmlType, data: &[u8], inputs: usize, order: &[usize]) -> [Tensor; 3] {
    let (blocks, block_bytes) = (inputs / 32, if ty == GgmlType::Q4_1 { 20 } else { 34 });
    let (mut words, mut scales, mut biases) = (Vec::new(), Vec::new(), Vec::new());
    for &row in order {
        for block in
            data[row * blocks * block_bytes..][..blocks * block_bytes].chunks_exact(block_bytes)
        {
            scales.extend_from_slice(&block[0..2]);
            if ty == GgmlType::Q4_1 {
                biases.extend_from_slice(&block[2..4]);
                // GGUF: byte j holds element j (low nibble) and j + 16 (high). MLX: element k
                // sits at bits 4·(k mod 8) of word k / 8, so byte b holds elements 2b and 2b + 1.
                let q =
                    |k: usize| if k < 16 { block[4 + k] & 0x0f } else { block[4 + k - 16] >> 4 };
                words.extend((0..16).map(|b| q(2 * b) | (q(2 * b + 1) << 4)));
            } else {
                biases.extend(
                    half::f16::from_f32(-128.0 * f16_to_f32([block[0], block[1]])).to_le_bytes(),
                );
                words.extend(block[2..].iter().map(|&q| (q as i8 as i16 + 128) as u8));
            }
        }
    }
    let (rows, per_word) = (order.len(), if ty == GgmlType::Q4_1 { 8 } else { 4 });
    let tensor = |suffix: &str, dtype, shape: Vec<usize>, data| Tensor {
        name: format!("{name}.{suffix}"),
        dtype,
        shape,
        data,
    };
    [
        tensor("weight", "U32", vec![rows, inputs / per_word], words),
        tensor("scales", "F16", vec![rows, blocks], scales),
        tensor("biases", "F16", vec![rows, blocks], biases),
    ]
}

/// Every row of a GGUF tensor as f32 (F32, F16, Q4_1 or Q8_0), rows in `order`.
fn dequantize(info: &TensorInfo, data: &[u8], inputs: usize, order: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(order.len() * inputs);
    for &row in order {
        match info.ty {
            GgmlType::F32 => out.extend(
                data[row * inputs * 4..][..inputs * 4]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap())),
            ),
            GgmlType::F16 => out.extend(
                data[row * inputs * 2..][..inputs * 2]
                    .chunks_exact(2)
                    .map(|b| f16_to_f32([b[0], b[1]])),
            ),
            GgmlType::Q4_1 => {
                for block in data[row * inputs / 32 * 20..][..inputs / 32 * 20].chunks_exact(20) {
                    let (d, m) =
                        (f16_to_f32([block[0], block[1]]), f16_to_f32([block[2], block[3]]));
                    let q = |k: usize| {
                        f32::from(if k < 16 { block[4 + k] & 0x0f } else { block[4 + k - 16] >> 4 })
                    };
                    out.extend((0..32).map(|k| d * q(k) + m));
                }
            }
            GgmlType::Q8_0 => {
                for block in data[row * inputs / 32 * 34..][..inputs / 32 * 34].chunks_exact(34) {
                    let d = f16_to_f32([block[0], block[1]]);
                    out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
                }
            }
            other => panic!("the fixture does not convert {}", other.name()),
        }
    }
    out
}

/// SmolLM2's tensors in the MLX layout: quantized (lossless) or dense (f16, bf16 norms).
pub fn tensors(gguf: &Gguf, quantized: bool) -> Vec<Tensor> {
    let int = |key: &str| gguf.u64(key).unwrap() as usize;
    let (heads, kv_heads) =
        (int("llama.attention.head_count"), int("llama.attention.head_count_kv"));
    let head_dim = int("llama.embedding_length") / heads;
    gguf.tensors()
        .iter()
        .flat_map(|info| {
            let data = gguf.tensor_data(info);
            let (inputs, rows) = (info.dims[0] as usize, info.rows() as usize);
            let order: Vec<usize> = match info.name.rsplit('.').nth(1) {
                Some("attn_q") => (0..rows).map(|r| gguf_row(r, head_dim)).collect(),
                Some("attn_k") => (0..rows).map(|r| gguf_row(r, rows / kv_heads)).collect(),
                _ => (0..rows).collect(),
            };
            let name = hf_name(&info.name);
            match (info.ty, quantized) {
                (GgmlType::Q4_1 | GgmlType::Q8_0, true) => {
                    repack(name.strip_suffix(".weight").unwrap(), info.ty, data, inputs, &order)
                        .into()
                }
                (GgmlType::F32, true) if info.dims.len() == 1 => {
                    vec![Tensor { name, dtype: "F32", shape: vec![inputs], data: data.to_vec() }]
                }
                // Dense folders keep norms in bf16, so both 16-bit float types are read.
                (GgmlType::F32, false) if info.dims.len() == 1 => {
                    let values = dequantize(info, data, inputs, &order);
                    let data = values
                        .iter()
                        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                        .collect();
                    vec![Tensor { name, dtype: "BF16", shape: vec![inputs], data }]
                }
                _ => {
                    let values = dequantize(info, data, inputs, &order);
                    let data =
                        values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
                    vec![Tensor { name, dtype: "F16", shape: vec![rows, inputs], data }]
                }
            }
        })
        .collect()
}

/// `config.json` of SmolLM2 from its GGUF metadata.
pub fn config(gguf: &Gguf, quantized: bool) -> Value {
    let int = |key: &str| gguf.u64(&format!("llama.{key}")).unwrap();
    let mut config = json!({
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_act": "silu",
        "hidden_size": int("embedding_length"),
        "intermediate_size": int("feed_forward_length"),
        "num_hidden_layers": int("block_count"),
        "num_attention_heads": int("attention.head_count"),
        "num_key_value_heads": int("attention.head_count_kv"),
        "rms_norm_eps": gguf.f64("llama.attention.layer_norm_rms_epsilon").unwrap(),
        "rope_theta": gguf.f64("llama.rope.freq_base").unwrap(),
        "max_position_embeddings": int("context_length"),
        "vocab_size": gguf.tensor("token_embd.weight").unwrap().rows(),
        "tie_word_embeddings": gguf.tensor("output.weight").is_none(),
        "rope_scaling": null,
    });
    if quantized {
        let mut quantization = json!({"group_size": 32, "bits": 4});
        for eight_bit in gguf.tensors().iter().filter(|t| t.ty == GgmlType::Q8_0) {
            let base = hf_name(&eight_bit.name).strip_suffix(".weight").unwrap().to_string();
            quantization[base] = json!({"group_size": 32, "bits": 8});
        }
        config["quantization"] = quantization;
    }
    config
}

/// Write `tensors` as one safetensors file.
fn write_safetensors(path: &Path, tensors: &[Tensor]) {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "mlx"}));
    let mut offset = 0;
    for tensor in tensors {
        header.insert(tensor.name.clone(), json!({"dtype": tensor.dtype, "shape": tensor.shape, "data_offsets": [offset, offset + tensor.data.len()]}));
        offset += tensor.data.len();
    }
    let mut header = serde_json::to_vec(&Value::Object(header)).unwrap();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + header.len() + offset);
    out.extend((header.len() as u64).to_le_bytes());
    out.extend(header);
    tensors.iter().for_each(|tensor| out.extend(&tensor.data));
    std::fs::write(path, out).unwrap();
}

/// Write a whole MLX-format folder at `dir` from SmolLM2's GGUF, its weights in `shards`
/// files (more than one: `model-0000i-of-0000n.safetensors` and the index), with `edit`
/// applied to its tensors and config first (to make malformed ones).
pub fn write_folder(
    dir: &Path,
    quantized: bool,
    shards: usize,
    edit: impl FnOnce(&mut Vec<Tensor>, &mut Value),
) {
    let gguf = Gguf::open(smollm2_path()).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let text = |id: Option<u32>| id.and_then(|id| tokenizer.token_text(id)).map(str::to_string);
    let settings = json!({
        "add_bos_token": matches!(gguf.get("tokenizer.ggml.add_bos_token"), Some(hearth_sdk::helpers::Value::Bool(true))),
        "bos_token": text(tokenizer.bos()),
        "eos_token": text(tokenizer.eos()),
        "chat_template": gguf.str("tokenizer.chat_template").unwrap(),
    });
    let (mut tensors, mut config) = (tensors(&gguf, quantized), config(&gguf, quantized));
    edit(&mut tensors, &mut config);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).unwrap())
        .unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_json().unwrap()).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        serde_json::to_string_pretty(&settings).unwrap(),
    )
    .unwrap();
    if shards == 1 {
        write_safetensors(&dir.join("model.safetensors"), &tensors);
        return;
    }
    let mut weight_map = serde_json::Map::new();
    for (index, part) in tensors.chunks(tensors.len().div_ceil(shards)).enumerate() {
        let file = format!("model-{:05}-of-{shards:05}.safetensors", index + 1);
        for tensor in part {
            weight_map.insert(tensor.name.clone(), file.clone().into());
        }
        write_safetensors(&dir.join(&file), part);
    }
    let index = json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
}

/// A folder under the test target's temp dir, emptied first: each run rewrites its
/// folders, so they always match this code, and none accumulate.
pub fn scratch(label: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("mlx-{label}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The valid folders, written once per test process (quantized, dense).
pub fn smollm2_mlx(quantized: bool) -> String {
    static FOLDERS: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    let dir = FOLDERS[usize::from(quantized)].get_or_init(|| {
        let dir = scratch(if quantized { "smollm2-q4" } else { "smollm2-f16" });
        write_folder(&dir, quantized, 1, |_, _| {});
        dir
    });
    dir.to_str().unwrap().to_string()
}
