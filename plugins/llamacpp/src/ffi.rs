//! Owning wrappers over the raw llama.cpp objects this plugin drives directly.
//!
//! llama-cpp-2's safe `LlamaContext` borrows its `LlamaModel` (so one struct cannot own
//! both) and its LoRA calls hold one adapter at a time, while hearth applies several per
//! request. The model, its context, its adapters and the sampler chain are therefore
//! driven through `llama-cpp-sys-2`, each behind a small owner that frees it on drop.
//! Every `unsafe` block here relies on the same two facts: the pointer is non-null and
//! owned by its wrapper, and the wrapper outlives every call that uses it.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::path::Path;
use std::ptr::{self, NonNull};

use hearth_sdk::helpers::VocabToken;
use llama_cpp_sys_2 as sys;

use crate::device_greedy::{self, DeviceGreedy};
use crate::sampler::Sampler;

/// A token id.
pub type Token = sys::llama_token;

/// A loaded model: weights (mmap'd) and vocabulary. Immutable after loading except for
/// adapter creation, which the caller serialises.
pub struct RawModel(NonNull<sys::llama_model>);

// SAFETY: llama.cpp's model is read-only during inference and may be shared between
// threads; the only mutating call used here (adapter init) runs under the model's lock.
unsafe impl Send for RawModel {}
// SAFETY: see above.
unsafe impl Sync for RawModel {}

/// Which devices the model's layers go to.
pub enum Placement {
    /// Every layer stays on the CPU, and no other device computes (llama-server's
    /// `--device none`): with a GPU module loaded, llama.cpp would otherwise still send
    /// large batches to the GPU.
    Cpu,
    /// The layers go to these ggml devices, as many as fit, divided by whole layers or
    /// (`row`) every matrix by rows; `main` indexes the device that holds what a row
    /// split does not divide.
    Devices { devices: Vec<sys::ggml_backend_dev_t>, row: bool, main: usize },
}

/// Whether the device's module can divide a matrix by rows across devices (llama.cpp
/// asks each device of a row split for its module's split buffer type, and refuses the
/// load without one).
pub fn splits_rows(device: sys::ggml_backend_dev_t) -> bool {
    // SAFETY: a device ggml listed; its registry entry lives for the process, and the
    // name is a C string literal.
    unsafe {
        let reg = sys::ggml_backend_dev_backend_reg(device);
        !sys::ggml_backend_reg_get_proc_address(reg, c"ggml_backend_split_buffer_type".as_ptr())
            .is_null()
    }
}

/// How many of a model's layers went to its GPUs, in llama.cpp's count: every
/// repeating layer, and the output layer as one more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offload {
    pub layers: u32,
    pub of: u32,
}

impl Offload {
    /// The part of `bytes` on the GPUs, taking every layer as the same size (the
    /// output layer is larger, the embeddings stay on the host): llama.cpp reports its
    /// per-device breakdown only to its log.
    pub fn device_share(self, bytes: u64) -> u64 {
        if self.of == 0 {
            return 0;
        }
        let share = u128::from(bytes) * u128::from(self.layers.min(self.of)) / u128::from(self.of);
        u64::try_from(share).unwrap_or(bytes)
    }
}

/// What the load sizes the offload for: the context it will get, and the memory to leave
/// free on every device (llama.cpp's `--fit-target`).
pub struct FitTarget {
    pub context_size: u32,
    pub keep_free_bytes: usize,
}

// llama.cpp's fit swaps its global logger while it runs; two loads at once must not
// interleave that.
static FIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl RawModel {
    /// Load a GGUF file (memory-mapped), with as many layers on the placement's GPUs as
    /// fit in their free memory (llama.cpp's `--fit`: the rest run on the CPU). `None`
    /// when llama.cpp refuses it; its reason only goes to its log, so the caller words
    /// the error.
    pub fn load(path: &Path, placement: &Placement, fit: &FitTarget) -> Option<(Self, Offload)> {
        let path = CString::new(path.to_str()?).ok()?;
        // SAFETY: default params are plain data.
        let mut params = unsafe { sys::llama_model_default_params() };
        params.load_mode = sys::LLAMA_LOAD_MODE_MMAP;
        // Null-terminated; it must outlive the load call, and lives until the end of
        // scope. An empty list (only the terminator) is "no device".
        let mut devices = match placement {
            Placement::Cpu => Vec::new(),
            Placement::Devices { devices, row, main } => {
                if *row {
                    params.split_mode = sys::LLAMA_SPLIT_MODE_ROW;
                    params.main_gpu = i32::try_from(*main).unwrap_or(0);
                }
                devices.clone()
            }
        };
        let on_gpus = !devices.is_empty();
        devices.push(ptr::null_mut());
        params.devices = devices.as_mut_ptr();
        // Written by the fit, read by the load: both outlive the load call.
        // SAFETY: plain queries of compile-time limits.
        let (max_devices, max_overrides) =
            unsafe { (sys::llama_max_devices(), sys::llama_max_tensor_buft_overrides()) };
        let mut split = vec![0.0f32; max_devices];
        let mut overrides = vec![
            sys::llama_model_tensor_buft_override {
                pattern: ptr::null(),
                buft: ptr::null_mut()
            };
            max_overrides + 1
        ];
        if on_gpus {
            // Left at llama.cpp's default (-1, every layer), which the fit lowers when
            // the devices are too small; on failure the load tries every layer, as
            // llama-server does.
            let mut margins = vec![fit.keep_free_bytes; max_devices];
            // SAFETY: default params are plain data.
            let mut context = unsafe { sys::llama_context_default_params() };
            context.n_ctx = fit.context_size;
            let _one_at_a_time = FIT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // SAFETY: every buffer has the length llama.cpp asks for (device and
            // override limits, the override list null-terminated), and all outlive the
            // call; `path` is a C string.
            unsafe {
                sys::llama_rs_fit_params(
                    path.as_ptr(),
                    &mut params,
                    &mut context,
                    split.as_mut_ptr(),
                    overrides.as_mut_ptr(),
                    margins.as_mut_ptr(),
                    fit.context_size,
                    ptr::null(),
                    sys::GGML_LOG_LEVEL_ERROR,
                )
            };
            params.tensor_split = split.as_ptr();
            params.tensor_buft_overrides = overrides.as_ptr();
        } else {
            params.n_gpu_layers = 0;
        }
        // SAFETY: `path` is a valid C string, `params` is fully initialised and every
        // buffer it points to is alive.
        let model = NonNull::new(unsafe { sys::llama_model_load_from_file(path.as_ptr(), params) })
            .map(Self)?;
        // SAFETY: the model is alive.
        let of = u32::try_from(unsafe { sys::llama_model_n_layer(model.ptr()) }).unwrap_or(0) + 1;
        let layers = match u32::try_from(params.n_gpu_layers) {
            Ok(layers) => layers.min(of),
            Err(_) => of,
        };
        Some((model, Offload { layers, of }))
    }

    fn ptr(&self) -> *mut sys::llama_model {
        self.0.as_ptr()
    }

    fn vocab(&self) -> *const sys::llama_vocab {
        // SAFETY: the model is alive; the vocab lives as long as the model.
        unsafe { sys::llama_model_get_vocab(self.ptr()) }
    }

    /// Bytes of all weight tensors.
    pub fn size_bytes(&self) -> u64 {
        // SAFETY: the model is alive.
        unsafe { sys::llama_model_size(self.ptr()) }
    }

    /// The context length the model was trained with.
    pub fn train_context(&self) -> u32 {
        // SAFETY: the model is alive.
        let n = unsafe { sys::llama_model_n_ctx_train(self.ptr()) };
        u32::try_from(n).unwrap_or(0)
    }

    /// Bytes one token occupies in an f16 KV cache: K and V for every layer. The key and
    /// value widths come from the GGUF where it states them (Gemma's heads are wider
    /// than `n_embd / n_head`).
    pub fn kv_bytes_per_token(&self) -> u64 {
        // SAFETY: the model is alive.
        let (layers, embd, heads, kv_heads) = unsafe {
            (
                sys::llama_model_n_layer(self.ptr()),
                sys::llama_model_n_embd(self.ptr()),
                sys::llama_model_n_head(self.ptr()),
                sys::llama_model_n_head_kv(self.ptr()),
            )
        };
        let default_dim = if heads > 0 { i64::from(embd / heads) } else { 0 };
        let architecture = self.metadata("general.architecture").unwrap_or_default();
        let dim = |what: &str| {
            self.metadata(&format!("{architecture}.attention.{what}_length"))
                .and_then(|value| value.parse::<i64>().ok())
                .unwrap_or(default_dim)
        };
        let f16_bytes = 2;
        let per_layer = i64::from(kv_heads) * (dim("key") + dim("value")) * f16_bytes;
        u64::try_from(i64::from(layers) * per_layer).unwrap_or(0)
    }

    /// The chat template stored in the GGUF metadata, if any.
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: the model is alive; the returned string is owned by the model.
        let template = unsafe { sys::llama_model_chat_template(self.ptr(), ptr::null()) };
        // SAFETY: non-null pointers from llama.cpp are NUL-terminated.
        (!template.is_null())
            .then(|| unsafe { CStr::from_ptr(template) }.to_string_lossy().into_owned())
    }

    /// A string from the GGUF metadata, e.g. `general.architecture`.
    pub fn metadata(&self, key: &str) -> Option<String> {
        let key = CString::new(key).ok()?;
        let mut buffer = vec![0u8; 256];
        for _ in 0..2 {
            // SAFETY: `key` is a C string and `buffer` is valid for its length.
            let n = unsafe {
                sys::llama_model_meta_val_str(
                    self.ptr(),
                    key.as_ptr(),
                    buffer.as_mut_ptr().cast::<c_char>(),
                    buffer.len(),
                )
            };
            let n = usize::try_from(n).ok()?;
            if n < buffer.len() {
                buffer.truncate(n);
                return String::from_utf8(buffer).ok();
            }
            buffer.resize(n + 1, 0);
        }
        None
    }

    /// Tokenize `text`, adding BOS when the model asks for it and reading special-token
    /// text (`<|im_start|>`, …) as the special tokens themselves, as llama-server does.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Option<Vec<Token>> {
        let length = i32::try_from(text.len()).ok()?;
        let vocab = self.vocab();
        let mut tokens = vec![0; text.len() + 2];
        for _ in 0..2 {
            // SAFETY: `text` and `tokens` are valid for the lengths passed.
            let n = unsafe {
                sys::llama_tokenize(
                    vocab,
                    text.as_ptr().cast::<c_char>(),
                    length,
                    tokens.as_mut_ptr(),
                    i32::try_from(tokens.len()).ok()?,
                    add_special,
                    true,
                )
            };
            if n >= 0 {
                tokens.truncate(n as usize);
                // A template that writes the BOS text itself plus add_special gives two.
                let bos = self.bos();
                if tokens.len() >= 2 && tokens[0] == bos && tokens[1] == bos {
                    tokens.remove(0);
                }
                return Some(tokens);
            }
            if n == i32::MIN {
                return None;
            }
            tokens.resize(n.unsigned_abs() as usize, 0);
        }
        None
    }

    /// How many tokens the vocabulary has.
    pub fn vocab_size(&self) -> i32 {
        // SAFETY: the vocab is alive.
        unsafe { sys::llama_vocab_n_tokens(self.vocab()) }
    }

    fn bos(&self) -> Token {
        // SAFETY: the vocab is alive.
        unsafe { sys::llama_vocab_bos(self.vocab()) }
    }

    /// The texts of the BOS and EOS tokens, as a chat template sees them ("" where the
    /// model has none).
    pub fn bos_eos_texts(&self) -> (String, String) {
        // SAFETY: the vocab is alive.
        let eos = unsafe { sys::llama_vocab_eos(self.vocab()) };
        (self.token_text(self.bos()), self.token_text(eos))
    }

    fn token_text(&self, token: Token) -> String {
        if token < 0 {
            return String::new();
        }
        // SAFETY: the vocab is alive and `token` is in it; the text is owned by the vocab.
        let text = unsafe { sys::llama_vocab_get_text(self.vocab(), token) };
        if text.is_null() {
            return String::new();
        }
        // SAFETY: non-null pointers from llama.cpp are NUL-terminated.
        unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
    }

    /// True for end-of-generation tokens (EOS, EOT, `<|im_end|>`, …).
    pub fn is_end_of_generation(&self, token: Token) -> bool {
        // SAFETY: the vocab is alive.
        unsafe { sys::llama_vocab_is_eog(self.vocab(), token) }
    }

    /// The bytes a token stands for. Control tokens render as nothing, so a template's
    /// markers never leak into the answer. Bytes, not text: one token may hold half
    /// of a UTF-8 character.
    pub fn token_bytes(&self, token: Token, out: &mut Vec<u8>) {
        let mut buffer = [0u8; 64];
        let vocab = self.vocab();
        // SAFETY: `buffer` is valid for its length.
        let n = unsafe {
            sys::llama_token_to_piece(
                vocab,
                token,
                buffer.as_mut_ptr().cast::<c_char>(),
                64,
                0,
                false,
            )
        };
        if n >= 0 {
            out.extend_from_slice(&buffer[..n as usize]);
            return;
        }
        let mut large = vec![0u8; n.unsigned_abs() as usize];
        // SAFETY: `large` is valid for its length.
        let n = unsafe {
            sys::llama_token_to_piece(
                vocab,
                token,
                large.as_mut_ptr().cast::<c_char>(),
                -n,
                0,
                false,
            )
        };
        if n > 0 {
            out.extend_from_slice(&large[..n as usize]);
        }
    }

    /// The vocabulary as the grammar engine reads it (control tokens by their text), and
    /// the tokens that end a generation.
    pub fn grammar_vocab(&self) -> (Vec<VocabToken>, Vec<u32>) {
        let mut vocab = Vec::new();
        let mut end_of_generation = Vec::new();
        for token in 0..self.vocab_size() {
            // SAFETY: the vocab is alive and `token` is in it.
            let attributes = unsafe { sys::llama_vocab_get_attr(self.vocab(), token) };
            let control = attributes & sys::LLAMA_TOKEN_ATTR_CONTROL != 0;
            let bytes = if control {
                self.token_text(token).into_bytes()
            } else {
                let mut bytes = Vec::new();
                self.token_bytes(token, &mut bytes);
                bytes
            };
            vocab.push(VocabToken { bytes, control });
            if self.is_end_of_generation(token) {
                end_of_generation.push(token.unsigned_abs());
            }
        }
        (vocab, end_of_generation)
    }

    /// Load a GGUF LoRA adapter for this model. `None` when the file is unreadable or
    /// does not fit the model (llama.cpp checks architecture and tensor shapes).
    pub fn load_adapter(&self, path: &Path) -> Option<RawAdapter> {
        let path = CString::new(path.to_str()?).ok()?;
        // SAFETY: the model is alive and the caller holds the model's lock.
        let adapter = unsafe { sys::llama_adapter_lora_init(self.ptr(), path.as_ptr()) };
        NonNull::new(adapter).map(RawAdapter)
    }
}

impl Drop for RawModel {
    fn drop(&mut self) {
        // SAFETY: owned pointer; contexts and adapters are dropped before the model.
        unsafe { sys::llama_model_free(self.ptr()) }
    }
}

/// A LoRA adapter. llama.cpp frees adapters with their model, and hearth caches them for
/// the model's lifetime, so this handle never frees the adapter itself.
pub struct RawAdapter(NonNull<sys::llama_adapter_lora>);

// SAFETY: an adapter is read-only once loaded.
unsafe impl Send for RawAdapter {}
// SAFETY: see above.
unsafe impl Sync for RawAdapter {}

/// An inference context: KV cache, compute scratch, output logits.
pub struct RawContext(NonNull<sys::llama_context>);

// SAFETY: a context may move between threads; the owner serialises its use.
unsafe impl Send for RawContext {}

/// How a context pools a sequence's token states into one vector (the model file's
/// `pooling_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Not at all: a generative model's file names no pooling.
    None,
    Mean,
    /// The first token's state (BERT's `[CLS]`).
    Cls,
    Last,
    /// A reranker's relevance score, not an embedding.
    Rank,
}

/// Why a decode call failed.
pub enum DecodeError {
    /// No room left in the KV cache.
    NoSpace,
    /// Anything else, with llama.cpp's code.
    Failed(i32),
}

impl RawContext {
    /// Create a context of `n_ctx` tokens shared by up to `sequences` sequences (one KV
    /// cache for all, so more sequences cost no more memory and one of them alone may
    /// fill the window). The caller keeps `model` alive longer.
    pub fn new(model: &RawModel, n_ctx: u32, threads: i32, sequences: u32) -> Option<Self> {
        // SAFETY: default params are plain data.
        let mut params = unsafe { sys::llama_context_default_params() };
        params.n_ctx = n_ctx;
        params.n_batch = n_ctx.min(512);
        params.n_ubatch = params.n_batch;
        params.n_seq_max = sequences;
        params.kv_unified = sequences > 1;
        params.n_threads = threads;
        params.n_threads_batch = threads;
        // SAFETY: the model is alive and outlives the context (the owner drops it first).
        let context = unsafe { sys::llama_init_from_model(model.ptr(), params) };
        NonNull::new(context).map(Self)
    }

    /// A context that pools each sequence into an embedding as the model's file says
    /// (mean, CLS, last token), reading `n_ctx` tokens in one pass: attention that
    /// looks both ways (BERT's) needs the whole text in one micro-batch.
    pub fn for_embeddings(model: &RawModel, n_ctx: u32, threads: i32) -> Option<Self> {
        // SAFETY: default params are plain data.
        let mut params = unsafe { sys::llama_context_default_params() };
        params.n_ctx = n_ctx;
        params.n_batch = n_ctx;
        params.n_ubatch = n_ctx;
        params.n_seq_max = 1;
        params.embeddings = true;
        params.n_threads = threads;
        params.n_threads_batch = threads;
        // SAFETY: the model is alive and outlives the context (the owner drops it first).
        let context = unsafe { sys::llama_init_from_model(model.ptr(), params) };
        NonNull::new(context).map(Self)
    }

    /// How the context pools a sequence into one vector.
    pub fn pooling(&self) -> Pooling {
        // SAFETY: the context is alive.
        match unsafe { sys::llama_pooling_type(self.ptr()) } {
            sys::LLAMA_POOLING_TYPE_MEAN => Pooling::Mean,
            sys::LLAMA_POOLING_TYPE_CLS => Pooling::Cls,
            sys::LLAMA_POOLING_TYPE_LAST => Pooling::Last,
            sys::LLAMA_POOLING_TYPE_RANK => Pooling::Rank,
            _ => Pooling::None,
        }
    }

    /// The pooled embedding of `sequence` after the last decode, `n_embd_out` floats;
    /// None when the context does not pool.
    pub fn sequence_embedding(&self, sequence: i32) -> Option<&[f32]> {
        // SAFETY: the context and its model are alive; llama.cpp returns null or
        // `n_embd_out` floats it owns until the next decode, which needs `&mut self`.
        unsafe {
            let width = sys::llama_model_n_embd_out(sys::llama_get_model(self.ptr()));
            let embedding = sys::llama_get_embeddings_seq(self.ptr(), sequence);
            let width = usize::try_from(width).ok()?;
            (!embedding.is_null()).then(|| std::slice::from_raw_parts(embedding, width))
        }
    }

    fn ptr(&self) -> *mut sys::llama_context {
        self.0.as_ptr()
    }

    /// The context window in tokens.
    pub fn size(&self) -> u32 {
        // SAFETY: the context is alive.
        unsafe { sys::llama_n_ctx(self.ptr()) }
    }

    /// The most tokens one decode call takes.
    pub fn batch_size(&self) -> usize {
        // SAFETY: the context is alive.
        unsafe { sys::llama_n_batch(self.ptr()) as usize }
    }

    /// Forget every cached token.
    pub fn clear(&mut self) {
        // SAFETY: the context is alive; its memory object lives as long as it does.
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ptr()), true) }
    }

    /// Keep the first `keep` cached tokens of sequence `sequence` and drop the rest;
    /// false when the cache cannot drop part of a sequence (recurrent models), in which
    /// case the caller clears the whole cache.
    pub fn truncate(&mut self, sequence: i32, keep: usize) -> bool {
        let Ok(keep) = i32::try_from(keep) else {
            return false;
        };
        // SAFETY: the context is alive; its memory object lives as long as it does.
        unsafe { sys::llama_memory_seq_rm(sys::llama_get_memory(self.ptr()), sequence, keep, -1) }
    }

    /// Evaluate a batch; logits come for the tokens it marked.
    pub fn decode(&mut self, batch: &RawBatch) -> Result<(), DecodeError> {
        // SAFETY: the batch's arrays hold `n_tokens` filled items; llama.cpp reads them.
        let code = unsafe { sys::llama_decode(self.ptr(), batch.raw) };
        match code {
            0 => Ok(()),
            1 => Err(DecodeError::NoSpace),
            code => Err(DecodeError::Failed(code)),
        }
    }

    /// Make exactly `adapters` (with their scales) active; an empty list clears them.
    pub fn set_adapters(&mut self, adapters: &[(&RawAdapter, f32)]) -> bool {
        let mut pointers: Vec<_> = adapters.iter().map(|(adapter, _)| adapter.0.as_ptr()).collect();
        let mut scales: Vec<f32> = adapters.iter().map(|(_, scale)| *scale).collect();
        let (pointers, scales) = if adapters.is_empty() {
            (ptr::null_mut(), ptr::null_mut())
        } else {
            (pointers.as_mut_ptr(), scales.as_mut_ptr())
        };
        // SAFETY: the arrays hold `adapters.len()` items and live through the call;
        // adapters belong to this context's model.
        unsafe { sys::llama_set_adapters_lora(self.ptr(), pointers, adapters.len(), scales) == 0 }
    }

    /// The logits of the last batch's item `index`: `n_vocab` floats, empty for an
    /// item without logits.
    fn logits(&self, index: usize) -> &[f32] {
        let index = i32::try_from(index).unwrap_or(-1);
        // SAFETY: the context and its model are alive; llama.cpp returns null for an
        // item without logits, else `n_vocab` floats it owns until the next decode,
        // which needs `&mut self`.
        unsafe {
            let logits = sys::llama_get_logits_ith(self.ptr(), index);
            if logits.is_null() {
                return &[];
            }
            let vocab = sys::llama_model_get_vocab(sys::llama_get_model(self.ptr()));
            let count = usize::try_from(sys::llama_vocab_n_tokens(vocab)).unwrap_or(0);
            std::slice::from_raw_parts(logits, count)
        }
    }

    /// Run greedy decoding for `sequence` on the device that computes the logits (see
    /// [`crate::device_greedy`]); None, and nothing attached, where that device is the
    /// CPU or lacks the operations. The context uses the chain until [`Self::detach`].
    pub fn attach(&mut self, sequence: i32) -> Option<DeviceGreedy> {
        let greedy = DeviceGreedy::new()?;
        // SAFETY: the context is alive and the chain outlives its attachment (the
        // caller detaches it before dropping it).
        let attached = unsafe { sys::llama_set_sampler(self.ptr(), sequence, greedy.chain()) };
        if attached && greedy.on_device() {
            return Some(greedy);
        }
        self.detach(sequence);
        None
    }

    /// Sample `sequence` on the host again.
    pub fn detach(&mut self, sequence: i32) {
        // SAFETY: the context is alive; a null sampler detaches.
        unsafe { sys::llama_set_sampler(self.ptr(), sequence, ptr::null_mut()) };
    }

    /// The token the device picked for the last batch's item `index`, of a sequence with
    /// an attached [`DeviceGreedy`]; None when a logit was not a finite number.
    pub fn device_sample(&self, index: usize) -> Option<Token> {
        let index = i32::try_from(index).ok()?;
        // SAFETY: the context is alive; llama.cpp returns null or `count` floats it owns
        // until the next decode, which needs `&mut self`.
        unsafe {
            let token = sys::llama_get_sampled_token_ith(self.ptr(), index);
            let sum = sys::llama_get_sampled_logits_ith(self.ptr(), index);
            let count = sys::llama_get_sampled_logits_count_ith(self.ptr(), index);
            device_greedy::read((!sum.is_null() && count == 1).then(|| *sum), token)
        }
    }

    /// Sample the next token from the logits of the last batch's item `index`, which
    /// that batch marked for logits; a chain records the token for penalties. None when
    /// a logit is not a finite number: damaged weights (a NaN scale in a quantized
    /// block) compute NaN, and sampling from NaN picks some token as if nothing were
    /// wrong, an empty or garbled answer.
    pub fn sample(&mut self, sampler: &mut Sampler, index: usize) -> Option<Token> {
        // Bias and penalties apply to the chain's copy; these logits stay raw, for
        // [`RawContext::logprobs`].
        let Some(chain) = sampler.chain else {
            return greedy(self.logits(index)).and_then(|at| Token::try_from(at).ok());
        };
        if !self.logits(index).iter().all(|logit| logit.is_finite()) {
            return None;
        }
        let index = i32::try_from(index).unwrap_or(-1);
        // SAFETY: both are alive; the last decode produced logits for `index`.
        Some(unsafe { sys::llama_sampler_sample(chain.as_ptr(), self.ptr(), index) })
    }
}

impl RawContext {
    /// The log-probability of `chosen` and of the `top` likeliest tokens under the raw
    /// logits of the last batch's item `index`; None when a logit is not finite.
    pub fn logprobs(
        &self,
        index: usize,
        chosen: Token,
        top: u32,
    ) -> Option<(f32, Vec<(u32, f32)>)> {
        let chosen = u32::try_from(chosen).ok()?;
        hearth_sdk::logprobs::token_logprobs(self.logits(index), chosen, top as usize)
    }
}

/// The first position of the largest of `logits` (llama.cpp's greedy sampler's choice),
/// or None when one is not a finite number. One pass in lanes the compiler vectorises:
/// a chain would first copy the logits into candidates, all of the vocabulary (128k
/// for Llama 3) for every token.
pub fn greedy(logits: &[f32]) -> Option<usize> {
    const LANES: usize = 16;
    let mut largest = [f32::NEG_INFINITY; LANES];
    // x·0 is 0 for a finite x and NaN for an infinity or a NaN.
    let mut poison = [0.0f32; LANES];
    let chunks = logits.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for lane in 0..LANES {
            poison[lane] += chunk[lane] * 0.0;
            largest[lane] = if chunk[lane] > largest[lane] { chunk[lane] } else { largest[lane] };
        }
    }
    for &logit in rest {
        poison[0] += logit * 0.0;
        largest[0] = if logit > largest[0] { logit } else { largest[0] };
    }
    if poison.iter().sum::<f32>() != 0.0 {
        return None;
    }
    let largest = largest.into_iter().fold(f32::NEG_INFINITY, f32::max);
    logits.iter().position(|&logit| logit == largest)
}

/// A batch of tokens for one decode call, each with its position and sequence.
pub struct RawBatch {
    raw: sys::llama_batch,
    capacity: usize,
}

// SAFETY: the batch owns its arrays; the owner serialises its use.
unsafe impl Send for RawBatch {}

impl RawBatch {
    /// Room for `capacity` tokens, each in one sequence.
    pub fn new(capacity: usize) -> Self {
        let size = i32::try_from(capacity).unwrap_or(i32::MAX);
        // SAFETY: allocates arrays of `size` items (token, pos, n_seq_id, seq_id[1],
        // logits); freed on drop.
        let raw = unsafe { sys::llama_batch_init(size, 0, 1) };
        Self { raw, capacity }
    }

    pub fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// Add `token` at `position` of `sequence`, asking for its logits or not.
    pub fn push(&mut self, token: Token, position: usize, sequence: i32, logits: bool) {
        let at = self.len();
        assert!(at < self.capacity, "a batch of {} tokens is full", self.capacity);
        // SAFETY: `at` is within the arrays `llama_batch_init` allocated, each of
        // `capacity` items, and every `seq_id[at]` points at room for one id.
        unsafe {
            *self.raw.token.add(at) = token;
            *self.raw.pos.add(at) = i32::try_from(position).unwrap_or(i32::MAX);
            *self.raw.n_seq_id.add(at) = 1;
            **self.raw.seq_id.add(at) = sequence;
            *self.raw.logits.add(at) = i8::from(logits);
        }
        self.raw.n_tokens += 1;
    }
}

impl Drop for RawBatch {
    fn drop(&mut self) {
        // SAFETY: allocated by `llama_batch_init`, freed once.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}

impl Drop for RawContext {
    fn drop(&mut self) {
        // SAFETY: owned pointer.
        unsafe { sys::llama_free(self.ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::{greedy, Offload};

    #[test]
    fn greedy_picks_the_first_of_the_largest_logits_across_lanes_and_the_tail() {
        let mut logits: Vec<f32> = (0..1000).map(|at| ((at * 37) % 101) as f32 / 10.0).collect();
        let expected = logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (at, &x)| if x > best.1 { (at, x) } else { best })
            .0;
        assert_eq!(greedy(&logits), Some(expected));
        // The largest in the tail past the last whole lane group, then a tie before it.
        logits[995] = 99.0;
        assert_eq!(greedy(&logits), Some(995));
        logits[3] = 99.0;
        assert_eq!(greedy(&logits), Some(3));
        assert_eq!(greedy(&[-5.0; 7]), Some(0));
    }

    #[test]
    fn greedy_refuses_logits_with_a_nan_or_an_infinity_anywhere() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            for at in [0, 17, 998] {
                let mut logits = vec![1.0f32; 999];
                logits[at] = bad;
                assert_eq!(greedy(&logits), None, "{bad} at {at}");
            }
        }
        assert_eq!(greedy(&[]), None);
    }

    #[test]
    fn an_offload_puts_the_share_of_its_layers_on_the_device() {
        assert_eq!(Offload { layers: 31, of: 31 }.device_share(3100), 3100);
        assert_eq!(Offload { layers: 10, of: 31 }.device_share(3100), 1000);
        assert_eq!(Offload { layers: 0, of: 31 }.device_share(3100), 0);
        assert_eq!(Offload { layers: 0, of: 0 }.device_share(3100), 0);
    }
}
