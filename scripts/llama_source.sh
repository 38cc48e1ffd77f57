#!/usr/bin/env bash
# Prints the folder of llama.cpp's full source for the baselines (llama-bench,
# llama-server), laying it out once in $HEARTH_CACHE/llama.cpp-<llama-cpp-sys-2
# version>/source: scripts/bench.sh and scripts/gpu_speed.sh build from it. Progress
# goes to stderr.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
PY="${PYTHON:-python3}"
cd "$HEARTH_ROOT"

# The llama.cpp that hearth links is the copy vendored in the llama-cpp-sys-2 crate that
# this workspace resolves; cargo metadata says where cargo unpacked it.
read -r sys_version sys_dir < <(cargo metadata --format-version 1 | "$PY" -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    if p["name"] == "llama-cpp-sys-2":
        print(p["version"], os.path.dirname(p["manifest_path"]))')
[[ -d "$sys_dir/llama.cpp/ggml" ]] || { echo "error: no llama.cpp in $sys_dir" >&2; exit 1; }
LLAMA_CACHE="$HEARTH_CACHE/llama.cpp-$sys_version"
source_dir="$LLAMA_CACHE/source"

# The crate ships llama.cpp's engine (ggml, src, include, common, vendor) but not the
# sources of its tools: tools/llama-bench and tools/server hold only their READMEs. The
# nearest full source on a package registry is the llama.cpp that the llama-cpp-python
# sdist vendors; its tools/ are laid over the crate's copy, tools/mtmd (the multimodal
# library, which its server is written against) included. Every line of ggml and llama
# that the baselines run is therefore the crate's, byte for byte.
TOOLS_SDIST="llama-cpp-python==0.3.36"
if [[ ! -f "$source_dir/.complete" ]]; then
    rm -rf "$source_dir" "$LLAMA_CACHE/sdist"
    mkdir -p "$LLAMA_CACHE/sdist"
    echo "    fetching the llama.cpp tools from $TOOLS_SDIST (sdist)" >&2
    # Only this package's source distribution; its build requirements stay wheels.
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary llama-cpp-python -d "$LLAMA_CACHE/sdist" "$TOOLS_SDIST"
    tar -xzf "$LLAMA_CACHE"/sdist/llama_cpp_python-*.tar.gz -C "$LLAMA_CACHE/sdist"
    tools_from=$(echo "$LLAMA_CACHE"/sdist/llama_cpp_python-*/vendor/llama.cpp)
    cp -a "$sys_dir/llama.cpp" "$source_dir"
    chmod -R u+w "$source_dir"
    for tool in "$tools_from"/tools/*/; do
        name=$(basename "$tool")
        rm -rf "${source_dir:?}/tools/$name"
        # A plain copy: fresh timestamps, so make rebuilds whatever a copied file replaced.
        cp -r "$tool" "$source_dir/tools/$name"
    done
    # The one place those tools need a common/ helper the crate's copy lacks: a wrapper
    # that opens UTF-8 paths on Windows, a plain std::ifstream elsewhere (MCP config only).
    if ! grep -q fs_open_ifstream "$source_dir/common/common.h"; then
        sed -i 's/fs_open_ifstream(/std::ifstream(/' "$source_dir/tools/server/server-mcp.cpp"
    fi
    mkdir -p "$source_dir/scripts"
    cp "$tools_from/scripts/ui-assets.cmake" "$source_dir/scripts/"
    rm -rf "$LLAMA_CACHE/sdist"
    touch "$source_dir/.complete"
fi
echo "$source_dir"
