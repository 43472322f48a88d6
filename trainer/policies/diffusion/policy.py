"""A conditional diffusion restorer as a policy (DDPO): every stochastic DDIM step is a Gaussian action.

The U-Net sees [x_t, encode(degraded)] on channels and predicts the noise (or v). Sampling runs
the K-step DDIM chain for all B * G rows in one batch and records the trajectory; evaluation
recomputes the K - 1 step Gaussians of a recorded chain in one batched U-Net call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.policies.diffusion.codec import build_codec
from trainer.config import DiffusionConfig
from trainer.policies.diffusion.ddim import StepGaussian, ddim_step, gaussian_kl_same_std, gaussian_log_density
from trainer.policies.diffusion.network import build_denoiser
from trainer.policies.diffusion.schedule import Schedule
from trainer.policies.diffusion.trajectory import DiffusionTrajectory
from trainer.policies.interface import ParameterGroup, PolicySample

# The deterministic (evaluation) chain starts from this fixed noise seed, so one input always
# gives one output.
DETERMINISTIC_SEED = 0


@dataclass
class DiffusionEvaluation:
    """Step Gaussians of a recorded trajectory under current parameters (rows N, evaluated steps S)."""

    log_prob: Tensor  # (N, S)
    mean: Tensor  # (N, S, C, h, w)
    std: Tensor  # (N, S, 1, 1, 1), fixed by the schedule
    x0: Tensor  # (N, S, C, h, w) predicted clean sample at each step's input
    steps: Tensor  # (S,) long: which stochastic steps were evaluated
    reduction: str
    entropy: None = None  # sigma is fixed by the schedule: the step entropy has no gradient

    def kl(self, reference: "DiffusionEvaluation") -> Tensor:
        """(N, S) closed-form KL to the reference's step Gaussians (same sigma): ||mu - mu_ref||^2 / (2 sigma^2)."""
        if not torch.equal(self.steps, reference.steps):
            raise ValueError("the reference evaluated other steps")
        n, s = self.log_prob.shape
        kl = gaussian_kl_same_std(self.mean.flatten(0, 1), reference.mean.detach().flatten(0, 1), self.std.flatten(0, 1), self.reduction)
        return kl.view(n, s)


class DiffusionPolicy(nn.Module):
    kind = "diffusion"

    def __init__(self, cfg: DiffusionConfig, load_weights: bool = True):
        super().__init__()
        self.cfg = cfg
        self.codec = build_codec(cfg.space)
        self.unet = build_denoiser(cfg, self.codec.channels, load_weights)
        self.schedule = Schedule(cfg)
        self._multiple = self.codec.downscale * 2 ** (len(self.unet.config.block_out_channels) - 1)
        rl = cfg.rl
        self.estimate_steps = torch.tensor(rl.reward_steps if rl.reward_at == "stepwise" else [], dtype=torch.long)

    # --- the step maths on the U-Net ---------------------------------------------------------
    def _condition(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected degraded images (B, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self._multiple or w % self._multiple:
            raise ValueError(f"image size {h}x{w} must be a multiple of {self._multiple} (the U-Net's downsampling)")
        return self.codec.encode(x.float())

    def _origin(self, cond: Tensor) -> Tensor | None:
        """What the chain's x_0 is measured from: the encoded condition (`residual`), or None (the image itself)."""
        return cond if self.cfg.residual else None

    def _gaussians(self, x_t: Tensor, t: Tensor, t_prev: Tensor, cond: Tensor, eta: float) -> StepGaussian:
        """The step Gaussians of M rows at once: x_t, cond (M, C, h, w); t, t_prev (M,) timesteps."""
        out = self.unet(torch.cat([x_t, cond], dim=1), t.to(x_t.device)).sample
        a_t = self.schedule.alpha_bar(t).to(x_t.device)
        a_prev = self.schedule.alpha_bar(t_prev).to(x_t.device)
        return ddim_step(out, x_t, a_t, a_prev, eta, self.cfg.prediction_type, self.cfg.clip_x0, self._origin(cond))

    def _start(self, noise: Tensor, cond: Tensor, t0: Tensor) -> Tensor:
        """The chain's first latent: the noise itself at strength 1 (x_T), else q(x_t0 | x_0 = the degraded image in the
        chain's frame), which is 0 under `residual`."""
        if self.schedule.strength == 1.0:
            return noise
        origin = self._origin(cond)
        x0 = torch.zeros_like(cond) if origin is not None else cond
        return self.schedule.add_noise(x0, noise, t0.expand(noise.shape[0]))

    def _image(self, latent: Tensor, cond: Tensor) -> Tensor:
        """Decode a latent of the chain's frame to an image."""
        origin = self._origin(cond)
        return self.codec.decode(latent if origin is None else latent + origin)

    def chain_x0(self, x: Tensor, target: Tensor) -> Tensor:
        """The clean sample the chain should reach for ground truth `target` (B, 3, H, W): its latent, minus the origin."""
        cond = self._condition(x)
        x0 = self.codec.encode(target.float())
        origin = self._origin(cond)
        return x0 if origin is None else x0 - origin

    def _noise(self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
        # drawn on the CPU: a seeded chain is the same on every device
        return torch.randn(shape, generator=generator).to(device)

    # --- the policy interface ----------------------------------------------------------------
    @torch.no_grad()
    def sample(self, x: Tensor, group_size: int, generator: torch.Generator | None = None) -> PolicySample:
        """G chains per image in one batch (rows b*G..b*G+G-1 are image b), with their trajectory."""
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        cond = self._condition(x).repeat_interleave(group_size, dim=0)
        n, k = cond.shape[0], self.cfg.sampling_steps
        timesteps = self.schedule.timesteps(k)
        prev = self.schedule.prev_timesteps(timesteps)
        # z[:, 0] is x_T, z[:, j] the noise of step j - 1
        z = self._noise((n, k, *cond.shape[1:]), generator, cond.device)
        latents, log_probs, estimates = [self._start(z[:, 0], cond, timesteps[0])], [], {}
        for j in range(k):
            g = self._gaussians(latents[-1], timesteps[j].expand(n), prev[j].expand(n), cond, self.cfg.eta)
            if j > 0 and j - 1 in self.estimate_steps:
                produced = g.x0 if self.cfg.rl.step_reward_on == "x0_hat" else latents[-1]
                estimates[j - 1] = self._image(produced, cond)
            if j < k - 1:
                latents.append(g.mean + g.std * z[:, j + 1])
                log_probs.append(gaussian_log_density(latents[-1], g.mean, g.std, self.cfg.logprob_reduction))
            else:
                latents.append(g.mean)  # the last step to t = 0 has sigma = 0: no action
        h, w = x.shape[-2:]
        est = [estimates[int(s)] for s in self.estimate_steps]
        traj = DiffusionTrajectory(
            latents=torch.stack(latents, dim=1),
            timesteps=timesteps,
            log_prob=torch.stack(log_probs, dim=1),
            estimates=torch.stack(est, dim=1) if est else cond.new_zeros((n, 0, 3, h, w)),
            estimate_steps=self.estimate_steps.clone(),
        )
        out = self._image(latents[-1], cond)
        if not est:
            return PolicySample(out, traj)
        return PolicySample(out, traj, traj.estimates, [int(s) for s in self.estimate_steps])

    def evaluate(self, x: Tensor, trajectory: DiffusionTrajectory, steps: Tensor | None = None) -> DiffusionEvaluation:
        """Step Gaussians and log-densities of `trajectory` under the current weights (differentiable).

        `steps` (long, a subset of 0..K-2) evaluates only those stochastic steps, to bound memory
        or to train on a fraction of the timesteps as DDPO does; all by default, in one U-Net call.
        """
        traj = trajectory
        k = traj.num_steps
        steps = torch.arange(k - 1) if steps is None else torch.as_tensor(steps, dtype=torch.long)
        if steps.numel() == 0 or int(steps.min()) < 0 or int(steps.max()) >= k - 1:
            raise ValueError(f"steps must be a non-empty subset of the stochastic steps 0..{k - 2}")
        n, s = traj.latents.shape[0], steps.numel()
        if n % x.shape[0]:
            raise ValueError(f"{n} trajectory rows do not split into {x.shape[0]} images")
        cond = self._condition(x).repeat_interleave(n // x.shape[0], dim=0)
        lat = traj.latents.to(cond.device)
        x_t = lat[:, steps].flatten(0, 1)
        x_next = lat[:, steps + 1].flatten(0, 1)
        t = traj.timesteps[steps].repeat(n)
        g = self._gaussians(x_t, t, self.schedule.prev_timesteps(traj.timesteps)[steps].repeat(n), cond.repeat_interleave(s, dim=0), self.cfg.eta)
        log_prob = gaussian_log_density(x_next, g.mean, g.std, self.cfg.logprob_reduction).view(n, s)

        def rows(v: Tensor) -> Tensor:
            return v.view(n, s, *v.shape[1:])

        return DiffusionEvaluation(log_prob, rows(g.mean), rows(g.std), rows(g.x0), steps, self.cfg.logprob_reduction)

    @torch.no_grad()
    def deterministic(self, x: Tensor) -> Tensor:
        """DDIM with eta = 0 from a fixed noise draw, the same for every row: one input, one output, in any batch."""
        cond = self._condition(x)
        n, k = cond.shape[0], self.cfg.sampling_steps
        timesteps = self.schedule.timesteps(k)
        prev = self.schedule.prev_timesteps(timesteps)
        # every row starts from the same draw: an image's output does not depend on the batch it sits in
        # (mining scores batches, evaluation one image at a time, and both must see the same output)
        noise = self._noise((1, *cond.shape[1:]), torch.Generator().manual_seed(DETERMINISTIC_SEED), cond.device).expand_as(cond)
        x_t = self._start(noise, cond, timesteps[0])
        for j in range(k):
            x_t = self._gaussians(x_t, timesteps[j].expand(n), prev[j].expand(n), cond, 0.0).mean
        return self._image(x_t, cond)

    def parameter_groups(self) -> list[ParameterGroup]:
        return [ParameterGroup("denoiser", list(self.unet.parameters()))]

    # --- supervision and export ----------------------------------------------------------------
    def diffusion_draw(self, target: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The random part of the diffusion loss for these (B, 3, H, W) targets: timesteps (B,) and noise (B, C, h, w).
        Drawn once for a whole batch, it lets the loss of each slice of the batch equal the batch's (micro-batches)."""
        shape = tuple(self.codec.encode(target[:1].float()).shape[1:])
        b = target.shape[0]
        t = torch.randint(0, self.schedule.start_timesteps, (b,), generator=generator)
        return t, self._noise((b, *shape), generator, target.device)

    def diffusion_loss(self, x: Tensor, target: Tensor, generator: torch.Generator | None = None, draw: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """(B,) the standard DDPM loss per image: MSE between the U-Net output and its target
        (the noise, or v) at a uniform random timestep below the chain's start, the degraded image as the condition;
        `draw` (diffusion_draw's) replaces drawing from `generator`."""
        x0 = self.chain_x0(x, target)
        cond = self._condition(x)
        t, noise = draw if draw is not None else self.diffusion_draw(target, generator)
        x_t = self.schedule.add_noise(x0, noise, t)
        out = self.unet(torch.cat([x_t, cond], dim=1), t.to(x0.device)).sample
        return F.mse_loss(out.float(), self.schedule.training_target(x0, noise, t), reduction="none").flatten(1).mean(dim=1)

    def supervised_loss(self, x: Tensor, target: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B,) the family's supervised loss: the diffusion loss (pre-training, SFT control, seed 2's L_diff)."""
        return self.diffusion_loss(x, target, generator)

    def save_pretrained(self, folder) -> None:
        """The U-Net in diffusers' layout; `pretrained: <folder>` loads it back."""
        self.unet.save_pretrained(folder)
