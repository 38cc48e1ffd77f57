#!/usr/bin/env bash
# Command 1: set everything up, then ask the default model (the router picks backend and
# tier, and says why) a real question.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$HEARTH_ROOT/scripts/setup.sh"
echo "==> hearth run \"Why is the sky blue?\""
exec "$CARGO_TARGET_DIR/release/hearth" run "Why is the sky blue?"
