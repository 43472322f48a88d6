"""Hard-sample mining (IRPO): score every training pair with the starting model, keep the worst
fraction of each task for post-training; a random fraction is the ablation's control.

Writes mining.manifest (JSON lines: id, task, psnr, ssim, input_psnr, input_ssim) and
mining.subset ({"ids": [...], ...}); returns the selected ids.

    python -m trainer.mining --config F [--weights W]
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path

import torch

from trainer import cli_common
from trainer.config import TrainConfig
from trainer.data import build_full_train_set
from trainer.data.degradations import stable_seed
from trainer.inference import restore
from trainer.metrics import psnr_ssim
from trainer.model import RestorationPolicy


def score_training_set(cfg: TrainConfig, policy: RestorationPolicy) -> list[dict]:
    """One record per training pair: id, task and the metrics of the deterministic output."""
    m = cfg.mining
    dataset = build_full_train_set(cfg.data, m.crop)
    device = next(policy.parameters()).device
    was_training = policy.training
    policy.eval()
    records = []
    batch: list[dict] = []

    def flush() -> None:
        out = restore(policy, torch.stack([b["degraded"] for b in batch]).to(device), cfg.eval.tile, cfg.eval.tile_overlap)
        for item, restored in zip(batch, out):
            psnr, ssim = psnr_ssim(restored, item["target"])
            in_psnr, in_ssim = psnr_ssim(item["degraded"], item["target"])
            records.append({"id": item["id"], "task": item["task"], "psnr": psnr, "ssim": ssim, "input_psnr": in_psnr, "input_ssim": in_ssim})
        batch.clear()

    for i in range(len(dataset)):
        item = dataset[i]
        if batch and (len(batch) == m.batch_size or batch[0]["degraded"].shape != item["degraded"].shape):
            flush()
        batch.append(item)
    if batch:
        flush()
    policy.train(was_training)
    return records


def select(records: list[dict], fraction: float, metric: str, selection: str, seed: int) -> list[str]:
    """Per task, the ceil(fraction * n) hardest (lowest metric, ties by id) or a seeded random choice."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    chosen = []
    for task in sorted(by_task):
        rows = sorted(by_task[task], key=lambda r: r["id"])
        k = max(1, math.ceil(fraction * len(rows)))
        if selection == "hardest":
            rows = sorted(rows, key=lambda r: (r[metric], r["id"]))
        else:
            perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(stable_seed(seed, "mining", task)))
            rows = [rows[int(i)] for i in perm]
        chosen += [r["id"] for r in rows[:k]]
    return chosen


def mine(cfg: TrainConfig, policy: RestorationPolicy) -> list[str]:
    m = cfg.mining
    t0 = time.perf_counter()
    records = score_training_set(cfg, policy)
    ids = select(records, m.fraction, m.metric, m.selection, cfg.seed)
    m.manifest.parent.mkdir(parents=True, exist_ok=True)
    m.manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    m.subset.parent.mkdir(parents=True, exist_ok=True)
    per_task = {t: sum(i.startswith(t + "/") for i in ids) for t in sorted({r["task"] for r in records})}
    m.subset.write_text(json.dumps({"ids": ids, "selection": m.selection, "metric": m.metric, "fraction": m.fraction, "per_task": per_task, "scored": len(records)}, indent=1))
    print(f"[mining] scored {len(records)} training pairs in {time.perf_counter() - t0:.1f} s; kept {len(ids)} ({m.selection}, {m.metric}, fraction {m.fraction}): {per_task}")
    return ids


def main(argv: list[str] | None = None) -> None:
    args = cli_common.parser("Score the training set with the starting model and select the hard subset.").parse_args(argv)
    cfg = cli_common.load(args)
    mine(cfg, cli_common.policy_for(cfg, args.weights))
    print(f"[mining] wrote {cfg.mining.manifest} and {cfg.mining.subset}")


if __name__ == "__main__":
    main()
