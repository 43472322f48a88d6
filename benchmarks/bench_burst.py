"""The reward service under a burst (issue 14): 800 concurrent requests at 128 px, every 8th client
giving up after 0.5 s. Measures the latency of admitted requests (p50/p95 from the burst's start),
how many were shed with 503, and the server's RSS: steady state (after warm-up), peak during the
burst (sampled every 20 ms) and after it.

Runs a real `reward-server` subprocess on 127.0.0.1 with RANDOM weights and, by default, the tiny
CLIP of the tests (tests/reward_server/tiny-clip.json), as the reward tests do: it measures the
service's behaviour (admission, queueing, memory), not the models' speed.
Usage: .venv/bin/python -m benchmarks.bench_burst [--n 800] [--max-pending 64] [--clip-model tiny-clip]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

from devtools.burst import burst  # noqa: E402
from irpo_common.imaging import encode_base64_png  # noqa: E402
from irpo_common.process import ManagedProcess, free_port  # noqa: E402

TINY_CLIP = Path(__file__).resolve().parent.parent / "tests" / "reward_server" / "tiny-clip.json"


def _payload(size: int) -> dict:
    rng = np.random.default_rng(0)
    gt = rng.random((size, size, 3), dtype=np.float32)
    restored = np.clip(gt + 0.05 * rng.standard_normal(gt.shape, dtype=np.float32), 0, 1)
    return {"restored": encode_base64_png(restored), "reference": encode_base64_png(gt), "task": "denoise"}


def _quantiles(latencies: list[float]) -> dict | None:
    if not latencies:
        return None
    return {"p50": round(latencies[len(latencies) // 2], 3), "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 3),
            "max": round(latencies[-1], 3)}


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 0.02):
        super().__init__(daemon=True)
        self.proc, self.every_s, self.peak, self._done = psutil.Process(pid), every_s, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every_s)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=800)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--max-pending", type=int, default=None, help="max_pending_requests (default: the service's)")
    p.add_argument("--max-queue", type=int, default=None, help="max_queue_items (default: the service's)")
    p.add_argument("--max-queue-wait", type=float, default=None, help="max_queue_wait_s, 0 = no bound (default: the service's)")
    p.add_argument("--abandon-every", type=int, default=8)
    p.add_argument("--abandon-after", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--clip-model", default="tiny-clip")
    args = p.parse_args()

    env = {**os.environ, "REWARD_SERVER_CLIP_MODEL": args.clip_model, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    if args.clip_model == "tiny-clip":
        env["REWARD_SERVER_CLIP_MODEL_CONFIG"] = str(TINY_CLIP)
    for name, value in (("MAX_PENDING_REQUESTS", args.max_pending), ("MAX_QUEUE_ITEMS", args.max_queue), ("MAX_QUEUE_WAIT_S", args.max_queue_wait)):
        if value is not None:
            env[f"REWARD_SERVER_{name}"] = str(value)
    port = free_port()
    cmd = [sys.executable, "-m", "reward_server.cli", "--random-weights", "--port", str(port), "--log-level", "warning"]
    payload = _payload(args.size)
    load_before = os.getloadavg()
    with ManagedProcess("reward-server", cmd, f"http://127.0.0.1:{port}", env=env).start(300) as server:
        rss = psutil.Process(server.proc.pid)
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for _ in range(args.warmup):
                c.post("/v1/score", json=payload).raise_for_status()
            steady, alone = [], []
            for _ in range(20):
                t = time.perf_counter()
                c.post("/v1/score", json=payload).raise_for_status()
                alone.append(time.perf_counter() - t)
                steady.append(rss.memory_info().rss)
            info = c.get("/v1/info").json()["limits"]
        steady_rss = statistics.median(steady)
        sampler = RssSampler(server.proc.pid)
        sampler.start()
        t0 = time.perf_counter()
        outcomes = burst(server.url, payload, args.n, abandon_every=args.abandon_every, abandon_after_s=args.abandon_after)
        wall = time.perf_counter() - t0
        peak = sampler.stop()
        time.sleep(2.0)
        after = rss.memory_info().rss
        metrics = httpx.get(server.url + "/metrics").text
    scored = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("reward_items_scored_total"))
    ok = sorted(o.latency_s for o in outcomes if o.status == 200)
    shed = sorted(o.latency_s for o in outcomes if o.status == 503)
    statuses: dict[str, int] = {}
    for o in outcomes:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    report = {
        "what": f"{args.n} concurrent POST /v1/score at {args.size}x{args.size} with reference and task, every "
                f"{args.abandon_every}th client giving up after {args.abandon_after} s; CLIP {args.clip_model} (RANDOM weights), lpips-alex",
        "limits": {k: info[k] for k in ("max_pending_requests", "max_queue_items", "max_queue_wait_s", "request_timeout_s")},
        "statuses": statuses,
        "admitted_latency_s": _quantiles(ok),
        "shed_latency_s": _quantiles(shed),
        "one_request_alone_s": round(statistics.median(alone), 3),
        "burst_wall_s": round(wall, 2),
        "items_scored_in_burst": scored - args.warmup - 20,
        "rss_mib": {"steady": round(steady_rss / 2**20), "peak": round(peak / 2**20), "after": round(after / 2**20)},
        "peak_over_steady": round(peak / steady_rss, 3),
        "load_avg_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
