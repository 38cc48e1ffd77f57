//! MLX-format models, the mlx-community layout: a folder holding `config.json`, the
//! weights in `model.safetensors` (or shards listed by `model.safetensors.index.json`),
//! `tokenizer.json` and `tokenizer_config.json` (with the chat template).
//!
//! Weights carry Hugging Face names (`model.layers.3.self_attn.q_proj`), Q and K rows in
//! Hugging Face order, so RoPE rotates the two halves of each head (llama.cpp's GGUF
//! converter permutes Llama's rows to rotate adjacent pairs instead). Quantized weights
//! are MLX's own affine format: `X.weight` packed into uint32, `X.scales`, `X.biases`,
//! with `group_size` and `bits` from `config.json`'s `quantization`; others are f16,
//! bf16 or f32. Every safetensors header is validated with the SDK's reader before MLX
//! parses the file (the host's file gate checks only the one file it was given), and
//! anything malformed is refused as `ModelFile`, anything outside what the forward pass
//! runs as `Unsupported`, naming the file and the problem.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use hearth_model::{Architecture, Config, Text};
use hearth_sdk::helpers::{chat_template_source, ChatTemplate, Safetensors, Tokenizer};
use hearth_sdk::PluginError;
use serde_json::Value;

use crate::ffi;
use crate::weights::Tensors;

/// Bit widths and group sizes MLX's affine `quantized_matmul` supports.
const BITS: [i64; 6] = [2, 3, 4, 5, 6, 8];
const GROUP_SIZES: [i64; 3] = [32, 64, 128];

/// An MLX-format model folder, with its `config.json` read.
pub struct Folder {
    dir: PathBuf,
    config: Value,
}

fn read_json(dir: &Path, name: &str) -> Result<Value, PluginError> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => {
            PluginError::model_file(format!("{name} is missing from {}", dir.display()))
        }
        _ => PluginError::model_file(format!("cannot read {}: {error}", path.display())),
    })?;
    serde_json::from_str(&text)
        .map_err(|error| PluginError::model_file(format!("{name} is not valid JSON: {error}")))
}

/// A token named in tokenizer_config.json: a string, or an object with `content`.
fn token_text(value: Option<&Value>) -> Option<&str> {
    value.and_then(|value| value.as_str().or_else(|| value.get("content").and_then(Value::as_str)))
}

impl Folder {
    /// The folder `path` names, or the folder of the file it names (`model.safetensors`,
    /// a shard, or the index, as a catalog artifact may point at one of them).
    pub fn open(path: &str) -> Result<Self, PluginError> {
        let path = Path::new(path);
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            return Err(PluginError::model_file(format!("{} does not exist", path.display())));
        };
        let config = read_json(&dir, "config.json")?;
        Ok(Self { dir, config })
    }

    /// The model's shape from `config.json`.
    pub fn config(&self) -> Result<Config, PluginError> {
        Config::from_hf(&self.config)
    }

    /// The tokenizer (`tokenizer.json`) and chat template (`tokenizer_config.json`'s
    /// `chat_template`, else a `chat_template.jinja` file, else the family's turn format
    /// or ChatML, as for GGUF files).
    pub fn text(&self) -> Result<Text, PluginError> {
        let settings = read_json(&self.dir, "tokenizer_config.json")?;
        let path = self.dir.join("tokenizer.json");
        let json = std::fs::read_to_string(&path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => PluginError::model_file(format!(
                "tokenizer.json is missing from {}",
                self.dir.display()
            )),
            _ => PluginError::model_file(format!("cannot read {}: {error}", path.display())),
        })?;
        let (bos, eos) =
            (token_text(settings.get("bos_token")), token_text(settings.get("eos_token")));
        let add_bos = settings.get("add_bos_token").and_then(Value::as_bool).unwrap_or(false);
        let tokenizer = Tokenizer::from_json(&json, bos, eos, add_bos)
            .map_err(|error| PluginError::unsupported(error.to_string()))?;
        let source = match settings.get("chat_template") {
            Some(Value::String(source)) => Some(source.clone()),
            // A list of named templates: the default one.
            Some(Value::Array(named)) => named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template").and_then(Value::as_str))
                .map(str::to_string),
            _ => std::fs::read_to_string(self.dir.join("chat_template.jinja")).ok(),
        };
        let architecture = self.config()?.arch.gguf_name;
        let template = ChatTemplate::new(
            chat_template_source(source.as_deref(), architecture),
            bos.unwrap_or(""),
            eos.unwrap_or(""),
        )
        .map_err(|error| PluginError::unsupported(error.to_string()))?;
        Ok(Text::new(tokenizer, template))
    }

    /// The weight files: the index's shards, else `model.safetensors`.
    fn shards(&self) -> Result<Vec<PathBuf>, PluginError> {
        if !self.dir.join("model.safetensors.index.json").is_file() {
            let single = self.dir.join("model.safetensors");
            if !single.is_file() {
                return Err(PluginError::model_file(format!(
                    "neither model.safetensors nor model.safetensors.index.json is in {}",
                    self.dir.display()
                )));
            }
            return Ok(vec![single]);
        }
        let index = read_json(&self.dir, "model.safetensors.index.json")?;
        let map = index.get("weight_map").and_then(Value::as_object).ok_or_else(|| {
            PluginError::model_file("model.safetensors.index.json has no `weight_map` object")
        })?;
        let mut files = BTreeSet::new();
        for file in map.values() {
            // A shard name is a plain file name in the folder, never a path out of it.
            match file.as_str() {
                Some(name) if !name.contains(['/', '\\']) && name != ".." => {
                    files.insert(self.dir.join(name))
                }
                _ => {
                    return Err(PluginError::model_file(format!(
                        "model.safetensors.index.json: bad shard name {file}"
                    )))
                }
            };
        }
        Ok(files.into_iter().collect())
    }

    /// `(group_size, bits)` of the weight `base`: config.json's `quantization`, or its
    /// per-weight entry when it has one.
    fn quantization(&self, base: &str) -> Result<(i32, i32), PluginError> {
        let settings =
            self.config.get("quantization").filter(|q| q.is_object()).ok_or_else(|| {
                PluginError::model_file(format!(
                    "`{base}.weight` is packed (uint32) but config.json has no `quantization`"
                ))
            })?;
        if let Some(mode) =
            settings.get("mode").and_then(Value::as_str).filter(|mode| *mode != "affine")
        {
            return Err(PluginError::unsupported(format!(
                "quantization mode `{mode}` (the MLX backend runs affine)"
            )));
        }
        let entry = settings.get(base).filter(|entry| entry.is_object()).unwrap_or(settings);
        let get = |key: &str, allowed: &[i64]| {
            let value = entry.get(key).and_then(Value::as_i64);
            value.filter(|v| allowed.contains(v)).map(|v| v as i32).ok_or_else(|| {
                PluginError::unsupported(format!(
                    "quantization `{key}` = {} for `{base}`",
                    entry.get(key).unwrap_or(&Value::Null)
                ))
            })
        };
        Ok((get("group_size", &GROUP_SIZES)?, get("bits", &BITS)?))
    }

    /// Validate every shard's header, then load them all through MLX.
    pub fn tensors(&self, arch: &'static Architecture) -> Result<Tensors, PluginError> {
        let shards = self.shards()?;
        let mut quantized = HashMap::new();
        for shard in &shards {
            let file = Safetensors::open(shard)
                .map_err(|error| PluginError::model_file(error.to_string()))?;
            for tensor in file.tensors() {
                let known = matches!(tensor.dtype.as_str(), "F16" | "BF16" | "F32" | "U32");
                if !known {
                    return Err(PluginError::unsupported(format!(
                        "tensor `{}` has dtype {}",
                        tensor.name, tensor.dtype
                    )));
                }
                // A packed weight is quantized whether or not its scales made it into the file.
                if let Some(base) =
                    tensor.name.strip_suffix(".weight").filter(|_| tensor.dtype == "U32")
                {
                    quantized.insert(base.to_string(), self.quantization(base)?);
                }
            }
        }
        let mut arrays = HashMap::new();
        for shard in &shards {
            let path = shard
                .to_str()
                .ok_or_else(|| PluginError::model_file("the model path is not UTF-8"))?;
            arrays.extend(ffi::load_safetensors(path)?);
        }
        // mlx-lm ties embeddings unless config.json says otherwise; an `lm_head` present is used either way.
        let tied = self.config.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(true);
        if !tied && !arrays.contains_key("lm_head.weight") {
            return Err(PluginError::model_file(
                "tensor `lm_head.weight` is missing (and config.json unties the embeddings)",
            ));
        }
        Ok(Tensors::new(arrays, quantized, Some(arch)))
    }
}
