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
            # chain with the noiseless jump from about T / K - 1 to the clean sample. 'leading' would start at T - T / K and
            # make the last action a step into t = 0 with sigma ~ 0.01: it moves the output by
            # almost nothing, yet its score z / sigma dominates the policy gradient's variance.
            timestep_spacing="trailing",
        )
        self.train_timesteps = int(self.scheduler.config.num_train_timesteps)
        self.prediction_type = str(self.scheduler.config.prediction_type)
        self.clip_x0 = bool(self.scheduler.config.clip_sample)
        self.strength = cfg.start_strength
        # the chain's first timestep + 1 (T at strength 1): pre-training draws t below it
        self.start_timesteps = max(1, round(cfg.start_strength * self.train_timesteps))
        self.alphas_cumprod = self.scheduler.alphas_cumprod.float()

    def timesteps(self, num_steps: int) -> Tensor:
        """(K,) descending DDIM timesteps; step k goes from timesteps[k] to prev_timesteps[k]. At strength 1 diffusers'
        trailing spacing over T; below it the same spacing over strength * T (from strength * T - 1 down)."""
        if self.strength == 1.0:
            self.scheduler.set_timesteps(num_steps)
            return self.scheduler.timesteps.clone().long()
        if num_steps > self.start_timesteps:
            raise ValueError(f"{num_steps} sampling steps do not fit below t = {self.start_timesteps} (start_strength {self.strength})")
        span = self.start_timesteps
        return torch.tensor([round(span - k * span / num_steps) - 1 for k in range(num_steps)], dtype=torch.long)

    @staticmethod
    def prev_timesteps(timesteps: Tensor) -> Tensor:
        """The timestep each DDIM step lands on: the next step's t, and -1 (the clean sample) after the last.

        diffusers' DDIMScheduler.step uses t - T // K instead, which misses the next t by one when K does
        not divide T and can land the last step on t = 0, where sigma ~ 0.01 is not zero."""
        return torch.cat([timesteps[1:], timesteps.new_full((1,), -1)])

    def alpha_bar(self, t: Tensor) -> Tensor:
        """alpha_bar at integer timesteps; negative t (past the last step) is 1 (set_alpha_to_one)."""
        t = torch.as_tensor(t).long()
        out = self.alphas_cumprod[t.clamp_min(0)]
        return torch.where(t >= 0, out, torch.ones_like(out))

    def add_noise(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """q(x_t | x_0) draw: sqrt(a_t) x_0 + sqrt(1 - a_t) noise (diffusers' add_noise)."""
        return self.scheduler.add_noise(x0, noise, t.to(x0.device))

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
        """What the U-Net is trained to output: the noise, x_0 itself ('sample'), or v (diffusers' get_velocity)."""
        if self.scheduler.config.prediction_type == "epsilon":
            return noise
        if self.scheduler.config.prediction_type == "sample":
            return x0
        return self.scheduler.get_velocity(x0, noise, t.to(x0.device))
