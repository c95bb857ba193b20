#!/usr/bin/env bash
# Create .venv and install ume with the tested pins (shared/spec/stack.md). Idempotent: a second run
# with an unchanged pyproject.toml / constraints.txt returns in a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.ume-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up .venv (torch 2.14.1, transformers 5.24; first run takes ~2 minutes)..." >&2
.venv/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
.venv/bin/python -c "import ume, torch, transformers; print('ume', ume.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)" >&2
echo "$want" > "$stamp"
