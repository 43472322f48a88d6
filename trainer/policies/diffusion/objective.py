"""What the learner needs of the diffusion family beyond the interface: per-step advantages (step-wise
rewards, noise-level weights, clip) and LRPO's ground-truth step log-density. The loss itself is
trainer/grpo/step_losses.py.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from trainer.config import DiffusionRLConfig
from trainer.policies.diffusion.credit import assign_to_steps, column_advantages, noise_level_weights
from trainer.policies.diffusion.ddim import gaussian_log_density, gt_step_mean
from trainer.policies.diffusion.policy import DiffusionEvaluation, DiffusionPolicy
from trainer.policies.diffusion.trajectory import DiffusionTrajectory

Normalise = Callable[[list[str], Tensor], Tensor]  # (keys, (B, G) rewards) -> (B, G) advantages


def step_advantages(ids: list[str], rewards: Tensor, estimate_rewards: Tensor | None, trajectory: DiffusionTrajectory,
                    policy: DiffusionPolicy, rl: DiffusionRLConfig, normalise: Normalise) -> Tensor:
    """(N, S) advantage of every stochastic step: rewards (B, G) of the final outputs and estimate_rewards
    (B, G, R) of the estimates at trajectory.estimate_steps are normalised per column, each step takes
    the column its action leads to, times the noise-level weight of its timestep, clipped to adv_clip."""
    table = rewards[:, :, None] if estimate_rewards is None else torch.cat([estimate_rewards, rewards[:, :, None]], dim=2)
    columns = column_advantages(ids, table, trajectory.estimate_steps, normalise)
    s = trajectory.log_prob.shape[1]
    per_step = assign_to_steps(columns, trajectory.estimate_steps, s)
    t = trajectory.timesteps[:s]
    weights = noise_level_weights(t, policy.schedule.alpha_bar(t), policy.schedule.train_timesteps, rl.noise_level_weighting)
    return (per_step * weights.to(per_step)).clamp(-rl.adv_clip, rl.adv_clip)


def gt_step_log_prob(policy: DiffusionPolicy, x: Tensor, target: Tensor, trajectory: DiffusionTrajectory, evaluation: DiffusionEvaluation) -> Tensor:
    """(N, S) log-density, under the evaluated step Gaussians, of the step a perfect denoiser would take from
    the recorded x_t towards the ground truth (DDIM's posterior mean given x_0 = GT): LRPO's likelihood term."""
    n, s = evaluation.log_prob.shape
    steps = evaluation.steps
    x_t = trajectory.latents[:, steps].to(evaluation.mean).flatten(0, 1)
    x0 = policy.chain_x0(x, target).repeat_interleave(n // target.shape[0], dim=0).repeat_interleave(s, dim=0)
    t = trajectory.timesteps[steps]
    a_t = policy.schedule.alpha_bar(t).repeat(n)
    a_prev = policy.schedule.alpha_bar(policy.schedule.prev_timesteps(trajectory.timesteps)[steps]).repeat(n)
    std = evaluation.std.flatten(0, 1)
    mean_gt = gt_step_mean(x_t, x0, a_t, a_prev, std)
    return gaussian_log_density(mean_gt, evaluation.mean.flatten(0, 1), std, evaluation.reduction).view(n, s)
