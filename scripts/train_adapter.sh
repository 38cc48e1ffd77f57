#!/usr/bin/env bash
# Regenerates the test LoRA adapter tests/data/adapters/smollm2-signoff/ with
# scripts/train_adapter.py, on the CPU, in a virtual environment of its own.
#
#   scripts/train_adapter.sh [--epochs N]
#
# Needs the SmolLM2 base model installed by scripts/setup.sh. The environment is made
# once under $HEARTH_CACHE/train-venv from PyPI: PyPI's Linux torch wheel depends on
# NVIDIA's CUDA wheels (about 4 GB installed), and PyPI has no CPU-only torch; those
# libraries are only loaded when a GPU is used, so the same wheel trains on the CPU here.
# Training takes a few minutes on two cores. Afterwards, update the adapter's size and
# sha256 in catalog.toml and scripts/setup.sh from the last line the script prints.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

VENV="${HEARTH_TRAIN_VENV:-$HEARTH_CACHE/train-venv}"
# Pinned, so a rerun produces the same adapter on the same kind of CPU.
PACKAGES=(torch==2.15.0 transformers==5.23.0 peft==0.21.2 gguf==0.19.0 numpy==2.4.6 jinja2==3.1.6 tokenizers==0.23.3)
BASE="$HEARTH_MODELS/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT="$HEARTH_ROOT/tests/data/adapters/smollm2-signoff/smollm2-signoff-lora-f16.gguf"

[[ -f "$BASE" ]] || { echo "error: $BASE is missing: run scripts/setup.sh first" >&2; exit 1; }
if [[ ! -x "$VENV/bin/python" ]]; then
    step "virtual environment $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
fi
if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}"; then
    echo "error: could not install ${PACKAGES[*]} into $VENV" >&2
    exit 1
fi
step "training"
"$VENV/bin/python" "$HEARTH_ROOT/scripts/train_adapter.py" --base "$BASE" --out "$OUT" "$@"
done_step
