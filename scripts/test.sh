#!/usr/bin/env bash
# Command 2: set everything up, check formatting, lints and docs, then run the whole test
# suite. Any of them failing fails the command (and so CI). Release mode throughout, so
# clippy and rustdoc reuse setup's build scripts (llama.cpp, the MLX bridge) and the
# tests that run real models are fast and reuse the release build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$HEARTH_ROOT"
# First, as it needs no build: a formatting slip fails in a second, not after setup.
step "cargo fmt --all --check"
cargo fmt --all --check
# Setup prints its own steps and timings.
done_step
"$HEARTH_ROOT/scripts/setup.sh"
# Setup may have switched the MLX plugin to MLX's CUDA build (env.sh): build as it did.
choose_mlx_dir
step "cargo clippy --workspace --all-targets --release -- -D warnings"
cargo clippy --workspace --all-targets --release --quiet -- -D warnings
step "cargo doc --workspace --no-deps --release (warnings are errors)"
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --workspace --no-deps --release --quiet
# Where the tests that need the real models and the installed backend plugins find them.
export HEARTH_TEST_MODELS="${HEARTH_TEST_MODELS:-$HEARTH_MODELS}"
export HEARTH_TEST_PLUGINS="${HEARTH_TEST_PLUGINS:-$HEARTH_PLUGINS}"
step "cargo test --workspace --release"
cargo test --workspace --release
done_step
