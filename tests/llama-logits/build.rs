//! The program runs from the target folder, where nothing puts llama.cpp's shared
//! libraries on the loader's path: its run path names the build's own folder of them.

fn main() {
    // llama-cpp-sys-2 (`links = "llama"`) says where its modules went: `<out>/backends`,
    // beside `<out>/lib` with the shared libraries.
    if let Ok(backends) = std::env::var("DEP_LLAMA_BACKENDS_DIR") {
        let lib = std::path::Path::new(&backends).with_file_name("lib");
        // DT_RPATH, not RUNPATH: it also finds libllama's own libggml-base and libggml.
        println!("cargo:rustc-link-arg-bins=-Wl,--disable-new-dtags,-rpath,{}", lib.display());
    }
}
