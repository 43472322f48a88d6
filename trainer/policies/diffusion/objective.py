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
from trainer.grpo.step_losses import StepLossCoefs
from trainer.policies.diffusion.ddim import gaussian_log_density, gt_step_kl_per_weight, gt_step_mean
from trainer.policies.diffusion.policy import DiffusionEvaluation, DiffusionPolicy
from trainer.policies.diffusion.trajectory import DiffusionTrajectory

Normalise = Callable[[list[str], Tensor], Tensor]  # (keys, (B, G) rewards) -> (B, G) advantages


def step_advantages(ids: list[str], rewards: Tensor, estimate_rewards: Tensor | None, trajectory: DiffusionTrajectory,
                    policy: DiffusionPolicy, rl: DiffusionRLConfig, normalise: Normalise, final: Tensor | None = None) -> Tensor:
    """(N, S) advantage of every stochastic step: rewards (B, G) of the final outputs and estimate_rewards
    (B, G, R) of the estimates at trajectory.estimate_steps are normalised per column and clipped to
    adv_clip, each step is credited by rl.step_credit, then times the noise-level weight of its timestep.
    `final`: (B, G) advantages of the final outputs computed elsewhere (per-term normalisation; final reward only).
    The clip comes before the weights: it bounds outlying rewards, and clipping after would cut the
    steps the weighting favours most (under 'snr' the last step's weight reaches ~6)."""
    if final is not None:
        if estimate_rewards is not None:
            raise ValueError("precomputed final advantages exclude step-wise estimate rewards")
        columns = final.reshape(-1, 1)
    else:
        table = rewards[:, :, None] if estimate_rewards is None else torch.cat([estimate_rewards, rewards[:, :, None]], dim=2)
        columns = column_advantages(ids, table, trajectory.estimate_steps, normalise)
    columns = columns.clamp(-rl.adv_clip, rl.adv_clip)
    s = trajectory.log_prob.shape[1]
    per_step = assign_to_steps(columns, trajectory.estimate_steps, s, rl.step_credit)
    t = trajectory.timesteps[:s]
    weights = noise_level_weights(t, policy.schedule.alpha_bar(t), policy.schedule.train_timesteps, rl.noise_level_weighting)
    return per_step * weights.to(per_step)


def train_steps(num_stochastic: int, rl: DiffusionRLConfig, update: int, generator: torch.Generator) -> Tensor:
    """(S',) increasing indices of the stochastic steps that enter update `update`'s loss (rl.train_step_fraction and
    rl.train_step_selection); all num_stochastic steps at fraction 1. `generator` draws the 'random' subset."""
    n = max(1, int(rl.train_step_fraction * num_stochastic))
    if n >= num_stochastic:
        return torch.arange(num_stochastic)
    if rl.train_step_selection == "random":
        return torch.randperm(num_stochastic, generator=generator)[:n].sort().values
    start = update % (num_stochastic - n + 1)
    return torch.arange(start, start + n)


def step_loss_coefs(rl: DiffusionRLConfig, reduction: str, trajectory: DiffusionTrajectory) -> StepLossCoefs:
    """The loss weights; under logprob_reduction 'sum' the ratio is clipped to the joint image of the per-dimension
    trust region, (1 +- clip_eps)^D over the D = C*h*w dimensions the log-density sums (kl_coef stays: the
    surrogate's and the KL's gradients both grow by D, so their balance is that of 'mean')."""
    dims = trajectory.latents[0, 0].numel() if reduction == "sum" else 1
    return StepLossCoefs(clip_eps=rl.clip_eps, kl=rl.kl_coef, sft=rl.sft_coef, gt_likelihood=rl.gt_likelihood_coef, clip_dims=dims)


def gt_step_log_prob(policy: DiffusionPolicy, x: Tensor, target: Tensor, trajectory: DiffusionTrajectory, evaluation: DiffusionEvaluation) -> Tensor:
    """(N, S) LRPO's likelihood term: the log-density, under the evaluated step Gaussians, of the step a perfect
    denoiser would take from the recorded x_t towards the ground truth (DDIM's posterior mean given x_0 = GT).

    Under rl.gt_likelihood_norm 'per_step' it is taken relative to the density's peak and divided by the step's
    weight on (x0_hat - GT)^2 (ddim.gt_step_weight): minus the squared error of x0_hat, equal for every step,
    computed from the x0 errors themselves (ddim.gt_step_kl_per_weight) for float32 accuracy."""
    n, s = evaluation.log_prob.shape
    steps = evaluation.steps
    x0 = policy.chain_x0(x, target).repeat_interleave(n // target.shape[0], dim=0).repeat_interleave(s, dim=0)
    t = trajectory.timesteps[steps]
    a_t = policy.schedule.alpha_bar(t).repeat(n)
    a_prev = policy.schedule.alpha_bar(policy.schedule.prev_timesteps(trajectory.timesteps)[steps]).repeat(n)
    std = evaluation.std.flatten(0, 1)
    if policy.cfg.rl.gt_likelihood_norm == "per_step":
        # log p - log p(peak) = -KL between the two same-std Gaussians, over the step's weight
        per_step = -gt_step_kl_per_weight(evaluation.x0_raw.flatten(0, 1), evaluation.x0.flatten(0, 1), x0, a_t, a_prev, std,
                                          evaluation.reduction)
        return per_step.to(evaluation.log_prob.dtype).view(n, s)
    x_t = trajectory.latents[:, steps].to(evaluation.mean).flatten(0, 1)
    mean_gt = gt_step_mean(x_t, x0, a_t, a_prev, std)
    return gaussian_log_density(mean_gt, evaluation.mean.flatten(0, 1), std, evaluation.reduction).view(n, s)
