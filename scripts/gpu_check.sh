#!/usr/bin/env bash
# The GPU-only checks of ume in one run (<= 8 minutes after the installs), one JSON out: vLLM vs hf parity and
# speed, bf16 SFT and RL smoke runs with 1 and 2 processes, SFT under DeepSpeed ZeRO-2/3 vs DDP.
# Usage on a CUDA machine after ./scripts/setup.sh:  OUT=runs/gpu_check ./scripts/gpu_check.sh
# It installs what it needs from the package registries: DeepSpeed into .venv, and the `vllm` extra into its own
# .venv-vllm (vLLM 0.33.0 pins torch 2.14.0 / transformers < 5.21 / numpy < 2.4: constraints-vllm.txt, not the
# constraints.txt of .venv). Each part records its own failure (e.g. "No module named 'vllm'") and the script goes on.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export OUT=${OUT:-runs/gpu_check} PYTHONUNBUFFERED=1 PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p "$OUT"
rm -f "$OUT/gpu_check.json"
"$PY" -c "import deepspeed" 2>/dev/null || "$PY" -m pip install --disable-pip-version-check -c constraints.txt deepspeed \
  || echo "deepspeed could not be installed: the ZeRO parts will record the error"
VPY=.venv-vllm/bin/python
[ -x "$VPY" ] || "${PYTHON3:-python3}" -m venv .venv-vllm
"$VPY" -c "import vllm" 2>/dev/null || "$VPY" -m pip install --disable-pip-version-check -c constraints-vllm.txt -e ".[vllm]" \
  || echo "the vllm extra could not be installed: the vLLM part will record the error"
timeout 240 "$VPY" scripts/gpu_check.py --parts vllm 2>&1 | tee "$OUT/gpu_check.log"
timeout 240 "$PY" scripts/gpu_check.py --parts smoke,deepspeed 2>&1 | tee -a "$OUT/gpu_check.log"
echo "results: $OUT/gpu_check.json"
