//! The program links libllama and libggml-base from llama.cpp's build folder, which a
//! test process filtered to one test does not put on the library path (cargo adds a
//! build script's folders only when that build ran in the same invocation): an rpath
//! to `<out>/lib` (beside llama-cpp-sys-2's backends folder) finds them wherever it
//! runs. DT_RPATH, not RUNPATH, so that libllama's own dependencies resolve there too.
fn main() {
    if let Ok(backends) = std::env::var("DEP_LLAMA_BACKENDS_DIR") {
        let lib = std::path::Path::new(&backends).with_file_name("lib");
        println!("cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,{}", lib.display());
    }
}
