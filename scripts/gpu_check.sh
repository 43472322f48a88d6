#!/usr/bin/env bash
# The GPU check (devtools/gpu_check.py says what each stage does), bounded at 10 minutes
# (GPU_CHECK_TIMEOUT_S; the test suite gives the CPU dry run longer on a busy machine):
#   bash scripts/gpu_check.sh             on a machine with a CUDA GPU
#   bash scripts/gpu_check.sh --dry-run   on a CPU: the same stages at toy size, no GPU number (tests run it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
exec timeout "${GPU_CHECK_TIMEOUT_S:-600}" env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$PY" -m devtools.gpu_check "$@"
