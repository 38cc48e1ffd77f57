#!/usr/bin/env bash
# Command 2: set everything up, then run the whole test suite. Release mode, so the tests
# that run real models are fast and reuse setup's release build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$HEARTH_ROOT/scripts/setup.sh"
# Where the tests that need the real models and the installed backend plugins find them.
export HEARTH_TEST_MODELS="${HEARTH_TEST_MODELS:-$HEARTH_MODELS}"
export HEARTH_TEST_PLUGINS="${HEARTH_TEST_PLUGINS:-$HEARTH_PLUGINS}"
step "cargo test --workspace --release"
cd "$HEARTH_ROOT"
cargo test --workspace --release
done_step
