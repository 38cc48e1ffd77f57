//! `hearth-llama-logits MODEL [--adapter FILE:SCALE] TOKEN...`: evaluates the token ids
//! as one batch from position 0 with llama.cpp (2 threads, a 512-token context, the
//! library's defaults otherwise) and writes the last token's logits to stdout as
//! little-endian f32.
//!
//! `hearth-llama-logits --tokenize MODEL` prints llama.cpp's tokens for stdin instead
//! (see [`tokenize`]); `hearth-llama-logits --dequantize TYPE_ID` runs ggml's
//! dequantizer (`dequantize.rs`); `hearth-llama-logits --quantize IN OUT TYPE` its
//! quantizer (`quantize.rs`).

mod dequantize;
mod quantize;
mod tokenize;

use std::io::Write;
use std::num::NonZeroU32;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

pub(crate) type AnyError = Box<dyn std::error::Error>;

struct Arguments {
    model: String,
    adapter: Option<(String, f32)>,
    tokens: Vec<i32>,
}

fn arguments() -> Result<Arguments, AnyError> {
    let usage = "usage: hearth-llama-logits MODEL [--adapter FILE:SCALE] TOKEN...";
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or(usage)?;
    let mut adapter = None;
    let mut tokens = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--adapter" {
            let spec = args.next().ok_or(usage)?;
            let (file, scale) = spec.rsplit_once(':').ok_or("--adapter takes FILE:SCALE")?;
            adapter = Some((file.to_string(), scale.parse()?));
        } else {
            tokens.push(arg.parse()?);
        }
    }
    if tokens.is_empty() {
        return Err(usage.into());
    }
    Ok(Arguments { model, adapter, tokens })
}

fn main() -> Result<(), AnyError> {
    let mode = std::env::args().nth(1);
    match mode.as_deref() {
        Some("--tokenize") => {
            let model =
                std::env::args().nth(2).ok_or("usage: hearth-llama-logits --tokenize MODEL")?;
            return tokenize::run(&model);
        }
        Some("--dequantize") => {
            let ty = std::env::args().nth(2).ok_or("usage: --dequantize TYPE_ID")?;
            return dequantize::run(&ty);
        }
        Some("--quantize") => {
            let usage = "usage: --quantize IN OUT TYPE";
            let mut args = std::env::args().skip(2);
            let (input, output, ty) = (args.next(), args.next(), args.next());
            let (Some(input), Some(output), Some(ty)) = (input, output, ty) else {
                return Err(usage.into());
            };
            return quantize::run(&input, &output, &ty);
        }
        _ => {}
    }
    let Arguments { model, adapter, tokens } = arguments()?;
    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let mut model = LlamaModel::load_from_file(&backend, &model, &LlamaModelParams::default())?;
    let mut lora = adapter
        .map(|(file, scale)| model.lora_adapter_init(file).map(|lora| (lora, scale)))
        .transpose()?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut context = model.new_context(&backend, params)?;
    if let Some((lora, scale)) = &mut lora {
        context.lora_adapter_set(lora, *scale)?;
    }
    let mut batch = LlamaBatch::new(tokens.len(), 1);
    for (position, &token) in tokens.iter().enumerate() {
        batch.add(LlamaToken(token), position as i32, &[0], position + 1 == tokens.len())?;
    }
    context.decode(&mut batch)?;
    let logits = context.get_logits_ith(tokens.len() as i32 - 1);
    let bytes: Vec<u8> = logits.iter().flat_map(|value| value.to_le_bytes()).collect();
    std::io::stdout().lock().write_all(&bytes)?;
    Ok(())
}
