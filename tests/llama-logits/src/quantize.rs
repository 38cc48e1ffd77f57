//! `hearth-llama-logits --quantize IN OUT TYPE`: llama.cpp's own quantizer
//! (`llama_model_quantize`, as its `llama-quantize` tool runs it) turns the F32/F16 GGUF
//! `IN` into `OUT` with every weight matrix of `TYPE` (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
//! Q4_K, Q5_K, Q6_K, F16 or BF16). "Pure": no tensor is given another type by
//! llama.cpp's mixing rules, so a file tests its one type (norms and biases, vectors,
//! stay F32 as llama.cpp always keeps them). scripts/tiny_models.py makes the tiny
//! conformance models with it.

use std::ffi::CString;

use llama_cpp_sys_2 as sys;

use crate::AnyError;

/// The file type whose pure quantization gives every matrix `name`'s ggml type (the
/// K-quants' _S and _M variants differ only in their mixing rules, which pure skips).
fn file_type(name: &str) -> Result<sys::llama_ftype, AnyError> {
    Ok(match name {
        "F16" => sys::LLAMA_FTYPE_MOSTLY_F16,
        "BF16" => sys::LLAMA_FTYPE_MOSTLY_BF16,
        "Q8_0" => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
        "Q4_0" => sys::LLAMA_FTYPE_MOSTLY_Q4_0,
        "Q4_1" => sys::LLAMA_FTYPE_MOSTLY_Q4_1,
        "Q5_0" => sys::LLAMA_FTYPE_MOSTLY_Q5_0,
        "Q5_1" => sys::LLAMA_FTYPE_MOSTLY_Q5_1,
        "Q4_K" => sys::LLAMA_FTYPE_MOSTLY_Q4_K_M,
        "Q5_K" => sys::LLAMA_FTYPE_MOSTLY_Q5_K_M,
        "Q6_K" => sys::LLAMA_FTYPE_MOSTLY_Q6_K,
        _ => return Err(format!("no quantization type {name}").into()),
    })
}

/// llama.cpp's log goes nowhere: it prints a line for each tensor of each file.
unsafe extern "C" fn quiet(
    _level: sys::ggml_log_level,
    _text: *const std::ffi::c_char,
    _user_data: *mut std::ffi::c_void,
) {
}

pub fn run(input: &str, output: &str, type_name: &str) -> Result<(), AnyError> {
    let ftype = file_type(type_name)?;
    let (input, output) = (CString::new(input)?, CString::new(output)?);
    // SAFETY: plain calls into llama.cpp with valid C strings and the params it made;
    // the backend is initialised first as llama-quantize does.
    let status = unsafe {
        sys::llama_log_set(Some(quiet), std::ptr::null_mut());
        sys::llama_backend_init();
        let mut params = sys::llama_model_quantize_default_params();
        params.ftype = ftype;
        params.pure_ = true;
        params.nthread = 2;
        sys::llama_model_quantize(input.as_ptr(), output.as_ptr(), &params)
    };
    if status != 0 {
        return Err(format!("llama_model_quantize failed ({status})").into());
    }
    Ok(())
}
