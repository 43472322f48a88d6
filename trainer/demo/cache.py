"""The demo's pre-trained weights, reused between demo runs while everything that determines them is unchanged."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from trainer.config import TrainConfig
from trainer.pretrain import pretrain


def pretrain_key(cfg: TrainConfig, corpus: dict | None) -> str:
    """Hash of what pre-training depends on: the policy section, data and pre-training settings, seed, device, the corpus files,
    and torch's version and thread count (they change the floating-point order, hence the weights)."""
    parts = {
        "model": cfg.policy_section.model_dump(mode="json", exclude={"rl"}),  # the RL settings do not touch pre-training
        "data": cfg.data.model_dump(mode="json"),
        "pretrain": cfg.pretrain.model_dump(mode="json", exclude={"output", "log_every"}),
        "seed": cfg.seed,
        "device": cfg.device,
        "corpus": None if corpus is None else {"short_side": corpus["short_side"], "files": sorted(corpus["files"])},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def cached_pretrain(cfg: TrainConfig, corpus: dict | None) -> tuple[Path, bool]:
    """(weights, reused): pretrain.output when its key file matches, else a fresh pre-training."""
    out = Path(cfg.pretrain.output)
    stamp = out.with_name(out.name + ".key")
    key = pretrain_key(cfg, corpus)
    if out.is_file() and stamp.is_file() and stamp.read_text() == key:
        print(f"[pretrain] reusing {out} (same settings, corpus and torch; delete {stamp} to pre-train again)", flush=True)
        return out, True
    path = pretrain(cfg)
    stamp.write_text(key)
    return path, False
