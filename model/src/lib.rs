//! # hearth-model — the model layer of hearth's own engines
//!
//! llama.cpp describes its architectures in one table and builds every graph from it;
//! this crate does the same for the engines hearth writes itself (MLX and WebGPU), so
//! an architecture, a tensor name or a generation rule is written once:
//!
//! - [`arch`]: each architecture's facts as data (RoPE pairing, QKV biases, Q/K norms,
//!   sandwich norms, activation, embedding scale, sliding-window layers, dense or
//!   mixture-of-experts feed-forward);
//! - [`altup`]: Gemma 3n's block (AltUp streams, per-layer inputs, LAuReL, KV sharing,
//!   activation sparsity) as one program;
//! - [`Config`] ([`config`]): hyper-parameters from GGUF metadata or a `config.json`,
//!   and the [`LayerPlan`] of each layer;
//! - [`roles`]: the tensors of a block by [`Role`], with GGUF and Hugging Face names
//!   and shapes, and [`LayerTensors`] for an engine's own tensors by role;
//! - [`lora`]: LoRA adapter files read and checked once;
//! - [`generate`](mod@generate): the generation loop (template, prompt-prefix reuse, sampling, stop
//!   strings, streaming, stats) over an engine's [`Executor`];
//! - [`embed`](mod@embed): a text's embedding, pooled as the model's file says from
//!   the final-normed hidden states an engine computes;
//! - [`reference`](mod@reference): the CPU reference executor the engines are tested against.
//!
//! The engines keep only what is theirs: turning tensors into device memory and
//! executing each step of the plan.

pub mod altup;
pub mod arch;
pub mod config;
pub mod embed;
pub mod generate;
pub mod lora;
pub mod reference;
pub mod roles;

pub use arch::{Activation, Architecture, Ffn, RopePairs};
pub use config::{AltUp, Config, Experts, LayerPlan};
pub use embed::{embed, Pooling};
pub use generate::{context_size, generate, Executor, Session, Text};
pub use lora::{LoraFile, LoraPair};
pub use roles::{Global, LayerTensors, Role, Shape};
