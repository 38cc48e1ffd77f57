//! Embeddings against llama.cpp: SmolLM2 and the tiny random-weight model of every
//! architecture the model layer describes, each read as an embedding model by a copy
//! of its file that names a pooling ([`crate::fixtures::pooled_copy`]: mean, CLS and
//! last, as llama.cpp numbers them), embedded by the engine, by the llama.cpp plugin as
//! the host loads it, and by the CPU reference (its hidden states pooled by the model
//! layer).
//!
//! Per model and pooling, on one fixed text:
//! - the engine reads as many tokens as llama.cpp;
//! - its vector's cosine to llama.cpp's is at least [`TO_LLAMA_CPP`];
//! - its cosine to exact arithmetic's is at least [`TO_EXACT`];
//! - exact arithmetic's cosine to llama.cpp's is at least [`TO_LLAMA_CPP`] too, so the
//!   reference and the oracle read the file alike.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use hearth_sdk::helpers::{Gguf, Tokenizer};
use hearth_sdk::{Embedding, Model, PluginError};

use crate::conformance::{tiny_model, PROMPT};
use crate::fixtures::{pooled_copy, smollm2_path};
use crate::{llamacpp, reference};

/// The poolings a file can name, in llama.cpp's numbering (`LLAMA_POOLING_TYPE_*`).
pub const POOLINGS: [(u32, &str); 3] = [(1, "mean"), (2, "cls"), (3, "last")];

/// How close an engine's vector must sit to llama.cpp's. llama.cpp rounds each
/// matmul's activations to 8 bits per block (Q8_0 and Q8_K) or to f16 and keeps its KV
/// cache in f16; a state of 256 to 576 values that differs by that rounding alone
/// keeps a cosine above 0.999.
pub const TO_LLAMA_CPP: f64 = 0.999;

/// How close an engine's vector must sit to exact arithmetic's: the engines compute in
/// f32 over the file's own blocks (MLX's quantized matmuls, WebGPU's kernels), whose
/// rounding leaves the cosine at 1 to nine digits on every row here (measured on MLX's
/// CPU device and on lavapipe); the bound leaves three of them for other devices.
pub const TO_EXACT: f64 = 0.999999;

/// The type of the tiny models compared: F16, on which llama.cpp rounds activations
/// to f16 rather than 8 bits, so its vectors are closest to exact arithmetic's.
const TINY_TYPE: &str = "F16";

/// `a·b / (|a| |b|)`, summed in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "vectors of different lengths");
    let dot = |x: &[f32], y: &[f32]| {
        x.iter().zip(y).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum::<f64>()
    };
    dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt())
}

/// The CPU reference's embedding of `text` by the model at `path`: its hidden states,
/// pooled as the file says.
fn exact_embedding(path: &str, text: &str) -> Result<Vec<f32>, String> {
    let gguf = Gguf::open(path).map_err(|e| format!("open: {e}"))?;
    let tokens = Tokenizer::from_gguf(&gguf)
        .and_then(|tokenizer| tokenizer.encode(text))
        .map_err(|e| format!("tokenize: {e}"))?;
    let config = hearth_model::Config::from_gguf(&gguf).map_err(|e| format!("config: {e}"))?;
    let states = reference::hidden_states(&gguf, &tokens).map_err(|e| format!("reference: {e}"))?;
    Ok(config.pooling.pool(&states, config.n_embd as usize))
}

/// One model and pooling's cosines: the engine's to llama.cpp, exact arithmetic's to
/// llama.cpp, the engine's to exact arithmetic.
struct Row {
    to_llama_cpp: f64,
    exact_to_llama_cpp: f64,
    to_exact: f64,
}

/// One model and pooling: the three vectors compared, or what went wrong.
fn check_one(
    path: &str,
    embed_of: &impl Fn(&str, &str) -> Result<Embedding, PluginError>,
) -> Result<Row, String> {
    let llama = llamacpp::load_with_plugin(path)
        .embed(PROMPT, false)
        .map_err(|e| format!("llama.cpp: {e}"))?;
    let exact = exact_embedding(path, PROMPT)?;
    let ours = catch_unwind(AssertUnwindSafe(|| embed_of(path, PROMPT)))
        .map_err(|_| "panicked".to_string())?
        .map_err(|e| e.to_string())?;
    if ours.tokens != llama.tokens {
        return Err(format!("{} tokens read, llama.cpp read {}", ours.tokens, llama.tokens));
    }
    Ok(Row {
        to_llama_cpp: cosine(&ours.vector, &llama.vector),
        exact_to_llama_cpp: cosine(&exact, &llama.vector),
        to_exact: cosine(&ours.vector, &exact),
    })
}

/// Embeds [`PROMPT`] with SmolLM2 and each architecture's tiny model (type
/// `TINY_TYPE`) under each of `POOLINGS` through `embed_of` (which loads the file
/// at the path and embeds the text), prints a table of the cosines to llama.cpp and to
/// exact arithmetic, and fails naming every row out of bounds. Without the tiny models
/// (setup makes them), prints `skipped` and returns.
pub fn check_every_model(
    models: &Path,
    engine: &str,
    embed_of: impl Fn(&str, &str) -> Result<Embedding, PluginError>,
) {
    if !models.join("tiny").is_dir() {
        println!("skipped: no tiny models under {}", models.display());
        return;
    }
    let mut sources = vec![("smollm2".to_string(), smollm2_path())];
    for arch in hearth_model::arch::ARCHITECTURES {
        if arch.altup {
            // Neither engine nor the CPU reference embeds with Gemma 3n's AltUp streams,
            // and no Gemma 3n file names a pooling.
            println!("{:<9} not run: no embeddings of AltUp models", arch.gguf_name);
            continue;
        }
        sources.push((arch.gguf_name.to_string(), tiny_model(models, arch.gguf_name, TINY_TYPE)));
    }
    println!("{engine} embeddings: cosine to llama.cpp, exact arithmetic's to llama.cpp, to exact arithmetic");
    let mut failures = Vec::new();
    for (name, source) in &sources {
        for (pooling, pooling_name) in POOLINGS {
            let row = format!("{name:<9} {pooling_name:<5}");
            match check_one(&pooled_copy(source, pooling), &embed_of) {
                Ok(Row { to_llama_cpp, exact_to_llama_cpp, to_exact }) => {
                    println!("{row} {to_llama_cpp:.7} {exact_to_llama_cpp:.7} {to_exact:.9}");
                    if to_llama_cpp.min(exact_to_llama_cpp) < TO_LLAMA_CPP || to_exact < TO_EXACT {
                        failures.push(row);
                    }
                }
                Err(error) => {
                    println!("{row} {error}");
                    failures.push(format!("{row}: {error}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{engine} embeddings out of bounds: {failures:?}");
}
