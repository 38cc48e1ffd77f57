#!/usr/bin/env bash
# Builds one of ggml's backend modules for the llama.cpp plugin from a llama.cpp source
# tree: libggml-vulkan.so, libggml-cuda.so, or libggml-rpc.so (the client of ggml's RPC
# protocol, and its server, which `hearth rpc-server` runs). Needs cmake and a C++
# compiler and the module's toolkit (none for rpc), not Rust, so a GPU machine can run
# it on its own.
#
#   scripts/ggml_module.sh vulkan|cuda|rpc SOURCE BUILD
#
# SOURCE must be the tree the plugin's llama-cpp-sys-2 vendors (ggml's backend interface
# is no stable ABI), and the build uses what that crate's `dynamic-backends` build does
# (shared ggml, GGML_BACKEND_DL, GGML_NATIVE=OFF, Release), so the module fits the
# plugin's libggml-base. Only the module's target is built, in BUILD, which is kept: a
# second run with the same source and settings rebuilds nothing. The module is left at
# BUILD/bin/libggml-<module>.so; the build's output goes to BUILD/build.log.
#
# Exit status: 0 built; 2 the toolkit is missing (one line on stderr names what to
# install); 1 the build failed (the log's tail on stderr).
set -euo pipefail

module=${1:?usage: $0 vulkan|cuda|rpc SOURCE BUILD}
source=$(cd "${2:?source tree}" && pwd)
build=${3:?build folder}
[[ -f $source/ggml/src/ggml-$module/CMakeLists.txt ]] ||
    { echo "$source is no llama.cpp source tree with ggml-$module" >&2; exit 1; }
jobs=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}

# The settings of llama-cpp-sys-2's own build (its build.rs with `dynamic-backends`),
# less what the module does not use: one CPU backend, no llama.cpp tools or common/.
flags=(
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON
    -DGGML_NATIVE=OFF -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_OPENMP=ON
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_CURL=OFF
    # The module finds libggml-base by its soname among the plugin's libraries, never
    # in this build folder.
    -DCMAKE_SKIP_BUILD_RPATH=ON
)

missing() {
    echo "needs $1" >&2
    exit 2
}

case "$module" in
vulkan)
    # Debian's package names; the Vulkan SDK (VULKAN_SDK, as ggml's CMake reads it) has
    # them all.
    vulkan_include=${VULKAN_SDK:+$VULKAN_SDK/include}
    vulkan_include=${vulkan_include:-/usr/include}
    command -v glslc >/dev/null || missing "glslc (Debian: apt-get install glslc)"
    [[ -f $vulkan_include/vulkan/vulkan.hpp ]] ||
        missing "the Vulkan headers and loader (Debian: apt-get install libvulkan-dev)"
    grep -q VK_EXT_layer_settings "$vulkan_include/vulkan/vulkan_core.h" ||
        missing "Vulkan headers with VK_EXT_layer_settings, newer than Debian 12's (Debian 13's libvulkan-dev, or the Vulkan SDK through VULKAN_SDK)"
    [[ -f $vulkan_include/spirv/unified1/spirv.hpp ]] ||
        missing "SPIRV-Headers (Debian: apt-get install spirv-headers)"
    flags+=(-DGGML_VULKAN=ON)
    ;;
cuda)
    nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    [[ -x $nvcc ]] || missing "the CUDA toolkit's nvcc (NVIDIA's cuda-toolkit package)"
    # The GPUs' own architectures where the driver lists them (9.0 → 90), else ggml's
    # default list.
    archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null |
        tr -d '. ' | sort -u | paste -sd';' || true)
    # The module's run path names the toolkit's libraries (cuBLAS, the CUDA runtime),
    # which need not be in the loader's default path.
    cuda_lib=$(realpath -m "$(dirname "$nvcc")/../lib64")
    flags+=(-DGGML_CUDA=ON -DGGML_CUDA_NCCL=OFF -DCMAKE_CUDA_COMPILER="$nvcc"
        -DCMAKE_MODULE_LINKER_FLAGS="-Wl,-rpath,$cuda_lib")
    [[ -n $archs ]] && flags+=(-DCMAKE_CUDA_ARCHITECTURES="$archs")
    ;;
rpc)
    # TCP only: the RDMA transport would link whatever libibverbs this machine has.
    flags+=(-DGGML_RPC=ON -DGGML_RPC_RDMA=OFF)
    ;;
*)
    echo "usage: $0 vulkan|cuda|rpc SOURCE BUILD" >&2
    exit 64
    ;;
esac

generator="Unix Makefiles"
command -v ninja >/dev/null && generator=Ninja
# Configured again only when the source or the settings changed; a folder configured
# for another source is started afresh (CMake refuses to reuse it).
settings="$source ${flags[*]} $generator ${VULKAN_SDK:-}"
mkdir -p "$build"
log=$build/build.log
: >"$log"
if [[ ! -f $build/CMakeCache.txt || $(cat "$build/.settings" 2>/dev/null) != "$settings" ]]; then
    rm -rf "$build" && mkdir -p "$build"
    if ! cmake -S "$source" -B "$build" -G "$generator" -Wno-dev "${flags[@]}" >>"$log" 2>&1; then
        tail -20 "$log" >&2
        exit 1
    fi
    echo "$settings" >"$build/.settings"
fi
if ! cmake --build "$build" --target "ggml-$module" -j "$jobs" >>"$log" 2>&1; then
    tail -20 "$log" >&2
    exit 1
fi
[[ -f $build/bin/libggml-$module.so ]] || { echo "the build made no bin/libggml-$module.so" >&2; exit 1; }
