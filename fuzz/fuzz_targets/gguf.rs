//! The GGUF validator on arbitrary bytes: it must return an error, never panic, hang
//! or allocate without bound; and whatever it accepts must be safe to read.
#![no_main]

use hearth_sdk::helpers::Gguf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(gguf) = Gguf::from_bytes("fuzz.gguf", data.to_vec()) {
        let mut total = 0u64;
        for tensor in gguf.tensors() {
            // Accepted offsets and sizes must lie inside the image.
            let bytes = gguf.tensor_data(tensor);
            assert_eq!(bytes.len() as u64, tensor.size, "tensor `{}` is not inside the file", tensor.name);
            assert!(tensor.offset + tensor.size <= gguf.file_size());
            total = total.wrapping_add(tensor.elements()).wrapping_add(tensor.rows());
        }
        std::hint::black_box(total);
    }
});
