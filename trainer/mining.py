"""Hard-sample mining (IRPO): score every training pair with the starting model, keep the worst
fraction of each task for post-training; a random fraction is the ablation's control.

Writes mining.manifest (JSON lines: id, task, psnr, ssim, input_psnr, input_ssim) and
mining.subset ({"ids": [...], ...}); returns the selected ids. The manifest also calibrates the
reward's PSNR term to the data (reward.psnr_range_percentiles).

    python -m trainer.mining --config F [--weights W]
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from trainer import cli_common
from trainer.config import TrainConfig
from trainer.data import build_full_train_set
from trainer.data.degradations import stable_seed
from trainer.inference import restore
from trainer.metrics import at_size, psnr_ssim
from trainer.policies import Policy


def score_training_set(cfg: TrainConfig, policy: Policy) -> list[dict]:
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
            in_psnr, in_ssim = psnr_ssim(at_size(item["degraded"], item["target"].shape[-2:]), item["target"])
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


def write_subset(cfg: TrainConfig, records: list[dict], ids: list[str]) -> None:
    """mining.subset: the ids with how they were chosen (mining.selection, metric, fraction)."""
    m = cfg.mining
    per_task = {t: sum(i.startswith(t + "/") for i in ids) for t in sorted({r["task"] for r in records})}
    m.subset.parent.mkdir(parents=True, exist_ok=True)
    m.subset.write_text(json.dumps({"ids": ids, "selection": m.selection, "metric": m.metric, "fraction": m.fraction, "per_task": per_task, "scored": len(records)}, indent=1))
    print(f"[mining] kept {len(ids)} of {len(records)} ({m.selection}, {m.metric}, fraction {m.fraction}): {per_task} -> {m.subset}")


def read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"mining manifest {path} does not exist: run mining first (python -m trainer.mining --config ...)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mine(cfg: TrainConfig, policy: Policy) -> list[str]:
    m = cfg.mining
    t0 = time.perf_counter()
    records = score_training_set(cfg, policy)
    print(f"[mining] scored {len(records)} training pairs in {time.perf_counter() - t0:.1f} s")
    ids = select(records, m.fraction, m.metric, m.selection, cfg.seed)
    m.manifest.parent.mkdir(parents=True, exist_ok=True)
    m.manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    write_subset(cfg, records, ids)
    return ids


def calibrate_psnr_range(cfg: TrainConfig) -> TrainConfig:
    """With reward.psnr_range_percentiles set: a copy whose reward.psnr_range_db holds those percentiles of the
    starting model's PSNR over the training set (mining.manifest), so the PSNR term spans the data's range
    instead of the paper's 20-40 dB. Otherwise cfg unchanged."""
    r = cfg.reward
    if r.psnr_range_percentiles is None:
        return cfg
    values = np.array([rec["psnr"] for rec in read_manifest(cfg.mining.manifest)], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        raise ValueError(f"{cfg.mining.manifest}: fewer than 2 finite PSNR values, cannot set reward.psnr_range_db from percentiles")
    low, high = (float(v) for v in np.percentile(values, r.psnr_range_percentiles))
    if not low < high:
        raise ValueError(f"{cfg.mining.manifest}: percentiles {list(r.psnr_range_percentiles)} of the PSNR give an empty range ({low:.2f}-{high:.2f} dB)")
    print(f"[mining] PSNR term thresholds from the data: {low:.2f}-{high:.2f} dB (percentiles {list(r.psnr_range_percentiles)} of {values.size} training pairs)")
    return cfg.model_copy(update={"reward": r.model_copy(update={"psnr_range_db": (low, high), "psnr_range_percentiles": None})})


def main(argv: list[str] | None = None) -> None:
    args = cli_common.parser("Score the training set with the starting model and select the hard subset.").parse_args(argv)
    cfg = cli_common.load(args)
    mine(cfg, cli_common.policy_for(cfg, args.weights))
    print(f"[mining] wrote {cfg.mining.manifest} and {cfg.mining.subset}")


if __name__ == "__main__":
    main()
