"""The stochastic DDIM step as a Gaussian policy: pure functions of (model output, x_t, alphas).

Song et al.'s DDIM with eta > 0: from x_t at alpha_bar a_t to the previous timestep (a_prev),
    x0_hat = (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t)             (epsilon prediction)
    sigma  = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
    mu     = sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps_hat
    x_prev = mu + sigma z,  z ~ N(0, I)
so log p(x_prev | x_t) is the log-density of N(mu, sigma^2 I), exact (DDPO). With a_prev = 1
(the last step to t = 0) sigma is 0: that step is deterministic and no action.
The schedule's alphas come from diffusers' DDIMScheduler (trainer/policies/diffusion/schedule.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Reduction = Literal["mean", "sum"]
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass
class StepGaussian:
    mean: Tensor  # (N, C, h, w)
    std: Tensor  # (N, 1, 1, 1), broadcasts over the sample
    x0: Tensor  # (N, C, h, w) predicted clean sample (clamped when asked)
    eps: Tensor  # (N, C, h, w) predicted noise
    x0_raw: Tensor  # (N, C, h, w) x0 before the clamp (the same tensor without one)


def _col(a: Tensor, like: Tensor) -> Tensor:
    """Per-row scalars (N,) or one scalar as (N, 1, 1, 1) against a (N, C, h, w) sample, in float32."""
    a = torch.as_tensor(a, dtype=torch.float32, device=like.device)
    return a.reshape(-1, *([1] * (like.dim() - 1))).expand(like.shape[0], *([1] * (like.dim() - 1)))


def split_prediction(model_out: Tensor, x_t: Tensor, a_t: Tensor, prediction_type: str) -> tuple[Tensor, Tensor]:
    """(x0_hat, eps_hat) from the U-Net output: 'epsilon' predicts the noise, 'v_prediction' v = sqrt(a) eps - sqrt(1-a) x0,
    'sample' the clean sample x0 itself (diffusers' names)."""
    a = _col(a_t, x_t)
    if prediction_type == "sample":
        return model_out, (x_t - a.sqrt() * model_out) / (1 - a).sqrt()
    if prediction_type == "epsilon":
        eps = model_out
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt(), eps
    if prediction_type == "v_prediction":
        return a.sqrt() * x_t - (1 - a).sqrt() * model_out, a.sqrt() * model_out + (1 - a).sqrt() * x_t
    raise ValueError(f"unknown prediction_type {prediction_type!r} (choose 'epsilon', 'v_prediction' or 'sample')")


def ddim_std(a_t: Tensor, a_prev: Tensor, eta: float) -> Tensor:
    """sigma_t = eta * sqrt of the DDPM posterior variance between the two timesteps."""
    a_t, a_prev = torch.as_tensor(a_t, dtype=torch.float32), torch.as_tensor(a_prev, dtype=torch.float32)
    var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    return eta * var.clamp_min(0).sqrt()


def ddim_mean(x0: Tensor, eps: Tensor, a_prev: Tensor, std: Tensor) -> Tensor:
    a = _col(a_prev, x0)
    return a.sqrt() * x0 + (1 - a - std**2).clamp_min(0).sqrt() * eps


def ddim_step(model_out: Tensor, x_t: Tensor, a_t: Tensor, a_prev: Tensor, eta: float, prediction_type: str, clip_x0: bool,
              origin: Tensor | None = None) -> StepGaussian:
    """The step's Gaussian N(mu, sigma^2 I). As in diffusers, a clamp of x0_hat leaves eps_hat as predicted.

    `origin` (N, C, h, w): the chain runs on x - origin (a residual around the condition); the clamp then keeps
    the image origin + x0_hat in [-1, 1]. None: the chain runs on the image itself."""
    model_out, x_t = model_out.float(), x_t.float()
    x0_raw, eps = split_prediction(model_out, x_t, a_t, prediction_type)
    x0 = x0_raw
    if clip_x0:
        x0 = x0_raw.clamp(-1, 1) if origin is None else (x0_raw + origin).clamp(-1, 1) - origin
    std = _col(ddim_std(a_t, a_prev, eta).to(x_t.device), x_t)
    return StepGaussian(ddim_mean(x0, eps, a_prev, std), std, x0, eps, x0_raw)


def gt_step_mean(x_t: Tensor, x0_gt: Tensor, a_t: Tensor, a_prev: Tensor, std: Tensor) -> Tensor:
    """Mean of DDIM's posterior q_sigma(x_prev | x_t, x_0 = GT): the step a perfect denoiser would take.

    It is ddim_mean with x0_hat = GT and eps_hat = the noise that x_t holds given GT,
    (x_t - sqrt(a_t) GT) / sqrt(1 - a_t) (Song et al., eq. 7).
    """
    a = _col(a_t, x_t)
    eps = (x_t - a.sqrt() * x0_gt) / (1 - a).sqrt()
    return ddim_mean(x0_gt, eps, a_prev, std)


def _reduce(per_element: Tensor, reduction: Reduction) -> Tensor:
    """Per-row mean (float32) or sum (float64) of float64 elements. A float32 sum over C*H*W terms of a
    few nats each moves by 1e-4 or more with the summation order alone: the size of DDPO's clip range."""
    flat = per_element.flatten(1)
    if reduction == "mean":
        return flat.mean(dim=1).float()
    if reduction == "sum":
        return flat.sum(dim=1)
    raise ValueError(f"unknown reduction {reduction!r} (choose 'mean' or 'sum')")


def gaussian_log_density(x: Tensor, mean: Tensor, std: Tensor, reduction: Reduction = "mean") -> Tensor:
    """(N,) log N(x; mean, std^2 I), averaged over the sample's dimensions (DDPO, float32) or summed (float64)."""
    x, mean, std = x.double(), mean.double(), std.double()
    if bool((std <= 0).any()):
        raise ValueError("the step has zero noise (sigma = 0): a deterministic step has no log-density")
    per_element = -((x - mean) ** 2) / (2 * std**2) - std.log() - _HALF_LOG_2PI
    return _reduce(per_element, reduction)


def gaussian_kl_same_std(mean: Tensor, ref_mean: Tensor, std: Tensor, reduction: Reduction = "mean") -> Tensor:
    """(N,) KL(N(mean, s^2 I) || N(ref_mean, s^2 I)) = ||mean - ref_mean||^2 / (2 s^2), reduced like the log-density."""
    return _reduce((mean.double() - ref_mean.double()) ** 2 / (2 * std.double() ** 2), reduction)


def _gt_k(a_t: Tensor, a_prev: Tensor, std: Tensor) -> Tensor:
    """k = sqrt(a_prev) - sqrt(1 - a_prev - sigma^2) sqrt(a_t / (1 - a_t)) per row, in float64: with
    eps_hat = (x_t - sqrt(a_t) x0_raw) / sqrt(1 - a_t) (any parameterisation), mu - mu_GT = k (x0_raw - GT)
    + sqrt(a_prev) (x0_hat - x0_raw), the second term being the clamp's."""
    a_t, a_prev, std = (torch.as_tensor(v, dtype=torch.float64).flatten() for v in (a_t, a_prev, std))
    return a_prev.sqrt() - (1 - a_prev - std**2).clamp_min(0).sqrt() * (a_t / (1 - a_t)).sqrt()


def gt_step_weight(a_t: Tensor, a_prev: Tensor, std: Tensor) -> Tensor:
    """Per-row weight w = k^2 / (2 sigma^2) of (x0_hat - GT)^2 in the per-dimension log-density of the GT step
    (k: _gt_k, no x0 clamp). Over T = 1000, 10 steps, eta 1, w grows from ~1e-4 at t = 999 to ~3 at the last
    stochastic step."""
    return _gt_k(a_t, a_prev, std) ** 2 / (2 * torch.as_tensor(std, dtype=torch.float64).flatten() ** 2)


def gt_step_kl_per_weight(x0_raw: Tensor, x0: Tensor, x0_gt: Tensor, a_t: Tensor, a_prev: Tensor, std: Tensor,
                          reduction: Reduction = "mean") -> Tensor:
    """(N,) KL(N(mu_GT, s^2) || N(mu, s^2)) / gt_step_weight, from the x0 errors rather than the step means.

    It equals ||(x0_raw - GT) + sqrt(a_prev) / k (x0_hat - x0_raw)||^2 (reduced), the squared x0 error without a
    clamp. Taking the difference of the float32 means and dividing by k (~1e-2 at t = 999) would amplify their
    rounding: 4e-4 relative error at the first step once x0_hat is within 1e-3 of GT."""
    k = _gt_k(a_t, a_prev, std).to(x0.device)
    a_prev = torch.as_tensor(a_prev, dtype=torch.float64, device=x0.device).flatten()
    clamp_shift = (a_prev.sqrt() / k).view(-1, *([1] * (x0.dim() - 1))) * (x0.double() - x0_raw.double())
    return _reduce((x0_raw.double() - x0_gt.double() + clamp_shift) ** 2, reduction)
