"""The noise schedule: diffusers' DDPM training schedule and DDIM's sampling timesteps.

diffusers' DDIMScheduler owns the alphas (beta schedule, T) and the timestep spacing; this class
only reads them so the step maths (ddim.py) can be exact and batched over rows and steps.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler
from torch import Tensor

from trainer.config import DiffusionConfig


class Schedule:
    def __init__(self, cfg: DiffusionConfig, scheduler_config: dict | None = None):
        """From the config's fields, or from a pipeline folder's scheduler config (its betas, T, prediction type
        and clip_sample; the overrides below still apply)."""
        if scheduler_config is None:
            scheduler_config = dict(num_train_timesteps=cfg.train_timesteps, beta_schedule=cfg.beta_schedule,
                                    prediction_type=cfg.prediction_type, clip_sample=cfg.clip_x0)
        self.scheduler = DDIMScheduler.from_config(
            scheduler_config,
            set_alpha_to_one=True,  # the last step lands on the clean sample: alpha_bar = 1, no noise
            # 'trailing' (Lin et al. 2024) starts at t = T - 1 (pure noise, as trained) and ends the
            # chain with the noiseless jump from T / K - 1. 'leading' would start at T - T / K and
            # make the last action a step into t = 0 with sigma ~ 0.01: it moves the output by
            # almost nothing, yet its score z / sigma dominates the policy gradient's variance.
            timestep_spacing="trailing",
        )
        self.train_timesteps = int(self.scheduler.config.num_train_timesteps)
        self.prediction_type = str(self.scheduler.config.prediction_type)
        self.clip_x0 = bool(self.scheduler.config.clip_sample)
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float()

    def timesteps(self, num_steps: int) -> Tensor:
        """(K,) descending DDIM timesteps (diffusers' spacing); step k goes from timesteps[k] to prev_timesteps[k]."""
        self.scheduler.set_timesteps(num_steps)
        return self.scheduler.timesteps.clone().long()

    def prev_timesteps(self, timesteps: Tensor) -> Tensor:
        """The timestep each DDIM step lands on (diffusers: t - T // K); -1 or below means the clean sample."""
        return timesteps - self.train_timesteps // len(timesteps)

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar at integer timesteps; negative t (past the last step) is 1 (set_alpha_to_one)."""
        t = torch.as_tensor(t).long()
        out = self.alphas_cumprod[t.clamp_min(0)]
        return torch.where(t >= 0, out, torch.ones_like(out))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """q(x_t | x_0) draw: sqrt(a_t) x_0 + sqrt(1 - a_t) noise (diffusers' add_noise)."""
        return self.scheduler.add_noise(x0, noise, t.to(x0.device))

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the U-Net is trained to output: the noise, or v (diffusers' get_velocity)."""
        if self.scheduler.config.prediction_type == "epsilon":
            return noise
        return self.scheduler.get_velocity(x0, noise, t.to(x0.device))
