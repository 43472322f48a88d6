"""Advantages of GRPO: group-normalised, group-centred, and normalised by a per-image reward history.

Rewards arrive image-major: a (B, G) tensor holds the G candidates of each of B images.
"""

from __future__ import annotations

from collections import deque

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6, normalize_std: bool = True) -> torch.Tensor:
    """A_ij = (r_ij - mean_j r_i.) / sqrt(var_j r_i. + eps) per image i; only centred when normalize_std=False.

    The population variance is used so a group of G equal rewards gives exactly zero advantage.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (B, G) with G >= 2, got {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize_std:
        return centred
    return centred / torch.sqrt(rewards.var(dim=1, unbiased=False, keepdim=True) + eps)


def zero_spread_fraction(rewards: torch.Tensor) -> float:
    """Share of the (B, G) groups whose G rewards are all equal: they carry no GRPO signal (flow_grpo's and
    Flow-Factory's zero_std_ratio)."""
    return ((rewards.amax(dim=1) - rewards.amin(dim=1)) <= 1e-12).float().mean().item()


class HistoryTracker:
    """Per-image reward history (difficulty-adaptive paper; DDPO's per-prompt stat tracker).

    Each image keeps its last `buffer_size` rewards. An image with fewer than `min_count` tracked
    rewards is normalised by the statistics of the whole current batch instead. With `with_batch`
    (difficulty-adaptive paper), a tracked image is normalised by its history together with the
    current batch's rewards rather than by its history alone.
    """

    def __init__(self, buffer_size: int, min_count: int, eps: float = 1e-6, with_batch: bool = False):
        if min_count > buffer_size:
            raise ValueError(f"min_count {min_count} exceeds buffer_size {buffer_size}: the history could never be used")
        self.buffer_size = buffer_size
        self.min_count = min_count
        self.eps = eps
        self.with_batch = with_batch
        self._history: dict[str, deque[float]] = {}

    def advantages(self, keys: list[str], rewards: torch.Tensor) -> torch.Tensor:
        """Record the (B, G) rewards of images `keys`, then return their (B, G) advantages."""
        if rewards.dim() != 2 or rewards.shape[0] != len(keys):
            raise ValueError(f"rewards must be (len(keys)={len(keys)}, G), got {tuple(rewards.shape)}")
        batch_mean = rewards.mean()
        batch_std = torch.sqrt(rewards.var(unbiased=False) + self.eps)
        out = torch.empty_like(rewards)
        for i, key in enumerate(keys):
            hist = self._history.setdefault(key, deque(maxlen=self.buffer_size))
            hist.extend(rewards[i].tolist())
            if len(hist) < self.min_count:
                mean, std = batch_mean, batch_std
            else:
                h = torch.tensor(list(hist), dtype=rewards.dtype)
                if self.with_batch:
                    h = torch.cat([h, rewards.flatten()])
                mean, std = h.mean(), torch.sqrt(h.var(unbiased=False) + self.eps)
            out[i] = (rewards[i] - mean) / std
        return out

    def state_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self._history.items()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        self._history = {k: deque(v, maxlen=self.buffer_size) for k, v in state.items()}
