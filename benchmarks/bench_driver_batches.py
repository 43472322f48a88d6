"""The driver's wait for a step's batches (reading, cropping and degrading its images), with the next
step's batches built ahead in a background thread (trainer/data/prefetch.py) and without (built on
demand in the driver's loop, as before issue 22 item 8).

    .venv/bin/python -m benchmarks.bench_driver_batches [--config configs/cpu-demo.yaml] [--steps 8]
        [--images 16] [--side 512] [--output runs/bench/driver_batches.json]

A stand-in corpus (trainer/demo/corpus.py) of --images training photos of --side px, so the run needs no
fetched data; the CPU demo config otherwise (tiny policy, local reward service on random weights, whole
training set, no mining). Prints one JSON line per variant: the mean over the steps after the first two of
time/batch_wait (the driver's wait for batches) and time/step, with the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import trainer.run as run
from trainer.config import load_config
from trainer.demo.corpus import write_standin_corpus
from trainer.metrics_log import read_metrics


class OnDemand:
    """The driver loop before prefetching: a step's batches are built when it is launched."""

    def __init__(self, build, end: int):
        self._build = build

    def get(self, step: int):
        return self._build(step)

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/cpu-demo.yaml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--output", type=Path, default=Path("runs/bench/driver_batches.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-batches-"))
    corpus = write_standin_corpus(work / "photos", n_train=args.images, n_test=1, size=(args.side, args.side))
    results = []
    for variant, prefetcher in (("on demand", OnDemand), ("prefetched", run.Prefetcher)):
        run.Prefetcher = prefetcher
        out = work / variant.replace(" ", "_")
        cfg = load_config(args.config, [f"data.root={corpus}", "grpo.train_on=all", "reward.psnr_range_percentiles=null", f"optim.max_steps={args.steps}",
                                        f"logging.dir={out}", f"checkpoint.dir={out}/checkpoints", "logging.progress=false", "logging.tensorboard=false"])
        t0 = time.perf_counter()
        run.train(cfg)
        rows = read_metrics(out / "metrics.jsonl")[2:]
        results.append({
            "variant": variant, "steps_measured": len(rows),
            "batch_wait_s": statistics.mean(r["time/batch_wait"] for r in rows), "step_s": statistics.mean(r["time/step"] for r in rows),
            "run_s": time.perf_counter() - t0, "images_per_step": cfg.rollout.num_workers * cfg.rollout.images_per_worker,
            "image_side": args.side, "load_average": os.getloadavg(),
        })
        print(json.dumps(results[-1]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
