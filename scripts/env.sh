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
# MLX's binary distribution (the mlx-cpu wheel, unpacked by setup.sh), which the MLX
# plugin's build script compiles and links against.
MLX_VERSION=0.32.4
MLX_ROOT="$HEARTH_HOME/runtime/mlx-cpu-$MLX_VERSION"
export MLX_DIR="${MLX_DIR:-$MLX_ROOT/mlx}"

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
