#!/usr/bin/env bash
# The engines' speed on an NVIDIA GPU machine (the lent H200: CUDA, cmake, gcc, Python
# with numpy; no Rust, no network), on shape-realistic synthetic Llama models (random
# Q4_0 weights, scripts/synthetic_model.py): the WebGPU plugin on the NVIDIA Vulkan
# driver with each kernel plan, the llama.cpp plugin with ggml's CUDA module, and
# llama-bench built with CUDA from the same llama.cpp source, in one run.
# docs/BENCHMARKS.md ("GPU: the lent H200") has the figures.
#
#   scripts/gpu_speed.sh prepare DIR   here: lay out DIR/s1 and DIR/s2, one folder per
#                                      call, each under the 64 MiB a call carries
#   scripts/gpu_speed.sh s1            there: start the CUDA build, make the models,
#                                      the WebGPU plugin
#   scripts/gpu_speed.sh s2            there, right after s1 (the machine keeps /root/work
#                                      only while warm): the llama.cpp plugin on CUDA and
#                                      llama-bench
#   scripts/gpu_speed.sh baseline      there, after s1 in the same call, instead of s2:
#                                      llama-bench alone (s1's folder fits one call's carry
#                                      with .gl; s2's does not)
# The Vulkan loader travels as Debian packages in .gl (the device tool's README says how);
# GPU_SHAPES (1b 8b), GPU_RUNS (3) and GPU_PLANS (the WebGPU kernel plans: gpu
# gpu-without-matrices software, or none to leave WebGPU out) choose what runs. s1 also
# runs the WebGPU kernel tests there (each kernel of each plan the GPU offers against
# the CPU, every weight type) and compares the plans' greedy answers. Each call carries .gl and its folder and
# starts with
#   for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; bash DIR/sN/gpu_speed.sh sN
set -uo pipefail

W=${GPU_WORK:-/root/work}
OUT=${OUT:-$W/out}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stage=${1:-}
SHAPES=${GPU_SHAPES:-"1b 8b"}
RUNS=${GPU_RUNS:-3}

hearth_env() {
    export HEARTH_HOME=$W/home HEARTH_MODELS=$W/models HEARTH_CATALOG=$W/catalog.toml
    mkdir -p "$HEARTH_HOME" "$OUT"
}

# Wait for s1's CUDA build and put the module beside llama-bench.
cuda_module() {
    until grep -q '^rc=' "$W/cuda-build.log" 2>/dev/null; do sleep 5; done
    grep -q '^rc=0' "$W/cuda-build.log" || { tail -40 "$W/cuda-build.log"; return 1; }
    cp "$W/cuda/bin/libggml-cuda.so" "$W/build/bin/"
}

# llama-bench on shape $1. Depth 0 is llama-bench's own figure; at depth 512 the decode
# runs after a 512-token context, as hearth bench's does (after its 515-token prompt).
llama_bench() {
    echo "== llama-bench -ngl 99 -d 0,512, $1"
    (cd "$W/build/bin" && ./llama-bench -m "$W/models/synthetic-$1/synthetic-$1.gguf" -ngl 99 \
        -r "$RUNS" -p 512 -n 128 -d 0,512 -o json >"$OUT/llama-bench-$1.json" 2>"$OUT/llama-bench-$1.err")
    echo "rc=$?"; grep -E '"(n_prompt|n_gen|n_depth|avg_ts)"' "$OUT/llama-bench-$1.json"
}

# The catalog of the synthetic models, one entry a shape.
write_catalog() {
    local shape
    for shape in $SHAPES; do
        printf '[[models]]\nid = "synthetic-%s"\nname = "synthetic %s (random Q4_0)"\nfamily = "llama"\ncontext_size = 4096\n[[models.artifacts]]\nbackends = ["llamacpp", "webgpu"]\nformat = "gguf"\nfile = "synthetic-%s.gguf"\nquantization = "Q4_0"\n\n' \
            "$shape" "$shape" "$shape"
    done >"$W/catalog.toml"
}

case "$stage" in
prepare)
    dest=${2:?prepare DIR}
    root=$(cd "$here/.." && pwd)
    source "$here/env.sh"
    # llama.cpp's full source, llama-bench's included (scripts/llama_source.sh).
    source_dir=$("$here/llama_source.sh") || exit 1
    target=$CARGO_TARGET_DIR/release
    mkdir -p "$dest/s1/py" "$dest/s2/companion"
    cp "$here/gpu_speed.sh" "$here/ggml_module.sh" "$dest/s1/" && cp "$here/gpu_speed.sh" "$dest/s2/"
    tar -C "$source_dir" --exclude=./tools/ui --exclude=./docs --exclude=./gguf-py \
        --exclude=./models --exclude=./pocs --exclude=./.complete -cJf "$dest/s1/llama-src.tar.xz" .
    strip -o "$dest/s1/hearth" "$target/hearth"
    strip -o "$dest/s1/libhearth_webgpu.so" "$target/libhearth_webgpu.so"
    tests=$(cd "$root" && cargo test --workspace --release --test webgpu --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "webgpu" and m.get("executable"):
        print(m["executable"])')
    strip -o "$dest/s1/webgpu-tests" "${tests:?the webgpu test binary}"
    (cd "$root" && cargo build --workspace --release --example kernel_speed 2>/dev/null) || exit 1
    strip -o "$dest/s1/kernel-speed" "$target/examples/kernel_speed"
    # The four programs travel compressed: together they are most of a call's carry.
    xz -T2 "$dest"/s1/{hearth,libhearth_webgpu.so,webgpu-tests,kernel-speed} || exit 1
    cp "$here/synthetic_model.py" "$here/tiny_models.py" "$dest/s1/py/"
    gguf_py=$(ls -d "$HEARTH_CACHE"/python/gguf-*)
    cp -r "$gguf_py/gguf" "$dest/s1/py/"
    # numpy is there (the GPU machine's Python has it), and here in setup's gguf folder.
    PYTHONPATH=$dest/s1/py:$gguf_py python3 "$here/synthetic_model.py" tokenizer \
        "$HEARTH_MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest/s1/tokenizer.gguf" || exit 1
    strip -o "$dest/s2/libhearth_llamacpp.so" "$target/libhearth_llamacpp.so"
    # The companion folder as setup installed it (shared libraries, CPU modules).
    cp "$HEARTH_PLUGINS"/libhearth_llamacpp/* "$dest/s2/companion/"
    du -sh "$dest"/s?
    ;;

s1)
    mkdir -p "$W"/src "$W"/bin "$W"/models "$W"/plugins-webgpu "$OUT"
    {
        date -u; nproc; free -g; nvidia-smi; nvcc --version | tail -2; vulkaninfo --summary 2>&1 | head -30
    } >"$OUT/machine.txt" 2>&1
    tar -C "$W/src" -xJf "$here/llama-src.tar.xz" || exit 1
    # ggml's CUDA module as setup builds it where the CUDA toolkit is
    # (scripts/ggml_module.sh), in the background while the models are made; llama-bench
    # is built without CUDA and runs on that same module (s2 copies it beside it), so
    # both measure one build of the kernels. s2 waits for it.
    setsid nohup bash -c "bash '$here/ggml_module.sh' cuda '$W/src' '$W/cuda' \
        >'$W/cuda-build.log' 2>&1; echo rc=\$? >>'$W/cuda-build.log'" >/dev/null 2>&1 </dev/null &
    cmake -S "$W/src" -B "$W/build" -G Ninja -Wno-dev -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=OFF -DGGML_NATIVE=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
        -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF >"$W/configure.log" 2>&1 ||
        { tail -30 "$W/configure.log"; exit 1; }
    cmake --build "$W/build" --target llama-bench ggml-cpu -j4 >"$W/bench-build.log" 2>&1 ||
        { tail -30 "$W/bench-build.log"; exit 1; }
    for program in hearth webgpu-tests kernel-speed; do
        xz -dc "$here/$program.xz" >"$W/bin/$program" && chmod +x "$W/bin/$program" || exit 1
    done
    xz -dc "$here/libhearth_webgpu.so.xz" >"$W/plugins-webgpu/libhearth_webgpu.so" || exit 1
    write_catalog
    for shape in $SHAPES; do
        mkdir -p "$W/models/synthetic-$shape"
        PYTHONPATH=$here/py python3 "$here/py/synthetic_model.py" model "$shape" "$here/tokenizer.gguf" \
            "$W/models/synthetic-$shape/synthetic-$shape.gguf" || exit 1
    done
    ls -la "$W"/models/*/
    hearth_env
    export HEARTH_PLUGINS=$W/plugins-webgpu
    "$W/bin/hearth" plugins 2>&1 | tee "$OUT/webgpu-plugins.txt"
    plans=${GPU_PLANS:-gpu gpu-without-matrices software}
    if [[ $plans != none ]]; then
        echo "== webgpu kernel tests on this GPU"
        "$W/bin/webgpu-tests" kernels:: --test-threads 1 --nocapture >"$OUT/webgpu-kernel-tests.txt" 2>&1
        echo "rc=$?"; grep -E "^test |plans|result" "$OUT/webgpu-kernel-tests.txt"
        for plan in $plans; do
            echo "== webgpu kernel speed, $plan"
            HEARTH_WEBGPU_KERNELS=$plan timeout 120 "$W/bin/kernel-speed" 2>&1 | tee "$OUT/kernel-speed-$plan.txt"
        done
        shape=${SHAPES%% *}
        for plan in $plans; do
            HEARTH_WEBGPU_KERNELS=$plan timeout 120 "$W/bin/hearth" run "synthetic-$shape" \
                "Once upon a time" --backend webgpu --temperature 0 --max-tokens 24 \
                >"$OUT/webgpu-answer-$plan.txt" 2>"$OUT/webgpu-answer-$plan.err"
            echo "rc=$? $plan: $(md5sum <"$OUT/webgpu-answer-$plan.txt" | cut -c1-12) $(tail -1 "$OUT/webgpu-answer-$plan.err")"
        done
    fi
    for shape in $SHAPES; do
        for plan in $plans; do
            [[ $plan == none || ($plan == software && $shape != 1b) ]] && continue
            echo "== webgpu, kernels $plan, $shape"
            HEARTH_WEBGPU_KERNELS=$plan timeout 400 "$W/bin/hearth" bench "synthetic-$shape" \
                --backend webgpu --runs "$RUNS" --json >"$OUT/webgpu-$plan-$shape.json" 2>"$OUT/webgpu-$plan-$shape.err"
            echo "rc=$?"; cat "$OUT/webgpu-$plan-$shape.json"; tail -3 "$OUT/webgpu-$plan-$shape.err"
        done
    done
    echo "s1 done; CUDA build: $(tail -1 "$W/cuda-build.log" | cut -c1-120)"
    ;;

s2)
    hearth_env
    H=$W/bin/hearth
    mkdir -p "$W/plugins/libhearth_llamacpp"
    cp "$here/libhearth_llamacpp.so" "$W/plugins/" && cp "$here"/companion/* "$W/plugins/libhearth_llamacpp/"
    cuda_module || exit 1
    bin=$W/build/bin
    # The CUDA module joins the plugin's companion folder, as setup installs it where the
    # CUDA toolkit is.
    cp "$W/cuda/bin/libggml-cuda.so" "$W/plugins/libhearth_llamacpp/"
    cp "$W/plugins-webgpu/libhearth_webgpu.so" "$W/plugins/"
    export HEARTH_PLUGINS=$W/plugins
    "$H" plugins 2>&1 | tee "$OUT/plugins.txt"
    "$H" profile 2>&1 | tee "$OUT/profile.txt"
    for shape in $SHAPES; do
        echo "== llama.cpp plugin on CUDA, $shape"
        timeout 300 "$H" bench "synthetic-$shape" --backend llamacpp --runs "$RUNS" --json \
            >"$OUT/llamacpp-$shape.json" 2>"$OUT/llamacpp-$shape.err"
        echo "rc=$?"; cat "$OUT/llamacpp-$shape.json"; tail -3 "$OUT/llamacpp-$shape.err"
        llama_bench "$shape"
    done
    # The first shape's layers on the same GPU through ggml's RPC on loopback
    # (`hearth rpc-server` with the CUDA device, `--rpc` with `--device RPC0`): what the
    # protocol costs a token against the local figure above.
    shape=${SHAPES%% *}
    echo "== llama.cpp plugin, $shape, on CUDA0 through hearth rpc-server on loopback"
    "$H" rpc-server --device CUDA0 --port 50052 >"$OUT/rpc-server.log" 2>&1 &
    server=$!
    sleep 5
    timeout 300 "$H" bench "synthetic-$shape" --backend llamacpp --runs "$RUNS" --json \
        --rpc 127.0.0.1:50052 --device RPC0 >"$OUT/llamacpp-rpc-$shape.json" 2>"$OUT/llamacpp-rpc-$shape.err"
    echo "rc=$?"; cat "$OUT/llamacpp-rpc-$shape.json"; tail -3 "$OUT/llamacpp-rpc-$shape.err"
    kill "$server"
    # The first shape with the split modes a model on several GPUs takes (issue 22
    # measures them on two; here the path runs on one): `row` (refused where the CUDA
    # module has no split buffers, as llama-bench -sm row fails then) and `none` on the
    # main device; their greedy tokens against the default (`layer`).
    echo "== llama.cpp plugin, $shape, split modes on CUDA0"
    for mode in layer row none; do
        main=(--main-device CUDA0)
        [[ $mode == layer ]] && main=()
        timeout 120 "$H" run "synthetic-$shape" "Once upon a time" --backend llamacpp \
            --temperature 0 --max-tokens 24 --split-mode "$mode" "${main[@]}" \
            >"$OUT/split-$mode-answer.txt" 2>"$OUT/split-$mode-answer.err"
        echo "rc=$? $mode: $(md5sum <"$OUT/split-$mode-answer.txt" | cut -c1-12) $(tail -1 "$OUT/split-$mode-answer.err")"
        [[ $mode == layer ]] && continue
        timeout 300 "$H" bench "synthetic-$shape" --backend llamacpp --runs "$RUNS" --json \
            --split-mode "$mode" "${main[@]}" \
            >"$OUT/llamacpp-split-$mode-$shape.json" 2>"$OUT/llamacpp-split-$mode-$shape.err"
        echo "rc=$?"; cat "$OUT/llamacpp-split-$mode-$shape.json"; tail -3 "$OUT/llamacpp-split-$mode-$shape.err"
    done
    (cd "$bin" && ./llama-bench -m "$W/models/synthetic-$shape/synthetic-$shape.gguf" -ngl 99 \
        -sm row -mg 0 -r "$RUNS" -p 512 -n 128 -o json >"$OUT/llama-bench-row-$shape.json" \
        2>"$OUT/llama-bench-row-$shape.err")
    echo "rc=$?"; grep -E '"(n_prompt|n_gen|avg_ts)"' "$OUT/llama-bench-row-$shape.json"
    # A model larger than the GPU's memory, as the plugin sees it when all but 2 GiB is
    # kept free: as many layers as fit go to the GPU, the rest run on the CPU.
    shape=${SHAPES##* }
    free_mib=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits | head -1)
    echo "== llama.cpp plugin, $shape, 2 GiB of the GPU's $free_mib MiB free left to it"
    HEARTH_LLAMACPP_FIT_TARGET_MIB=$((free_mib - 2048)) HEARTH_LLAMACPP_LOG=1 timeout 300 \
        "$H" bench "synthetic-$shape" --backend llamacpp --runs 1 --json \
        >"$OUT/llamacpp-fit-$shape.json" 2>"$OUT/llamacpp-fit-$shape.err"
    echo "rc=$?"; cat "$OUT/llamacpp-fit-$shape.json"; grep -E "offloaded|fit" "$OUT/llamacpp-fit-$shape.err" | tail -5
    ;;

baseline)
    cuda_module || exit 1
    for shape in $SHAPES; do
        llama_bench "$shape"
    done
    ;;

*)
    echo "usage: $0 prepare DIR | s1 | s2 | baseline" >&2
    exit 2
    ;;
esac
