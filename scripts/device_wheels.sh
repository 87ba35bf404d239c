#!/usr/bin/env bash
# The wheels a GPU machine without network lacks for scripts/device_check.sh, downloaded here (PyPI) into an
# ignored folder that the device run carries. That machine's image has torch, transformers, peft, accelerate,
# pytest, numpy, scipy, pandas and pyarrow, but not trl, datasets (with its dill and multiprocess), or bm25s; this
# project's transformers is carried too, so the check runs the versions the project pins. faiss and gguf are not
# needed: the check retrieves with BM25 (a dense encoder's weights would not fit in the carry) and runs the tiny
# models, never the GGUF file. About 15 MB.
#
#     scripts/device_wheels.sh [FOLDER (.whl/device)] [PYTHON_VERSION (3.12, the device's)]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.whl/device}
pyver=${2:-3.12}
pip=${PIP:-.venv/bin/pip}
pins=$(.venv/bin/python - <<'PY'
from importlib.metadata import version
print(" ".join(f"{p}=={version(p)}" for p in ("trl", "datasets", "dill", "multiprocess", "bm25s", "transformers")))
PY
)
mkdir -p "$dest"
# shellcheck disable=SC2086  # one argument per pin
"$pip" download --no-deps --only-binary=:all: --python-version "$pyver" --platform manylinux2014_x86_64 -q -d "$dest" $pins
ls -1 "$dest"
du -sh "$dest"
