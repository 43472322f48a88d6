"""The one typed configuration of the trainer: pydantic models loaded from YAML.

Every field carries a help text (`description`); docs/configuration.md is generated from
these. Defaults are the paper's settings (IRPO, ../shared/notes/method.md); configs/cpu-demo.yaml
shrinks them for a CPU. Unknown keys are errors, so a typo stops the run before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from upath import UPath

from irpo_common.reward_spec import RewardWeights
from irpo_common.tasks import ALL_IN_ONE_TASKS, Task, input_scale
from trainer.storage import StoragePath


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _PolicySection(_Section):
    """A policy family's section: its registry key and the field that holds its starting weights."""

    kind: ClassVar[str]  # the registry key (trainer/policies/registry.py)
    weights_field: ClassVar[str]

    @property
    def weights(self) -> Path | None:
        return getattr(self, self.weights_field)

    def with_weights(self, path: Path) -> "_PolicySection":
        return self.model_copy(update={self.weights_field: Path(path)})


class ModelConfig(_PolicySection):
    """The IRPO family (`policy.kind: irpo`): AdaIR backbone + GDM Beta heads (trainer/model)."""

    kind: ClassVar[str] = "irpo"
    weights_field: ClassVar[str] = "checkpoint"
    dim: int = Field(48, gt=0, description="Base channel width of the AdaIR/Restormer U-Net.")
    num_blocks: list[int] = Field([4, 6, 6, 8], min_length=4, max_length=4, description="Transformer blocks per encoder level (level 1..4, latent last).")
    num_refinement_blocks: int = Field(4, ge=0, description="Transformer blocks in the full-resolution refinement stage.")
    heads: list[int] = Field([1, 2, 4, 8], min_length=4, max_length=4, description="Attention heads per level.")
    ffn_expansion_factor: float = Field(2.66, gt=0, description="Hidden width multiplier of the gated feed-forward (GDFN).")
    bias: bool = Field(False, description="Use biases in the transformer convolutions (AdaIR: False).")
    head_hidden: int = Field(64, gt=0, description="Hidden width of each policy head (rate and fuse heads).")
    beta_min_concentration: float = Field(1.0, ge=0, description="Added to softplus outputs for Beta alpha/beta; >= 1 keeps each density unimodal.")
    beta_init_concentration: float = Field(6.0, gt=0, description="Fresh heads start every action at Beta(c, c): mean 0.5 (AdaIR's blend for the gates), spread set by c (must exceed beta_min_concentration).")
    fre_para1_init: float = Field(0.0, description="Initial para1 of the three frequency modules (the weight of their output branch). AdaIR: 0, so a fresh module is the identity and g_o and both rates are inert until para1 grows. Only a fresh model uses it: a checkpoint overwrites it.")
    fre_temperature_init: float = Field(1.0, gt=0, description="Initial temperature of the frequency modules' channel cross-attentions. AdaIR: 1, which makes their softmax over L2-normalised logits nearly uniform, so the rates hardly reach the output. Only a fresh model uses it.")
    fre_mask_softness: float = Field(0.25, gt=0, description="Edge width of the soft low-pass mask that the rates set, in squared normalised radius (trainer/model/adair.py); at 0.25 the low band keeps 98% of DC for any rate. Not a weight: it applies to checkpoints too.")
    head_feature_grad: bool = Field(True, description="Let the policy-gradient terms (PPO surrogate, KL, entropy) backpropagate through the pooled backbone features the Beta heads read (IRPO trains jointly: True). False detaches the heads' inputs when a recorded trajectory is re-evaluated: those terms then train the heads only and the backbone learns from the supervised terms (the deterministic output keeps its full gradient), so score-function noise does not drift the restorer (configs/cpu-demo.yaml; docs/benchmarks.md).")
    checkpoint: Path | None = Field(None, description="Starting weights: an AdaIR Lightning .ckpt (keys prefixed 'net.') or one of our .safetensors files. None = random init (say so in logs).")

    @model_validator(mode="after")
    def _check_model_shapes(self) -> "ModelConfig":
        # The frequency modules run at widths dim*2, dim*4, dim*8 with heads[2] heads and
        # squeeze channels by 16 (ChannelGate) and 8 (rate_conv), as in AdaIR.
        if self.dim * 2 % self.heads[2] or self.dim * 2 < 16:
            raise ValueError(f"model.dim={self.dim}: the frequency modules need dim*2 >= 16 and divisible by heads[2]={self.heads[2]}")
        if self.beta_init_concentration <= self.beta_min_concentration:
            raise ValueError("model.beta_init_concentration must exceed model.beta_min_concentration")
        return self


class DiffusionRLConfig(_Section):
    """How the denoising chain is trained as a policy (DDPO) with the options of seeds 2 and 3."""

    clip_eps: float = Field(1e-4, gt=0, description="PPO clip range of the per-step ratio (DDPO: 1e-4; the per-step log-density is a mean over dimensions, so ratios stay near 1).")
    adv_clip: float = Field(5.0, gt=0, description="Normalised advantages are clipped to [-adv_clip, adv_clip] (DDPO: 5) before the noise-level weights, which may then scale a step's advantage beyond it.")
    kl_coef: float = Field(0.01, ge=0, description="Weight of the per-step KL to the frozen reference, closed form between the step Gaussians (flow_grpo: 0.01-0.04).")
    reward_at: Literal["final", "stepwise"] = Field("final", description="'final': every step gets the advantage of the final output's reward; 'stepwise' (seed 2): the estimates after reward_steps are scored too and step_credit says which step gets which.")
    reward_steps: list[int] = Field(default_factory=list, description="Sampling steps (0-based, the first is the noisiest; sorted, no repeats, each below sampling_steps - 1) whose estimate after the action is also scored when reward_at='stepwise'; the final output is always scored.")
    step_credit: Literal["to_go", "next"] = Field("to_go", description="Under reward_at='stepwise', the advantage of step k: 'to_go' the mean of the advantages of the scored estimates at or after step k, the final output's included (reward-to-go); 'next' that of the first scored estimate at or after k only (the final output's after the last reward step). Seed 2 gives no formula; 'to_go' is the default because DDPO and flow_grpo give every step the final reward, and 'next' would hide it from every step up to the last reward step.")
    step_reward_on: Literal["x0_hat", "x_prev"] = Field("x0_hat", description="What an intermediate step's reward scores: 'x0_hat' (seed 2's enhanced target): the denoised estimate of x_{t-1} by one extra denoising step, which the next step computes anyway; 'x_prev': the plain noisy x_{t-1}.")
    noise_level_weighting: Literal["uniform", "linear", "snr"] = Field("uniform", description="Seed 3 (LRPO) noise-level advantage assignment, each step's advantage times a weight normalised to mean 1 over the stochastic steps: 'uniform' 1; 'linear' proportional to t / T_train (noisier steps weigh more); 'snr' proportional to alpha_bar_t / (1 - alpha_bar_t) (cleaner, detail-setting steps weigh more; with 10 steps the last weighs ~6). Applied after adv_clip.")
    train_step_fraction: float = Field(1.0, gt=0, le=1, description="Share of each chain's K - 1 stochastic steps that enter the loss in one update: max(1, int(fraction * (K - 1))) of them (DDPO's and flow_grpo's train.timestep_fraction, DanceGRPO's timestep_fraction, same rounding). Sampling, its log-densities, the rewards, the step credit and evaluation still run all sampling_steps: the learner trains fewer denoising steps than are sampled and evaluated, and its denoiser calls shrink in proportion. The per-step statistics (ratio/steps..., kl/steps...) then group the trained steps, noisy to clean. 1 = every step.")
    train_step_selection: Literal["random", "window"] = Field("random", description="Which stochastic steps train when train_step_fraction < 1: 'random' a subset drawn anew for each update from (seed, step), so a resumed run draws the same (DDPO and DanceGRPO shuffle the timesteps per sample; one subset for every chain of the update here keeps the re-evaluation one batched call); 'window' consecutive steps whose start moves one step per update from the noisiest and wraps around (MixGRPO's sliding window; Flow-GRPO-Fast trains 1-2 steps inside a window).")
    adaptive_weighting: bool = Field(False, description="Seed 2's automatic weight w_i = ||y_i - g_i|| / max_j ||y_j - g_j|| (y_i: the deterministic output of image i): loss = sum (1 - w_i) L_diff + sum w_i L_RL + L_KL.")
    sft_coef: float = Field(1.0, ge=0, description="Weight of the diffusion loss L_diff (epsilon MSE on the ground truth) in the RL objective; with adaptive_weighting it is scaled per image by 1 - w_i. 0 = RL only.")
    gt_likelihood_coef: float = Field(0.0, ge=0, description="Seed 3 (LRPO) ground-truth-guided likelihood regularisation: minus this times the per-step log-density of the GT-consistent step mean (the DDIM posterior mean of q(x_{t-1} | x_t, x_0 = GT)) under the current policy (see gt_likelihood_norm).")
    gt_likelihood_norm: Literal["per_step", "none"] = Field("per_step", description="'per_step': each step's GT log-density, taken from its peak, is divided by its weight on (x0_hat - GT)^2 (k^2 / 2 sigma^2, trainer/policies/diffusion/ddim.py gt_step_weight), so the term is minus the squared error of x0_hat and every step weighs the same; 'none': the raw log-density, whose weight grows from ~1e-4 at t = 999 to ~3 at the last stochastic step (T 1000, 10 steps, eta 1), so the last two steps carry ~90% of it and the structure-setting steps are barely constrained. LRPO publishes no code; 'per_step' is our reading.")


class DiffusionLoRAConfig(_Section):
    """LoRA adapters (peft) on the denoiser(s); the base weights stay frozen and are the KL reference."""

    rank: int = Field(0, ge=0, description="LoRA rank r; 0 = no adapters: full fine-tuning of the denoiser (the default). flow_grpo and DanceGRPO: 32; GDPO-SR (one-step SD-2.1 super-resolution): 4.")
    alpha: float | None = Field(None, gt=0, description="LoRA alpha (the update is scaled by alpha / r); None = 2 r, flow_grpo's ratio (r 32, alpha 64).")
    targets: list[str] = Field(["to_q", "to_k", "to_v", "to_out.0"], min_length=1, description="Module names (suffixes, peft target_modules) that get adapters, in the U-Net and the ControlNet: the attention projections (flow_grpo, DanceGRPO). Add 'conv1', 'conv2' for the ResNet convolutions as GDPO-SR does.")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (flow_grpo: 0).")


class DiffusionConfig(_PolicySection):
    """The diffusion family (`policy.kind: diffusion`): a conditional denoising U-Net that restores by sampling
    from noise: a pixel-space UNet2DModel built from the fields below, or a latent diffusion restorer read from a
    diffusers pipeline folder (x4 upscaler, LDM super-resolution, a ControlNet restorer). Defaults: DDPO (eta 1.0, per-step PPO ratio, clip 1e-4) and the seed papers
    (method.md, "Diffusion restorers as policies")."""

    kind: ClassVar[str] = "diffusion"
    weights_field: ClassVar[str] = "pretrained"
    pretrained: Path | None = Field(None, description="Starting weights, always local (local_files_only, never a hub id): a diffusers pipeline folder (model_index.json with unet/, scheduler/, vae/ or vqvae/, text_encoder/ + tokenizer/ or prompt_embeds, optional controlnet/ and low_res_scheduler/: the StableDiffusionUpscalePipeline, LDMSuperResolutionPipeline and StableDiffusionControlNetPipeline layouts load unchanged; its scheduler sets train_timesteps, beta_schedule, prediction_type and clip_x0), a UNet2DModel.save_pretrained folder (config.json + weights; pixel space), or one of our .safetensors files of the whole policy (pre-training output, a checkpoint's policy.safetensors; the architecture then comes from the fields below). None = build a pixel-space U-Net from the fields below with RANDOM weights (logged).")
    prompt: str = Field("", description="Text prompt of a cross-attention U-Net, encoded once at load by the folder's text_encoder/ (which is then dropped); StableDiffusionUpscalePipeline's usual restoration prompt is empty.")
    negative_prompt: str = Field("", description="The unconditional prompt of classifier-free guidance (used when guidance_scale > 1).")
    prompt_embeds: Path | None = Field(None, description="A .safetensors file with 'prompt_embeds' (1, L, D) (and 'negative_prompt_embeds' for guidance) used instead of the folder's text_encoder/ + tokenizer/.")
    guidance_scale: float = Field(1.0, ge=1, description="Classifier-free guidance scale of a prompt-conditioned U-Net; 1 = none (flow_grpo trains without it). The same guided output is used in sampling, in the learner's re-evaluation and in evaluation, so the ratio stays exact.")
    noise_level: int = Field(20, ge=0, description="x4 upscaler (a U-Net with class embeddings): the low-resolution condition is noised by the folder's low_res_scheduler at this level, which is also the class label (StableDiffusionUpscalePipeline's default 20, at most its max_noise_level 350). The noise is drawn per rollout row and recorded, so re-evaluation sees the same condition.")
    output_scale: int = Field(1, ge=1, description="Size of the restored image over the degraded input's: 1 for same-size tasks, 4 for the 'sr' task (x4 upscaler, LDM super-resolution, whose latent has the low-resolution image's size).")
    lora: DiffusionLoRAConfig = Field(default_factory=DiffusionLoRAConfig, description="LoRA adapters instead of full fine-tuning (rank 0 = full fine-tuning).")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description="Autocast dtype of the denoiser forward (U-Net and ControlNet), on the policy's device; the step maths and log-densities stay float32, and sampling and re-evaluation run the same autocast. flow_grpo's FAQ prefers fp16 over bf16 for log-prob accuracy, and the tiny models agree: fp16 log-densities are ~10x closer to float32 (docs/benchmarks.md, issue 21). Under fp16 the learner scales its loss (torch.amp.GradScaler; its scale is checkpointed), else small gradients underflow. On a CPU it is for measurement only (slow).")
    gradient_checkpointing: bool = Field(False, description="Recompute the denoiser's activations in the backward pass (diffusers enable_gradient_checkpointing): less learner memory, about one more forward of time.")
    block_out_channels: list[int] = Field([16, 32, 64], min_length=1, description="U-Net channels per resolution level (tiny CPU preset: 16, 32, 64, about 0.64 M parameters).")
    layers_per_block: int = Field(1, ge=1, description="ResNet layers per U-Net block.")
    attention: bool = Field(False, description="Self-attention blocks at the lowest resolution (AttnDownBlock2D/AttnUpBlock2D); off in the tiny preset.")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups; must divide every entry of block_out_channels.")
    train_timesteps: int = Field(1000, ge=2, description="T of the DDPM training schedule.")
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = Field("linear", description="DDPM beta schedule (diffusers names).")
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = Field("epsilon", description="What the U-Net predicts: the noise epsilon (DDPM/DDPO), v = sqrt(a) eps - sqrt(1 - a) x_0, or x_0 itself ('sample', diffusers' name; the loss then weighs every timestep's x_0 error alike, as a regression restorer's).")
    loss: Literal["mse", "l1"] = Field("mse", description="Norm of the diffusion loss between the denoiser's output and its target (pre-training, the SFT control, seeds 2-3's L_diff). 'mse' = DDPM (Ho et al. 2020), the papers. 'l1' = the restoration networks' loss (AdaIR, Restormer; Palette, Saharia et al. 2022, compares both): per pixel its gradient does not grow with the residual, so heavily degraded inputs do not drown the nearly clean ones.")
    sampling_steps: int = Field(10, ge=2, description="DDIM steps per sample (flow_grpo: 10 in training); the last goes to t = 0 without noise and carries no log-density.")
    eta: float = Field(1.0, gt=0, le=1, description="DDIM eta: step noise sigma_t = eta * sqrt(DDPM posterior variance); > 0 makes every step a Gaussian policy (DDPO: 1.0).")
    clip_x0: bool = Field(True, description="Clamp the predicted clean image to [-1, 1] inside each step (diffusers clip_sample).")
    residual: bool = Field(False, description="Run the chain on the residual x_0 - encode(degraded) and output encode(degraded) + the chain's result (ResShift, Yue et al. 2023; residual diffusion restorers): a change of variables around the condition, the DDIM step maths unchanged. The clamp of x0_hat (clip_x0) then applies to the image. False = the chain generates the image itself (DDPO, the seed papers; the GPU presets).")
    start_strength: float = Field(1.0, gt=0, le=1, description="The chain runs from t = strength * T to 0 in sampling_steps steps, starting from the degraded image noised to that t (SDEdit, Meng et al. 2022; diffusers' img2img `strength`); with `residual` its starting residual is 0, so the start is noise scaled to that t. Pre-training then draws t below strength * T only. 1.0 = from pure noise at T (the papers; the GPU presets).")
    logprob_reduction: Literal["mean", "sum"] = Field("mean", description="Per-step log-density over the D = C*H*W dimensions: 'mean' (DDPO): the per-dimension average, so rl.clip_eps bounds the per-dimension log-ratio and the trust region in joint nats is about clip_eps x D (it grows with the crop); 'sum': the exact joint log-density, reduced in float64, with the ratio clipped to (1 +- clip_eps)^D, the same trust region; kl_coef is not rescaled (the surrogate's and the KL's gradients both grow by D), so against 'mean' the RL terms weigh D times more than L_diff.")
    rl: DiffusionRLConfig = Field(default_factory=DiffusionRLConfig, description="How the chain is trained as a policy (DDPO, seeds 2 and 3).")

    @model_validator(mode="after")
    def _check_groups(self) -> "DiffusionConfig":
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"norm_num_groups={self.norm_num_groups} does not divide block_out_channels {bad}")
        if self.sampling_steps > self.train_timesteps:
            raise ValueError(f"sampling_steps={self.sampling_steps} exceeds train_timesteps={self.train_timesteps}")
        steps = self.rl.reward_steps
        bad_steps = [s for s in steps if not 0 <= s < self.sampling_steps - 1]
        if bad_steps:
            raise ValueError(f"rl.reward_steps {bad_steps} must lie in [0, sampling_steps - 1) = [0, {self.sampling_steps - 1}): the stochastic steps; the last step is the final output")
        if steps != sorted(set(steps)):
            raise ValueError(f"rl.reward_steps {steps} must be increasing without repeats (e.g. {sorted(set(steps))}): each is one column of the step credit")
        return self



class PolicyConfig(_Section):
    kind: Literal["irpo", "diffusion"] = Field("irpo", description="Policy family (trainer/policies/registry.py): 'irpo' = AdaIR + GDM Beta heads, configured by the `model:` section; 'diffusion' = a conditional diffusion restorer (DDPO-style GRPO), configured by `policy.diffusion`. The actors, learner, checkpoints, pre-training, mining and evaluation run either.")
    diffusion: DiffusionConfig = Field(default_factory=DiffusionConfig, description="The diffusion family's settings (read when kind is 'diffusion'). Its `rl` section replaces grpo.clip_eps, grpo.kl_coef, grpo.adaptive_weighting and the IRPO-only terms (entropy, sup_coef, cons_coef); grpo.group_size, grpo.advantage and grpo.ppo_epochs apply to both families.")


def _range(low: float, high: float, name: str) -> None:
    if not 0 <= low <= high:
        raise ValueError(f"data.sr.{name} must satisfy 0 <= low <= high, got {[low, high]}")


class SrConfig(_Section):
    """Super-resolution (task 'sr'): the degraded input is the ground truth downscaled 4x (irpo_common.tasks.INPUT_SCALE)
    after optional blur, followed by optional noise and JPEG: Real-ESRGAN's first-order order (blur -> resize -> noise
    -> JPEG; Wang et al. 2021, options/train_realesrnet_x4plus.yml), each factor drawn uniformly from its range.
    Each step is off when its range is null: the default is bicubic only (the classical SR benchmarks' x4 setting)."""

    blur_sigma: tuple[float, float] | None = Field(None, description="Isotropic Gaussian blur sigma range in px before downscaling (Real-ESRGAN's first order: [0.2, 3]); null = no blur.")
    noise: tuple[float, float] | None = Field(None, description="Additive Gaussian noise sigma range on the 0-255 scale after downscaling (Real-ESRGAN: [1, 30]); null = no noise.")
    jpeg_quality: tuple[int, int] | None = Field(None, description="JPEG quality range, last (Real-ESRGAN: [30, 95]); null = no JPEG.")

    @model_validator(mode="after")
    def _check_ranges(self) -> "SrConfig":
        for name in ("blur_sigma", "noise", "jpeg_quality"):
            if getattr(self, name) is not None:
                _range(*getattr(self, name), name)
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ValueError(f"data.sr.jpeg_quality must lie in [1, 100], got {list(self.jpeg_quality)}")
        return self


class FaceConfig(_Section):
    """Blind face restoration (task 'face', data.source 'face'): the synthetic degradation of GFPGAN / CodeFormer /
    DiffBIR's training (trainer/data/face.py) and the face data layouts (trainer/data/sources.py)."""

    size: int = Field(512, ge=16, description="Side of the aligned square faces (FFHQ-style training folder: 512 x 512, as GFPGAN's out_size); every training and test face must have it.")
    blur_kernel_size: int = Field(41, ge=3, description="Largest Gaussian blur kernel (odd; GFPGAN: 41); capped below the image side.")
    blur_sigma: tuple[float, float] = Field((0.1, 10.0), description="Range of the Gaussian blur sigma in px (GFPGAN's train_gfpgan_v1*.yml: [0.1, 10]). Isotropic kernels only: GFPGAN also draws anisotropic ones half of the time.")
    downsample: tuple[float, float] = Field((0.8, 8.0), description="Range of the downsampling factor (GFPGAN: [0.8, 8]); the image is resized back to its size after noise and JPEG.")
    noise: tuple[float, float] = Field((0.0, 20.0), description="Range of the Gaussian noise sigma on the 0-255 scale (GFPGAN: [0, 20]).")
    jpeg_quality: tuple[int, int] = Field((60, 100), description="Range of the JPEG quality (GFPGAN: [60, 100]).")
    real_world: dict[str, Path] = Field(default_factory=dict, description="Real-world test sets without ground truth (e.g. {lfw: data/LFW-Test, webphoto: data/WebPhoto-Test}): name -> a folder of face images, evaluated with the reward service's no-reference terms only.")

    @model_validator(mode="after")
    def _check_ranges(self) -> "FaceConfig":
        for name in ("blur_sigma", "downsample", "noise", "jpeg_quality"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"data.face.{name} must satisfy 0 <= low <= high, got {[low, high]}")
        if self.downsample[0] <= 0 or self.jpeg_quality[1] > 100 or self.jpeg_quality[0] < 1:
            raise ValueError("data.face: downsample factors must be > 0 and JPEG qualities in [1, 100]")
        if self.blur_kernel_size % 2 == 0:
            raise ValueError(f"data.face.blur_kernel_size must be odd, got {self.blur_kernel_size}")
        return self


class DataConfig(_Section):
    source: Literal["demo", "adair", "paired", "face"] = Field("demo", description="'demo': real photos fetched at setup with synthetic degradations; 'adair': AdaIR folder layout under root; 'paired': input/ + target/ folders under root (for 'sr' the inputs are the targets' size / 4); 'face': aligned faces, train/ (FFHQ-style folder, degraded by the BFR model) and test/ (CelebA-Test-style input/ + target/ pairs, or clean faces degraded with fixed seeds); see data.face.")
    root: Path = Field(Path("data/demo"), description="Dataset root folder.")
    tasks: list[Task] = Field(list(ALL_IN_ONE_TASKS), min_length=1, description="Restoration tasks to train and evaluate on (default: IRPO's five; 'face' is blind face restoration). 'sr' (4x super-resolution, restored at the ground truth's size) is a task of its own: its inputs are smaller, so it is not mixed with the same-size tasks.")
    crop_size: int = Field(128, ge=16, description="Random training crop size in pixels (IRPO: 128).")
    noise_sigmas: list[float] = Field([15.0, 25.0, 50.0], description="Gaussian noise levels (0-255 scale) for denoising.")
    seed: int = Field(0, description="Seed for degradation synthesis and crops.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    face: FaceConfig = Field(default_factory=FaceConfig, description="Blind face restoration: degradation ranges and real-world sets (task 'face').")
    sr: SrConfig = Field(default_factory=SrConfig, description="The sr task's degradation (blur, 4x bicubic downscale, noise, JPEG).")

    @model_validator(mode="after")
    def _check_face_source(self) -> "DataConfig":
        if self.source == "face" and self.tasks != ["face"]:
            raise ValueError(f"data.source 'face' holds the face task only: set data.tasks to [face], got {self.tasks}")
        if self.source == "adair" and "face" in self.tasks:
            raise ValueError("data.source 'adair' has no face task: use data.source 'face' (aligned faces) or 'paired'")
        return self

    @model_validator(mode="after")
    def _check_scales(self) -> "DataConfig":
        scales = {input_scale(t) for t in self.tasks}
        if len(scales) > 1:
            raise ValueError(f"data.tasks {self.tasks}: 'sr' restores a 4x smaller input and cannot share a run with the same-size tasks; train it alone (data.tasks: [sr])")
        if self.source == "adair" and "sr" in self.tasks:
            raise ValueError("data.source 'adair' has no sr task: use 'demo' (clean photos downscaled with data.sr) or 'paired' (input/ at the targets' size / 4)")
        return self

    @property
    def input_scale(self) -> int:
        """The ground truth's side over the degraded input's, for every task of the run (checked to be one)."""
        return input_scale(self.tasks[0])


class PretrainConfig(_Section):
    steps: int = Field(2000, ge=0, description="Supervised steps with the family's loss (L1 of the deterministic output for irpo, the diffusion loss for diffusion) used when no pre-trained weights are at hand.")
    batch_size: int = Field(8, gt=0, description="Pre-training batch size.")
    lr: float = Field(2e-4, gt=0, description="Pre-training AdamW learning rate (cosine decay).")
    output: Path = Field(Path("runs/pretrain/model.safetensors"), description="Where the pre-trained weights are written.")
    crop_size: int | None = Field(None, ge=16, description="Training crop for pre-training (multiple of 8); None = data.crop_size. Smaller crops make CPU pre-training cheaper.")
    log_every: int = Field(50, gt=0, description="Print the running loss and the PSNR every N steps.")
    clean_fraction: float = Field(0.0, ge=0, lt=1, description="Probability that a pre-training item is replaced by a clean pair: a training photo's crop, its exposure and contrast changed (blended towards a random flat level, trainer/pretrain.py clean_pair), as both input and target. A blind restorer sees a 32-64 px crop; a dark or flat grey clean crop looks like a low-light or hazy one there, and the demo's U-Net brightens or dehazes it (docs/benchmarks.md, 'Eighth session'). Clean pairs are meant to teach it that such crops can be clean; on the demo's dev photos they did not buy the nearly clean columns (docs/benchmarks.md). 0 = off (every item a degraded pair, as AdaIR and IRPO train); 0.125 gives about one clean pair per batch of 8, the share of one of the demo's 7 degradation variants.")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="Write an exponential moving average of the pre-training weights instead of the last ones: diffusers' EMAModel, stepped after every optimiser step, its decay warmed up as min(ema_decay, (1 + n) / (10 + n)) at step n (the learner's learner.ema_decay, same class). None = off (the last weights). Diffusion pre-training usually evaluates an EMA (DDPM, Ho et al. 2020: 0.9999 over 800k steps); a short CPU run needs a short horizon, ~1 / (1 - decay) steps.")


class MiningConfig(_Section):
    fraction: float = Field(0.3, gt=0, le=1, description="Fraction of each task's training samples kept (IRPO: the worst 30%).")
    metric: Literal["psnr", "ssim"] = Field("psnr", description="Metric that ranks difficulty (lower = harder).")
    selection: Literal["hardest", "random"] = Field("hardest", description="'hardest' (IRPO) or 'random' (the control of the ablation).")
    manifest: Path = Field(Path("runs/mining/manifest.jsonl"), description="Per-sample scores (id, task, psnr, ssim) written by mining.")
    subset: Path = Field(Path("runs/mining/subset.json"), description="Selected sample ids used for post-training.")
    crop: int | None = Field(None, ge=16, description="Score each training image on its centre crop of this size (px, multiple of 16); None = the whole image (IRPO). Crops keep CPU mining fast.")
    batch_size: int = Field(8, gt=0, description="Images per scoring forward (only same-size images share a batch).")


class EvalConfig(_Section):
    convention: Literal["adair", "basicsr"] = Field("adair", description="'adair': RGB, skimage PSNR/SSIM, data_range 1, no crop, sizes cut to multiples of 16. 'basicsr': Y channel of YCbCr, 11x11 Gaussian SSIM, border crop.")
    crop_border: int = Field(0, ge=0, description="Border crop in pixels for the basicsr convention.")
    tile: int | None = Field(None, gt=0, description="Tile size for full-image inference on large images (None = whole image).")
    tile_overlap: int = Field(32, ge=0, description="Overlap between tiles in pixels.")
    crop: int | None = Field(None, ge=16, description="Centre-crop each test image to this size (px, multiple of 16); None = whole images (the paper). For fast CPU demos.")
    identity_arch: Literal["r18", "r34", "r50", "r100"] = Field("r50", description="ArcFace IResNet depth of the face task's identity metric (trainer/face_identity.py; insightface's arcface_torch backbones).")
    identity_weights: Path | None = Field(None, description="Local ArcFace IResNet weights (arcface_torch backbone.pth or .safetensors, its key names) for the identity metric; None = RANDOM weights, said so in every result (identity values then mean nothing).")
    ood: bool = Field(True, description="Also evaluate the out-of-distribution degradation set.")
    samples: int = Field(0, ge=0, description="Besides the deterministic output, score this many stochastic samples per image from the sampler GRPO trains (policy.sample: Beta draws, or the eta > 0 chain), seeded per image by data.seed, and report their mean PSNR/SSIM/R (`*_sampled`): what post-training optimises. 0 = the deterministic output only.")


class GRPOConfig(_Section):
    group_size: int = Field(4, ge=2, description="G: stochastic candidates per image (IRPO: 4).")
    advantage: Literal["group", "group_no_std", "history", "history_batch"] = Field("group", description="'group': (r - mean)/sqrt(var + eps); 'group_no_std': r - mean; 'history': (r - group mean) / the spread of the image's earlier rewards around their groups' means (DDPO's per-prompt tracker, centred per visit because the crop and flip change the input at every visit; the current batch's spread until history_min_count earlier rewards are tracked; trainer/grpo/advantages.py); 'history_batch': the spread of the image's history together with the current batch's (difficulty-adaptive paper, which beats history only). A group of equal rewards gets 0.")
    advantage_eps: float = Field(1e-6, gt=0, description="eps in the advantage denominator.")
    reward_aggregation: Literal["sum", "per_term"] = Field("sum", description="'sum': the advantage normalises R, the weighted sum of the reward terms (IRPO). 'per_term': each term is normalised within its group, then the weighted sum is scaled by its batch standard deviation (GDPO's decoupled normalisation, as Flow-Factory's `gdpo` aggregation and MixGRPO; flow_grpo issue 188), so a term of large spread does not drown the others. Needs grpo.advantage 'group' and, for the diffusion family, rl.reward_at 'final' (step-wise estimates are scored as R only).")
    history_buffer: int = Field(32, gt=0, description="Centred rewards kept per image for the 'history' advantages.")
    history_min_count: int = Field(8, gt=0, description="Below this many earlier rewards of an image the 'history' advantages use the current batch's spread.")
    clip_eps: float = Field(0.2, gt=0, description="PPO ratio clip range.")
    ppo_epochs: int = Field(1, ge=1, description="Policy updates per rollout batch (>1 makes the ratio differ from 1 within a batch).")
    kl_coef: float = Field(0.01, ge=0, description="Weight of the KL to the frozen reference policy.")
    entropy_coef: float = Field(0.01, ge=0, description="Entropy bonus tau (IRPO: 0.01).")
    sup_coef: tuple[float, float] = Field((0.35, 0.1), description="lambda_sup: L1(best candidate, GT), annealed linearly from the first to the second value.")
    cons_coef: tuple[float, float] = Field((0.2, 0.05), description="lambda_cons: L1(best candidate, deterministic output), annealed linearly.")
    adaptive_weighting: bool = Field(False, description="Difficulty-adaptive per-sample RL/SFT weighting w_i = ||y_i-g_i|| / max_j ||y_j-g_j||.")
    train_on: Literal["subset", "all"] = Field("subset", description="'subset': only the ids in mining.subset (the hard 30%, or the random control with mining.selection=random); 'all': the whole training set.")

    @model_validator(mode="after")
    def _check_history(self) -> "GRPOConfig":
        if self.history_min_count > self.history_buffer:
            raise ValueError(f"grpo.history_min_count={self.history_min_count} exceeds grpo.history_buffer={self.history_buffer}: the history could never be used")
        return self


class OptimConfig(_Section):
    lr: float = Field(3e-5, gt=0, description="Adam learning rate of the backbone (IRPO: 3e-5).")
    head_lr_mult: float = Field(6.0, gt=0, description="Learning-rate multiplier of the policy's 'heads' parameter group: the IRPO family's Beta heads (IRPO: x6); the diffusion family has none.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")
    weight_decay: float = Field(0.0, ge=0, description="Adam weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Global gradient-norm clip.")
    epochs: int = Field(30, gt=0, description="Passes over the (mined) training set (IRPO: 30).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many learner steps (overrides epochs when smaller).")


class WeightSyncConfig(_Section):
    """How each policy version travels from learner rank 0 to the rollout actors (trainer/actors/weight_sync.py, trainer/actors/collective.py)."""

    transport: Literal["object_store", "collective"] = Field("object_store", description="'object_store': rank 0's flat packet goes through Ray's object store and every actor fetches it (zero-copy on one node, a node-to-node copy per actor node otherwise). 'collective': rank 0 and the live rollout actors form a process group of their own (a TCPStore hosted by rank 0; NCCL when every member holds its policy on CUDA, gloo otherwise) and rank 0 broadcasts the same flat buffer; only the version and the tensor table go through Ray. This is how OpenRLHF (vllm_sync_backend nccl), verl and vLLM's RLHF examples (StatelessProcessGroup + PyNccl) update rollout engines on GPU clusters. The first version and the frozen parameters still go through the object store; a version whose broadcast fails or times out, or that is published while the group's membership changed (an actor died or restarted), goes through the object store too, and the group forms again once the live actors are the same at two versions in a row (counted afresh after a failure, so a restarting actor is not tried at once).")
    timeout_s: float = Field(60.0, gt=0, description="Bound on forming the broadcast group and on one broadcast (the process group's timeout, and the driver's wait): past it the group is torn down and the version goes through the object store. It must cover one transfer of the changing tensors (gloo on 10 GbE: about 1 s per GB).")
    max_failures: int = Field(3, ge=1, description="Failed formations or broadcasts in a row after which the run stays on the object store for good (one warning says so); any success resets the count.")


class RolloutConfig(_Section):
    num_workers: int = Field(1, ge=1, description="Rollout actors.")
    gpus_per_worker: float = Field(0.0, ge=0, description="GPUs per rollout actor (fractional allowed); 0 = CPU.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs per rollout actor.")
    images_per_worker: int = Field(1, ge=1, description="Images per rollout actor per step (IRPO: batch 1 per GPU).")
    max_staleness: int = Field(1, ge=0, description="Max policy versions a rollout may lag the learner; 0 = fully on-policy (no overlap). S batches are produced while the learner updates: raise it when sampling + scoring latency exceeds S update times (the learner_idle_fraction log shows it).")
    max_restarts: int = Field(3, ge=0, description="Times Ray restarts a crashed rollout actor.")
    step_retries: int = Field(2, ge=0, description="Retries of one rollout part, with backoff, after the reward service stayed unreachable through its client's retries; then the run stops. A part whose actor died is not counted here: it moves to a healthy actor at once.")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources each rollout actor's bundle asks for besides CPU/GPU (e.g. {'rollout_node': 1} to keep rollouts on the nodes started with that resource).")
    placement_strategy: Literal["PACK", "SPREAD"] = Field("SPREAD", description="Ray placement-group strategy of the rollout actors' bundles: SPREAD (one node's loss takes fewest actors) or PACK (fewest nodes).")
    placement_timeout_s: float = Field(60.0, gt=0, description="How long the rollout group waits at start for its placement group (e.g. for an autoscaler to add nodes) before the run stops naming the resources no node offers.")
    restart_timeout_s: float = Field(600.0, gt=0, description="How long rollout work may wait with no rollout actor alive (all crashed and restarting, or their node lost and not yet replaced) before the run stops. A fresh actor process imports torch and builds the policy.")
    weight_sync: WeightSyncConfig = Field(default_factory=WeightSyncConfig, description="The transport of each policy version to the actors: Ray's object store (default) or a broadcast from learner rank 0.")

    @model_validator(mode="before")
    @classmethod
    def _moved_learner_fields(cls, raw):
        moved = {"learner_gpus": "learner.gpus_per_rank", "learner_cpus": "learner.cpus_per_rank"}
        old = [k for k in moved if isinstance(raw, dict) and k in raw]
        if old:
            raise ValueError("the learner's resources moved to the `learner:` section: " + ", ".join(f"rollout.{k} -> {moved[k]}" for k in old))
        return raw


class LearnerConfig(_Section):
    """The learner group (trainer/actors/learner_group.py): data-parallel ranks, micro-batches, precision, restarts."""

    num_ranks: int = Field(1, ge=1, description="Data-parallel learner ranks (Ray actors in one placement group, torch.distributed: gloo on CPU, NCCL on GPU). Each rank takes its share of a step's image groups; gradients are all-reduced once per optimiser step, so any number of ranks computes the update of one rank on the whole batch (within float rounding).")
    gpus_per_rank: float = Field(0.0, ge=0, description="GPUs of each rank; 0 = CPU. With more than one rank a rank needs a whole GPU (NCCL) or none.")
    cpus_per_rank: float = Field(1.0, gt=0, description="CPUs of each rank.")
    micro_batch_images: int | None = Field(None, ge=1, description="Images (each with its G candidates, which stay together) per forward/backward on a rank; gradients accumulate over a rank's micro-batches, each loss scaled by its share of the step, so the update equals the whole batch's. None = a rank's whole share at once. The paper AdaIR at 128 px and G = 4 needs about 11.4 GB per image in float32 (issue 22).")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="The policy forward of the update: 'fp32', or 'bf16' autocast (CUDA, or a CPU with native bf16; refused elsewhere); log-densities, KL and losses are computed in float32 either way.")
    ema_decay: float | None = Field(None, ge=0, lt=1, description="Decay of an exponential moving average of the trainable parameters (LoRA: the adapters only) for evaluation: diffusers' EMAModel, stepped after every optimiser step on every rank, its decay warmed up as min(ema_decay, (1 + n) / (10 + n)) at step n. Checkpoints hold it as ema.safetensors beside policy.safetensors (`python -m trainer.export --ema`, `trainer.evaluate --weights CKPT/ema.safetensors`, the demo's GRPO arm); rollouts always sample with the live weights (on-policy). None or 0 = off. Typical values: flow_grpo 0.9 (stepped every 8 updates), DanceGRPO 0.995; diffusers' default 0.9999 is for long supervised runs.")
    max_restarts: int = Field(2, ge=0, description="Times a run restarts a dead learner group from its latest checkpoint (a fresh start when none exists) before it stops with the resume command.")
    ready_timeout_s: float = Field(120.0, gt=0, description="How long the learner's placement group may wait for resources (an autoscaler may add nodes) before the run stops naming what is missing.")

    @model_validator(mode="after")
    def _check_gpus(self) -> "LearnerConfig":
        if self.num_ranks > 1 and self.gpus_per_rank not in (0, int(self.gpus_per_rank)):
            raise ValueError(f"learner.gpus_per_rank={self.gpus_per_rank}: with {self.num_ranks} ranks each needs whole GPUs (NCCL) or none")
        return self


class RewardConfig(_Section):
    url: str = Field("http://127.0.0.1:8100", description="Base URL of the reward service.")
    urls: list[str] = Field(default_factory=list, description="Base URLs of several reward service replicas (e.g. one per GPU); when set, url is not used. Each request goes to the replica with the fewest requests outstanding from that rollout actor, and a connection error or a 503 moves it to the next replica (irpo_common/service_client.py).")
    token_env: str | None = Field(None, description="Environment variable holding the reward service's bearer token.")
    weights: RewardWeights = Field(default_factory=RewardWeights, description="Weights of R (irpo_common.reward_spec.RewardWeights: the generic terms, 'gen', 'judge', 'task'); unset ones keep the paper's values. The trainer combines the service's terms with the judge's using these, once.")
    timeout_s: float = Field(90.0, gt=0, description="Timeout of one batch request; must exceed the reward service's request_timeout_s (checked at start), so the service answers before the client gives up.")
    retry_for_s: float = Field(300.0, ge=0, description="How long one batch request is resent (backoff 0.5 s doubling to 10 s) while the reward service is unreachable, times out or answers 5xx, before the step fails (and rollout.step_retries applies). It should cover a restart of the service, whose cold start loads its models: raise it when that takes longer.")
    start_local: bool = Field(False, description="Start a reward service on loopback for this run (the demo does); url is then ignored.")
    local_args: list[str] = Field(default_factory=list, description="Extra reward-server arguments for the local service, e.g. ['--random-weights', '--config', 'configs/reward-cpu.yaml'].")
    local_start_timeout_s: float = Field(600.0, gt=0, description="How long to wait for the local reward service to become ready.")
    local_threads: int = Field(1, gt=0, description="CPU threads of the local reward service (OMP_NUM_THREADS): it shares the machine with the Ray actors, and oversubscribed OpenMP threads spin.")
    psnr_range_db: tuple[float, float] | None = Field(None, description="PSNR thresholds (dB) the reward service maps onto [0, 1] for the PSNR term (its psnr_range_db setting); None = the service's own. A local service is started with them; a remote one must report the same in /v1/info or the run stops.")
    psnr_range_percentiles: tuple[float, float] | None = Field(None, description="Set psnr_range_db from the data: these percentiles (0-100) of the starting model's PSNR over the training set, read from mining.manifest when the run starts (e.g. [5, 95]). Exclusive with psnr_range_db.")

    @property
    def endpoints(self) -> list[str]:
        return self.urls or [self.url]

    @model_validator(mode="after")
    def _check_psnr_range(self) -> "RewardConfig":
        if self.psnr_range_db is not None and self.psnr_range_percentiles is not None:
            raise ValueError("reward.psnr_range_db and reward.psnr_range_percentiles are exclusive: set one")
        if self.psnr_range_db is not None and not self.psnr_range_db[0] < self.psnr_range_db[1]:
            raise ValueError(f"reward.psnr_range_db must be increasing, got {list(self.psnr_range_db)}")
        if self.psnr_range_percentiles is not None and not 0 <= self.psnr_range_percentiles[0] < self.psnr_range_percentiles[1] <= 100:
            raise ValueError(f"reward.psnr_range_percentiles must satisfy 0 <= low < high <= 100, got {list(self.psnr_range_percentiles)}")
        return self


class JudgeConfig(_Section):
    url: str | None = Field(None, description="Base URL of the judge service; None = no judge term (its weight is renormalised away).")
    urls: list[str] = Field(default_factory=list, description="Base URLs of several judge service replicas; when set, url is not used (balanced and failed over as reward.urls).")
    token_env: str | None = Field(None, description="Environment variable holding the judge service's bearer token.")
    mode: Literal["fast", "reasoned", "iqa"] = Field("fast", description="'fast': expected score from digit logprobs; 'reasoned': the IRPO verifier prompt; 'iqa': no-reference quality of the output alone, expected level over excellent..bad (Q-Align / DeQA-Score).")
    timeout_s: float = Field(120.0, gt=0, description="Timeout of one batch request; must exceed the judge service's request_timeout_s (checked at start), so the service answers before the client gives up. A timed-out request is not resent.")
    retries: int = Field(3, ge=0, description="Resends, with exponential backoff, after a connection failure or a 5xx other than 503/504 (e.g. 502: a malformed answer of the judge's backend); 503 and 504 are not resent, the service has already retried its backend.")
    on_outage: Literal["stop", "drop"] = Field("stop", description="When the judge stays unreachable, times out or fails (5xx after the retries, or refuses the batch): 'stop' the run, or 'drop' the judge term for that step with renormalised weights (counted in the logs).")

    @property
    def endpoints(self) -> list[str]:
        return self.urls or ([self.url] if self.url else [])


class CheckpointConfig(_Section):
    dir: StoragePath = Field(UPath("runs/grpo/checkpoints"), description="Checkpoint folder: a local path or an fsspec URL (s3://, gs://: `pip install '.[cloud]'`). A local folder gets each checkpoint complete or not at all (written under a temporary name, then renamed); an object store cannot rename, so meta.json is written last as the commit marker and a folder without it is skipped by --resume auto.")
    every_steps: int = Field(100, gt=0, description="Save every N learner steps (and at the end).")
    keep: int = Field(3, gt=0, description="Checkpoints kept.")


class LoggingConfig(_Section):
    dir: StoragePath = Field(UPath("runs/grpo"), description="Run folder: TensorBoard events, metrics.jsonl, watch.json; a local path or an fsspec URL (as checkpoint.dir). TensorBoard writes to a URL through its own fsspec support, which appends to its event file: a backend that cannot append stops the run before any work (set tensorboard=false there). W&B keeps its local files under this folder when it is local, else in ./wandb.")
    flush_seconds: float = Field(30.0, gt=0, description="When logging.dir is a URL, metrics.jsonl is rewritten whole at most this often and at the end (object stores cannot append); a local file gets every step at once.")
    progress: bool = Field(True, description="Show a progress bar with ETA on the console.")
    tensorboard: bool = Field(True, description="Write TensorBoard event files next to metrics.jsonl.")
    wandb: bool = Field(False, description="Also log every step to Weights & Biases (`pip install .[wandb]`). The run id is stored in each checkpoint, so `--resume auto` continues the same W&B run.")
    wandb_project: str = Field("irpo", description="W&B project.")
    wandb_mode: Literal["online", "offline"] = Field("online", description="'online' streams to the W&B server; 'offline' writes the run under logging.dir/wandb for a later `wandb sync` (clusters without internet, tests).")


class WatchConfig(_Section):
    """The reward-hacking watch (trainer/watch.py): R rising while PSNR/SSIM against the ground truth fall."""

    every_steps: int = Field(0, ge=0, description="Restore and score the gold set before the first step and every N learner steps; 0 = off. Reward over-optimisation is the most reported failure of diffusion RL (flow_grpo issues 233, 92, 216); a held-out gold metric is the common remedy.")
    images: int = Field(8, ge=2, description="Gold pairs: a seeded draw of training pairs outside the post-training set (with grpo.train_on 'all' they are left out of training). Not the test photos: the watch is looked at while tuning.")
    crop: int | None = Field(None, ge=16, description="Centre crop of each gold pair (px, multiple of 8); None = data.crop_size.")
    window: int = Field(2, ge=1, description="Each watch point is compared with the one this many points earlier, paired over the gold pairs; a warning needs R up and PSNR or SSIM down, each beyond its 95% interval.")


class RayConfig(_Section):
    address: str | None = Field(None, description="Ray cluster to join ('auto', 'ray://host:port'); None = RAY_ADDRESS when set (as under `ray job submit`), else start a local Ray.")
    num_cpus: int | None = Field(None, gt=0, description="CPUs of a locally started Ray (None = all).")
    object_store_mb: int = Field(512, ge=80, description="Object store size of a locally started Ray, in MiB.")
    include_dashboard: bool = Field(False, description="Start the dashboard with a local Ray (costs ~1 GiB of RAM).")
    temp_dir: Path | None = Field(None, description="Temp/session folder of a locally started Ray (None = Ray's default).")


class TrainConfig(_Section):
    """Top level of a YAML config file."""

    name: str = Field("irpo", description="Run name.")
    seed: int = Field(0, description="Global seed.")
    device: str = Field("auto", description="'auto' (cuda when available, else cpu), 'cpu' or 'cuda'.")
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    mining: MiningConfig = Field(default_factory=MiningConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    watch: WatchConfig = Field(default_factory=WatchConfig)
    ray: RayConfig = Field(default_factory=RayConfig)

    @property
    def policy_section(self) -> ModelConfig | DiffusionConfig:
        """The configured family's section: what trainer.policies.build_policy builds from."""
        return self.policy.diffusion if self.policy.kind == "diffusion" else self.model

    @property
    def policy_weights_field(self) -> str:
        """Where the configured family's starting weights are set (for messages)."""
        section = "policy.diffusion" if self.policy.kind == "diffusion" else "model"
        return f"{section}.{self.policy_section.weights_field}"

    def with_policy_weights(self, path: Path) -> "TrainConfig":
        """A copy whose policy starts from `path` (model.checkpoint or policy.diffusion.pretrained)."""
        section = self.policy_section.with_weights(path)
        if self.policy.kind == "diffusion":
            return self.model_copy(update={"policy": self.policy.model_copy(update={"diffusion": section})})
        return self.model_copy(update={"model": section})

    @model_validator(mode="after")
    def _check_input_scale(self) -> "TrainConfig":
        scale = self.data.input_scale
        if self.policy.kind == "diffusion" and self.policy.diffusion.output_scale != scale:
            raise ValueError(f"policy.diffusion.output_scale={self.policy.diffusion.output_scale} but data.tasks {self.data.tasks} restore "
                             f"an input {scale}x smaller than the ground truth: set output_scale {scale}")
        if self.policy.kind == "irpo" and scale != 1:
            raise ValueError(f"policy.kind 'irpo' (AdaIR) restores at its input's size; data.tasks {self.data.tasks} need a model that upscales "
                             f"{scale}x (policy.kind 'diffusion' with an x4-upscaler or LDM super-resolution folder)")
        crops = {"data.crop_size": self.data.crop_size, "pretrain.crop_size": self.pretrain.crop_size, "mining.crop": self.mining.crop,
                 "eval.crop": self.eval.crop, "watch.crop": self.watch.crop}
        bad = {k: v for k, v in crops.items() if scale > 1 and v is not None and v % (8 * scale)}
        if bad:
            raise ValueError(f"{bad}: with data.tasks {self.data.tasks} the input is {scale}x smaller, and its side (crop / {scale}) must be a multiple of 8: use multiples of {8 * scale} px")
        return self

    @model_validator(mode="after")
    def _check_heads_divide_width(self) -> "TrainConfig":
        for level, h in enumerate(self.model.heads):
            width = self.model.dim * 2**level
            if width % h:
                raise ValueError(f"model.heads[{level}]={h} does not divide the level width {width}")
        return self

    @model_validator(mode="after")
    def _check_reward_aggregation(self) -> "TrainConfig":
        if self.grpo.reward_aggregation != "per_term":
            return self
        if self.grpo.advantage != "group":
            raise ValueError(f"grpo.reward_aggregation 'per_term' normalises each term within its group and replaces grpo.advantage; set grpo.advantage to 'group' (got {self.grpo.advantage!r})")
        if self.policy.kind == "diffusion" and self.policy.diffusion.rl.reward_at == "stepwise":
            raise ValueError("grpo.reward_aggregation 'per_term' needs policy.diffusion.rl.reward_at 'final': the step-wise estimates are scored as R only, not per term")
        return self

    @model_validator(mode="after")
    def _check_collective_gpus(self) -> "TrainConfig":
        if self.rollout.weight_sync.transport != "collective":
            return self
        shared = {f: v for f, v in (("rollout.gpus_per_worker", self.rollout.gpus_per_worker), ("learner.gpus_per_rank", self.learner.gpus_per_rank)) if v != int(v)}
        if shared:
            raise ValueError(f"rollout.weight_sync.transport=collective with {', '.join(f'{f}={v:g}' for f, v in shared.items())}: NCCL refuses two members "
                             "of one group on one GPU, so the learner and each rollout actor need whole GPUs (or none); or use transport object_store")
        return self

    @model_validator(mode="after")
    def _check_learner_share(self) -> "TrainConfig":
        per_step = self.rollout.num_workers * self.rollout.images_per_worker
        if self.learner.num_ranks > per_step:
            raise ValueError(f"learner.num_ranks={self.learner.num_ranks} exceeds the {per_step} images per step: every rank needs at least one image group")
        return self

    @model_validator(mode="after")
    def _check_adaptive_weighting(self) -> "TrainConfig":
        # w_i = ||y_i - g_i|| / max_j ||y_j - g_j|| is 1 for the only image of a step: every image
        # would then drop its supervised terms entirely.
        per_step = self.rollout.num_workers * self.rollout.images_per_worker
        name = "policy.diffusion.rl.adaptive_weighting" if self.policy.kind == "diffusion" else "grpo.adaptive_weighting"
        on = self.policy.diffusion.rl.adaptive_weighting if self.policy.kind == "diffusion" else self.grpo.adaptive_weighting
        if on and per_step < 2:
            raise ValueError(
                f"{name} needs at least 2 images per learner step, got {per_step} "
                "(rollout.num_workers x rollout.images_per_worker): with one image its weight w = 1 zeroes the "
                "supervised terms (L_sup, L_cons) for every image; raise rollout.images_per_worker or turn it off"
            )
        return self


class ConfigError(ValueError):
    """A config file is missing, unreadable or invalid; the message says where."""


def _apply_override(raw: dict, item: str) -> None:
    """Set one 'a.b=value' override (value parsed as YAML) in the raw config mapping."""
    key, sep, value = item.partition("=")
    parts = key.split(".")
    if not sep or not all(parts):
        raise ConfigError(f"override {item!r} is not of the form a.b=value")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: the value is not valid YAML ({exc})") from None
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:  # absent, or `null` in the file (e.g. reward.weights: null)
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {'.'.join(parts[: depth + 1])} is a value ({child!r}), not a section")
        node = child
    node[parts[-1]] = parsed


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Load a YAML config; `overrides` are 'a.b=value' strings parsed as YAML scalars."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    for item in overrides or []:
        _apply_override(raw, item)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid config:\n{exc}") from None
