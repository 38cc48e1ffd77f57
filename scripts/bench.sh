#!/usr/bin/env bash
# Measures what hearth costs on top of the engines it wraps (docs/BENCHMARKS.md):
#   1. setup.sh (packages, models, release build, plugins), then the direct programs:
#      llama-cpp-2 without hearth (plugins/llamacpp/examples/direct.rs) and libmlx
#      without hearth (plugins/mlx/bench/direct_decode.cpp);
#   2. llama.cpp's own llama-bench and llama-server, built once into
#      $HEARTH_CACHE/llama.cpp-<llama-cpp-sys-2 version>/ from the llama.cpp source that
#      llama-cpp-sys-2 vendors, with the flags its build script gives ggml, plus a
#      GGML_NATIVE=ON llama-bench for context;
#   3. scripts/bench_suite.py, which runs everything and prints every figure beside its
#      baseline. Arguments go to it (e.g. --quick, --model gemma3-270m, --json FILE).
# Idempotent: a second run only measures.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$HEARTH_ROOT"
PY="${PYTHON:-python3}"

"$HEARTH_ROOT/scripts/setup.sh"
# The direct MLX program below links the MLX build setup chose (env.sh).
choose_mlx_dir
_t0=$(date +%s)

# ---------------------------------------------------------------------------------------
step "direct llama-cpp-2 program"
# The workspace's examples, with the workspace's features: a build of one package
# would build llama.cpp a second time.
cargo build --release --workspace --examples

# ---------------------------------------------------------------------------------------
step "direct libmlx program"
# The MLX plugin's graph written straight against the libmlx the plugin links, one
# program per MLX build (CPU or CUDA: env.sh's choice).
MLX_DIRECT="$HEARTH_CACHE/mlx-direct-decode-$(basename "$(dirname "$MLX_DIR")")"
if [[ ! -x "$MLX_DIRECT" || "$HEARTH_ROOT/plugins/mlx/bench/direct_decode.cpp" -nt "$MLX_DIRECT" ]]; then
    g++ -std=c++20 -O2 "$HEARTH_ROOT/plugins/mlx/bench/direct_decode.cpp" -I"$MLX_DIR/include" \
        -L"$MLX_DIR/lib" -lmlx -Wl,-rpath,"$MLX_DIR/lib" -o "$MLX_DIRECT"
fi
echo "    $MLX_DIRECT"

# ---------------------------------------------------------------------------------------
step "llama.cpp baselines"
# llama.cpp's full source: the crate's copy with the tools laid over it
# (scripts/llama_source.sh says how).
source_dir=$("$(dirname "${BASH_SOURCE[0]}")/llama_source.sh") || exit 1
LLAMA_CACHE=$(dirname "$source_dir")

# build_llama NAME TARGETS CMAKE_ARGS...: configure once, then build the targets.
build_llama() {
    local name="$1" targets="$2"
    shift 2
    local dir="$LLAMA_CACHE/$name"
    if [[ ! -f "$dir/CMakeCache.txt" ]]; then
        cmake -S "$source_dir" -B "$dir" -Wno-dev \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
            -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF \
            -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
            -DBUILD_SHARED_LIBS=OFF -DGGML_OPENMP=ON "$@" >"$dir.configure.log" 2>&1 ||
            { cat "$dir.configure.log" >&2; exit 1; }
    fi
    # shellcheck disable=SC2086 # several targets
    cmake --build "$dir" --target $targets -j "$(nproc)" >"$dir.build.log" 2>&1 ||
        { tail -40 "$dir.build.log" >&2; exit 1; }
    echo "    $name: $(cd "$dir/bin" && echo $targets)"
}
# What llama-cpp-sys-2's build.rs gives ggml without target-cpu=native in RUSTFLAGS:
# GGML_NATIVE=OFF (so ggml's defaults turn AVX/AVX2/BMI2/FMA/F16C/SSE4.2 on, AVX-512
# off), and what the cmake crate passes for a cargo release build: RelWithDebInfo and
# its C/C++ flags.
rust_flags="-ffunction-sections -fdata-sections -fPIC -m64 -march=x86-64"
[[ "$(uname -m)" == x86_64 ]] || rust_flags="-ffunction-sections -fdata-sections -fPIC"
build_llama generic "llama-bench llama-server" -DGGML_NATIVE=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="$rust_flags" -DCMAKE_CXX_FLAGS="$rust_flags"
# For context only: the same source tuned for this CPU (AVX-512 where it has it). Not its
# AMX kernels when the compiler is GCC before 13, whose _tile_loadconfig lets the
# compiler drop the tile shapes (that llama-bench died of SIGSEGV in
# ggml_backend_amx_mul_mat on a Xeon with AMX; setup.sh leaves ggml's AMX variant out of
# the plugin for the same reason): explicit -mno-amx-* outrank -march=native.
native=native
native_flags=()
if ! c++ --version | grep -qi clang && (($(c++ -dumpversion | cut -d. -f1) < 13)); then
    native=native-no-amx
    no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    native_flags=(-DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx")
fi
build_llama "$native" "llama-bench" -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release "${native_flags[@]}"
done_step

# ---------------------------------------------------------------------------------------
step "suite"
"$PY" "$HEARTH_ROOT/scripts/bench_suite.py" \
    --hearth "$CARGO_TARGET_DIR/release/hearth" \
    --direct "$CARGO_TARGET_DIR/release/examples/direct" \
    --llama-bench "$LLAMA_CACHE/generic/bin/llama-bench" \
    --llama-bench-native "$LLAMA_CACHE/$native/bin/llama-bench" \
    --llama-server "$LLAMA_CACHE/generic/bin/llama-server" \
    --mlx-direct "$MLX_DIRECT" \
    "$@"
done_step
echo "==> bench done in $(( $(date +%s) - _t0 ))s"
