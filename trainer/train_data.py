"""The order in which the trainer visits its images: a fresh seeded permutation every epoch.

Step s takes stream positions [s*k, (s+1)*k) of the concatenated epochs, so the images of any step
follow from (seed, step) alone: a resumed or retried step gets the same images.
"""

from __future__ import annotations

import torch


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

    def indices(self, step: int, per_step: int) -> list[int]:
        start = self.position(step, per_step)
        out = []
        for p in range(start, start + per_step):
            epoch, offset = divmod(p, self.num_items)
            out.append(int(self._permutation(epoch)[offset]))
        return out

    def epoch(self, step: int, per_step: int) -> float:
        return self.position(step, per_step) / self.num_items
