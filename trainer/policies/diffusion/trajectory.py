"""What one batched sampling call records (a Trajectory of the policy interface)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch import Tensor


@dataclass
class DiffusionTrajectory:
    """The denoising chain of N rows over K DDIM steps (K - 1 stochastic ones, then a noiseless step).

    Step k goes from latents[:, k] at timesteps[k] to latents[:, k + 1]; latents[:, 0] is the
    starting noise x_T and latents[:, K] the output x_0. Everything is float32.
    """

    latents: Tensor  # (N, K + 1, C, h, w)
    timesteps: Tensor  # (K,) long, descending
    log_prob: Tensor  # (N, K - 1): log N(latents[:, k+1]; mu_k, sigma_k^2 I) under the sampling policy
    estimates: Tensor  # (N, R, 3, H, W): images scored for step-wise rewards (R = len(estimate_steps)), in [0, 1]
    estimate_steps: Tensor  # (R,) long: the sampling step whose action produced each estimate
    # (N, 3, h, w): the x4 upscaler's draw that noised each row's low-resolution condition (None without one);
    # re-evaluation must see the same condition the rollout saw
    cond_noise: Tensor | None = None

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.numel())

    def to(self, device: torch.device | str) -> "DiffusionTrajectory":
        noise = None if self.cond_noise is None else self.cond_noise.to(device)
        return replace(self, latents=self.latents.to(device), log_prob=self.log_prob.to(device), estimates=self.estimates.to(device), cond_noise=noise)

    def rows(self, start: int, stop: int) -> "DiffusionTrajectory":
        noise = None if self.cond_noise is None else self.cond_noise[start:stop]
        return replace(self, latents=self.latents[start:stop], log_prob=self.log_prob[start:stop], estimates=self.estimates[start:stop], cond_noise=noise)

    @classmethod
    def cat(cls, parts: Sequence["DiffusionTrajectory"]) -> "DiffusionTrajectory":
        first = parts[0]
        for p in parts[1:]:
            if not (torch.equal(p.timesteps, first.timesteps) and torch.equal(p.estimate_steps, first.estimate_steps)):
                raise ValueError("trajectories of one step must share timesteps and estimate steps")
        return replace(
            first,
            latents=torch.cat([p.latents for p in parts]),
            log_prob=torch.cat([p.log_prob for p in parts]),
            estimates=torch.cat([p.estimates for p in parts]),
            cond_noise=None if first.cond_noise is None else torch.cat([p.cond_noise for p in parts]),
        )
