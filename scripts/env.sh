# shellcheck shell=bash
# Shared settings for scripts/*.sh; sourced, never run. Every value can be overridden
# from the environment.

HEARTH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Where hearth keeps models and plugins (see README: "The layout of $HEARTH_HOME").
export HEARTH_HOME="${HEARTH_HOME:-$HOME/.hearth}"
export HEARTH_MODELS="${HEARTH_MODELS:-$HEARTH_HOME/models}"
export HEARTH_PLUGINS="${HEARTH_PLUGINS:-$HEARTH_HOME/plugins}"
if [[ -z "${HEARTH_CATALOG:-}" && -f "$HEARTH_ROOT/catalog.toml" ]]; then
    export HEARTH_CATALOG="$HEARTH_ROOT/catalog.toml"
fi
# Downloaded wheels and the cargo target dir live outside the clone, so a fresh clone
# (as CI makes) reuses them and builds incrementally.
HEARTH_CACHE="${HEARTH_CACHE:-$HOME/.cache/hearth}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HEARTH_CACHE/target}"
# The Python client libraries the API tests drive hearth with (setup.sh installs them
# there; tests/e2e/models/clients.rs reads this).
export HEARTH_CLIENTS_PY="${HEARTH_CLIENTS_PY:-$HEARTH_CACHE/python/clients-ollama-0.6.3-anthropic-2.10.0-openai-3.51.0}"
# playwright-core, the npm package the browser test drives Debian's chromium with
# (setup.sh installs it there; tests/e2e/browser/main.rs reads this).
export HEARTH_BROWSER_NODE="${HEARTH_BROWSER_NODE:-$HEARTH_CACHE/node/playwright-core-1.65.2}"
# @huggingface/jinja, which host/build.rs embeds for the web app's in-page chat templates.
export HEARTH_JINJA_NODE="${HEARTH_JINJA_NODE:-$HEARTH_CACHE/node/huggingface-jinja-0.5.13}"
# MLX's binary distributions (wheels, installed by setup.sh), which the MLX plugin's
# build script compiles and links against: mlx-cpu always, and beside it mlx-cuda-13
# (with the NVIDIA libraries it requires) where setup finds an NVIDIA GPU whose driver
# supports CUDA 13. One version for both: their headers are the same.
MLX_VERSION=0.32.4
MLX_ROOT="$HEARTH_HOME/runtime/mlx-cpu-$MLX_VERSION"
MLX_CUDA_PACKAGE=mlx-cuda-13
MLX_CUDA_ROOT="$HEARTH_HOME/runtime/$MLX_CUDA_PACKAGE-$MLX_VERSION"
# An MLX_DIR naming neither install is the user's own MLX, which every script keeps.
mlx_dir_is_users() {
    [[ -n ${MLX_DIR:-} && $MLX_DIR != "$MLX_ROOT/mlx" && $MLX_DIR != "$MLX_CUDA_ROOT/mlx" ]]
}
# MLX_DIR: the CUDA install where setup checked that its libmlx loads (the `.usable`
# marker it writes), else the CPU one (plugins/mlx/build.rs says why the choice is made
# at build time). Called again by setup once it has decided.
choose_mlx_dir() {
    if mlx_dir_is_users; then
        return 0
    elif [[ -f $MLX_CUDA_ROOT/.usable ]]; then
        export MLX_DIR="$MLX_CUDA_ROOT/mlx"
    else
        export MLX_DIR="$MLX_ROOT/mlx"
    fi
}
choose_mlx_dir

# Prints a step's start, and its duration when the next step (or `done_step`) begins.
_step_name=""
_step_start=0
_t0=$(date +%s)
step() {
    done_step
    _step_name="$1"
    _step_start=$(date +%s)
    echo "==> $1"
}
done_step() {
    if [[ -n "$_step_name" ]]; then
        echo "    ($_step_name: $(( $(date +%s) - _step_start ))s)"
        _step_name=""
    fi
}
