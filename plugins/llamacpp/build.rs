//! Where the plugin's shared libraries are: its run path names its companion folder,
//! `$ORIGIN/libhearth_llamacpp`, which setup fills with `libllama`, `libggml`,
//! `libggml-base` and the backend modules, and which the host copies with the plugin
//! (see `backends.rs`). The RPC server program, which setup installs in that folder,
//! names its own folder, and the build's folder after it; the examples, run from the
//! target folder, name the build's own folder of those libraries.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,$ORIGIN/libhearth_llamacpp");
    // llama-cpp-sys-2 (`links = "llama"`) says where its modules went: `<out>/backends`,
    // beside `<out>/lib` with the shared libraries.
    if let Ok(backends) = std::env::var("DEP_LLAMA_BACKENDS_DIR") {
        let lib = std::path::Path::new(&backends).with_file_name("lib");
        // DT_RPATH, not RUNPATH: it also finds libllama's own libggml-base and libggml.
        println!("cargo:rustc-link-arg-examples=-Wl,--disable-new-dtags,-rpath,{}", lib.display());
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,$ORIGIN:{}",
            lib.display()
        );
    }
}
