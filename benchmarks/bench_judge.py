"""Throughput and latency of the judge service's `fast` vs `reasoned` modes against vLLM on the CPU.

    .venv/bin/python -m benchmarks.bench_judge [--fast-requests 64] [--reasoned-requests 8] [--out FILE]

Starts a vLLM CPU server (from .venv-vllm, built by scripts/setup_vllm_cpu.sh) serving the tiny
RANDOM-WEIGHT Qwen2.5-VL, and the judge service (`python -m judge_server.cli`, cache off) in
front of it, both on 127.0.0.1; then sends judge requests with 3 images (128x128 crops of
scikit-image's astronaut photo) at concurrency 1 and 8. With that model a reasoned answer never
ends early, so every reasoned request generates the full max_tokens (512): the worst case.
The numbers measure the serving path (prompting, vLLM scheduling, decoding, parsing), not a 7B model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from skimage import data

from devtools.local_servers import LocalVLLM, vllm_unavailable_reason
from irpo_common.imaging import encode_base64_png
from irpo_common.process import ManagedProcess, free_port


def payloads(n: int) -> list[dict]:
    photo = data.astronaut().astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        y, x = rng.integers(0, photo.shape[0] - 128, size=2)
        clean = photo[y:y + 128, x:x + 128]
        noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
        restored = np.clip(clean + rng.normal(0, 0.03, clean.shape), 0, 1)
        out.append({name: encode_base64_png(img) for name, img in
                    (("degraded", noisy), ("restored", restored), ("reference", clean))})
    return out


async def run_load(url: str, mode: str, items: list[dict], concurrency: int) -> dict:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    queue = list(items)

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            item = queue.pop()
            start = time.perf_counter()
            response = await client.post("/v1/judge", json={**item, "mode": mode})
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
            status = response.json()["status"]
            statuses[status] = statuses.get(status, 0) + 1

    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await client.post("/v1/judge", json={**items[0], "mode": mode})  # warm-up, not counted
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    latencies.sort()
    return {
        "mode": mode, "concurrency": concurrency, "requests": len(items), "wall_s": round(wall, 2),
        "rps": round(len(items) / wall, 3),
        "latency_p50_s": round(statistics.median(latencies), 4),
        "latency_p95_s": round(latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))], 4),
        "statuses": statuses,
    }


def judge_service(backend_url: str, model: str, max_tokens: int) -> ManagedProcess:
    port = free_port()
    env = {"JUDGE_SERVER_BACKEND_URL": backend_url, "JUDGE_SERVER_MODEL": model,
           "JUDGE_SERVER_CACHE_SIZE": "0", "JUDGE_SERVER_MAX_CONCURRENCY": "8",
           "JUDGE_SERVER_REASONED_MAX_TOKENS": str(max_tokens), "JUDGE_SERVER_TIMEOUT_S": "600"}
    cmd = [sys.executable, "-m", "judge_server.cli", "--port", str(port)]
    return ManagedProcess("judge-server", cmd, f"http://127.0.0.1:{port}", env=env).start(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast-requests", type=int, default=64)
    parser.add_argument("--reasoned-requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if reason := vllm_unavailable_reason():
        sys.exit(f"bench_judge: {reason}")
    print("bench_judge: the judge model is a tiny Qwen2.5-VL with RANDOM weights (serving-path benchmark)")
    start = time.perf_counter()
    with LocalVLLM() as vllm:
        print(f"vLLM ready in {time.perf_counter() - start:.0f} s")
        with judge_service(vllm.url, vllm.served_name, args.max_tokens) as judge:
            url = judge.url
            rows = []
            for concurrency in (1, 8):
                for mode, n in (("fast", args.fast_requests), ("reasoned", args.reasoned_requests)):
                    row = asyncio.run(run_load(url, mode, payloads(n), concurrency))
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    rps = {(r["mode"], r["concurrency"]): r["rps"] for r in rows}
    summary = {c: round(rps[("fast", c)] / rps[("reasoned", c)], 1) for c in (1, 8)}
    print(f"fast/reasoned throughput ratio: concurrency 1: {summary[1]}x, concurrency 8: {summary[8]}x")
    if args.out:
        args.out.write_text(json.dumps({
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "max_tokens": args.max_tokens,
            "rows": rows, "fast_over_reasoned": summary,
        }, indent=2))


if __name__ == "__main__":
    main()
