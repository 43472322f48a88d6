"""The GRPO objective of IRPO as pure functions: tensors in, tensors out.

Shapes: N = B * G candidates, image-major (candidate j of image i sits at i * G + j).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Beta, kl_divergence


def linear_anneal(start: float, end: float, step: int, total_steps: int) -> float:
    """Linear schedule from `start` at step 0 to `end` at step total_steps - 1, constant after."""
    if total_steps <= 1:
        return end
    frac = min(max(step, 0) / (total_steps - 1), 1.0)
    return start + (end - start) * frac


def ppo_clip_objective(log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_eps: float,
                       dims: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample PPO clipped surrogate loss -min(rho A, clip(rho, (1-eps)^dims, (1+eps)^dims) A).

    `old_log_prob` must be what the sampling policy recorded: re-computing it from the current
    policy (the authors' defect) makes rho == 1 and the clip inert. `dims` > 1 when log_prob sums
    that many dimensions whose per-dimension ratio the trust region 1 +- eps is meant for.
    Returns (loss (N,), ratio (N,), clipped mask (N,) where the clipped branch was taken).
    """
    ratio = torch.exp(log_prob - old_log_prob.detach())
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, (1.0 - clip_eps) ** dims, (1.0 + clip_eps) ** dims) * advantages
    loss = -torch.minimum(unclipped, clipped)
    return loss, ratio.detach(), (clipped < unclipped).detach()


def beta_kl(alpha: torch.Tensor, beta: torch.Tensor, ref_alpha: torch.Tensor, ref_beta: torch.Tensor) -> torch.Tensor:
    """KL(pi || pi_ref) summed over the action dimensions, closed form between Beta distributions.

    Both parameter sets must come from the same trajectory (the reference evaluated on the actions
    the policy took), so later heads see the same upstream actions.
    """
    return kl_divergence(Beta(alpha, beta), Beta(ref_alpha.detach(), ref_beta.detach())).sum(dim=-1)


def best_candidate_index(rewards: torch.Tensor) -> torch.Tensor:
    """Flat index (into N) of the highest-reward candidate of each image; rewards is (B, G)."""
    b, g = rewards.shape
    return torch.arange(b, device=rewards.device) * g + rewards.argmax(dim=1)


def per_image_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs().flatten(1).mean(dim=1)


def difficulty_weights(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """w_i = ||y_i - g_i|| / max_j ||y_j - g_j|| over the batch (difficulty-adaptive paper); no gradient."""
    err = torch.linalg.vector_norm((prediction - target).detach().flatten(1), dim=1)
    return err / err.max().clamp_min(1e-12)


def mix_rl_and_sft(rl_per_image: torch.Tensor, sft_per_image: torch.Tensor, sample_weights: torch.Tensor | None) -> torch.Tensor:
    """(B,) per-image loss: RL + SFT, or with difficulty weights w (B,): w RL + (1 - w) SFT (seed 2)."""
    if sample_weights is None:
        return rl_per_image + sft_per_image
    return sample_weights * rl_per_image + (1.0 - sample_weights) * sft_per_image


def ratio_stats(ratio: torch.Tensor, clipped: torch.Tensor) -> dict[str, float]:
    """Mean, max and min of the PPO ratio and the fraction where the clip acted (any shape)."""
    return {
        "ratio/mean": ratio.mean().item(),
        "ratio/max": ratio.max().item(),
        "ratio/min": ratio.min().item(),
        "clip_fraction": clipped.float().mean().item(),
    }


@dataclass(frozen=True)
class LossCoefs:
    clip_eps: float
    kl: float
    entropy: float
    sup: float
    cons: float


def grpo_loss(
    *,
    log_prob: torch.Tensor,
    old_log_prob: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    kl: torch.Tensor,
    best_images: torch.Tensor,
    target: torch.Tensor,
    deterministic: torch.Tensor,
    coefs: LossCoefs,
    sample_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total IRPO loss and its logged parts.

    log_prob, old_log_prob, advantages, entropy, kl: (N,); best_images, target, deterministic: (B, 3, H, W).
    L = L_PPO - tau H + beta_KL KL + lambda_sup L1(best, GT) + lambda_cons L1(deterministic, best).
    The consistency term pulls the deterministic (inference) output towards the best candidate,
    which is held fixed there, so it cannot drag the candidate back to the mean.
    With `sample_weights` w (B,), image i's RL part (surrogate and entropy) is scaled by w_i and its
    supervised part by 1 - w_i; the KL stays unweighted.
    """
    b = target.shape[0]
    n = log_prob.shape[0]
    if n % b:
        raise ValueError(f"{n} candidates do not split into {b} images")
    surrogate, ratio, clipped = ppo_clip_objective(log_prob, old_log_prob, advantages, coefs.clip_eps)
    rl_per_image = (surrogate - coefs.entropy * entropy).view(b, -1).mean(dim=1)
    sup = per_image_l1(best_images, target)
    cons = per_image_l1(deterministic, best_images.detach())
    weighted = mix_rl_and_sft(rl_per_image, coefs.sup * sup + coefs.cons * cons, sample_weights)
    loss = weighted.mean() + coefs.kl * kl.mean()
    stats = {
        "loss/total": loss.item(),
        "loss/ppo": surrogate.mean().item(),
        "loss/sup_l1": sup.mean().item(),
        "loss/cons_l1": cons.mean().item(),
        "kl": kl.mean().item(),
        "entropy": entropy.mean().item(),
        **ratio_stats(ratio, clipped),
        "coef/sup": coefs.sup,
        "coef/cons": coefs.cons,
    }
    if sample_weights is not None:
        stats["adaptive_weight/mean"] = sample_weights.mean().item()
    return loss, stats
