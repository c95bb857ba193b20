#!/usr/bin/env bash
# The GPU-only checks of ume in one run (<= 8 minutes), one JSON out: vLLM vs hf parity and speed (when vLLM
# is installed), bf16 SFT and RL smoke runs with 1 and 2 processes, SFT under DeepSpeed ZeRO-2/3 vs DDP.
# Usage on a CUDA machine with the project's stack installed (./scripts/setup.sh, plus `pip install
# vllm deepspeed` for those parts; vLLM 0.33.0 pins transformers < 5.21, ume is tested on 5.24, so the vLLM part
# needs a vLLM release that accepts it):  OUT=runs/gpu_check ./scripts/gpu_check.sh
# Each part records its own failure (e.g. "No module named 'vllm'") and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export OUT=${OUT:-runs/gpu_check} PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
# DeepSpeed from the registry when missing (the ZeRO parts); vLLM is not installed here: its wheel would replace
# the tested torch / transformers in this environment
"$PY" -c "import deepspeed" 2>/dev/null || "$PY" -m pip install --disable-pip-version-check -c constraints.txt deepspeed \
  || echo "deepspeed could not be installed: the ZeRO parts will record the error"
timeout 480 "$PY" scripts/gpu_check.py 2>&1 | tee "$OUT/gpu_check.log"
echo "results: $OUT/gpu_check.json"
