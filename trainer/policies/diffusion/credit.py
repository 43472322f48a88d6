"""Which advantage each denoising step gets: step-wise rewards (seed 2) and noise-level weights (seed 3).

Rewards of one rollout form a (B, G, R + 1) table: column r < R scores the estimate produced by
sampling step estimate_steps[r], column R the final output. Each column is normalised on its own
(group statistics, or the image's history with the batch), then every stochastic step is given
the advantage of the first scored estimate its action leads to.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from trainer.grpo.advantages import HistoryTracker, group_advantages

NoiseWeighting = Literal["uniform", "linear", "snr"]


def reward_keys(ids: list[str], estimate_steps: Tensor) -> list[list[str]]:
    """History keys per column: the final column uses the image id (shared with final-only runs)."""
    return [[f"{i}@step{int(s)}" for i in ids] for s in estimate_steps] + [list(ids)]


def column_advantages(ids: list[str], rewards: Tensor, estimate_steps: Tensor, normalise: Callable[[list[str], Tensor], Tensor]) -> Tensor:
    """(B, G, R + 1) rewards -> (B * G, R + 1) advantages, each column normalised by `normalise(keys, (B, G))`."""
    if rewards.dim() != 3 or rewards.shape[2] != estimate_steps.numel() + 1 or rewards.shape[0] != len(ids):
        raise ValueError(f"rewards must be (B={len(ids)}, G, R + 1 = {estimate_steps.numel() + 1}), got {tuple(rewards.shape)}")
    keys = reward_keys(ids, estimate_steps)
    cols = [normalise(keys[c], rewards[:, :, c]).flatten() for c in range(rewards.shape[2])]
    return torch.stack(cols, dim=1)


def group_normaliser(eps: float, normalize_std: bool = True) -> Callable[[list[str], Tensor], Tensor]:
    return lambda keys, r: group_advantages(r, eps, normalize_std)


def history_normaliser(tracker: HistoryTracker) -> Callable[[list[str], Tensor], Tensor]:
    return tracker.advantages


def assign_to_steps(advantages: Tensor, estimate_steps: Tensor, num_stochastic: int) -> Tensor:
    """(N, R + 1) column advantages -> (N, num_stochastic): step k takes the first column whose
    estimate step is >= k (the estimate its action leads to), the final column after the last one."""
    if estimate_steps.numel() == 0:  # final reward only: every step takes it
        return advantages[:, :1].expand(-1, num_stochastic)
    steps = torch.arange(num_stochastic)
    later = estimate_steps.view(1, -1) >= steps.view(-1, 1)  # (S, R)
    col = torch.where(later.any(dim=1), later.float().argmax(dim=1), torch.full_like(steps, estimate_steps.numel()))
    return advantages[:, col]


def noise_level_weights(timesteps: Tensor, alpha_bar: Tensor, train_timesteps: int, mode: NoiseWeighting) -> Tensor:
    """(S,) per-step advantage multipliers at the steps' timesteps, normalised to mean 1 (LRPO's assignment).

    'uniform': 1. 'linear': t / T, more weight on noisy (structure-setting) steps. 'snr': alpha_bar / (1 - alpha_bar),
    more weight on clean (detail-setting) steps; SNR spans orders of magnitude, so few steps dominate.
    """
    t = timesteps.float()
    if mode == "uniform":
        w = torch.ones_like(t)
    elif mode == "linear":
        w = (t + 1) / train_timesteps
    elif mode == "snr":
        a = alpha_bar.float()
        w = a / (1 - a).clamp_min(1e-12)
    else:
        raise ValueError(f"unknown noise_level_weighting {mode!r} (choose 'uniform', 'linear' or 'snr')")
    return w / w.mean()
