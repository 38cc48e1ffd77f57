//! The tensors of a model by role, with their names in GGUF files (llama.cpp's) and in
//! Hugging Face checkpoints, and their shapes from the [`Config`]: a dense feed-forward's
//! three matrices, or a mixture of experts' router and 3-D expert tensors (each expert's
//! matrix contiguous, expert after expert). Engines load a layer
//! by walking [`Config::layer_tensors`] and keep the results in a [`LayerTensors`], so
//! which tensors an architecture has is decided here alone.

use crate::arch::{Architecture, Ffn};
use crate::Config;

/// A tensor's part in a transformer block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    AttnNorm,
    Q,
    K,
    V,
    QBias,
    KBias,
    VBias,
    QNorm,
    KNorm,
    O,
    PostAttnNorm,
    FfnNorm,
    Gate,
    Up,
    Down,
    PostFfnNorm,
    /// The experts' router, `[n_expert, n_embd]`.
    Router,
    GateExps,
    UpExps,
    DownExps,
    /// Gemma 3n's LAuReL: `[rank, n_embd]`, `[n_embd, rank]` and the branch's norm.
    LaurelL,
    LaurelR,
    LaurelNorm,
    /// Gemma 3n's AltUp: the router `[streams, n_embd]` and its norm, the prediction
    /// coefficients `[streams², streams]`, the correction coefficients
    /// `[streams, streams]` and the corrected active stream's scale.
    AltupRouter,
    AltupRouterNorm,
    AltupPredict,
    AltupCorrect,
    AltupCorrectScale,
    /// Gemma 3n's per-layer input: gate `[per_layer_dim, n_embd]`, projection back
    /// `[n_embd, per_layer_dim]` and its norm.
    PerLayerGate,
    PerLayerProj,
    PerLayerNorm,
}

/// How many roles there are (the size of a [`LayerTensors`]).
pub const ROLE_COUNT: usize = 31;

/// A tensor's shape: a vector, or a matrix applied as `y = W x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Vector(u32),
    Matrix {
        inputs: u32,
        outputs: u32,
    },
    /// `count` matrices of one shape, stacked (GGUF ne = `[inputs, outputs, count]`).
    Experts {
        inputs: u32,
        outputs: u32,
        count: u32,
    },
}

impl Role {
    pub const ALL: [Role; ROLE_COUNT] = [
        Self::AttnNorm,
        Self::Q,
        Self::K,
        Self::V,
        Self::QBias,
        Self::KBias,
        Self::VBias,
        Self::QNorm,
        Self::KNorm,
        Self::O,
        Self::PostAttnNorm,
        Self::FfnNorm,
        Self::Gate,
        Self::Up,
        Self::Down,
        Self::PostFfnNorm,
        Self::Router,
        Self::GateExps,
        Self::UpExps,
        Self::DownExps,
        Self::LaurelL,
        Self::LaurelR,
        Self::LaurelNorm,
        Self::AltupRouter,
        Self::AltupRouterNorm,
        Self::AltupPredict,
        Self::AltupCorrect,
        Self::AltupCorrectScale,
        Self::PerLayerGate,
        Self::PerLayerProj,
        Self::PerLayerNorm,
    ];

    /// The projections LoRA adapters may adapt, in the order a layer runs them.
    pub const PROJECTIONS: [Role; 7] =
        [Self::Q, Self::K, Self::V, Self::O, Self::Gate, Self::Up, Self::Down];

    /// Whether an architecture's blocks have this tensor.
    pub fn present_in(self, arch: &Architecture) -> bool {
        match self {
            Self::QBias | Self::KBias | Self::VBias => arch.qkv_bias,
            Self::QNorm | Self::KNorm => arch.qk_norm,
            Self::PostAttnNorm | Self::PostFfnNorm => arch.sandwich_norms,
            Self::Gate | Self::Up | Self::Down => arch.ffn == Ffn::Dense,
            Self::Router | Self::GateExps | Self::UpExps | Self::DownExps => {
                arch.ffn == Ffn::Experts
            }
            Self::LaurelL
            | Self::LaurelR
            | Self::LaurelNorm
            | Self::AltupRouter
            | Self::AltupRouterNorm
            | Self::AltupPredict
            | Self::AltupCorrect
            | Self::AltupCorrectScale
            | Self::PerLayerGate
            | Self::PerLayerProj
            | Self::PerLayerNorm => arch.altup,
            _ => true,
        }
    }

    /// llama.cpp's name without the layer prefix, as in `blk.N.attn_q.weight`.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::AttnNorm => "attn_norm.weight",
            Self::Q => "attn_q.weight",
            Self::K => "attn_k.weight",
            Self::V => "attn_v.weight",
            Self::QBias => "attn_q.bias",
            Self::KBias => "attn_k.bias",
            Self::VBias => "attn_v.bias",
            Self::QNorm => "attn_q_norm.weight",
            Self::KNorm => "attn_k_norm.weight",
            Self::O => "attn_output.weight",
            Self::PostAttnNorm => "post_attention_norm.weight",
            Self::FfnNorm => "ffn_norm.weight",
            Self::Gate => "ffn_gate.weight",
            Self::Up => "ffn_up.weight",
            Self::Down => "ffn_down.weight",
            Self::PostFfnNorm => "post_ffw_norm.weight",
            Self::Router => "ffn_gate_inp.weight",
            Self::GateExps => "ffn_gate_exps.weight",
            Self::UpExps => "ffn_up_exps.weight",
            Self::DownExps => "ffn_down_exps.weight",
            Self::LaurelL => "laurel_l.weight",
            Self::LaurelR => "laurel_r.weight",
            Self::LaurelNorm => "laurel_post_norm.weight",
            Self::AltupRouter => "altup_router.weight",
            Self::AltupRouterNorm => "altup_router_norm.weight",
            Self::AltupPredict => "altup_predict_coef.weight",
            Self::AltupCorrect => "altup_correct_coef.weight",
            Self::AltupCorrectScale => "altup_correct_scale.weight",
            Self::PerLayerGate => "inp_gate.weight",
            Self::PerLayerProj => "proj.weight",
            Self::PerLayerNorm => "post_norm.weight",
        }
    }

    /// Hugging Face's name without the `model.layers.N.` prefix. Sandwich-norm models
    /// call the pre-FFN norm `pre_feedforward_layernorm` and use
    /// `post_attention_layernorm` for the attention output's norm. Experts are named
    /// stacked, as MLX-format checkpoints store them (`mlp.switch_mlp.gate_proj`);
    /// Hugging Face's own checkpoints store each expert apart ([`hf_expert_name`]).
    pub fn hf_name(self, arch: &Architecture) -> &'static str {
        match self {
            Self::AttnNorm => "input_layernorm.weight",
            Self::Q => "self_attn.q_proj.weight",
            Self::K => "self_attn.k_proj.weight",
            Self::V => "self_attn.v_proj.weight",
            Self::QBias => "self_attn.q_proj.bias",
            Self::KBias => "self_attn.k_proj.bias",
            Self::VBias => "self_attn.v_proj.bias",
            Self::QNorm => "self_attn.q_norm.weight",
            Self::KNorm => "self_attn.k_norm.weight",
            Self::O => "self_attn.o_proj.weight",
            Self::PostAttnNorm => "post_attention_layernorm.weight",
            Self::FfnNorm if arch.sandwich_norms => "pre_feedforward_layernorm.weight",
            Self::FfnNorm => "post_attention_layernorm.weight",
            Self::Gate => "mlp.gate_proj.weight",
            Self::Up => "mlp.up_proj.weight",
            Self::Down => "mlp.down_proj.weight",
            Self::PostFfnNorm => "post_feedforward_layernorm.weight",
            Self::Router => "mlp.gate.weight",
            Self::GateExps => "mlp.switch_mlp.gate_proj.weight",
            Self::UpExps => "mlp.switch_mlp.up_proj.weight",
            Self::DownExps => "mlp.switch_mlp.down_proj.weight",
            Self::LaurelL => "laurel.linear_left.weight",
            Self::LaurelR => "laurel.linear_right.weight",
            Self::LaurelNorm => "laurel.post_laurel_norm.weight",
            Self::AltupRouter => "altup.modality_router.weight",
            Self::AltupRouterNorm => "altup.router_norm.weight",
            Self::AltupPredict => "altup.prediction_coefs.weight",
            Self::AltupCorrect => "altup.correction_coefs.weight",
            Self::AltupCorrectScale => "altup.correct_output_scale",
            Self::PerLayerGate => "per_layer_input_gate.weight",
            Self::PerLayerProj => "per_layer_projection.weight",
            Self::PerLayerNorm => "post_per_layer_input_norm.weight",
        }
    }

    /// Whether this tensor is a norm weight (which takes the config's norm offset).
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            Self::AttnNorm
                | Self::QNorm
                | Self::KNorm
                | Self::PostAttnNorm
                | Self::FfnNorm
                | Self::PostFfnNorm
                | Self::LaurelNorm
                | Self::AltupRouterNorm
                | Self::PerLayerNorm
        )
    }
}

/// The tensors outside the blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Global {
    TokenEmbd,
    OutputNorm,
    /// Absent when the output projection is tied to the embeddings.
    Output,
    /// Gemma 3n: the per-layer token embeddings `[vocab, n_layer · per_layer_dim]`,
    /// the main embedding's projection into them and its norm (`per_layer_dim`).
    PerLayerTokenEmbd,
    PerLayerModelProj,
    PerLayerProjNorm,
    /// Gemma 3n: the main stream's projections into the other AltUp streams and back,
    /// stacked (GGUF ne = `[n_embd, n_embd, streams − 1]`).
    AltupProj,
    AltupUnembdProj,
}

impl Global {
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::TokenEmbd => "token_embd.weight",
            Self::OutputNorm => "output_norm.weight",
            Self::Output => "output.weight",
            Self::PerLayerTokenEmbd => "per_layer_token_embd.weight",
            Self::PerLayerModelProj => "per_layer_model_proj.weight",
            Self::PerLayerProjNorm => "per_layer_proj_norm.weight",
            Self::AltupProj => "altup_proj.weight",
            Self::AltupUnembdProj => "altup_unembd_proj.weight",
        }
    }

    /// Hugging Face's name; its AltUp projections are stored one per stream
    /// (`model.altup_projections.0.weight`, …), here the prefix.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::TokenEmbd => "model.embed_tokens.weight",
            Self::OutputNorm => "model.norm.weight",
            Self::Output => "lm_head.weight",
            Self::PerLayerTokenEmbd => "model.embed_tokens_per_layer.weight",
            Self::PerLayerModelProj => "model.per_layer_model_projection.weight",
            Self::PerLayerProjNorm => "model.per_layer_projection_norm.weight",
            Self::AltupProj => "model.altup_projections",
            Self::AltupUnembdProj => "model.altup_unembed_projections",
        }
    }
}

/// `blk.N.<role>` in GGUF files.
pub fn gguf_layer_name(layer: u32, role: Role) -> String {
    format!("blk.{layer}.{}", role.gguf_name())
}

/// `model.layers.N.<role>` in Hugging Face checkpoints.
pub fn hf_layer_name(layer: u32, role: Role, arch: &Architecture) -> String {
    format!("model.layers.{layer}.{}", role.hf_name(arch))
}

/// One expert's matrix of an expert role as Hugging Face stores it, apart from the
/// others: `model.layers.N.mlp.experts.E.gate_proj.weight`; `None` for other roles.
pub fn hf_expert_name(layer: u32, role: Role, expert: u32) -> Option<String> {
    let projection = match role {
        Role::GateExps => "gate_proj",
        Role::UpExps => "up_proj",
        Role::DownExps => "down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.mlp.experts.{expert}.{projection}.weight"))
}

/// A GGUF tensor name (`blk.3.attn_q.weight`, `output.weight`) in Hugging Face's
/// naming, for a file of `arch`; names outside the table come back unchanged.
pub fn gguf_to_hf(name: &str, arch: &Architecture) -> String {
    for global in [Global::TokenEmbd, Global::OutputNorm, Global::Output] {
        if name == global.gguf_name() {
            return global.hf_name().to_string();
        }
    }
    let parsed = name.strip_prefix("blk.").and_then(|rest| rest.split_once('.')).and_then(
        |(layer, part)| {
            let role = Role::ALL.into_iter().find(|role| role.gguf_name() == part)?;
            Some(hf_layer_name(layer.parse().ok()?, role, arch))
        },
    );
    parsed.unwrap_or_else(|| name.to_string())
}

impl Config {
    /// The tensors of one block, with their shapes.
    pub fn layer_tensors(&self) -> impl Iterator<Item = (Role, Shape)> + '_ {
        let (e, f, q, kv, hd) =
            (self.n_embd, self.n_ff, self.q_dim(), self.kv_dim(), self.head_dim);
        let (streams, p, rank) =
            self.altup.as_ref().map_or((0, 0, 0), |a| (a.streams, a.per_layer_dim, a.laurel_rank));
        let matrix = |inputs, outputs| Shape::Matrix { inputs, outputs };
        let count = self.experts.map_or(0, |experts| experts.count);
        let experts = move |inputs, outputs| Shape::Experts { inputs, outputs, count };
        Role::ALL.into_iter().filter(|role| role.present_in(self.arch)).map(move |role| {
            let shape = match role {
                Role::AttnNorm
                | Role::PostAttnNorm
                | Role::FfnNorm
                | Role::PostFfnNorm
                | Role::LaurelNorm
                | Role::AltupRouterNorm
                | Role::AltupCorrectScale
                | Role::PerLayerNorm => Shape::Vector(e),
                Role::QBias => Shape::Vector(q),
                Role::KBias | Role::VBias => Shape::Vector(kv),
                Role::QNorm | Role::KNorm => Shape::Vector(hd),
                Role::Q => matrix(e, q),
                Role::K | Role::V => matrix(e, kv),
                Role::O => matrix(q, e),
                Role::Gate | Role::Up => matrix(e, f),
                Role::Down => matrix(f, e),
                Role::Router => matrix(e, count),
                Role::GateExps | Role::UpExps => experts(e, f),
                Role::DownExps => experts(f, e),
                Role::LaurelL => matrix(e, rank),
                Role::LaurelR => matrix(rank, e),
                Role::AltupRouter => matrix(e, streams),
                Role::AltupPredict => matrix(streams, streams * streams),
                Role::AltupCorrect => matrix(streams, streams),
                Role::PerLayerGate => matrix(e, p),
                Role::PerLayerProj => matrix(p, e),
            };
            (role, shape)
        })
    }

    /// The shape of a projection, for checking a LoRA pair against it.
    pub fn projection_shape(&self, role: Role) -> Option<(u32, u32)> {
        match self.layer_tensors().find(|(r, _)| *r == role)?.1 {
            Shape::Matrix { inputs, outputs } => Some((inputs, outputs)),
            Shape::Vector(_) | Shape::Experts { .. } => None,
        }
    }
}

/// One block's tensors in an engine's own representation, by role.
pub struct LayerTensors<T>([Option<T>; ROLE_COUNT]);

impl<T> Default for LayerTensors<T> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| None))
    }
}

impl<T> LayerTensors<T> {
    pub fn insert(&mut self, role: Role, tensor: T) {
        self.0[role as usize] = Some(tensor);
    }

    pub fn get(&self, role: Role) -> Option<&T> {
        self.0[role as usize].as_ref()
    }

    /// A tensor every architecture has (loading checked it is there).
    pub fn required(&self, role: Role) -> &T {
        self.get(role).unwrap_or_else(|| panic!("layer tensor {role:?} was not loaded"))
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;

    #[test]
    fn gguf_names_translate_to_hugging_face_names_per_architecture() {
        let llama = arch::by_gguf_name("llama").unwrap();
        let gemma = arch::by_gguf_name("gemma3").unwrap();
        assert_eq!(
            gguf_to_hf("blk.3.attn_q.weight", llama),
            "model.layers.3.self_attn.q_proj.weight"
        );
        assert_eq!(
            gguf_to_hf("blk.0.ffn_norm.weight", llama),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(
            gguf_to_hf("blk.0.ffn_norm.weight", gemma),
            "model.layers.0.pre_feedforward_layernorm.weight"
        );
        assert_eq!(gguf_to_hf("output.weight", llama), "lm_head.weight");
        assert_eq!(gguf_to_hf("blk.x.attn_q.weight", llama), "blk.x.attn_q.weight");
    }

    #[test]
    fn a_mixture_of_experts_block_has_a_router_and_stacked_experts_instead_of_one_ffn() {
        let gguf = |arch: &str, experts: Option<crate::config::Experts>| Config {
            arch: arch::by_gguf_name(arch).unwrap(),
            n_embd: 256,
            n_layer: 1,
            n_ff: 128,
            experts,
            heads: 4,
            kv_heads: 2,
            head_dim: 64,
            n_rot: 64,
            eps: 1e-6,
            rope_base: 1e6,
            rope_pairs: crate::RopePairs::Halves,
            sliding_window: None,
            local_layers: Vec::new(),
            local_rope_base: 0.0,
            attention_scale: 0.125,
            norm_offset: 0.0,
            vocab: 100,
            context_length: 64,
            pooling: crate::Pooling::None,
            altup: None,
        };
        let experts = crate::config::Experts { count: 8, used: 2, normalize: true };
        let moe: Vec<(Role, Shape)> = gguf("qwen3moe", Some(experts)).layer_tensors().collect();
        let shape = |role| moe.iter().find(|(r, _)| *r == role).map(|(_, s)| *s);
        assert_eq!(shape(Role::Gate), None);
        assert_eq!(shape(Role::Router), Some(Shape::Matrix { inputs: 256, outputs: 8 }));
        assert_eq!(
            shape(Role::DownExps),
            Some(Shape::Experts { inputs: 128, outputs: 256, count: 8 })
        );
        let dense: Vec<Role> = gguf("qwen3", None).layer_tensors().map(|(r, _)| r).collect();
        assert!(dense.contains(&Role::Up) && !dense.contains(&Role::UpExps));
        let qwen3moe = arch::by_gguf_name("qwen3moe").unwrap();
        assert_eq!(
            gguf_to_hf("blk.2.ffn_gate_inp.weight", qwen3moe),
            "model.layers.2.mlp.gate.weight"
        );
        assert_eq!(
            hf_expert_name(2, Role::UpExps, 5).unwrap(),
            "model.layers.2.mlp.experts.5.up_proj.weight"
        );
    }

    #[test]
    fn the_role_table_lists_every_role_once_in_declaration_order() {
        for (index, role) in Role::ALL.into_iter().enumerate() {
            assert_eq!(role as usize, index);
        }
    }
}
