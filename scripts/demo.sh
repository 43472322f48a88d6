#!/usr/bin/env bash
# Interim demo: score a restoration with the reward service over real HTTP (curl multipart and JSON).
# The service runs on RANDOM weights (development flag) with a ViT-B-32 CLIP instead of the paper's
# ViT-L/14: the numbers show the plumbing, not real quality judgements. The trainer's demo replaces this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1
PY=.venv/bin/python
work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "[demo] making an example: scikit-image's astronaut photo, noisy (sigma 25) and a smoothed 'restoration'"
"$PY" - "$work" <<'EOF'
import sys
import numpy as np
from scipy import ndimage
from skimage import data, transform
from reward_server.imaging import encode_png
out = sys.argv[1]
gt = transform.resize(data.astronaut(), (256, 256), anti_aliasing=True).astype(np.float32)
noisy = np.clip(gt + np.random.default_rng(0).normal(0, 25 / 255, gt.shape), 0, 1).astype(np.float32)
restored = ndimage.gaussian_filter(noisy, sigma=(1, 1, 0)).astype(np.float32)
for name, img in (("gt", gt), ("degraded", noisy), ("restored", restored)):
    open(f"{out}/{name}.png", "wb").write(encode_png(img))
EOF

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
echo "[demo] starting reward-server on $url with RANDOM WEIGHTS (development flag, CLIP ViT-B-32)"
REWARD_SERVER_CLIP_MODEL=ViT-B-32 "$PY" -m reward_server.cli --random-weights --port "$port" --log-level warning &
server_pid=$!
for _ in $(seq 1 300); do
  if curl -sf "$url/readyz" >/dev/null; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then echo "[demo] the server exited" >&2; exit 1; fi
  sleep 0.5
done
curl -sf "$url/readyz" >/dev/null || { echo "[demo] the server did not become ready" >&2; exit 1; }

echo "[demo] POST /v1/score as multipart (curl -F), task denoise"
curl -sf -F restored=@"$work/restored.png" -F reference=@"$work/gt.png" -F degraded=@"$work/degraded.png" \
  -F task=denoise "$url/v1/score" | "$PY" -m json.tool

echo "[demo] POST /v1/score as JSON with base64 images, no reference (only the no-reference terms run)"
"$PY" -c 'import base64, json, sys; print(json.dumps({"restored": base64.b64encode(open(sys.argv[1], "rb").read()).decode(), "task": "denoise"}))' \
  "$work/restored.png" > "$work/request.json"
curl -sf -H 'Content-Type: application/json' --data-binary @"$work/request.json" "$url/v1/score" | "$PY" -m json.tool
echo "[demo] done; the server is stopped"
