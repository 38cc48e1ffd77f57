#!/usr/bin/env bash
# hearth on an NVIDIA GPU machine that has CUDA, cmake and gcc but no Rust and no
# network (the lent H100): the llama.cpp plugin against llama-bench -ngl 99 built from
# the same llama.cpp source, and the MLX plugin on the mlx-cuda-13 wheel.
# docs/BENCHMARKS.md ("GPU") has the figures and explains the route.
#
# Two halves:
#   scripts/gpu_bench.sh prepare DIR   here (a machine with Rust, no CUDA): build what the
#                                      GPU machine cannot, and lay it out in DIR/c1..c6,
#                                      one folder per call, each under the 64 MiB a call
#                                      carries (the model and the wheel go in two parts)
#   scripts/gpu_bench.sh c1 … c6       there, from the folder of that call, in order and
#                                      back to back (the machine keeps /root/work between
#                                      calls only while it is warm, ~30 s)
#
# The calls as they were made (DIR = .gpu in the checkout the device tool sends, ignored
# through .git/info/exclude; each call names its folder in `carry`):
#   c1  source, host, catalog, model part 1: configure, start the CUDA build (~4-5 min)
#   c2  model parts 2-3 (sha256 checked), the llama.cpp plugin, its libs, the direct program
#   c3  wheel part 1, the MLX plugin, plugins/mlx/bench/direct_decode.cpp
#   c4  wheel part 2 (sha256 checked): the MLX plugin and direct_decode on the GPU
#   c5  wait for the CUDA build; the llama.cpp plugin, the direct program and llama-bench
#       in interleaved rounds on the GPU, then CPU-only figures for context
#   c6  (optional, after c1 and c2) the plugin and the direct program at context 8192
#       and 1024 beside llama-bench's tg
# Each stage writes what comes back under $OUT (at most 8 files a call).
#
# What travels: the llama.cpp source tree scripts/bench.sh assembles (the one
# llama-cpp-sys-2 vendors, with llama.cpp's tools laid over it) as tar.xz; the `hearth`
# host; the llama.cpp plugin and examples/direct.rs (built, as always, with ggml's
# dynamic backends) and their shared libllama / libggml-base / libggml; the MLX plugin;
# the SmolLM2-135M Q4_1 file; the mlx-cuda-13 wheel. What is built there: ggml's CUDA
# backend module, its CPU module and a CUDA llama-bench, from that same source, with
# GGML_BACKEND_DL=ON like the plugin.
set -uo pipefail

W=${GPU_WORK:-/root/work}
OUT=${OUT:-$W/out}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stage=${1:-}

MODEL_ID=smollm2-135m
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MLX_WHEEL=mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
MLX_WHEEL_SHA=94cb48fba73e5ee39467e51c35c51c691123359ca17bafd1a24cf92ad6732bee

hearth_env() {
    export HEARTH_HOME=$W/home HEARTH_MODELS=$W/models HEARTH_CATALOG=$W/catalog.toml
    mkdir -p "$HEARTH_HOME"
}

# The llama.cpp build there: what llama-cpp-sys-2's build script gives ggml with its
# `dynamic-backends` feature (GGML_BACKEND_DL, shared libraries, GGML_NATIVE=OFF, Release)
# with one CPU module (as `prepare` builds the plugin) and CUDA for sm_90.
cuda_configure() {
    local generator="Unix Makefiles"
    command -v ninja >/dev/null && generator=Ninja
    cmake -S "$W/src" -B "$W/build" -G "$generator" -Wno-dev \
        -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
        -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_NATIVE=OFF -DGGML_OPENMP=ON \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_CUDA_NCCL=OFF \
        -DCMAKE_CUDA_COMPILER="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
}

wait_for_build() {
    local waited=0
    until grep -q '^rc=' "$W/cuda-build.log" 2>/dev/null; do
        sleep 5
        waited=$((waited + 5))
        if ((waited % 60 == 0)); then
            echo "  building… $(tail -1 "$W/cuda-build.log" | cut -c1-100)"
        fi
    done
    grep -q '^rc=0' "$W/cuda-build.log"
}

case "$stage" in
prepare)
    # Here. Needs: the tree scripts/bench.sh assembled, the release `hearth` (setup.sh),
    # the model pulled. The MLX plugin is built against the mlx-cpu wheel (MLX_DIR, as
    # setup.sh installs it): its headers are mlx-cuda-13's, and every libmlx symbol the
    # plugin imports is exported by mlx-cuda-13's libmlx too (checked with nm -D).
    dest=${2:?prepare DIR}
    root=$(cd "$here/.." && pwd)
    cache=${HEARTH_CACHE:-$HOME/.cache/hearth}
    target=${GPU_TARGET_DIR:-/work/target-gpu}
    hearth=${HEARTH_BIN:-$cache/target/release/hearth}
    # llama.cpp's full source, llama-bench's included (scripts/llama_source.sh).
    source_dir=$("$here/llama_source.sh") || exit 1
    model=${HEARTH_MODELS:-$HOME/.hearth/models}/$MODEL_ID/$MODEL_FILE
    # One CPU module, not GGML_CPU_ALL_VARIANTS' ten (see gpu/one-cpu-variant.cmake).
    (cd "$root" && CARGO_TARGET_DIR=$target \
        CMAKE_PROJECT_INCLUDE=$here/gpu/one-cpu-variant.cmake \
        cargo build --release -p hearth-llamacpp) || exit 1
    (cd "$root" && CARGO_TARGET_DIR=$target cargo build --release -p hearth-mlx) || exit 1
    [[ -f $dest/$MLX_WHEEL ]] || python3 -m pip download --no-deps --only-binary=:all: \
        --python-version 3.12 --platform manylinux_2_35_x86_64 -d "$dest" mlx-cuda-13==0.32.4 || exit 1
    echo "$MLX_WHEEL_SHA  $dest/$MLX_WHEEL" | sha256sum -c || exit 1
    mkdir -p "$dest"/c1 "$dest"/c2/lib "$dest"/c3 "$dest"/c4 "$dest"/c5 "$dest"/c6
    for c in c1 c2 c3 c4 c5 c6; do cp "$here/gpu_bench.sh" "$dest/$c/"; done
    tar -C "$source_dir" --exclude=./tools/ui --exclude=./docs --exclude=./gguf-py \
        --exclude=./models --exclude=./pocs --exclude=./.complete -cJf "$dest/c1/llama-src.tar.xz" .
    strip -o "$dest/c1/hearth" "$hearth"
    cp "$root/catalog.toml" "$dest/c1/"
    split -b 45000000 -d -a 1 "$model" "$dest/model.part."
    mv "$dest/model.part.0" "$dest/c1/"
    mv "$dest"/model.part.[12] "$dest/c2/"
    (cd "$root" && CARGO_TARGET_DIR=$target CMAKE_PROJECT_INCLUDE=$here/gpu/one-cpu-variant.cmake \
        cargo build --release -p hearth-llamacpp --example direct) || exit 1
    strip -o "$dest/c2/libhearth_llamacpp.so" "$target/release/libhearth_llamacpp.so"
    strip -o "$dest/c2/direct" "$target/release/examples/direct"
    # The plugin needs libggml-base.so.0, libggml.so.0 and libllama.so.0 (its NEEDED
    # entries; libllama-common is linked as-needed and not needed).
    out=$(dirname "$(ls -d "$target"/release/build/llama-cpp-sys-2-*/out/lib/libllama.so | head -1)")
    for lib in libggml-base.so.0 libggml.so.0 libllama.so.0; do
        strip -o "$dest/c2/lib/$lib" "$(readlink -f "$out/$lib")"
    done
    strip -o "$dest/c3/libhearth_mlx.so" "$target/release/libhearth_mlx.so"
    cp "$root/plugins/mlx/bench/direct_decode.cpp" "$dest/c3/"
    split -b 50000000 -d -a 1 "$dest/$MLX_WHEEL" "$dest/wheel.part."
    mv "$dest/wheel.part.0" "$dest/c3/"
    mv "$dest/wheel.part.1" "$dest/c4/"
    du -sh "$dest"/c?
    ;;

c1)
    # Machine facts, the source, the host, the model's first part; configure llama.cpp
    # and start its CUDA build in the background (it outlives this call).
    mkdir -p "$W"/src "$W"/bin "$W"/models/$MODEL_ID "$OUT"
    {
        date -u; uname -a; nproc; free -g; nvidia-smi; nvcc --version; cmake --version | head -1
        gcc --version | head -1; python3 --version
    } >"$OUT/machine.txt" 2>&1
    cat "$OUT/machine.txt"
    tar -C "$W/src" -xJf "$here/llama-src.tar.xz" || exit 1
    cp "$here/hearth" "$W/bin/" && chmod +x "$W/bin/hearth" && cp "$here/catalog.toml" "$W/" && cp "$here/model.part.0" "$W/"
    cuda_configure >"$W/configure.log" 2>&1; rc=$?
    cp "$W/configure.log" "$OUT/"
    [[ $rc == 0 ]] || { tail -40 "$W/configure.log"; exit 1; }
    grep -i 'cuda\|BACKEND_DL' "$W/configure.log" | head -20
    setsid nohup bash -c "cmake --build '$W/build' --target llama-bench ggml-cuda ggml-cpu -j16 \
        >'$W/cuda-build.log' 2>&1; echo rc=\$? >>'$W/cuda-build.log'" >/dev/null 2>&1 </dev/null &
    sleep 2; echo "c1 done: CUDA build started"
    ;;

c2)
    # The model from its three parts, installed by hearth itself (checked against the
    # catalog's size and sha256), and the plugin.
    hearth_env
    "$W/bin/hearth" pull "$MODEL_ID" \
        --from "$W/model.part.0" "$here/model.part.1" "$here/model.part.2" || exit 1
    rm -f "$W/model.part.0"
    mkdir -p "$W/plugins" "$W/lib" "$W/bin"
    cp "$here/libhearth_llamacpp.so" "$W/plugins/" && cp -P "$here"/lib/* "$W/lib/"
    cp "$here/direct" "$W/bin/" && chmod +x "$W/bin/direct"
    echo "c2 done; CUDA build: $(tail -1 "$W/cuda-build.log" | cut -c1-120)"
    ;;

c3)
    mkdir -p "$W/plugins-mlx"
    cp "$here/libhearth_mlx.so" "$W/plugins-mlx/" && cp "$here/direct_decode.cpp" "$W/"
    cp "$here/wheel.part.0" "$W/"
    echo "c3 done; CUDA build: $(tail -1 "$W/cuda-build.log" | cut -c1-120)"
    ;;

c4)
    # The wheel's second part; the MLX plugin on the GPU (while the CUDA build goes on).
    cat "$W/wheel.part.0" "$here/wheel.part.1" >"$W/$MLX_WHEEL" && rm -f "$W/wheel.part.0"
    echo "$MLX_WHEEL_SHA  $W/$MLX_WHEEL" | sha256sum -c || exit 1
    mkdir -p "$OUT"
    bash "$here/gpu_bench.sh" mlx 2>&1 | tee "$OUT/mlx.log"
    ;;

c5)
    # llama.cpp: the plugin and llama-bench, once the CUDA build is done.
    mkdir -p "$OUT"
    bash "$here/gpu_bench.sh" llamacpp 2>&1 | tee "$OUT/llamacpp.log"
    ;;

mlx)
    hearth_env
    H=$W/bin/hearth
    site=$W/mlxsite
    rm -rf "$site" && mkdir -p "$site"
    python3 -m zipfile -e "$W/$MLX_WHEEL" "$site" || exit 1
    # libmlx's RPATH is $ORIGIN/../../nvidia/<pkg>/lib: the CUDA libraries of the NVIDIA
    # pip packages (cuBLAS, cuDNN, NVRTC, cuFFT, cuSOLVER, NCCL) beside the mlx package.
    nvidia=$(python3 -c 'import nvidia, os; print(list(nvidia.__path__)[0])')
    ln -sfn "$nvidia" "$site/nvidia"
    echo "== libmlx's unresolved libraries (none expected):"
    ldd "$site/mlx/lib/libmlx.so" | grep 'not found'
    export LD_LIBRARY_PATH=$site/mlx/lib
    echo "== hearth plugins (MLX)"
    HEARTH_PLUGINS=$W/plugins-mlx "$H" plugins 2>&1
    echo "== hearth run --backend mlx"
    HEARTH_PLUGINS=$W/plugins-mlx timeout 180 "$H" run $MODEL_ID --backend mlx \
        "What is the capital of France? Answer in one word." 2>&1
    echo "== direct_decode.cpp against the mlx-cuda-13 wheel (first run: MLX compiles its kernels)"
    g++ -std=c++20 -O2 "$W/direct_decode.cpp" -I"$site/mlx/include" -L"$site/mlx/lib" -lmlx \
        -Wl,-rpath,"$site/mlx/lib" -o "$W/direct_decode" 2>&1 | tail -20
    timeout 120 "$W/direct_decode" "$W/models/$MODEL_ID/$MODEL_FILE" 128 2>&1
    # Interleaved: the plugin through the host with a prompt of about the direct program's
    # 16 tokens, then the direct program, twice; then the plugin at the 512-token prompt.
    for r in 1 2; do
        echo "== round $r: hearth bench --backend mlx --prompt-tokens 16"
        HEARTH_PLUGINS=$W/plugins-mlx timeout 240 "$H" bench $MODEL_ID --backend mlx --runs 5 \
            --prompt-tokens 16 --gen-tokens 128 --json >"$OUT/mlx-bench-p16-$r.json"
        echo "rc=$?"; cat "$OUT/mlx-bench-p16-$r.json"
        echo "== round $r: direct_decode"
        for _ in 1 2 3; do timeout 60 "$W/direct_decode" "$W/models/$MODEL_ID/$MODEL_FILE" 128 2>&1; done
    done
    echo "== hearth bench --backend mlx (512-token prompt)"
    HEARTH_PLUGINS=$W/plugins-mlx timeout 240 "$H" bench $MODEL_ID --backend mlx --runs 3 --json \
        >"$OUT/mlx-bench-p512.json"
    echo "rc=$?"; cat "$OUT/mlx-bench-p512.json"
    ;;

llamacpp)
    hearth_env
    H=$W/bin/hearth
    M=$W/models/$MODEL_ID/$MODEL_FILE
    echo "== waiting for the CUDA build"
    wait_for_build || { tail -40 "$W/cuda-build.log"; exit 1; }
    bin=$W/build/bin
    ls -la "$bin"
    # The plugin's own libllama/libggml (built by cargo with the plugin) and the backend
    # modules built on this machine from the same source.
    export LD_LIBRARY_PATH=$W/lib HEARTH_PLUGINS=$W/plugins HEARTH_GGML_BACKENDS=$bin
    echo "== hearth plugins / profile"
    "$H" plugins 2>&1
    "$H" profile 2>&1 | head -30
    threads=${GPU_THREADS:-8}
    R=$W/res && mkdir -p "$R"
    echo "== hearth bench --backend llamacpp (GPU)"
    HEARTH_LLAMACPP_LOG=1 "$H" --threads "$threads" bench $MODEL_ID --backend llamacpp --runs 1 \
        --json >/dev/null 2>"$R/plugin-gpu-llamacpp.log"
    grep -i 'offload\|CUDA\|model buffer\|KV buffer' "$R/plugin-gpu-llamacpp.log" | head -20
    # Interleaved rounds: the plugin through the host, the direct llama-cpp-2 program
    # (examples/direct.rs, same context, batch, greedy sampling, prompts), llama-bench.
    # llama-bench's pp at 515 tokens too: the plugin's prompt is 515 tokens, two ubatches.
    for r in 1 2 3; do
        "$H" --threads "$threads" bench $MODEL_ID --backend llamacpp --runs 5 --json \
            >"$R/plugin-gpu-$r.json" && cat "$R/plugin-gpu-$r.json"
        "$W/bin/direct" "$M" --threads "$threads" --context 8192 --prompt-tokens 512 --gen-tokens 128 \
            --runs 5 --json >"$R/direct-gpu-$r.json" 2>>"$R/direct.err" && cat "$R/direct-gpu-$r.json"
        (cd "$bin" && env -u LD_LIBRARY_PATH ./llama-bench -m "$M" -ngl 99 -t "$threads" -b 512 -ub 512 -r 5 -p 512,515 -n 0 -o json \
            >"$R/llama-bench-gpu-pp-$r.json" 2>>"$R/llama-bench.err" && cat "$R/llama-bench-gpu-pp-$r.json")
        (cd "$bin" && env -u LD_LIBRARY_PATH ./llama-bench -m "$M" -ngl 99 -t "$threads" -b 512 -ub 512 -r 5 -p 0 -n 128 -d 515 -o json \
            >"$R/llama-bench-gpu-tg-$r.json" 2>>"$R/llama-bench.err" && cat "$R/llama-bench-gpu-tg-$r.json")
    done
    echo "== the plugin at a 16-token prompt, as the MLX comparison runs"
    "$H" --threads "$threads" bench $MODEL_ID --backend llamacpp --runs 5 --prompt-tokens 16 \
        --gen-tokens 128 --json >"$R/plugin-gpu-p16.json" && cat "$R/plugin-gpu-p16.json"
    echo "== CPU only, for context: a folder with only the CPU module (with the CUDA module"
    echo "   loaded, even -ngl 0 sends large batches to the GPU)"
    mkdir -p "$W/cpu-only" && cp "$bin"/libggml-cpu*.so "$bin/llama-bench" "$W/cpu-only/"
    HEARTH_GGML_BACKENDS=$W/cpu-only "$H" --threads "$threads" bench $MODEL_ID --backend llamacpp \
        --runs 3 --json >"$R/plugin-cpu.json" && cat "$R/plugin-cpu.json"
    # llama-bench loads the backends beside its executable and in its working folder.
    (cd "$W/cpu-only" && env -u LD_LIBRARY_PATH ./llama-bench -m "$M" -t "$threads" -b 512 -ub 512 -r 3 -p 515 -n 0 -o json \
        >"$R/llama-bench-cpu.json" 2>>"$R/llama-bench.err" && cat "$R/llama-bench-cpu.json")
    (cd "$W/cpu-only" && env -u LD_LIBRARY_PATH ./llama-bench -m "$M" -t "$threads" -b 512 -ub 512 -r 3 -p 0 -n 128 -d 515 -o json \
        >"$R/llama-bench-cpu-tg.json" 2>>"$R/llama-bench.err" && cat "$R/llama-bench-cpu-tg.json")
    nvidia-smi >"$R/nvidia-smi-after.txt" 2>&1
    cp "$W/cuda-build.log" "$W/configure.log" "$R/" 2>/dev/null
    tar -C "$R" -czf "$OUT/llamacpp-results.tar.gz" .
    ;;

c6)
    # What separates real generation from llama-bench's tg: the context size (the plugin
    # and the direct program use the catalog's 8192 tokens, llama-bench prompt + gen) or
    # the per-token round trip (sample from the logits, then decode the next token).
    # Needs c1 and c2 of this machine's session (the model, the plugin, the CUDA build).
    hearth_env
    H=$W/bin/hearth
    M=$W/models/$MODEL_ID/$MODEL_FILE
    wait_for_build || { tail -40 "$W/cuda-build.log"; exit 1; }
    bin=$W/build/bin
    export LD_LIBRARY_PATH=$W/lib HEARTH_PLUGINS=$W/plugins HEARTH_GGML_BACKENDS=$bin
    sed '/id = "smollm2-135m"/,/context_size/ s/context_size = 8192/context_size = 1024/' \
        "$W/catalog.toml" >"$W/catalog-1024.toml"
    grep -A5 'id = "smollm2-135m"' "$W/catalog-1024.toml" | grep context_size
    threads=${GPU_THREADS:-8}
    R=$W/res-ctx && mkdir -p "$R"
    for r in 1 2; do
        for ctx in 8192 1024; do
            catalog=$W/catalog.toml
            [[ $ctx == 1024 ]] && catalog=$W/catalog-1024.toml
            HEARTH_CATALOG=$catalog "$H" --threads "$threads" bench $MODEL_ID --backend llamacpp --runs 5 \
                --json >"$R/plugin-ctx$ctx-$r.json"
            "$W/bin/direct" "$M" --threads "$threads" --context $ctx --prompt-tokens 512 --gen-tokens 128 \
                --runs 5 --json >"$R/direct-ctx$ctx-$r.json" 2>/dev/null
        done
        (cd "$bin" && env -u LD_LIBRARY_PATH ./llama-bench -m "$M" -ngl 99 -t "$threads" -b 512 -ub 512 -r 5 -p 0 -n 128 -d 515 -o json \
            >"$R/llama-bench-tg-$r.json" 2>/dev/null)
    done
    tar -C "$R" -czf "$OUT/ctx-results.tar.gz" .
    ;;

*)
    echo "usage: $0 prepare DIR | c1 | c2 | c3 | c4 | c5 | c6" >&2
    exit 2
    ;;
esac
