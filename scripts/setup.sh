#!/usr/bin/env bash
# Create .venv and install ume with the tested pins (constraints.txt, from shared/spec/stack.md). Idempotent: a
# second run with an unchanged pyproject.toml / constraints.txt returns in a second. A line per stage, and pip's
# own output (its download bars on a terminal), so a long install never looks stuck; a failed install stops here.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.ume-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
start=$SECONDS
stage() { echo "[setup $((SECONDS - start))s] $*" >&2; }
pip_install() {  # pip's "ignored" notices about the editable path are noise; its exit status is kept
  { .venv/bin/pip install --disable-pip-version-check --progress-bar on -c constraints.txt "$@" 2>&1; } \
    | { grep --line-buffered -v -e "is ignored: it is neither a file nor a directory" -e "already satisfied" || true; }
}
if [ ! -x .venv/bin/python ]; then
  stage "1/3 creating .venv with $("$PY" --version)"
  "$PY" -m venv .venv
fi
# measured on a 2-core machine, first run: 8-9 minutes in all, most of it here (≈6 GB, 4 GB of it CUDA wheels)
stage "2/3 installing torch and torchvision (the largest part: ≈6 GB with the CUDA wheels)"
pip_install torch torchvision
stage "3/3 installing ume and the rest of the tested stack (transformers, datasets, serve/index/mteb/ray extras)"
pip_install -e ".[dev]"
.venv/bin/python -c "import ume, torch, transformers; print('ume', ume.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)" >&2
echo "$want" > "$stamp"
stage "done"
