//! The safetensors validator on arbitrary bytes: errors, never panics; every accepted
//! tensor lies inside the data section.
#![no_main]

use hearth_sdk::helpers::Safetensors;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(file) = Safetensors::from_bytes("fuzz.safetensors", data) {
        for tensor in file.tensors() {
            assert!(file.data_offset <= tensor.start && tensor.start <= tensor.end && tensor.end <= file.file_size);
        }
    }
});
