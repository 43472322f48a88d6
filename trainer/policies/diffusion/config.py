"""Typed configuration of the diffusion policy family (a `policy:` section once hooked into TrainConfig).

Defaults: DDPO (eta 1.0, per-step PPO ratio, clip 1e-4) and the seed papers (method.md,
"Diffusion restorers as policies"). The tiny preset (`DIFFUSION_TINY`) trains on a 2-core CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DiffusionRLConfig(_Section):
    """How the denoising chain is trained as a policy (DDPO) with the options of seeds 2 and 3."""

    clip_eps: float = Field(1e-4, gt=0, description="PPO clip range of the per-step ratio (DDPO: 1e-4; the per-step log-density is a mean over dimensions, so ratios stay near 1).")
    adv_clip: float = Field(5.0, gt=0, description="Advantages are clipped to [-adv_clip, adv_clip] (DDPO: 5).")
    kl_coef: float = Field(0.01, ge=0, description="Weight of the per-step KL to the frozen reference, closed form between the step Gaussians (flow_grpo: 0.01-0.04).")
    reward_at: Literal["final", "stepwise"] = Field("final", description="'final': every step gets the advantage of the final output's reward; 'stepwise' (seed 2): each step gets the advantage of the first scored estimate at or after it (see reward_steps).")
    reward_steps: list[int] = Field(default_factory=list, description="Sampling steps (0-based, the first is the noisiest) whose estimate after the action is also scored when reward_at='stepwise'; the final output is always scored.")
    step_reward_on: Literal["x0_hat", "x_prev"] = Field("x0_hat", description="What an intermediate step's reward scores: 'x0_hat' (seed 2's enhanced target): the denoised estimate of x_{t-1} by one extra denoising step, which the next step computes anyway; 'x_prev': the plain noisy x_{t-1}.")
    noise_level_weighting: Literal["uniform", "linear", "snr"] = Field("uniform", description="Seed 3 (LRPO) noise-level advantage assignment, each step's advantage times a weight normalised to mean 1 over the stochastic steps: 'uniform' 1; 'linear' proportional to t / T_train (noisier steps weigh more); 'snr' proportional to alpha_bar_t / (1 - alpha_bar_t) (cleaner, detail-setting steps weigh more).")
    adaptive_weighting: bool = Field(False, description="Seed 2's automatic weight w_i = ||y_i - g_i|| / max_j ||y_j - g_j|| (y_i: the deterministic output of image i): loss = sum (1 - w_i) L_diff + sum w_i L_RL + L_KL.")
    sft_coef: float = Field(1.0, ge=0, description="Weight of the diffusion loss L_diff (epsilon MSE on the ground truth) in the RL objective; with adaptive_weighting it is scaled per image by 1 - w_i. 0 = RL only.")
    gt_likelihood_coef: float = Field(0.0, ge=0, description="Seed 3 (LRPO) ground-truth-guided likelihood regularisation: minus this times the per-step log-density of the GT-consistent step mean (the DDIM posterior mean of q(x_{t-1} | x_t, x_0 = GT)) under the current policy.")


class DiffusionConfig(_Section):
    """A conditional denoising U-Net (diffusers UNet2DModel) that restores by sampling from noise."""

    kind: Literal["diffusion"] = Field("diffusion", description="Policy family; 'diffusion' selects this section.")
    pretrained: Path | None = Field(None, description="A local diffusers folder (UNet2DModel.save_pretrained layout: config.json + weights) to load; never a hub id. None = build from the fields below with RANDOM weights (logged).")
    space: Literal["pixel"] = Field("pixel", description="Where the chain runs: 'pixel' (images mapped to [-1, 1]); a latent space with a VAE plugs in at trainer/policies/diffusion/codec.py.")
    block_out_channels: list[int] = Field([16, 32, 64], min_length=1, description="U-Net channels per resolution level (tiny CPU preset: 16, 32, 64, about 0.64 M parameters).")
    layers_per_block: int = Field(1, ge=1, description="ResNet layers per U-Net block.")
    attention: bool = Field(False, description="Self-attention blocks at the lowest resolution (AttnDownBlock2D/AttnUpBlock2D); off in the tiny preset.")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups; must divide every entry of block_out_channels.")
    train_timesteps: int = Field(1000, ge=2, description="T of the DDPM training schedule.")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field("linear", description="DDPM beta schedule (diffusers names).")
    prediction_type: Literal["epsilon", "v_prediction"] = Field("epsilon", description="What the U-Net predicts: the noise epsilon (DDPM/DDPO) or v = sqrt(a) eps - sqrt(1 - a) x_0.")
    sampling_steps: int = Field(10, ge=2, description="DDIM steps per sample (flow_grpo: 10 in training); the last goes to t = 0 without noise and carries no log-density.")
    eta: float = Field(1.0, gt=0, le=1, description="DDIM eta: step noise sigma_t = eta * sqrt(DDPM posterior variance); > 0 makes every step a Gaussian policy (DDPO: 1.0).")
    clip_x0: bool = Field(True, description="Clamp the predicted clean image to [-1, 1] inside each step (diffusers clip_sample).")
    logprob_reduction: Literal["mean", "sum"] = Field("mean", description="Per-step log-density over the C*H*W dimensions: 'mean' (DDPO, resolution-independent ratios and KL) or 'sum' (the exact joint log-density).")
    rl: DiffusionRLConfig = Field(default_factory=DiffusionRLConfig)

    @model_validator(mode="after")
    def _check_groups(self) -> "DiffusionConfig":
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups={self.norm_num_groups} does not divide block_out_channels {bad}")
        if self.sampling_steps > self.train_timesteps:
            raise ValueError(f"sampling_steps={self.sampling_steps} exceeds train_timesteps={self.train_timesteps}")
        bad_steps = [s for s in self.rl.reward_steps if not 0 <= s < self.sampling_steps - 1]
        if bad_steps:
            raise ValueError(f"rl.reward_steps {bad_steps} must lie in [0, sampling_steps - 1) = [0, {self.sampling_steps - 1}): the last step is the final output")
        return self


# The values to copy into a YAML `policy:` section for the CPU demo and tests.
DIFFUSION_TINY = dict(block_out_channels=[16, 32, 64], layers_per_block=1, norm_num_groups=8, sampling_steps=10)
