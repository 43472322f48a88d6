#!/usr/bin/env bash
# Fetches the demo corpus (real photos, downscaled, train/test split) into data/demo (gitignored).
# Extra arguments go to trainer.data.demo_corpus, e.g. --short-side 320.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m trainer.data.demo_corpus --root data/demo "$@"
