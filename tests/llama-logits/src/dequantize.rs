//! `hearth-llama-logits --dequantize TYPE_ID`: reads whole blocks of ggml type
//! `TYPE_ID` (its GGUF id) from stdin and writes ggml's own expansion of them, through
//! the type's `to_float`, to stdout as little-endian f32. The reference the SDK's
//! dequantizer is checked against.

use std::io::{Read, Write};

use crate::AnyError;

pub fn run(type_id: &str) -> Result<(), AnyError> {
    let type_id: u32 = type_id.parse()?;
    if type_id >= llama_cpp_sys_2::GGML_TYPE_COUNT {
        return Err(format!("ggml knows no type {type_id}").into());
    }
    // SAFETY: an id inside ggml's table of type traits, which is static.
    let traits = unsafe { &*llama_cpp_sys_2::ggml_get_type_traits(type_id) };
    let (block, block_bytes) = (traits.blck_size as usize, traits.type_size);
    let mut bytes = Vec::new();
    std::io::stdin().lock().read_to_end(&mut bytes)?;
    if block_bytes == 0 || bytes.len() % block_bytes != 0 {
        return Err(format!("{} bytes are not whole blocks of {block_bytes}", bytes.len()).into());
    }
    let mut values = vec![0f32; bytes.len() / block_bytes * block];
    match traits.to_float {
        // SAFETY: `bytes` holds `values.len() / block` whole blocks and `values` has room
        // for all their elements, which is what `to_float` reads and writes.
        Some(to_float) => unsafe {
            to_float(bytes.as_ptr().cast(), values.as_mut_ptr(), values.len() as i64);
        },
        // F32 has no conversion: ggml uses its bytes as they are.
        None if type_id == llama_cpp_sys_2::GGML_TYPE_F32 => {
            for (value, word) in values.iter_mut().zip(bytes.chunks_exact(4)) {
                *value = f32::from_le_bytes(word.try_into()?);
            }
        }
        None => return Err(format!("type {type_id} has no to_float").into()),
    }
    let out: Vec<u8> = values.iter().flat_map(|value| value.to_le_bytes()).collect();
    std::io::stdout().lock().write_all(&out)?;
    Ok(())
}
