"""Does the pre-trained restorer restore? Pre-train a config (with --set overrides), evaluate it on the test photos
in distribution and OOD, and count the columns where it beats its degraded input (issue 20's starting-point check).

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_starting_points --config configs/cpu-demo-diffusion.yaml \
        --set policy.diffusion.residual=true --out runs/bench/start

Prints one line per split: mean PSNR of the model and of the input, and the columns won; writes OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from trainer.config import load_config
from trainer.demo.corpus import fetch
from trainer.evaluate import evaluate, input_baseline
from trainer.policies import build_policy
from trainer.pretrain import pretrain


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config, args.overrides + [f"pretrain.output={args.out / 'model.safetensors'}"])
    if cfg.data.source == "demo":
        fetch(cfg.data.root)
    load, t0 = os.getloadavg(), time.perf_counter()
    weights = pretrain(cfg)
    seconds = time.perf_counter() - t0
    policy = build_policy(cfg.with_policy_weights(weights).policy_section).eval()
    summary = {"config": args.config, "overrides": args.overrides, "pretrain_seconds": seconds, "threads": torch.get_num_threads(),
               "load_average_start": load, "load_average_end": os.getloadavg()}
    for split in ("id", "ood"):
        res = evaluate(cfg, policy, ood=split == "ood")
        base = input_baseline(res)
        won = [c for c in res["columns"] if res["columns"][c]["psnr"] > base["columns"][c]["psnr"]]
        summary[split] = {"psnr": res["average"]["psnr"], "input_psnr": base["average"]["psnr"], "columns_won": won, "columns": len(res["columns"]),
                          "per_column": {c: [res["columns"][c]["psnr"], base["columns"][c]["psnr"]] for c in res["columns"]}}
        print(f"[start] {split}: model {res['average']['psnr']:.2f} dB vs input {base['average']['psnr']:.2f} dB; beats the input on "
              f"{len(won)} of {len(res['columns'])} columns ({', '.join(won)})")
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"[start] pre-training {seconds:.0f} s at {torch.get_num_threads()} thread(s), load average {load[0]:.1f}; {args.out / 'summary.json'}")


if __name__ == "__main__":
    main()
