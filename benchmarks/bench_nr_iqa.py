"""Seconds per image for BRISQUE, NIQE and PIQE (reward_server.nr_iqa) on the CPU, against pyiqa's published
CPU figures (BRISQUE 0.12 s, NIQE 0.21 s per 1080x800 image).

Usage: .venv/bin/python benchmarks/bench_nr_iqa.py [--height 800] [--width 1080] [--batch 1] [--threads 1] [--repeats 5]
       [--metrics brisque niqe]
Prints one JSON line: median and best seconds per image, the 1-min load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
from skimage import data
from torch.nn import functional as F

from reward_server.nr_iqa import Brisque, Niqe, Piqe


def photo(h: int, w: int, batch: int) -> torch.Tensor:
    """skimage's astronaut resized to h x w (a real photo, so the fits see natural statistics)."""
    x = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].double() / 255
    return F.interpolate(x, size=(h, w), mode="bicubic", antialias=True).clamp(0, 1).repeat(batch, 1, 1, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--height", type=int, default=800)
    p.add_argument("--width", type=int, default=1080)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--metrics", nargs="+", default=["brisque", "niqe", "piqe"], choices=["brisque", "niqe", "piqe"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x = photo(args.height, args.width, args.batch)
    load_before = os.getloadavg()[0]
    out = {"size": f"{args.width}x{args.height}", "batch": args.batch, "threads": args.threads, "cpu": platform.processor() or platform.machine()}
    for name in args.metrics:
        metric = {"brisque": Brisque, "niqe": Niqe, "piqe": Piqe}[name]()
        metric(x)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            metric(x)
            times.append((time.perf_counter() - t0) / args.batch)
        out[name] = {"median_s_per_image": round(statistics.median(times), 4), "best_s_per_image": round(min(times), 4)}
    out["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
