//! A model's hyper-parameters, read once from GGUF metadata or from a Hugging Face /
//! MLX `config.json`, with everything the engines cannot run refused here, at load,
//! as `Unsupported` naming the reason, so the router falls back before any memory is
//! spent.

use hearth_sdk::helpers::{Gguf, Value as GgufValue};
use hearth_sdk::PluginError;
use serde_json::Value;

use crate::arch::{self, Architecture, Ffn, RopePairs};
use crate::embed::Pooling;

/// The hyper-parameters of a model of one of [`arch::ARCHITECTURES`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: &'static Architecture,
    pub n_embd: u32,
    pub n_layer: u32,
    /// The feed-forward's inner width: of the one FFN, or of each expert.
    pub n_ff: u32,
    /// The router's hyper-parameters (mixture-of-experts models only).
    pub experts: Option<Experts>,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    /// Dimensions of each head RoPE rotates (the first `n_rot`).
    pub n_rot: u32,
    pub eps: f32,
    /// RoPE base of the global layers (all layers without a sliding window).
    pub rope_base: f32,
    /// The pairing of this file's Q and K rows (it depends on the file format).
    pub rope_pairs: RopePairs,
    /// Tokens a local layer attends to, counting the query's own.
    pub sliding_window: Option<u32>,
    /// Which layers attend locally (every layer's entry; empty without a sliding
    /// window): by the architecture's period (the last of each attends globally) unless
    /// the file lists them. The local ones' RoPE base is the architecture's, unless the
    /// file says otherwise.
    pub local_layers: Vec<bool>,
    pub local_rope_base: f32,
    /// Factor on `q·k` before the softmax.
    pub attention_scale: f32,
    /// Added to every norm weight as it is loaded (Hugging Face Gemma's `w − 1`).
    pub norm_offset: f32,
    pub vocab: u32,
    pub context_length: u32,
    /// How a text's token states become its embedding (`<arch>.pooling_type`); a
    /// generative model's file names none.
    pub pooling: Pooling,
    /// Gemma 3n's sizes ([`Architecture::altup`] models only).
    pub altup: Option<AltUp>,
}

/// The sizes of Gemma 3n's block ([`Architecture::altup`]; steps in [`crate::altup`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AltUp {
    /// Parallel streams of the hidden state; the first is the one the layers update.
    pub streams: u32,
    /// Width of each layer's per-layer input.
    pub per_layer_dim: u32,
    /// Rank of LAuReL's low-rank branch.
    pub laurel_rank: u32,
    /// Layers from this one on compute no K and V of their own: each attends to the KV
    /// of the last earlier layer of its kind (local or global).
    pub first_shared_kv: u32,
    /// Per layer, the feed-forward gate's cutoff in standard deviations above its mean
    /// (`None`: no cutoff).
    pub sparsity: Vec<Option<f32>>,
    /// The final logits are `cap · tanh(logit / cap)`.
    pub logit_softcap: f32,
}

/// The routing of a mixture-of-experts feed-forward ([`Ffn::Experts`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Experts {
    /// Experts per layer.
    pub count: u32,
    /// Experts each token runs (the top k).
    pub used: u32,
    /// Whether the k chosen probabilities are rescaled to sum to 1 (llama.cpp always
    /// does for Qwen3-MoE; Hugging Face's `norm_topk_prob`).
    pub normalize: bool,
}

impl Experts {
    /// Refuse a routing no engine can run.
    fn checked(self) -> Result<Self, PluginError> {
        if self.used > self.count {
            return Err(PluginError::model_file(format!(
                "{} experts used per token of {}",
                self.used, self.count
            )));
        }
        Ok(self)
    }

    /// One token's experts and their weights, from the router's logits over every
    /// expert: softmax, the `used` most probable (highest first, the lower index first
    /// among equals), rescaled to sum to 1 when [`Experts::normalize`] (the sum kept
    /// from 0 as llama.cpp keeps it, at f16's smallest normal number).
    pub fn route(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let exps: Vec<f64> = logits.iter().map(|&l| f64::from(l - max).exp()).collect();
        let total: f64 = exps.iter().sum();
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]).then(a.cmp(&b)));
        order.truncate(self.used as usize);
        let chosen: f64 = order.iter().map(|&e| exps[e] / total).sum();
        let divisor = if self.normalize { chosen.max(6.103_515_625e-5) } else { 1.0 };
        order.into_iter().map(|e| (e as u32, (exps[e] / total / divisor) as f32)).collect()
    }
}

/// What one layer does, resolved from the architecture and the layer's index.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerPlan {
    pub rope_base: f32,
    /// `Some(w)`: query at position p sees keys `p−w+1 ..= p` only.
    pub window: Option<u32>,
    /// The layer whose K and V this one attends to: its own index, or an earlier
    /// layer's (Gemma 3n's KV sharing), in which case it computes only Q.
    pub kv_layer: u32,
    /// Gemma 3n's activation sparsity: the gate's values below `mean + k · std` (over
    /// each token's row, the sample std) are cut to 0 before the activation.
    pub sparsity: Option<f32>,
}

fn meta_error(error: impl std::fmt::Display) -> PluginError {
    PluginError::model_file(error.to_string())
}

fn unsupported_arch(what: &str, name: &str) -> PluginError {
    PluginError::unsupported(format!(
        "{what} `{name}` (hearth's MLX and WebGPU engines run {})",
        arch::gguf_names()
    ))
}

/// Refuse an attention shape the engines cannot run.
fn check_attention(
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    n_rot: u32,
) -> Result<(), PluginError> {
    if kv_heads == 0 || heads % kv_heads != 0 || n_rot > head_dim || n_rot % 2 != 0 {
        return Err(PluginError::model_file(format!(
            "inconsistent attention shape: {heads} heads, {kv_heads} KV heads, rope over {n_rot} of {head_dim}"
        )));
    }
    Ok(())
}

/// `n_layer` flags of a period: every layer local but the last of each period.
fn periodic(n_layer: u32, period: u32) -> Vec<bool> {
    (0..n_layer).map(|index| index % period != period - 1).collect()
}

/// `feed_forward_length`: one number, or one per layer (Gemma 3n's files) as long as
/// every layer has the same.
fn feed_forward_length(gguf: &Gguf, key: &str) -> Result<u32, PluginError> {
    let value = gguf.get(key).ok_or_else(|| meta_error(format!("`{key}` is missing")))?;
    let widths: Vec<Option<u64>> = match value {
        GgufValue::Array(values) => values.iter().map(GgufValue::as_u64).collect(),
        single => vec![single.as_u64()],
    };
    match widths.first() {
        Some(&Some(first)) if widths.iter().all(|&w| w == Some(first)) => u32::try_from(first)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| meta_error(format!("`{key}` = {first} is out of range"))),
        _ => Err(PluginError::unsupported(format!(
            "`{key}`: feed-forward widths that differ between layers"
        ))),
    }
}

impl Config {
    /// The hyper-parameters in a GGUF file's metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<Self, PluginError> {
        let name = gguf.str("general.architecture").map_err(meta_error)?;
        let arch =
            arch::by_gguf_name(name).ok_or_else(|| unsupported_arch("architecture", name))?;
        let key = |name: &str| format!("{}.{name}", arch.gguf_name);
        let int = |name: &str| -> Result<u32, PluginError> {
            let value = gguf.u64(&key(name)).map_err(meta_error)?;
            u32::try_from(value).ok().filter(|&v| v > 0).ok_or_else(|| {
                PluginError::model_file(format!("`{}` = {value} is out of range", key(name)))
            })
        };
        let optional = |name: &str, default: u32| {
            if gguf.get(&key(name)).is_some() {
                int(name)
            } else {
                Ok(default)
            }
        };
        if let Ok(kind) = gguf.str(&key("rope.scaling.type")) {
            if kind != "none" {
                return Err(PluginError::unsupported(format!("rope scaling `{kind}`")));
            }
        }
        if gguf.tensor("rope_freqs.weight").is_some() {
            return Err(PluginError::unsupported("rope frequency factors (rope_freqs.weight)"));
        }
        let n_embd = int("embedding_length")?;
        let heads = int("attention.head_count")?;
        let kv_heads = optional("attention.head_count_kv", heads)?;
        let head_dim = optional("attention.key_length", n_embd / heads)?;
        let n_rot = optional("rope.dimension_count", head_dim)?;
        check_attention(heads, kv_heads, head_dim, n_rot)?;
        let n_layer = int("block_count")?;
        let (sliding_window, local_layers, local_rope_base) = match arch.sliding_window {
            Some(defaults) => {
                let local_layers = match gguf.get(&key("attention.sliding_window_pattern")) {
                    Some(GgufValue::Array(flags)) => {
                        let flags: Option<Vec<bool>> = flags
                            .iter()
                            .map(|flag| match flag {
                                GgufValue::Bool(local) => Some(*local),
                                _ => None,
                            })
                            .collect();
                        flags.filter(|f| f.len() == n_layer as usize).ok_or_else(|| {
                            PluginError::model_file(format!(
                                "`{}` is not {n_layer} booleans",
                                key("attention.sliding_window_pattern")
                            ))
                        })?
                    }
                    _ => periodic(
                        n_layer,
                        optional("attention.sliding_window_pattern", defaults.period)?,
                    ),
                };
                let base = gguf
                    .f64(&key("rope.freq_base_swa"))
                    .map_or(defaults.local_rope_base, |b| b as f32);
                (Some(int("attention.sliding_window")?), local_layers, base)
            }
            None => (None, Vec::new(), 0.0),
        };
        let (n_ff, experts) = match arch.ffn {
            Ffn::Dense => (feed_forward_length(gguf, &key("feed_forward_length"))?, None),
            Ffn::Experts => {
                let experts = Experts {
                    count: int("expert_count")?,
                    used: int("expert_used_count")?,
                    normalize: true,
                };
                (int("expert_feed_forward_length")?, Some(experts.checked()?))
            }
        };
        let vocab = gguf
            .tensor("token_embd.weight")
            .and_then(|t| u32::try_from(t.rows()).ok())
            .ok_or_else(|| PluginError::model_file("tensor `token_embd.weight` is missing"))?;
        let altup = if arch.altup {
            Some(crate::altup::from_gguf(gguf, n_layer, &local_layers)?)
        } else {
            None
        };
        let attention_scale = if arch.altup { 1.0 } else { 1.0 / (head_dim as f32).sqrt() };
        Ok(Self {
            arch,
            n_embd,
            n_layer,
            n_ff,
            experts,
            heads,
            kv_heads,
            head_dim,
            n_rot,
            eps: gguf.f64(&key("attention.layer_norm_rms_epsilon")).map_err(meta_error)? as f32,
            rope_base: gguf.f64(&key("rope.freq_base")).unwrap_or(10_000.0) as f32,
            rope_pairs: arch.gguf_rope,
            sliding_window,
            local_layers,
            local_rope_base,
            attention_scale,
            norm_offset: 0.0,
            vocab,
            context_length: optional("context_length", 2048)?,
            pooling: Pooling::from_gguf(gguf, arch.gguf_name)?,
            altup,
        })
    }

    /// The hyper-parameters in a Hugging Face or MLX `config.json`.
    pub fn from_hf(json: &Value) -> Result<Self, PluginError> {
        let int = |key: &str| -> Result<u32, PluginError> {
            json.get(key)
                .and_then(Value::as_u64)
                .and_then(|value| u32::try_from(value).ok())
                .filter(|&value| value > 0)
                .ok_or_else(|| {
                    PluginError::model_file(format!(
                        "config.json: `{key}` is missing or not a positive integer"
                    ))
                })
        };
        let int_or = |key: &str, default: u32| {
            if json.get(key).is_none_or(Value::is_null) {
                Ok(default)
            } else {
                int(key)
            }
        };
        let float = |key: &str, default: Option<f64>| {
            json.get(key).and_then(Value::as_f64).or(default).ok_or_else(|| {
                PluginError::model_file(format!("config.json: `{key}` is missing or not a number"))
            })
        };
        let model_type = json.get("model_type").and_then(Value::as_str).unwrap_or("(none)");
        let arch = arch::by_hf_model_type(model_type)
            .ok_or_else(|| unsupported_arch("model_type", model_type))?;
        if arch.altup {
            return Err(PluginError::unsupported(format!(
                "model_type `{model_type}` from a config.json (Gemma 3n is read from GGUF files)"
            )));
        }
        if let Some(scaling) = json.get("rope_scaling").filter(|value| !value.is_null()) {
            return Err(PluginError::unsupported(format!("rope scaling {scaling}")));
        }
        let expected_act = match arch.activation {
            arch::Activation::Silu => ["silu"].as_slice(),
            arch::Activation::GeluTanh => ["gelu_pytorch_tanh", "gelu_tanh"].as_slice(),
        };
        let act = json
            .get("hidden_activation")
            .or_else(|| json.get("hidden_act"))
            .and_then(Value::as_str)
            .unwrap_or(expected_act[0]);
        if !expected_act.contains(&act) {
            return Err(PluginError::unsupported(format!(
                "activation `{act}` for {model_type} (expected {})",
                expected_act[0]
            )));
        }
        for bias in ["attention_bias", "mlp_bias"] {
            if json.get(bias).and_then(Value::as_bool) == Some(true) {
                return Err(PluginError::unsupported(format!(
                    "`{bias}` (projections with biases)"
                )));
            }
        }
        let n_embd = int("hidden_size")?;
        let heads = int("num_attention_heads")?;
        let kv_heads = int_or("num_key_value_heads", heads)?;
        let head_dim = int_or("head_dim", n_embd / heads)?;
        check_attention(heads, kv_heads, head_dim, head_dim)?;
        let n_layer = int("num_hidden_layers")?;
        let (sliding_window, local_layers, local_rope_base) = match arch.sliding_window {
            Some(defaults) => (
                Some(int("sliding_window")?),
                periodic(n_layer, int_or("sliding_window_pattern", defaults.period)?),
                float("rope_local_base_freq", Some(f64::from(defaults.local_rope_base)))? as f32,
            ),
            None => (None, Vec::new(), 0.0),
        };
        let query_scale = float("query_pre_attn_scalar", Some(f64::from(head_dim)))?;
        let (n_ff, experts) = match arch.ffn {
            Ffn::Dense => (int("intermediate_size")?, None),
            Ffn::Experts => {
                let dense_layers = json
                    .get("mlp_only_layers")
                    .and_then(Value::as_array)
                    .is_some_and(|l| !l.is_empty());
                if dense_layers || int_or("decoder_sparse_step", 1)? != 1 {
                    return Err(PluginError::unsupported(
                        "dense layers among the experts (`mlp_only_layers`, `decoder_sparse_step`)",
                    ));
                }
                let experts = Experts {
                    count: int("num_experts")?,
                    used: int("num_experts_per_tok")?,
                    normalize: json.get("norm_topk_prob").and_then(Value::as_bool).unwrap_or(false),
                };
                (int("moe_intermediate_size")?, Some(experts.checked()?))
            }
        };
        Ok(Self {
            arch,
            n_embd,
            n_layer,
            n_ff,
            experts,
            heads,
            kv_heads,
            head_dim,
            n_rot: head_dim,
            eps: float("rms_norm_eps", None)? as f32,
            rope_base: float("rope_theta", Some(10_000.0))? as f32,
            rope_pairs: RopePairs::Halves,
            sliding_window,
            local_layers,
            local_rope_base,
            attention_scale: (1.0 / query_scale.sqrt()) as f32,
            norm_offset: arch.hf_norm_offset,
            vocab: int("vocab_size")?,
            context_length: int_or("max_position_embeddings", 2048)?,
            // A sentence-transformers folder says its pooling in a file of its own, not
            // in config.json: such a folder is read as the generative model it wraps.
            pooling: Pooling::None,
            altup: None,
        })
    }

    pub fn q_dim(&self) -> u32 {
        self.heads * self.head_dim
    }

    pub fn kv_dim(&self) -> u32 {
        self.kv_heads * self.head_dim
    }

    /// The factor on the token embeddings.
    pub fn embedding_scale(&self) -> f32 {
        if self.arch.scale_embeddings {
            (self.n_embd as f32).sqrt()
        } else {
            1.0
        }
    }

    /// Whether layer `index` attends locally.
    pub fn is_local(&self, index: u32) -> bool {
        self.local_layers.get(index as usize).copied().unwrap_or(false)
    }

    /// What layer `index` does.
    pub fn layer(&self, index: u32) -> LayerPlan {
        let (rope_base, window) = match self.sliding_window {
            Some(window) if self.is_local(index) => (self.local_rope_base, Some(window)),
            _ => (self.rope_base, None),
        };
        let (kv_layer, sparsity) = match &self.altup {
            Some(altup) => (
                crate::altup::kv_layer(index, altup.first_shared_kv, &self.local_layers)
                    .unwrap_or(index),
                altup.sparsity[index as usize],
            ),
            None => (index, None),
        };
        LayerPlan { rope_base, window, kv_layer, sparsity }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemma_json() -> Value {
        serde_json::json!({
            "model_type": "gemma3_text", "hidden_size": 640, "num_attention_heads": 4,
            "num_key_value_heads": 1, "head_dim": 256, "num_hidden_layers": 18,
            "intermediate_size": 2048, "rms_norm_eps": 1e-6, "rope_theta": 1e6,
            "sliding_window": 512, "vocab_size": 262144, "query_pre_attn_scalar": 256,
            "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 32768,
        })
    }

    #[test]
    fn gemma_layers_attend_locally_except_every_sixth_which_uses_the_global_rope_base() {
        let config = Config::from_hf(&gemma_json()).unwrap();
        let plans: Vec<LayerPlan> = (0..12).map(|index| config.layer(index)).collect();
        for (index, plan) in plans.iter().enumerate() {
            let index = index as u32;
            if index % 6 == 5 {
                assert_eq!(
                    *plan,
                    LayerPlan { rope_base: 1e6, window: None, kv_layer: index, sparsity: None }
                );
            } else {
                assert_eq!(
                    *plan,
                    LayerPlan {
                        rope_base: 10_000.0,
                        window: Some(512),
                        kv_layer: index,
                        sparsity: None
                    }
                );
            }
        }
        assert_eq!(config.norm_offset, 1.0);
        assert!((config.embedding_scale() - 640f32.sqrt()).abs() < 1e-6);
        assert!((config.attention_scale - 1.0 / 16.0).abs() < 1e-9);
    }

    #[test]
    fn a_qwen3_moe_config_reads_its_experts_and_refuses_dense_layers_among_them() {
        let mut json = serde_json::json!({
            "model_type": "qwen3_moe", "hidden_size": 256, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 64, "num_hidden_layers": 3,
            "intermediate_size": 1024, "moe_intermediate_size": 256, "num_experts": 8,
            "num_experts_per_tok": 2, "norm_topk_prob": true, "rms_norm_eps": 1e-6,
            "vocab_size": 1000, "mlp_only_layers": [], "decoder_sparse_step": 1,
        });
        let config = Config::from_hf(&json).unwrap();
        assert_eq!(config.n_ff, 256);
        assert_eq!(config.experts, Some(Experts { count: 8, used: 2, normalize: true }));
        json["mlp_only_layers"] = serde_json::json!([1]);
        let error = Config::from_hf(&json).unwrap_err().to_string();
        assert!(error.contains("mlp_only_layers"), "{error}");
    }

    #[test]
    fn routing_takes_the_top_k_of_the_softmax_and_renormalises_them_when_asked() {
        let logits = [0.0, 2.0, 1.0, 2.0_f32.ln() + 2.0];
        let experts = Experts { count: 4, used: 2, normalize: true };
        let routed = experts.route(&logits);
        assert_eq!(routed.iter().map(|r| r.0).collect::<Vec<_>>(), [3, 1]);
        assert!((routed[0].1 - 2.0 / 3.0).abs() < 1e-6 && (routed[1].1 - 1.0 / 3.0).abs() < 1e-6);
        let raw = Experts { normalize: false, ..experts }.route(&logits);
        let total: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        assert!((f64::from(raw[1].1) - 2f64.exp() / total).abs() < 1e-6);
        let tied = Experts { count: 3, used: 1, normalize: true }.route(&[1.0, 1.0, 0.0]);
        assert_eq!(tied, [(0, 1.0)]);
    }

    #[test]
    fn a_gemma3n_config_json_is_refused_as_gemma3n_is_read_from_gguf_files() {
        let mut json = gemma_json();
        json["model_type"] = "gemma3n_text".into();
        let error = Config::from_hf(&json).unwrap_err().to_string();
        assert!(error.contains("gemma3n_text") && error.contains("GGUF"), "{error}");
    }

    #[test]
    fn an_unknown_model_type_or_activation_is_refused_naming_it() {
        let mut json = gemma_json();
        json["model_type"] = "qwen3_next".into();
        let error = Config::from_hf(&json).unwrap_err().to_string();
        assert!(error.contains("qwen3_next") && error.contains("gemma3"), "{error}");
        let mut json = gemma_json();
        json["hidden_activation"] = "relu".into();
        let error = Config::from_hf(&json).unwrap_err().to_string();
        assert!(error.contains("relu"), "{error}");
    }
}
