//! Greedy decoding inside llama.cpp's graph, on the GPU that computes the logits
//! (llama.cpp's backend sampling). Without it every token copies the whole vocabulary's
//! logits to the host (128k floats for Llama 3) and scans them there; with it the device
//! picks the token and only two numbers cross: the token, and the sum of the logits.
//! The sum is the check [`crate::ffi::greedy`] makes on the host: it is finite exactly
//! when every logit is (short of an overflow past 3.4e38 that no model's logits reach),
//! so damaged weights that compute NaN stay an error rather than a token.
//!
//! Only GPUs take it: on the CPU the logits are already in host memory, and the plugin's
//! vectorised pass is what it was.

use std::ffi::c_char;
use std::ptr::{self, NonNull};

use llama_cpp_sys_2 as sys;

use crate::ffi::Token;

/// A sampler chain (llama.cpp attaches chains only) holding the device greedy sampler;
/// attached to one sequence of one context by [`crate::ffi::RawContext::attach`].
pub struct DeviceGreedy {
    chain: NonNull<sys::llama_sampler>,
    /// Written by [`device_greedy_init`] when llama.cpp attaches the chain: whether the
    /// device holding the logits runs the sampler's operations.
    on_device: Box<bool>,
}

// SAFETY: the chain is plain state; the context it is attached to, and so its one
// user, moves between threads with it and is used by one at a time.
unsafe impl Send for DeviceGreedy {}

impl DeviceGreedy {
    pub fn new() -> Option<Self> {
        let mut on_device = Box::new(false);
        // SAFETY: plain constructors; the chain takes ownership of the added sampler, and
        // the flag it points at is boxed, so it stays put for the chain's life.
        unsafe {
            let mut params = sys::llama_sampler_chain_default_params();
            params.no_perf = true;
            let chain = NonNull::new(sys::llama_sampler_chain_init(params))?;
            let flag: *mut bool = &mut *on_device;
            let sampler = sys::llama_sampler_init(
                ptr::addr_of!(DEVICE_GREEDY).cast_mut(),
                flag.cast::<std::ffi::c_void>(),
            );
            sys::llama_sampler_chain_add(chain.as_ptr(), sampler);
            Some(Self { chain, on_device })
        }
    }

    pub(crate) fn chain(&self) -> *mut sys::llama_sampler {
        self.chain.as_ptr()
    }

    /// Whether llama.cpp runs the sampler on the device, once the chain is attached.
    pub fn on_device(&self) -> bool {
        *self.on_device
    }
}

impl Drop for DeviceGreedy {
    fn drop(&mut self) {
        // SAFETY: owned chain, detached from its context first by its owner; freeing it
        // frees the sampler it holds, whose state (the flag) is this struct's box.
        unsafe { sys::llama_sampler_free(self.chain.as_ptr()) }
    }
}

/// What the device gave for one output: the token, and whether every logit was finite.
pub fn read(sum_of_logits: Option<f32>, token: Token) -> Option<Token> {
    match sum_of_logits {
        Some(sum) if sum.is_finite() && token >= 0 => Some(token),
        _ => None,
    }
}

/// llama.cpp's interface for a sampler written outside it.
static DEVICE_GREEDY: sys::llama_sampler_i = sys::llama_sampler_i {
    name: Some(device_greedy_name),
    accept: None,
    apply: Some(device_greedy_apply),
    reset: None,
    clone: None,
    free: None,
    backend_init: Some(device_greedy_init),
    backend_accept: None,
    backend_apply: Some(device_greedy_graph),
    backend_set_input: None,
    backend_reset: None,
    copy_state: None,
};

unsafe extern "C" fn device_greedy_name(_: *const sys::llama_sampler) -> *const c_char {
    c"hearth-device-greedy".as_ptr()
}

/// The host's greedy choice, which llama.cpp requires of every sampler; the plugin reads
/// the device's instead and never asks for this.
unsafe extern "C" fn device_greedy_apply(
    _: *mut sys::llama_sampler,
    candidates: *mut sys::llama_token_data_array,
) {
    // SAFETY: llama.cpp passes a valid array of `size` candidates.
    let candidates = unsafe { &mut *candidates };
    let logits = unsafe { std::slice::from_raw_parts(candidates.data, candidates.size) };
    let best = logits.iter().enumerate().fold(0, |best, (at, candidate)| {
        if candidate.logit > logits[best].logit {
            at
        } else {
            best
        }
    });
    candidates.selected = i64::try_from(best).unwrap_or(0);
}

/// Whether the device behind `buffer_type` (where the logits are) should and can run the
/// sampler: a GPU, with argmax and sum over a row of floats. The answer is kept in the
/// sampler's flag, since llama.cpp attaches the chain whatever it is.
unsafe extern "C" fn device_greedy_init(
    sampler: *mut sys::llama_sampler,
    buffer_type: sys::ggml_backend_buffer_type_t,
    _outputs_per_sequence: u32,
) -> bool {
    // SAFETY: llama.cpp passes this sampler, whose state is the flag `DeviceGreedy` boxed,
    // and a live buffer type; the probe context is freed before returning.
    unsafe {
        let device = sys::ggml_backend_buft_get_device(buffer_type);
        let gpu = !device.is_null()
            && matches!(
                sys::ggml_backend_dev_type(device),
                sys::GGML_BACKEND_DEVICE_TYPE_GPU | sys::GGML_BACKEND_DEVICE_TYPE_IGPU
            );
        let supported = gpu && {
            let params = sys::ggml_init_params {
                mem_size: 4 * sys::ggml_tensor_overhead(),
                mem_buffer: ptr::null_mut(),
                no_alloc: true,
            };
            let context = sys::ggml_init(params);
            !context.is_null() && {
                let logits = sys::ggml_new_tensor_1d(context, sys::GGML_TYPE_F32, 1024);
                let ops = [sys::ggml_argmax(context, logits), sys::ggml_sum(context, logits)];
                let all = ops.iter().all(|&op| sys::ggml_backend_dev_supports_op(device, op));
                sys::ggml_free(context);
                all
            }
        };
        *(*sampler).ctx.cast::<bool>() = supported;
        supported
    }
}

/// The sampler's part of the graph: the token is the row's argmax, and the row's sum
/// takes the place of its logits among the outputs, so it is what is copied back.
unsafe extern "C" fn device_greedy_graph(
    _: *mut sys::llama_sampler,
    context: *mut sys::ggml_context,
    _: *mut sys::ggml_cgraph,
    data: *mut sys::llama_sampler_data,
) {
    // SAFETY: llama.cpp passes its graph context and one output row's logits.
    unsafe {
        let data = &mut *data;
        let row = sys::ggml_reshape_1d(context, data.logits, sys::ggml_nelements(data.logits));
        data.sampled = sys::ggml_argmax(context, row);
        data.logits = sys::ggml_sum(context, row);
    }
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn a_device_token_counts_only_when_the_logits_summed_to_a_finite_number() {
        assert_eq!(read(Some(-1234.5), 7), Some(7));
        assert_eq!(read(Some(f32::NAN), 7), None);
        assert_eq!(read(Some(f32::INFINITY), 7), None);
        assert_eq!(read(None, 7), None, "no sum came back");
        assert_eq!(read(Some(0.0), -1), None, "no token came back");
    }
}
