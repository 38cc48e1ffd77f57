# Included after project() (CMAKE_PROJECT_INCLUDE) when scripts/gpu_bench.sh builds the
# llama.cpp plugin (with ggml's dynamic backends, as always): llama-cpp-sys-2 turns on
# GGML_CPU_ALL_VARIANTS with GGML_BACKEND_DL, which compiles ggml's CPU backend once per
# x86 generation (about ten times). One CPU module, with the flags of the plugin's
# default build (GGML_NATIVE=OFF: AVX2, FMA, F16C), is all the GPU runs need.
set(GGML_CPU_ALL_VARIANTS OFF CACHE BOOL "one CPU backend module" FORCE)
