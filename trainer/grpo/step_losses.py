"""The per-step GRPO objective of a multi-step policy (a diffusion chain, DDPO) as pure functions.

Shapes: N = B * G candidates, image-major; S action steps per candidate. Every step has its own PPO
ratio against the log-density the sampling policy recorded, its own advantage and its own KL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from trainer.grpo.losses import mix_rl_and_sft, ppo_clip_objective, ratio_stats

# Per-step statistics are logged over this many contiguous groups of steps (noisy ... clean).
STEP_GROUPS = 3


@dataclass(frozen=True)
class StepLossCoefs:
    clip_eps: float
    kl: float
    sft: float  # weight of L_SFT (the diffusion loss), per image times 1 - w_i under adaptive weighting
    gt_likelihood: float  # LRPO: weight of minus the log-density of the ground-truth-consistent step
    clip_dims: int = 1  # dimensions the log-density sums: the ratio is clipped to (1 +- clip_eps) ** clip_dims


def step_groups(num_steps: int, groups: int = STEP_GROUPS) -> list[tuple[int, int]]:
    """[start, end) of up to `groups` contiguous, near-equal groups of 0..num_steps-1."""
    bounds = torch.linspace(0, num_steps, min(groups, num_steps) + 1).round().long().tolist()
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def per_step_stats(ratio: Tensor, clipped: Tensor, kl: Tensor) -> dict[str, float]:
    """Mean ratio, clip fraction and KL per group of steps; ratio, clipped, kl are (N, S)."""
    out = {}
    for a, b in step_groups(ratio.shape[1]):
        name = f"steps{a}-{b - 1}"
        out[f"ratio/{name}/mean"] = ratio[:, a:b].mean().item()
        out[f"clip_fraction/{name}"] = clipped[:, a:b].float().mean().item()
        out[f"kl/{name}"] = kl[:, a:b].mean().item()
    return out


def step_grpo_loss(
    *,
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    kl: Tensor,
    sft_loss: Tensor,
    coefs: StepLossCoefs,
    gt_log_prob: Tensor | None = None,
    sample_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Total loss and its logged parts.

    log_prob, old_log_prob, advantages, kl, gt_log_prob: (N, S); sft_loss, sample_weights: (B,).
    L_RL,i is the PPO clipped surrogate averaged over image i's G candidates and S steps. Without
    sample_weights: loss = mean_i (L_RL,i + sft L_SFT,i) + kl mean KL - gt mean log p(GT step).
    With w (seed 2): mean_i (w_i L_RL,i + (1 - w_i) sft L_SFT,i) + the same KL and GT terms.
    """
    b = sft_loss.shape[0]
    n, s = log_prob.shape
    if n % b:
        raise ValueError(f"{n} candidates do not split into {b} images")
    for name, t in (("old_log_prob", old_log_prob), ("advantages", advantages), ("kl", kl)):
        if t.shape != (n, s):
            raise ValueError(f"{name} must be ({n}, {s}) like log_prob, got {tuple(t.shape)}")
    surrogate, ratio, clipped = ppo_clip_objective(log_prob, old_log_prob, advantages, coefs.clip_eps, coefs.clip_dims)
    weighted = mix_rl_and_sft(surrogate.view(b, -1).mean(dim=1), coefs.sft * sft_loss, sample_weights)
    loss = weighted.mean() + coefs.kl * kl.mean()
    stats = {
        "loss/ppo": surrogate.mean().item(),
        "loss/sft": sft_loss.mean().item(),
        "kl": kl.mean().item(),
        **ratio_stats(ratio, clipped),
        **per_step_stats(ratio, clipped, kl.detach()),
    }
    if gt_log_prob is not None:
        loss = loss - coefs.gt_likelihood * gt_log_prob.mean()
        stats["loss/gt_log_prob"] = gt_log_prob.mean().item()
    if sample_weights is not None:
        stats["adaptive_weight/mean"] = sample_weights.mean().item()
    stats["loss/total"] = loss.item()
    return loss, stats
