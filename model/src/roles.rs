//! The tensors of a model by role, with their names in GGUF files (llama.cpp's) and in
//! Hugging Face checkpoints, and their shapes from the [`Config`]. Engines load a layer
//! by walking [`Config::layer_tensors`] and keep the results in a [`LayerTensors`], so
//! which tensors an architecture has is decided here alone.

use crate::arch::Architecture;
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
}

/// How many roles there are (the size of a [`LayerTensors`]).
pub const ROLE_COUNT: usize = 16;

/// A tensor's shape: a vector, or a matrix applied as `y = W x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Vector(u32),
    Matrix { inputs: u32, outputs: u32 },
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
        }
    }

    /// Hugging Face's name without the `model.layers.N.` prefix. Sandwich-norm models
    /// call the pre-FFN norm `pre_feedforward_layernorm` and use
    /// `post_attention_layernorm` for the attention output's norm.
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
}

impl Global {
    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::TokenEmbd => "token_embd.weight",
            Self::OutputNorm => "output_norm.weight",
            Self::Output => "output.weight",
        }
    }

    pub fn hf_name(self) -> &'static str {
        match self {
            Self::TokenEmbd => "model.embed_tokens.weight",
            Self::OutputNorm => "model.norm.weight",
            Self::Output => "lm_head.weight",
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
        let matrix = |inputs, outputs| Shape::Matrix { inputs, outputs };
        Role::ALL.into_iter().filter(|role| role.present_in(self.arch)).map(move |role| {
            let shape = match role {
                Role::AttnNorm | Role::PostAttnNorm | Role::FfnNorm | Role::PostFfnNorm => {
                    Shape::Vector(e)
                }
                Role::QBias => Shape::Vector(q),
                Role::KBias | Role::VBias => Shape::Vector(kv),
                Role::QNorm | Role::KNorm => Shape::Vector(hd),
                Role::Q => matrix(e, q),
                Role::K | Role::V => matrix(e, kv),
                Role::O => matrix(q, e),
                Role::Gate | Role::Up => matrix(e, f),
                Role::Down => matrix(f, e),
            };
            (role, shape)
        })
    }

    /// The shape of a projection, for checking a LoRA pair against it.
    pub fn projection_shape(&self, role: Role) -> Option<(u32, u32)> {
        match self.layer_tensors().find(|(r, _)| *r == role)?.1 {
            Shape::Matrix { inputs, outputs } => Some((inputs, outputs)),
            Shape::Vector(_) => None,
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
    fn the_role_table_lists_every_role_once_in_declaration_order() {
        for (index, role) in Role::ALL.into_iter().enumerate() {
            assert_eq!(role as usize, index);
        }
    }
}
