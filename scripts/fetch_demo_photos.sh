#!/usr/bin/env bash
# Fetches the demo corpus (real photos, downscaled, train/test split) into data/demo (gitignored).
# Extra arguments go to trainer.demo.corpus, e.g. --short-side 320.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m trainer.demo.corpus --root data/demo "$@"
