//! The catalog parser on arbitrary text: a broken catalog edit must be an error with a
//! location, never a panic in the host that reloads it live.
#![no_main]

use hearth::catalog::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Catalog::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
