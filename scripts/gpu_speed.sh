#!/usr/bin/env bash
# The engines' speed on an NVIDIA GPU machine (the lent H200: CUDA, cmake, gcc, Python
# with numpy; no Rust, no network), on shape-realistic synthetic Llama models (random
# weights, scripts/synthetic_model.py): the WebGPU plugin on the NVIDIA Vulkan driver with
# each kernel plan, the llama.cpp plugin with ggml's CUDA module, and llama-bench built
# with CUDA from the same llama.cpp source, in one run.
# docs/BENCHMARKS.md ("GPU: the lent H200") has the figures.
#
#   scripts/gpu_speed.sh prepare DIR   here: lay out DIR/s1, DIR/s2 and DIR/s3, one folder per
#                                      call, each under the 64 MiB a call carries
#   scripts/gpu_speed.sh s1            there: start the CUDA build, make the models,
#                                      the WebGPU plugin
#   scripts/gpu_speed.sh s2            there, right after s1 (the machine keeps /root/work
#                                      only while warm): the llama.cpp plugin on CUDA and
#                                      llama-bench
#   scripts/gpu_speed.sh decode        there, after s1 in the same call, instead of s2 (run
#                                      from s2's folder): the plugin's decode alone against
#                                      llama-bench tg128, alternating, two rounds
#   scripts/gpu_speed.sh kernels       there, instead of s1 (no llama.cpp build): the
#                                      WebGPU plugin alone, where its time goes; GPU time
#                                      of each product by timestamps (kernel_speed with
#                                      HEARTH_WEBGPU_PROFILE=1) for each decode shape in
#                                      GPU_MATVEC, then per model and decode shape
#                                      (GPU_BENCH_MATVEC, else GPU_MATVEC) a profiled
#                                      bench (GPU time of each kernel in a step) and a
#                                      plain one; then per model a profiled prompt: 64
#                                      prompts of 512 tokens, each with a one-token step
#                                      (the profiler reports every 64 batches)
#   scripts/gpu_speed.sh baseline      there, after s1 (in the same call or the next, on
#                                      the warm machine), instead of s2: per model, the
#                                      WebGPU plugin on each plan again with the CPU quiet
#                                      (s1's figures are taken beside the CUDA build), on
#                                      the first plan also sampled and with a repeat
#                                      penalty, then llama-bench; then the ratios against
#                                      the targets
#   scripts/gpu_speed.sh smollm2       there, from s3's folder, after s1 on the warm
#                                      machine: the real SmolLM2 (s1 and s3 each carry half
#                                      of its xz) against the CPU reference on every plan
#                                      the GPU offers: first-step logits, the f16 cache,
#                                      greedy answers to the five fixed prompts
#   scripts/gpu_speed.sh ratios        there: the ratios of what $OUT holds
# The Vulkan loader travels as Debian packages in .gl (the device tool's README says how);
# GPU_SHAPES (1b 8b), GPU_TYPES (q4_0; also q8_0 and q4_k_m, llama.cpp's Q4_K_M mix),
# GPU_RUNS (3) and GPU_PLANS (the WebGPU kernel plans: gpu gpu-without-matrices
# software, or none to leave WebGPU out) choose what runs. Each shape is made in each
# type: model synthetic-SHAPE in Q4_0 (the id of the figures so far), synthetic-SHAPE-TYPE
# in the others. s1 also runs the WebGPU kernel tests there (each kernel of each plan the
# GPU offers against the CPU, every weight type), measures each plan's kernel speed and
# compares the plans' greedy answers, unless GPU_KERNEL_TESTS=0. Each call carries .gl
# and its folder and starts with
#   for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; bash DIR/sN/gpu_speed.sh sN
set -uo pipefail

W=${GPU_WORK:-/root/work}
# HEARTH_HOME of the MLX check, here (where its plugin is built) and there alike: the
# plugin's RUNPATH names the CUDA libmlx's absolute folder under it.
MLX_HOME=${GPU_MLX_HOME:-/tmp/hearth-gpu-mlx}
MLX_WHEEL=mlx_cuda_13-0.32.4-py3-none-manylinux_2_35_x86_64.whl
MLX_WHEEL_SHA=94cb48fba73e5ee39467e51c35c51c691123359ca17bafd1a24cf92ad6732bee
OUT=${OUT:-$W/out}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
stage=${1:-}
SHAPES=${GPU_SHAPES:-"1b 8b"}
TYPES=${GPU_TYPES:-q4_0}
RUNS=${GPU_RUNS:-3}
KERNEL_TESTS=${GPU_KERNEL_TESTS:-1}
PLANS=${GPU_PLANS:-gpu gpu-without-matrices software}

# The id of each shape in each type, as synthetic_model.py names the model.
model_ids() {
    local shape type
    for shape in $SHAPES; do
        for type in $TYPES; do
            if [[ $type == q4_0 ]]; then
                echo "synthetic-$shape"
            else
                echo "synthetic-$shape-$type"
            fi
        done
    done
}
mapfile -t MODELS < <(model_ids)

# The shape and the type of model id $1.
model_shape() {
    local shape_type=${1#synthetic-}
    echo "${shape_type%%-*}"
}
model_type() {
    if [[ $1 == synthetic-*-* ]]; then echo "${1##*-}"; else echo q4_0; fi
}

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

# llama-bench on model $1. Depth 0 is llama-bench's own figure; at depth 512 the decode
# runs after a 512-token context, as hearth bench's does (after its 515-token prompt).
llama_bench() {
    echo "== llama-bench -ngl 99 -d 0,512, $1"
    (cd "$W/build/bin" && ./llama-bench -m "$W/models/$1/$1.gguf" -ngl 99 \
        -r "$RUNS" -p 512 -n 128 -d 0,512 -o json >"$OUT/llama-bench-$1.json" 2>"$OUT/llama-bench-$1.err")
    echo "rc=$?"; grep -E '"(n_prompt|n_gen|n_depth|avg_ts)"' "$OUT/llama-bench-$1.json"
}

# The programs named (compressed by prepare) into $W/bin, and the WebGPU plugin.
unpack_webgpu() {
    local program
    for program in "$@"; do
        xz -dc "$here/$program.xz" >"$W/bin/$program" && chmod +x "$W/bin/$program" || return 1
    done
    xz -dc "$here/libhearth_webgpu.so.xz" >"$W/plugins-webgpu/libhearth_webgpu.so"
}

# The models' catalog, and each model not made yet (its bytes depend on its id alone),
# all at once; one is kept only once it is whole.
make_models() {
    local id model failed=0 makers=()
    write_catalog
    for id in "${MODELS[@]}"; do
        model=$W/models/$id/$id.gguf
        [[ -f $model ]] && continue
        mkdir -p "$W/models/$id"
        (PYTHONPATH=$here/py python3 "$here/py/synthetic_model.py" model "$(model_shape "$id")" \
            "$here/tokenizer.gguf" "$model.part" "$(model_type "$id")" >"$W/make-$id.log" 2>&1 &&
            mv "$model.part" "$model") &
        makers+=($!)
    done
    for id in "${makers[@]}"; do
        wait "$id" || failed=1
    done
    ((failed == 0)) || { tail -n 5 "$W"/make-*.log; return 1; }
}

# The prompt and decode medians of a `hearth bench --json` file.
medians() {
    python3 -c 'import json, sys
bench = json.load(open(sys.argv[1]))
print("prompt %.1f tok/s, decode %.1f tok/s" % tuple(
    bench[key]["median"] for key in ("prompt_tokens_per_second", "decode_tokens_per_second")))' "$1"
}

# The catalog of the synthetic models, one entry a model.
write_catalog() {
    local id quantization
    for id in "${MODELS[@]}"; do
        quantization=$(model_type "$id")
        quantization=${quantization^^}
        printf '[[models]]\nid = "%s"\nname = "synthetic %s (random %s)"\nfamily = "llama"\ncontext_size = 4096\n[[models.artifacts]]\nbackends = ["llamacpp", "webgpu", "mlx"]\nformat = "gguf"\nfile = "%s.gguf"\nquantization = "%s"\n\n' \
            "$id" "$(model_shape "$id")" "$quantization" "$id" "$quantization"
    done >"$W/catalog.toml"
}

# Each model's WebGPU figures (per plan) over llama-bench's, from $OUT: prompt over
# pp512, decode over tg128 at depth 0 (the issue's targets: 0.5 and 0.8) and at depth 512
# (where `hearth bench` decodes, after its 515-token prompt).
print_ratios() {
    python3 - "$OUT" "$PLANS" "${MODELS[@]}" <<'PY'
import json, os, sys
out, plans, models = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
print("%-20s %-22s %9s %9s %6s %8s %8s %8s %6s %6s" % ("model", "plan", "prompt", "pp512", "ratio",
      "decode", "tg128", "tg@512", "ratio", "@512"))
for model in models:
    base = load(os.path.join(out, "llama-bench-%s.json" % model)) or []
    def ts(n_prompt, n_gen, depth):
        for r in base:
            if r.get("n_prompt") == n_prompt and r.get("n_gen") == n_gen and r.get("n_depth", 0) == depth:
                return r["avg_ts"]
    pp, tg, tg512 = ts(512, 0, 0), ts(0, 128, 0), ts(0, 128, 512)
    for plan in plans:
        bench = load(os.path.join(out, "webgpu-%s-%s.json" % (plan, model)))
        if not bench:
            continue
        prompt = bench["prompt_tokens_per_second"]["median"]
        decode = bench["decode_tokens_per_second"]["median"]
        ratio = lambda a, b: "%6.2f" % (a / b) if b else "%6s" % "-"
        num = lambda v: "%9.1f" % v if v else "%9s" % "-"
        print("%-20s %-22s %9.1f %s %s %8.1f %s %s %s %s" % (model, plan, prompt, num(pp), ratio(prompt, pp),
              decode, num(tg)[1:], num(tg512)[1:], ratio(decode, tg), ratio(decode, tg512)))
        for decoding in ("sampled", "penalised"):
            bench = load(os.path.join(out, "webgpu-%s-%s-%s.json" % (plan, model, decoding)))
            if bench:
                decode = bench["decode_tokens_per_second"]["median"]
                print("%-20s %-22s %9s %9s %6s %8.1f %s %s %s %s" % (model, "  " + decoding, "", "", "",
                      decode, num(tg)[1:], num(tg512)[1:], ratio(decode, tg), ratio(decode, tg512)))
print("targets: prompt 0.50 x pp512, decode 0.80 x tg128")
PY
}

# The WebGPU plugin on model $1 with plan $2, into $OUT/webgpu-$2-$1.json; with a third
# argument, decoding as that name says (sampled: llama-server's default sampling;
# penalised: that with Ollama's repeat penalty 1.1), into webgpu-$2-$1-$3.json.
webgpu_bench() {
    local name=$2-$1 decoding=()
    case ${3:-} in
    sampled) decoding=(--sampled) ;;
    penalised) decoding=(--sampled --repeat-penalty 1.1) ;;
    esac
    [[ -n ${3:-} ]] && name+=-$3
    echo "== webgpu, kernels $2, $1${3:+, $3}"
    HEARTH_WEBGPU_KERNELS=$2 timeout 400 "$W/bin/hearth" bench "$1" --backend webgpu \
        --runs "$RUNS" "${decoding[@]}" --json >"$OUT/webgpu-$name.json" 2>"$OUT/webgpu-$name.err"
    echo "rc=$?"; medians "$OUT/webgpu-$name.json"; tail -3 "$OUT/webgpu-$name.err"
}

# The plans of GPU_PLANS that run model $1: the software plan on the 1B shape alone.
plans_for() {
    local plan
    for plan in $PLANS; do
        [[ $plan == none || ($plan == software && $(model_shape "$1") != 1b) ]] || echo "$plan"
    done
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
    # The real SmolLM2 for the `smollm2` stage: its xz (90 MB) in two parts, 36 MB with
    # s1 and the rest in s3, as it fits no call whole.
    mkdir -p "$dest/s3" && cp "$here/gpu_speed.sh" "$dest/s3/"
    xz -T2 -c "$HEARTH_MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf" >"$dest/smollm2.xz" || exit 1
    (cd "$dest" && sha256sum smollm2.xz >s3/smollm2.xz.sha256 &&
        head -c 36000000 smollm2.xz >s1/smollm2.xz.part.0 &&
        tail -c +36000001 smollm2.xz >s3/smollm2.xz.part.1 && rm smollm2.xz) || exit 1
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
    cp "$here/smollm2.xz.part.0" "$W/" || exit 1
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
    unpack_webgpu hearth webgpu-tests kernel-speed || exit 1
    make_models || exit 1
    ls -la "$W"/models/*/
    hearth_env
    export HEARTH_PLUGINS=$W/plugins-webgpu
    "$W/bin/hearth" plugins 2>&1 | tee "$OUT/webgpu-plugins.txt"
    if [[ $PLANS != none && $KERNEL_TESTS != 0 ]]; then
        echo "== webgpu kernel tests on this GPU"
        "$W/bin/webgpu-tests" kernels:: --test-threads 1 --nocapture >"$OUT/webgpu-kernel-tests.txt" 2>&1
        echo "rc=$?"; grep -E "^test |plans|result" "$OUT/webgpu-kernel-tests.txt"
        for plan in $PLANS; do
            echo "== webgpu kernel speed, $plan"
            HEARTH_WEBGPU_KERNELS=$plan timeout 120 "$W/bin/kernel-speed" 2>&1 | tee "$OUT/kernel-speed-$plan.txt"
        done
        for plan in $PLANS; do
            HEARTH_WEBGPU_KERNELS=$plan timeout 120 "$W/bin/hearth" run "${MODELS[0]}" \
                "Once upon a time" --backend webgpu --temperature 0 --max-tokens 24 \
                >"$OUT/webgpu-answer-$plan.txt" 2>"$OUT/webgpu-answer-$plan.err"
            echo "rc=$? $plan: $(md5sum <"$OUT/webgpu-answer-$plan.txt" | cut -c1-12) $(tail -1 "$OUT/webgpu-answer-$plan.err")"
        done
    fi
    for id in "${MODELS[@]}"; do
        for plan in $(plans_for "$id"); do
            webgpu_bench "$id" "$plan"
        done
    done
    echo "s1 done; CUDA build: $(tail -1 "$W/cuda-build.log" | cut -c1-120)"
    ;;

kernels)
    mkdir -p "$W"/bin "$W"/models "$W"/plugins-webgpu "$OUT"
    nvidia-smi -L
    unpack_webgpu hearth kernel-speed || exit 1
    make_models >/dev/null || exit 1
    hearth_env
    export HEARTH_PLUGINS=$W/plugins-webgpu
    echo "== webgpu kernel speed by GPU timestamps: ${GPU_MATVEC:-the default decode shape}"
    # shellcheck disable=SC2086 # one argument a shape
    HEARTH_WEBGPU_PROFILE=1 timeout 180 "$W/bin/kernel-speed" ${GPU_MATVEC:-} 2>&1 | tee "$OUT/kernel-speed.txt"
    for id in "${MODELS[@]}"; do
        for matvec in ${GPU_BENCH_MATVEC:-${GPU_MATVEC:-default}}; do
            [[ $matvec == default ]] && matvec=
            echo "== webgpu, $id, decode shape ${matvec:-default}, profiled (one run; every batch waited for)"
            HEARTH_WEBGPU_MATVEC=$matvec HEARTH_WEBGPU_PROFILE=1 timeout 300 "$W/bin/hearth" bench \
                "$id" --backend webgpu --runs 1 --json >"$OUT/webgpu-profiled-$id-$matvec.json" \
                2>"$OUT/webgpu-profiled-$id-$matvec.err"
            echo "rc=$?"; tail -n 40 "$OUT/webgpu-profiled-$id-$matvec.err"
            echo "== webgpu, $id, decode shape ${matvec:-default}"
            HEARTH_WEBGPU_MATVEC=$matvec timeout 300 "$W/bin/hearth" bench "$id" --backend webgpu \
                --runs "$RUNS" --json >"$OUT/webgpu-$id-$matvec.json" 2>"$OUT/webgpu-$id-$matvec.err"
            echo "rc=$?"; medians "$OUT/webgpu-$id-$matvec.json"; tail -3 "$OUT/webgpu-$id-$matvec.err"
        done
        echo "== webgpu, $id, prompts of 512 tokens, profiled"
        HEARTH_WEBGPU_PROFILE=1 timeout 300 "$W/bin/hearth" bench "$id" --backend webgpu --runs 64 \
            --prompt-tokens 512 --gen-tokens 1 --json >"$OUT/webgpu-prompt-profiled-$id.json" \
            2>"$OUT/webgpu-prompt-profiled-$id.err"
        echo "rc=$?"; grep -A 14 'GPU profile' "$OUT/webgpu-prompt-profiled-$id.err" | tail -n 15
    done
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
    for id in "${MODELS[@]}"; do
        echo "== llama.cpp plugin on CUDA, $id"
        timeout 300 "$H" bench "$id" --backend llamacpp --runs "$RUNS" --json \
            >"$OUT/llamacpp-$id.json" 2>"$OUT/llamacpp-$id.err"
        echo "rc=$?"; cat "$OUT/llamacpp-$id.json"; tail -3 "$OUT/llamacpp-$id.err"
        llama_bench "$id"
    done
    # The first model's layers on the same GPU through ggml's RPC on loopback
    # (`hearth rpc-server` with the CUDA device, `--rpc` with `--device RPC0`): what the
    # protocol costs a token against the local figure above.
    id=${MODELS[0]}
    echo "== llama.cpp plugin, $id, on CUDA0 through hearth rpc-server on loopback"
    "$H" rpc-server --device CUDA0 --port 50052 >"$OUT/rpc-server.log" 2>&1 &
    server=$!
    sleep 5
    timeout 300 "$H" bench "$id" --backend llamacpp --runs "$RUNS" --json \
        --rpc 127.0.0.1:50052 --device RPC0 >"$OUT/llamacpp-rpc-$id.json" 2>"$OUT/llamacpp-rpc-$id.err"
    echo "rc=$?"; cat "$OUT/llamacpp-rpc-$id.json"; tail -3 "$OUT/llamacpp-rpc-$id.err"
    kill "$server"
    # The first model with the split modes a model on several GPUs takes (issue 22
    # measures them on two; here the path runs on one): `row` (refused where the CUDA
    # module has no split buffers, as llama-bench -sm row fails then) and `none` on the
    # main device; their greedy tokens against the default (`layer`).
    echo "== llama.cpp plugin, $id, split modes on CUDA0"
    for mode in layer row none; do
        main=(--main-device CUDA0)
        [[ $mode == layer ]] && main=()
        timeout 120 "$H" run "$id" "Once upon a time" --backend llamacpp \
            --temperature 0 --max-tokens 24 --split-mode "$mode" "${main[@]}" \
            >"$OUT/split-$mode-answer.txt" 2>"$OUT/split-$mode-answer.err"
        echo "rc=$? $mode: $(md5sum <"$OUT/split-$mode-answer.txt" | cut -c1-12) $(tail -1 "$OUT/split-$mode-answer.err")"
        [[ $mode == layer ]] && continue
        timeout 300 "$H" bench "$id" --backend llamacpp --runs "$RUNS" --json \
            --split-mode "$mode" "${main[@]}" \
            >"$OUT/llamacpp-split-$mode-$id.json" 2>"$OUT/llamacpp-split-$mode-$id.err"
        echo "rc=$?"; cat "$OUT/llamacpp-split-$mode-$id.json"; tail -3 "$OUT/llamacpp-split-$mode-$id.err"
    done
    (cd "$bin" && ./llama-bench -m "$W/models/$id/$id.gguf" -ngl 99 \
        -sm row -mg 0 -r "$RUNS" -p 512 -n 128 -o json >"$OUT/llama-bench-row-$id.json" \
        2>"$OUT/llama-bench-row-$id.err")
    echo "rc=$?"; grep -E '"(n_prompt|n_gen|avg_ts)"' "$OUT/llama-bench-row-$id.json"
    # A model larger than the GPU's memory, as the plugin sees it when all but 2 GiB is
    # kept free: as many layers as fit go to the GPU, the rest run on the CPU.
    id=${MODELS[-1]}
    free_mib=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits | head -1)
    echo "== llama.cpp plugin, $id, 2 GiB of the GPU's $free_mib MiB free left to it"
    HEARTH_LLAMACPP_FIT_TARGET_MIB=$((free_mib - 2048)) HEARTH_LLAMACPP_LOG=1 timeout 300 \
        "$H" bench "$id" --backend llamacpp --runs 1 --json \
        >"$OUT/llamacpp-fit-$id.json" 2>"$OUT/llamacpp-fit-$id.err"
    echo "rc=$?"; cat "$OUT/llamacpp-fit-$id.json"; grep -E "offloaded|fit" "$OUT/llamacpp-fit-$id.err" | tail -5
    ;;

decode)
    hearth_env
    mkdir -p "$W/plugins/libhearth_llamacpp"
    cp "$here/libhearth_llamacpp.so" "$W/plugins/" && cp "$here"/companion/* "$W/plugins/libhearth_llamacpp/"
    cuda_module || exit 1
    cp "$W/cuda/bin/libggml-cuda.so" "$W/plugins/libhearth_llamacpp/"
    export HEARTH_PLUGINS=$W/plugins
    "$W/bin/hearth" profile 2>&1 | tee "$OUT/profile.txt"
    for id in "${MODELS[@]}"; do
        llama_bench "$id"
        for round in 1 2; do
            echo "== round $round: llama.cpp plugin on CUDA, $id, then llama-bench tg128 at depth 512"
            HEARTH_LLAMACPP_LOG=1 timeout 300 "$W/bin/hearth" bench "$id" --backend llamacpp \
                --runs "$RUNS" --json >"$OUT/llamacpp-$id-$round.json" 2>"$OUT/llamacpp-$id-$round.err"
            echo "rc=$?"; grep -E '"median"' "$OUT/llamacpp-$id-$round.json"
            grep -m1 "set_sampler" "$OUT/llamacpp-$id-$round.err"
            (cd "$W/build/bin" && ./llama-bench -m "$W/models/$id/$id.gguf" -ngl 99 \
                -r "$RUNS" -p 0 -n 128 -d 512 -o json 2>/dev/null | grep -E '"(avg_ts|stddev_ts)"')
        done
    done
    ;;

baseline)
    hearth_env
    export HEARTH_PLUGINS=$W/plugins-webgpu
    cuda_module || exit 1
    nvidia-smi -L
    for id in "${MODELS[@]}"; do
        for plan in $(plans_for "$id"); do
            webgpu_bench "$id" "$plan"
        done
        # A chat client's decoding, and one asking for a repeat penalty, on the first plan.
        for decoding in sampled penalised; do
            webgpu_bench "$id" "$(plans_for "$id" | head -1)" "$decoding"
        done
        llama_bench "$id"
    done
    print_ratios
    ;;

ratios)
    print_ratios
    ;;

smollm2)
    # The model's xz, joined from s1's half (left in $W by s1) and this folder's.
    mkdir -p "$W/test-models/smollm2-135m" "$OUT"
    cat "$W/smollm2.xz.part.0" "$here/smollm2.xz.part.1" >"$W/smollm2.xz" || exit 1
    (cd "$W" && sha256sum -c "$here/smollm2.xz.sha256") || { echo "run s1 first, on this machine" >&2; exit 1; }
    xz -dc "$W/smollm2.xz" >"$W/test-models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf" || exit 1
    nvidia-smi -L
    HEARTH_TEST_MODELS=$W/test-models timeout 400 "$W/bin/webgpu-tests" cross_check::smollm2_logits \
        cross_check::an_f16_cache cross_check::greedy_smollm2_answers --test-threads 1 --nocapture \
        >"$OUT/smollm2-tests.txt" 2>&1
    echo "rc=$?"
    grep -E "^test |test result|moved the logits|max \|gpu|: \"" "$OUT/smollm2-tests.txt"
    ;;

prepare-mlx)
    dest=${2:?prepare-mlx DIR}
    root=$(cd "$here/.." && pwd)
    source "$here/env.sh"
    # The wheel, from the cache or the package index, checked against its pinned sha256.
    wheel=$HEARTH_CACHE/wheels/$MLX_WHEEL
    [[ -f $wheel ]] || python3 -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.12 --platform manylinux_2_35_x86_64 -d "$HEARTH_CACHE/wheels" \
        "$MLX_CUDA_PACKAGE==$MLX_VERSION" || exit 1
    echo "$MLX_WHEEL_SHA  $wheel" | sha256sum -c --quiet || exit 1
    # Unpacked where it will be there, as setup lays it out (env.sh's MLX_CUDA_ROOT under
    # MLX_HOME), marked usable as setup marks it after loading it: env.sh then points
    # MLX_DIR at it, and the plugin is built against it as setup builds it. No NVIDIA
    # libraries are needed for that (the plugin is a shared library; only executables
    # linked against this libmlx would need them). This rebuilds the plugin in the shared
    # target folder; setup's next build rebuilds it against its own MLX again.
    cuda_root=$MLX_HOME/runtime/$MLX_CUDA_PACKAGE-$MLX_VERSION
    rm -rf "$cuda_root" && python3 -m zipfile -e "$wheel" "$cuda_root" || exit 1
    touch "$cuda_root/.usable"
    plugin=$(cd "$root" && unset MLX_DIR && export HEARTH_HOME=$MLX_HOME && source scripts/env.sh &&
        [[ $MLX_DIR == "$cuda_root/mlx" ]] && cargo build --release -p hearth-mlx --quiet &&
        echo "$CARGO_TARGET_DIR/release/libhearth_mlx.so") ||
        { echo "error: the MLX plugin did not build against $cuda_root" >&2; exit 1; }
    readelf -d "$plugin" | grep -q "RUNPATH.*$cuda_root/mlx/lib" ||
        { echo "error: $plugin's RUNPATH does not name $cuda_root/mlx/lib" >&2; exit 1; }
    rm -rf "$dest/m1" "$dest/m2" && mkdir -p "$dest/m1" "$dest/m2/py"
    cp "$here/gpu_speed.sh" "$dest/m1/" && cp "$here/gpu_speed.sh" "$here/cuda_driver.sh" "$dest/m2/"
    # The wheel's files, repacked as one tar.xz (76 MB against the wheel's 90), split in
    # two so that each call's carry stays under its 64 MiB with the working tree.
    (cd "$cuda_root" && tar -cf - --exclude=.usable . | xz -T0 -6) >"$dest/mlx-cuda.tar.xz" || exit 1
    (cd "$dest" && sha256sum mlx-cuda.tar.xz >m2/mlx-cuda.tar.xz.sha256 &&
        split -b 45000000 -d -a 1 mlx-cuda.tar.xz mlx-cuda.tar.xz.part. &&
        mv mlx-cuda.tar.xz.part.0 m1/ && mv mlx-cuda.tar.xz.part.1 m2/ && rm mlx-cuda.tar.xz) || exit 1
    [[ ! -e $dest/mlx-cuda.tar.xz.part.2 ]] || { echo "error: the archive needs three parts" >&2; exit 1; }
    strip -o "$dest/m2/hearth" "$CARGO_TARGET_DIR/release/hearth" &&
        strip -o "$dest/m2/libhearth_mlx.so" "$plugin" &&
        xz -T0 "$dest/m2/hearth" "$dest/m2/libhearth_mlx.so" || exit 1
    cp "$here/synthetic_model.py" "$here/tiny_models.py" "$dest/m2/py/"
    gguf_py=$(ls -d "$HEARTH_CACHE"/python/gguf-*)
    cp -r "$gguf_py/gguf" "$dest/m2/py/"
    PYTHONPATH=$dest/m2/py:$gguf_py python3 "$here/synthetic_model.py" tokenizer \
        "$HEARTH_MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf" "$dest/m2/tokenizer.gguf" || exit 1
    du -sh "$dest"/m?
    ;;

mlx)
    mkdir -p "$W/mlx-parts" "$OUT"
    cp "$here"/mlx-cuda.tar.xz.part.* "$W/mlx-parts/" || exit 1
    if [[ ! -f $here/mlx-cuda.tar.xz.sha256 ]]; then
        echo "kept $(ls "$here"/mlx-cuda.tar.xz.part.*) in $W/mlx-parts; now carry m2"
        exit 0
    fi
    cat "$W"/mlx-parts/mlx-cuda.tar.xz.part.* >"$W/mlx-cuda.tar.xz" || exit 1
    (cd "$W" && sha256sum -c "$here/mlx-cuda.tar.xz.sha256") || { echo "carry m1 first, on this machine" >&2; exit 1; }
    {
        date -u; nvidia-smi; bash "$here/cuda_driver.sh" 13
    } >"$OUT/mlx-machine.txt" 2>&1
    cat "$OUT/mlx-machine.txt"
    # setup.sh's layout: the wheel's files under $HEARTH_HOME/runtime, and beside them
    # (where pip --target puts the NVIDIA wheels it requires) the image's own NVIDIA
    # packages, as this machine has no network: libmlx's RPATH $ORIGIN/../../nvidia/*/lib
    # finds cuBLAS, cuDNN, NVRTC, cuFFT, cuSOLVER and NCCL there.
    cuda_root=$MLX_HOME/runtime/mlx-cuda-13-0.32.4
    rm -rf "$cuda_root" && mkdir -p "$cuda_root" && tar -C "$cuda_root" -xJf "$W/mlx-cuda.tar.xz" || exit 1
    nvidia=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])') ||
        { echo "this machine's Python has no NVIDIA packages" >&2; exit 1; }
    ln -sfn "$nvidia" "$cuda_root/nvidia"
    echo "== libmlx's unresolved libraries (none expected):"
    ldd "$cuda_root/mlx/lib/libmlx.so" | grep 'not found'
    echo "== setup's check: the CUDA libmlx loads"
    python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$cuda_root/mlx/lib/libmlx.so" && echo loads
    hearth_env
    export HEARTH_HOME=$MLX_HOME HEARTH_PLUGINS=$W/plugins-mlx
    H=$W/bin/hearth
    mkdir -p "$W/bin" "$HEARTH_PLUGINS"
    xz -dc "$here/hearth.xz" >"$H" && chmod +x "$H" &&
        xz -dc "$here/libhearth_mlx.so.xz" >"$HEARTH_PLUGINS/libhearth_mlx.so" || exit 1
    readelf -d "$HEARTH_PLUGINS/libhearth_mlx.so" | grep -E 'RUNPATH|RPATH'
    make_models || exit 1
    echo "== hearth plugins (expected: MLX CUDA GPU with its memory, libmlx from $cuda_root/mlx/lib)"
    "$H" plugins 2>&1 | tee "$OUT/mlx-plugins.txt"
    "$H" plugins --json >"$OUT/mlx-plugins.json" 2>&1
    grep -q "libmlx from $cuda_root/mlx/lib/libmlx.so" "$OUT/mlx-plugins.txt" &&
        grep -qE "MLX CUDA GPU .*\(([1-9][0-9]*\.[0-9]|0\.[1-9]) GB\)" "$OUT/mlx-plugins.txt" &&
        echo "probe: as expected" || echo "probe: NOT as expected"
    echo "== hearth run ${MODELS[0]} --backend mlx (the first run compiles MLX's CUDA kernels)"
    timeout 300 "$H" run "${MODELS[0]}" "Once upon a time" --backend mlx --temperature 0 \
        --max-tokens 24 >"$OUT/mlx-answer.txt" 2>"$OUT/mlx-answer.err"
    echo "rc=$? $(md5sum <"$OUT/mlx-answer.txt" | cut -c1-12)"; tail -3 "$OUT/mlx-answer.err"
    for id in "${MODELS[@]}"; do
        echo "== hearth bench $id --backend mlx"
        timeout 400 "$H" bench "$id" --backend mlx --runs "$RUNS" --json \
            >"$OUT/mlx-$id.json" 2>"$OUT/mlx-$id.err"
        echo "rc=$?"; cat "$OUT/mlx-$id.json"; tail -3 "$OUT/mlx-$id.err"
    done
    nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv
    ;;

*)
    echo "usage: $0 prepare DIR | s1 | s2 | decode | baseline | smollm2 | ratios | kernels | prepare-mlx DIR | mlx" >&2
    exit 2
    ;;
esac
