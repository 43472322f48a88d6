"""The images the trainer post-trains on (the mined subset, or all) and the order it visits them.

A fresh seeded permutation every epoch; step s takes stream positions [s*k, (s+1)*k) of the
concatenated epochs, so the images of any step follow from (seed, step) alone: a resumed or
retried step gets the same images.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainer.config import TrainConfig
from trainer.data.datasets import PairDataset, build_train_dataset
from trainer.data.sources import train_specs


class DataCursor:
    def __init__(self, num_items: int, seed: int):
        if num_items < 1:
            raise ValueError("no training images")
        self.num_items = num_items
        self.seed = seed
        self._perm: tuple[int, torch.Tensor] | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm = (epoch, torch.randperm(self.num_items, generator=gen))
        return self._perm[1]

    @staticmethod
    def position(step: int, per_step: int) -> int:
        return step * per_step

    def indices(self, step: int, per_step: int) -> list[tuple[int, int]]:
        """(epoch, dataset index) of each image of the step; the epoch also seeds the image's crop."""
        start = self.position(step, per_step)
        out = []
        for p in range(start, start + per_step):
            epoch, offset = divmod(p, self.num_items)
            out.append((epoch, int(self._permutation(epoch)[offset])))
        return out

    def epoch(self, step: int, per_step: int) -> float:
        return self.position(step, per_step) / self.num_items


def step_items(dataset, cursor: DataCursor, step: int, per_step: int) -> list[dict]:
    """The items of a step, each image cropped and flipped as drawn for its epoch."""
    items = []
    for epoch, i in cursor.indices(step, per_step):
        dataset.set_epoch(epoch)
        items.append(dataset[i])
    return items


class TrainDataError(ValueError):
    """The training data cannot be used; the message says which file or setting to fix."""


def read_subset(path: Path) -> list[str]:
    if not path.is_file():
        raise TrainDataError(f"grpo.train_on is 'subset' but {path} does not exist: run mining first (python -m trainer.mining --config ...) or set grpo.train_on=all")
    try:
        ids = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TrainDataError(f"{path}: not valid JSON ({exc})") from None
    if isinstance(ids, dict):
        ids = ids.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise TrainDataError(f"{path}: expected a non-empty JSON list of sample ids")
    return ids


def gold_ids(cfg: TrainConfig) -> list[str]:
    """The reward-hacking watch's held-out pairs (trainer/watch.py): a seeded draw of `watch.images` training
    pairs outside the post-training set. With grpo.train_on 'subset' they come from the pairs mining left
    out; with 'all', load_training_data leaves them out of training. The draw depends only on the ids and the seed."""
    all_ids = [s.id for s in train_specs(cfg.data)]
    trained = set(read_subset(cfg.mining.subset)) if cfg.grpo.train_on == "subset" else set()
    pool = sorted(i for i in all_ids if i not in trained)
    n = cfg.watch.images
    if len(pool) < n:
        raise TrainDataError(f"watch.images={n} but only {len(pool)} training pairs lie outside the post-training set; lower watch.images or set watch.every_steps=0")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(cfg.seed))
    return sorted(pool[i] for i in order[:n].tolist())


def gold_set(cfg: TrainConfig) -> PairDataset:
    """The gold pairs centre-cropped to watch.crop (default data.crop_size): the same inputs at every watch point."""
    ids = set(gold_ids(cfg))
    return PairDataset([s for s in train_specs(cfg.data) if s.id in ids], cfg.data, cfg.watch.crop or cfg.data.crop_size)


def load_training_data(cfg: TrainConfig):
    """The post-training dataset (mined subset or all, less the watch's gold pairs), checked by reading its first item."""
    ids = read_subset(cfg.mining.subset) if cfg.grpo.train_on == "subset" else None
    if ids is None and cfg.watch.every_steps:
        held_out = set(gold_ids(cfg))
        ids = [s.id for s in train_specs(cfg.data) if s.id not in held_out]
    dataset = build_train_dataset(cfg.data, ids=ids)
    if len(dataset) == 0:
        raise TrainDataError(f"the training set is empty (data.source={cfg.data.source}, data.root={cfg.data.root})")
    item = dataset[0]
    missing = {"id", "task", "degraded", "target"} - set(item)
    if missing:
        raise TrainDataError(f"dataset items lack {sorted(missing)}")
    if item["degraded"].shape != item["target"].shape or item["degraded"].dim() != 3:
        raise TrainDataError(f"dataset item {item['id']}: degraded {tuple(item['degraded'].shape)} and target {tuple(item['target'].shape)} must both be (3, H, W)")
    return dataset
