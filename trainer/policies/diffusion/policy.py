"""A conditional diffusion restorer as a policy (DDPO): every stochastic DDIM step is a Gaussian action.

One class over "a denoiser" and "a codec": the chain runs in the codec's space (pixels, or a VAE/VQ
latent) and the denoiser sees the degraded image as its model kind expects (condition.py): stacked on
channels (pixel U-Net, x4 upscaler, LDM-SR), through a ControlNet, with cross-attention to the prompt
and the x4 upscaler's noise-level class label. Sampling runs the K-step DDIM chain for all B * G rows
in one batch and records the trajectory; evaluation recomputes the K - 1 step Gaussians of a recorded
chain in one batched call. With LoRA the policy's state is its adapters only: the frozen base comes
from the pipeline folder in every process, and with the adapters disabled it is the KL reference.
"""

from __future__ import annotations

import copy
import shutil
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainer.config import DiffusionConfig
from trainer.policies.diffusion.codec import PixelCodec
from trainer.policies.diffusion.condition import Condition
from trainer.policies.diffusion.ddim import StepGaussian, ddim_step, gaussian_kl_same_std, gaussian_log_density
from trainer.policies.diffusion.lora import add_lora, adapters_disabled, merge_lora
from trainer.policies.diffusion.network import build_denoiser
from trainer.policies.diffusion.pipeline_folder import PipelineFolderError, is_pipeline_folder, load_pipeline_folder
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
    x0_raw: Tensor  # (N, S, C, h, w) the same before the clamp (the same tensor without one)
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
        folder = None if cfg.pretrained is None else Path(cfg.pretrained)
        prompt = negative = None
        self.controlnet: nn.Module | None = None
        self.low_res_scheduler = None
        if is_pipeline_folder(folder):
            # the folder's weights are always read, also for rollout actors (load_weights=False): its frozen
            # parts (autoencoder, prompt, and the base under LoRA) never travel with the policy's state
            parts = load_pipeline_folder(folder, cfg)
            self.codec, self.unet, self.controlnet = parts.codec, parts.unet, parts.controlnet
            self.schedule = Schedule(cfg, parts.scheduler_config)
            self.conditioning, self.low_res_scheduler = parts.condition, parts.low_res_scheduler
            prompt, negative = parts.prompt_embeds, parts.negative_prompt_embeds
        else:
            self.codec = PixelCodec()
            self.unet = build_denoiser(cfg, self.codec.channels, load_weights)
            self.schedule = Schedule(cfg)
            self.conditioning = "image"
        # prompt embeddings follow .to() but are not state: they come from the folder and the prompt
        self.register_buffer("prompt_embeds", prompt, persistent=False)
        self.register_buffer("negative_prompt_embeds", negative, persistent=False)
        self.lora = cfg.lora.rank > 0
        if self.lora:
            for m in self.denoisers:
                add_lora(m, cfg.lora)
        if cfg.gradient_checkpointing:
            for m in self.denoisers:
                m.enable_gradient_checkpointing()
        self._multiple = 2 ** (len(self.unet.config.block_out_channels) - 1)
        self._check_output_scale(folder)
        rl = cfg.rl
        self.estimate_steps = torch.tensor(rl.reward_steps if rl.reward_at == "stepwise" else [], dtype=torch.long)

    @property
    def denoisers(self) -> list[nn.Module]:
        return [m for m in (self.unet, self.controlnet) if m is not None]

    # --- state: everything trainable, and nothing else under LoRA -----------------------------
    def _trainable_keys(self) -> set[str]:
        return {k for k, p in self.named_parameters() if p.requires_grad}

    def state_dict(self, *args, **kwargs):
        state = super().state_dict(*args, **kwargs)
        if not self.lora:
            return state
        prefix = kwargs.get("prefix", "")
        keep = self._trainable_keys()
        return type(state)((k, v) for k, v in state.items() if k[len(prefix):] in keep)

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True, assign: bool = False):
        if not self.lora:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        keys, want = set(state_dict), self._trainable_keys()
        if strict and keys != want:
            raise RuntimeError(f"LoRA policy state: {len(want - keys)} adapter tensors missing (first: {sorted(want - keys)[:4]}), "
                               f"{len(keys - want)} unexpected (first: {sorted(keys - want)[:4]})")
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def shared_reference(self) -> "AdaptersOff | None":
        """The KL reference without a second copy: this policy with its adapters disabled (LoRA only)."""
        return AdaptersOff(self) if self.lora else None

    @property
    def native_scale(self) -> int:
        """The output's side over the input's that the model was built for: a U-Net that takes the image itself at
        the latent size (x4 upscaler, LDM super-resolution) restores an input its autoencoder's factor smaller;
        the pixel U-Net, a latent-concatenating one and a ControlNet restore at the input's size."""
        return self.codec.downscale if self.conditioning == "image" else 1

    def _check_output_scale(self, folder: Path | None) -> None:
        if self.cfg.output_scale == self.native_scale:
            return
        if self.native_scale > 1:
            raise PipelineFolderError(f"policy.diffusion.pretrained={folder} is a {self.native_scale}x super-resolution model (its U-Net takes the "
                             f"low-resolution image at the latent size): it restores inputs {self.native_scale}x smaller than its output; "
                             f"set data.tasks [sr] and policy.diffusion.output_scale {self.native_scale} (got {self.cfg.output_scale})")
        raise ValueError(f"policy.diffusion.output_scale={self.cfg.output_scale}, but this model ({self.conditioning} conditioning) restores "
                         "at its input's size; the sr task needs a super-resolution folder (x4 upscaler or LDM super-resolution)")

    # --- the condition and the denoiser call ---------------------------------------------------
    def _latent_size(self, x: Tensor) -> tuple[int, int]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected degraded images (B, 3, H, W), got {tuple(x.shape)}")
        h, w = (s * self.cfg.output_scale for s in x.shape[-2:])
        step = self.codec.downscale * self._multiple
        if h % step or w % step:
            raise ValueError(f"output size {h}x{w} (input x{self.cfg.output_scale}) must be a multiple of {step} (autoencoder and U-Net downsampling)")
        return h // self.codec.downscale, w // self.codec.downscale

    def _condition(self, x: Tensor) -> Condition:
        """The per-image condition, before any x4 noising (see _with_noise)."""
        x = x.float()
        size = self._latent_size(x)
        out_size = (size[0] * self.codec.downscale, size[1] * self.codec.downscale)
        # the degraded image in the chain's space: the residual frame's origin and the img2img start
        origin = None
        if self.cfg.residual or self.schedule.strength < 1:
            origin = self.codec.encode(_resize(x, out_size))
        if self.conditioning == "controlnet":
            return Condition(None, _resize(x, out_size), origin)
        if self.conditioning == "latent":
            return Condition(self.codec.encode(_resize(x, out_size)) if origin is None else origin, None, origin)
        return Condition(_resize(x, size) * 2 - 1, None, origin)

    def _cond_noise(self, cond: Condition, generator: torch.Generator | None, shared: bool = False) -> Tensor | None:
        if self.low_res_scheduler is None:
            return None
        shape = tuple(cond.concat.shape)
        if shared:
            return self._noise((1, *shape[1:]), generator, cond.concat.device).expand(shape)
        return self._noise(shape, generator, cond.concat.device)

    def _with_noise(self, cond: Condition, noise: Tensor | None) -> Condition:
        """The x4 upscaler's low-resolution condition after its DDPM noising at noise_level (as the pipeline does)."""
        if noise is None:
            return cond
        level = torch.full((cond.concat.shape[0],), self.cfg.noise_level, dtype=torch.long)
        noised = self.low_res_scheduler.add_noise(cond.concat, noise.to(cond.concat), level.to(cond.concat.device))
        return Condition(noised, cond.control, cond.origin)

    def _autocast(self, device: torch.device):
        if self.cfg.precision == "fp32":
            return nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16 if self.cfg.precision == "bf16" else torch.float16)

    def _forward(self, x_t: Tensor, t: Tensor, cond: Condition, embeds: Tensor | None) -> Tensor:
        m = x_t.shape[0]
        inp = x_t if cond.concat is None else torch.cat([x_t, cond.concat.to(x_t)], dim=1)
        if embeds is None:
            return self.unet(inp, t).sample
        kwargs = {"encoder_hidden_states": embeds.expand(m, *embeds.shape[1:])}
        if self.low_res_scheduler is not None:
            kwargs["class_labels"] = torch.full((m,), self.cfg.noise_level, dtype=torch.long, device=x_t.device)
        if self.controlnet is not None:
            down, mid = self.controlnet(x_t, t, controlnet_cond=cond.control.to(x_t), return_dict=False, **kwargs)
            kwargs.update(down_block_additional_residuals=down, mid_block_additional_residual=mid)
        return self.unet(inp, t, **kwargs).sample

    def _denoise(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        """The denoiser's output for M rows, float32; with guidance, uncond + s (cond - uncond) as in the pipelines."""
        t = t.to(x_t.device)
        with self._autocast(x_t.device):
            if self.cfg.guidance_scale <= 1 or self.prompt_embeds is None:
                out = self._forward(x_t, t, cond, self.prompt_embeds)
            else:
                m = x_t.shape[0]
                both = torch.cat([self.negative_prompt_embeds.expand(m, -1, -1), self.prompt_embeds.expand(m, -1, -1)])
                uncond, text = self._forward(torch.cat([x_t, x_t]), torch.cat([t, t]), cond.repeat(2, interleave=False), both).chunk(2)
                out = uncond.float() + self.cfg.guidance_scale * (text.float() - uncond.float())
        return out.float()

    def _origin(self, cond: Condition) -> Tensor | None:
        """What the chain's x_0 is measured from: the encoded degraded image (`residual`), or None (the image itself)."""
        return cond.origin if self.cfg.residual else None

    def _gaussians(self, x_t: Tensor, t: Tensor, t_prev: Tensor, cond: Condition, eta: float) -> StepGaussian:
        """The step Gaussians of M rows at once: x_t (M, C, h, w), cond of M rows; t, t_prev (M,) timesteps."""
        out = self._denoise(x_t, t, cond)
        a_t = self.schedule.alpha_bar(t).to(x_t.device)
        a_prev = self.schedule.alpha_bar(t_prev).to(x_t.device)
        return ddim_step(out, x_t, a_t, a_prev, eta, self.schedule.prediction_type, self.schedule.clip_x0,
                         self._origin(cond))

    def _start(self, noise: Tensor, cond: Condition, t0: Tensor) -> Tensor:
        """The chain's first latent: the noise itself at strength 1 (x_T), else q(x_t0 | x_0 = the degraded image in the
        chain's frame), which is 0 under `residual`."""
        if self.schedule.strength == 1.0:
            return noise
        x0 = torch.zeros_like(noise) if self.cfg.residual else cond.origin.expand_as(noise)
        return self.schedule.add_noise(x0, noise, t0.expand(noise.shape[0]))

    def _image(self, latent: Tensor, cond: Condition) -> Tensor:
        """Decode a latent of the chain's frame to an image."""
        origin = self._origin(cond)
        return self.codec.decode(latent if origin is None else latent + origin)

    def chain_x0(self, x: Tensor, target: Tensor) -> Tensor:
        """The clean sample the chain should reach for ground truth `target` (B, 3, H*s, W*s): its latent, minus the origin."""
        x0 = self.codec.encode(target.float())
        origin = self._origin(self._condition(x))
        return x0 if origin is None else x0 - origin

    def _noise(self, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
        # drawn on the CPU: a seeded chain is the same on every device
        return torch.randn(shape, generator=generator).to(device)

    def _latent_shape(self, x: Tensor) -> tuple[int, int, int]:
        return (self.codec.channels, *self._latent_size(x))

    # --- the policy interface ----------------------------------------------------------------
    @torch.no_grad()
    def sample(self, x: Tensor, group_size: int, generator: torch.Generator | None = None) -> PolicySample:
        """G chains per image in one batch (rows b*G..b*G+G-1 are image b), with their trajectory."""
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        cond = self._condition(x).repeat(group_size)
        n, k = x.shape[0] * group_size, self.cfg.sampling_steps
        timesteps = self.schedule.timesteps(k)
        prev = self.schedule.prev_timesteps(timesteps)
        # z[:, 0] is x_T, z[:, j] the noise of step j - 1
        z = self._noise((n, k, *self._latent_shape(x)), generator, x.device)
        cond_noise = self._cond_noise(cond, generator)
        cond = self._with_noise(cond, cond_noise)
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
        images = self._image(latents[-1], cond)
        est = [estimates[int(s)] for s in self.estimate_steps]
        traj = DiffusionTrajectory(
            latents=torch.stack(latents, dim=1),
            timesteps=timesteps,
            log_prob=torch.stack(log_probs, dim=1),
            estimates=torch.stack(est, dim=1) if est else images.new_zeros((n, 0, *images.shape[1:])),
            estimate_steps=self.estimate_steps.clone(),
            cond_noise=cond_noise,
        )
        if not est:
            return PolicySample(images, traj)
        return PolicySample(images, traj, traj.estimates, [int(s) for s in self.estimate_steps])

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
        if (traj.cond_noise is None) != (self.low_res_scheduler is None):
            raise ValueError("the trajectory's condition noise does not match the model (recorded by another kind of policy)")
        cond = self._with_noise(self._condition(x).repeat(n // x.shape[0]), traj.cond_noise)
        lat = traj.latents.to(x.device)
        x_t = lat[:, steps].flatten(0, 1)
        x_next = lat[:, steps + 1].flatten(0, 1)
        t = traj.timesteps[steps].repeat(n)
        g = self._gaussians(x_t, t, self.schedule.prev_timesteps(traj.timesteps)[steps].repeat(n), cond.repeat(s), self.cfg.eta)
        log_prob = gaussian_log_density(x_next, g.mean, g.std, self.cfg.logprob_reduction).view(n, s)

        def rows(v: Tensor) -> Tensor:
            return v.view(n, s, *v.shape[1:])

        return DiffusionEvaluation(log_prob, rows(g.mean), rows(g.std), rows(g.x0), rows(g.x0_raw), steps, self.cfg.logprob_reduction)

    @torch.no_grad()
    def deterministic(self, x: Tensor) -> Tensor:
        """DDIM with eta = 0 from a fixed noise draw, the same for every row: one input, one output, in any batch."""
        cond = self._condition(x)
        n, k = x.shape[0], self.cfg.sampling_steps
        timesteps = self.schedule.timesteps(k)
        prev = self.schedule.prev_timesteps(timesteps)
        # every row starts from the same draw: an image's output does not depend on the batch it sits in
        # (mining scores batches, evaluation one image at a time, and both must see the same output)
        gen = torch.Generator().manual_seed(DETERMINISTIC_SEED)
        shape = self._latent_shape(x)
        noise = self._noise((1, *shape), gen, x.device).expand(n, *shape)
        cond = self._with_noise(cond, self._cond_noise(cond, gen, shared=True))
        x_t = self._start(noise, cond, timesteps[0])
        for j in range(k):
            x_t = self._gaussians(x_t, timesteps[j].expand(n), prev[j].expand(n), cond, 0.0).mean
        return self._image(x_t, cond)

    def parameter_groups(self) -> list[ParameterGroup]:
        return [ParameterGroup("denoiser", [p for p in self.parameters() if p.requires_grad])]

    # --- supervision and export ----------------------------------------------------------------
    def diffusion_draw(self, target: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """The random part of the diffusion loss for these (B, 3, H, W) targets: timesteps (B,), noise (B, C, h, w) and
        the x4 upscaler's condition noise (B, 3, h, w) (None without one). Drawn once for a whole batch, it lets the
        loss of each slice of the batch equal the batch's (micro-batches)."""
        b, (h, w) = target.shape[0], target.shape[-2:]
        shape = (self.codec.channels, h // self.codec.downscale, w // self.codec.downscale)
        t = torch.randint(0, self.schedule.start_timesteps, (b,), generator=generator)
        noise = self._noise((b, *shape), generator, target.device)
        cond_noise = None if self.low_res_scheduler is None else self._noise((b, 3, *shape[1:]), generator, target.device)
        return t, noise, cond_noise

    def diffusion_loss(self, x: Tensor, target: Tensor, generator: torch.Generator | None = None,
                       draw: tuple[Tensor, Tensor, Tensor | None] | None = None) -> Tensor:
        """(B,) the standard DDPM loss per image: MSE (or L1, `loss`) between the denoiser's output and its target
        (the noise, x_0 or v) at a uniform random timestep below the chain's start, the degraded image as the condition;
        `draw` (diffusion_draw's) replaces drawing from `generator`."""
        x0 = self.chain_x0(x, target)
        t, noise, cond_noise = draw if draw is not None else self.diffusion_draw(target, generator)
        cond = self._with_noise(self._condition(x), cond_noise)
        x_t = self.schedule.add_noise(x0, noise, t)
        out = self._denoise(x_t, t, cond)
        loss = F.l1_loss if self.cfg.loss == "l1" else F.mse_loss
        return loss(out, self.schedule.training_target(x0, noise, t), reduction="none").flatten(1).mean(dim=1)

    def supervised_loss(self, x: Tensor, target: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B,) the family's supervised loss: the diffusion loss (pre-training, SFT control, seed 2's L_diff)."""
        return self.diffusion_loss(x, target, generator)

    def save_pretrained(self, folder) -> None:
        """The denoiser(s) in diffusers' layout with the adapters merged; `pretrained: <folder>` loads it back
        (without lora). The pixel model writes its UNet2DModel folder; a pipeline policy a copy of its source
        folder with unet/ (and controlnet/) replaced, which the matching diffusers pipeline loads."""
        folder = Path(folder)
        source = None if self.cfg.pretrained is None else Path(self.cfg.pretrained)

        def plain(m: nn.Module) -> nn.Module:  # merging rewrites layers: work on a copy, training goes on
            return merge_lora(copy.deepcopy(m)) if self.lora else m

        if not is_pipeline_folder(source):
            plain(self.unet).save_pretrained(folder)
            return
        shutil.copytree(source, folder)
        for name, m in (("unet", self.unet), ("controlnet", self.controlnet)):
            if m is not None:
                shutil.rmtree(folder / name)
                plain(m).save_pretrained(folder / name)


class AdaptersOff:
    """The reference policy of a LoRA run: the same modules with the adapters disabled while it evaluates.

    It has no state of its own (a checkpoint's reference file is empty): the base weights are the folder's.
    """

    def __init__(self, policy: DiffusionPolicy):
        self.policy = policy

    @torch.no_grad()
    def evaluate(self, x: Tensor, trajectory: DiffusionTrajectory, steps: Tensor | None = None) -> DiffusionEvaluation:
        with adapters_disabled(self.policy.denoisers):
            return self.policy.evaluate(x, trajectory, steps)

    def state_dict(self) -> dict[str, Tensor]:
        return {}

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        if state:
            raise ValueError(f"the LoRA reference has no state, got {len(state)} tensors")


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic (antialiased when shrinking) to `size`, or `x` itself when it has that size already."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
