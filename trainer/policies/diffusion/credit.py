"""Which advantage each denoising step gets: step-wise rewards (seed 2) and noise-level weights (seed 3).

Rewards of one rollout form a (B, G, R + 1) table: column r < R scores the estimate produced by
sampling step estimate_steps[r], column R the final output. Each column is normalised on its own
(group statistics, or the image's history with the batch), then every stochastic step is credited
with a mix of the columns its action can influence (credit_matrix).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import Tensor

from trainer.grpo.advantages import HistoryTracker, group_advantages

NoiseWeighting = Literal["uniform", "linear", "snr"]
StepCredit = Literal["to_go", "next"]


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


def credit_matrix(estimate_steps: Tensor, num_stochastic: int, rule: StepCredit) -> Tensor:
    """(S, R + 1) weights, rows summing to 1, of the R estimate columns and the final column for each step.

    'to_go' (reward-to-go): step k gets the mean of the columns scored at or after it, the final one
    included (estimate_steps[r] >= k: the estimate after step estimate_steps[r] depends on step k's action).
    'next': step k gets only the first such column, the final one after the last estimate.
    """
    if rule not in ("to_go", "next"):
        raise ValueError(f"unknown step credit {rule!r} (choose 'to_go' or 'next')")
    steps = torch.arange(num_stochastic)
    later = torch.cat([estimate_steps.view(1, -1) >= steps.view(-1, 1), torch.ones(num_stochastic, 1, dtype=torch.bool)], dim=1)
    if rule == "next":
        first = later.float().argmax(dim=1)  # argmax takes the first True; the final column is always True
        later = torch.zeros_like(later).scatter_(1, first.view(-1, 1), True)
    m = later.float()
    return m / m.sum(dim=1, keepdim=True)


def assign_to_steps(advantages: Tensor, estimate_steps: Tensor, num_stochastic: int, rule: StepCredit) -> Tensor:
    """(N, R + 1) column advantages -> (N, num_stochastic) per-step advantages by credit_matrix."""
    return advantages @ credit_matrix(estimate_steps, num_stochastic, rule).to(advantages).T


def noise_level_weights(timesteps: Tensor, alpha_bar: Tensor, train_timesteps: int, mode: NoiseWeighting) -> Tensor:
    """(S,) per-step advantage multipliers at the steps' timesteps, normalised to mean 1 (LRPO's assignment).

    'uniform': 1. 'linear': t / T, more weight on noisy (structure-setting) steps. 'snr': alpha_bar / (1 - alpha_bar),
    more weight on clean (detail-setting) steps; SNR spans orders of magnitude, so few steps dominate.
    """
    t = timesteps.float()
    if mode == "uniform":
        w = torch.ones_like(t)
    elif mode == "linear":
        w = t / train_timesteps
    elif mode == "snr":
        a = alpha_bar.float()
        w = a / (1 - a).clamp_min(1e-12)
    else:
        raise ValueError(f"unknown noise_level_weighting {mode!r} (choose 'uniform', 'linear' or 'snr')")
    return w / w.mean()
