#!/usr/bin/env bash
# On a machine with AMX (Sapphire Rapids or later): which builds of ggml's AMX CPU
# variant crash, and what AMX gives where it runs. docs/BENCHMARKS.md ("AMX") has the
# figures of a run on the lent H200's host.
#
#   scripts/amx/check.sh PLUGINS MODEL GGML_SOURCE [HEARTH]
#
# PLUGINS: a plugins folder with libhearth_llamacpp.so and its companion folder, as
# setup installs them (the modules built here, by this machine's GCC 12); MODEL: the
# SmolLM2-135M Q4_1 file; GGML_SOURCE: the llama.cpp source the plugin vendors (its
# include/ and ggml/); HEARTH: the hearth binary, for its own view (optional).
# It builds ggml's sapphirerapids module again with this machine's compiler, then runs
# variant_bench.c on each module and hearth with the default and the rebuilt module.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
plugins=$(cd "$1" && pwd) model=$(realpath "$2") source=$(cd "$3" && pwd) hearth=${4:-}
companion=$plugins/libhearth_llamacpp
work=$(mktemp -d)
threads=$(nproc)
echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $threads threads; AMX flags: $(grep -o 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "== local compiler: $(cc --version | head -1)"

cc -O2 "$here/variant_bench.c" -I"$source/include" -I"$source/ggml/include" \
    -L"$companion" -l:libllama.so.0 -l:libggml.so.0 -l:libggml-base.so.0 \
    -Wl,--disable-new-dtags,-rpath,"$companion" -o "$work/variant_bench" || exit 1

echo "== building ggml's sapphirerapids module with the local compiler"
# ggml on its own (the crate's copy lacks the pkg-config template a standalone build
# writes; an empty one does).
cp -r "$source/ggml" "$work/ggml-src"
[[ -f $work/ggml-src/ggml.pc.in ]] || touch "$work/ggml-src/ggml.pc.in"
cmake -S "$work/ggml-src" -B "$work/ggml" -DCMAKE_BUILD_TYPE=Release -DGGML_BACKEND_DL=ON \
    -DGGML_CPU_ALL_VARIANTS=ON -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=OFF -DGGML_OPENMP=ON -DGGML_BUILD_TESTS=OFF -DGGML_BUILD_EXAMPLES=OFF \
    >"$work/configure.log" 2>&1 || { tail -20 "$work/configure.log"; exit 1; }
cmake --build "$work/ggml" --target ggml-cpu-sapphirerapids -j "$threads" >"$work/build.log" 2>&1 ||
    { tail -20 "$work/build.log"; exit 1; }
rebuilt=$(find "$work/ggml" -name libggml-cpu-sapphirerapids.so | head -1)
mkdir -p "$work/amx-local" "$work/amx-shipped"
cp "$rebuilt" "$work/amx-local/"
cp "$companion/libggml-cpu-sapphirerapids.so" "$work/amx-shipped/"

run() { # LABEL MODULE
    local out status
    out=$("$work/variant_bench" "$2" "$model" "$threads" 2>&1)
    status=$?
    if ((status > 128)); then
        echo "$1: killed by signal $((status - 128)) ($(kill -l $((status - 128))))"
    elif ((status != 0)); then
        echo "$1: failed (exit $status): $(tail -1 <<<"$out")"
    else
        echo "$1: $out"
    fi
}
echo "== each module on its own (variant_bench, $threads threads, SmolLM2-135M Q4_1)"
for variant in x64 haswell skylakex icelake cooperlake zen4; do
    [[ -f $companion/libggml-cpu-$variant.so ]] && run "$variant (GCC 12)" "$companion/libggml-cpu-$variant.so"
done
run "sapphirerapids (GCC 12, as shipped)" "$companion/libggml-cpu-sapphirerapids.so"
run "sapphirerapids ($(cc -dumpfullversion 2>/dev/null || cc -dumpversion), rebuilt here)" "$work/amx-local/libggml-cpu-sapphirerapids.so"

if [[ -n $hearth ]]; then
    models=$work/models
    mkdir -p "$models/smollm2-135m" && cp "$model" "$models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
    for modules in default "$work/amx-shipped" "$work/amx-local"; do
        echo "== hearth, modules: $modules"
        env_modules=()
        [[ $modules != default ]] && env_modules=(HEARTH_GGML_BACKENDS="$modules")
        env "${env_modules[@]}" "$hearth" --plugins "$plugins" --models "$models" plugins 2>&1 | grep -E "^llamacpp"
        env "${env_modules[@]}" HEARTH_THREADS="$threads" "$hearth" --plugins "$plugins" --models "$models" \
            bench smollm2-135m --backend llamacpp --runs 3 2>&1 | grep -E "tok/s|Error"
    done
fi
rm -rf "$work"
