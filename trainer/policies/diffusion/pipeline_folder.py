"""A local diffusers pipeline folder (model_index.json) read into the parts the policy runs.

The StableDiffusionUpscalePipeline (unet/ vae/ text_encoder/ tokenizer/ scheduler/ low_res_scheduler/),
LDMSuperResolutionPipeline (unet/ vqvae/ scheduler/) and StableDiffusionControlNetPipeline (+ controlnet/)
layouts load unchanged, always with local_files_only. Every check runs before a weight is read, so a
missing part, a wrong channel count or an unknown class is one clear error before any work. The prompt
is encoded once here; the text encoder is not kept (it never reaches the rollout device).
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from trainer.config import DiffusionConfig
from trainer.policies.diffusion.codec import LatentCodec
from trainer.policies.weights import WeightsError

log = logging.getLogger(__name__)

# StableDiffusionUpscalePipeline overrides its VAE's scaling factor with this value (and warns otherwise)
X4_SCALING_FACTOR = 0.08333
UNET_CLASSES = ("UNet2DModel", "UNet2DConditionModel")
CODEC_PARTS = {"vae": "AutoencoderKL", "vqvae": "VQModel"}


class PipelineFolderError(WeightsError):
    """The pipeline folder cannot serve as a policy; the message names the part and what to fix."""


@dataclass
class PipelineParts:
    unet: nn.Module
    controlnet: nn.Module | None
    codec: LatentCodec
    scheduler_config: dict
    low_res_scheduler: object | None  # DDPMScheduler that noises the x4 condition
    prompt_embeds: Tensor | None  # (1, L, D) float32
    negative_prompt_embeds: Tensor | None  # (1, L, D), only with guidance
    condition: str  # 'image': the degraded image concatenated at latent size; 'latent': its encoding; 'controlnet'


def is_pipeline_folder(path: Path | None) -> bool:
    return path is not None and (path / "model_index.json").is_file()


def _config(folder: Path, part: str, name: str = "config.json") -> dict:
    f = folder / part / name
    if not f.is_file():
        raise PipelineFolderError(f"diffusion pretrained={folder}: {part}/{name} is missing")
    return json.loads(f.read_text())


def _class_of(index: dict, folder: Path, part: str, allowed: tuple[str, ...]) -> str:
    entry = index.get(part)
    name = entry[1] if isinstance(entry, list) and len(entry) == 2 else None
    if name not in allowed:
        raise PipelineFolderError(f"diffusion pretrained={folder}: {part} is {name!r} in model_index.json; supported: {', '.join(allowed)}")
    return name


def _check(folder: Path, cfg: DiffusionConfig) -> dict:
    """Everything that can be checked from the JSON files; returns the plan for loading."""
    index = json.loads((folder / "model_index.json").read_text())
    unet_cls = _class_of(index, folder, "unet", UNET_CLASSES)
    codec_part = next((p for p in CODEC_PARTS if index.get(p) and index[p][1] is not None), None)
    if codec_part is None:
        raise PipelineFolderError(f"diffusion pretrained={folder}: no autoencoder (vae/ with AutoencoderKL or vqvae/ with VQModel) in model_index.json")
    _class_of(index, folder, codec_part, (CODEC_PARTS[codec_part],))
    unet_cfg, codec_cfg = _config(folder, "unet"), _config(folder, codec_part)
    sched = _config(folder, "scheduler", "scheduler_config.json")
    latent = int(codec_cfg["latent_channels"])
    has_controlnet = bool(index.get("controlnet") and index["controlnet"][1])
    if has_controlnet:
        _class_of(index, folder, "controlnet", ("ControlNetModel",))
        cn_cfg = _config(folder, "controlnet")
        if unet_cfg["in_channels"] != latent or cn_cfg["in_channels"] != latent:
            raise PipelineFolderError(f"diffusion pretrained={folder}: with a ControlNet the U-Net and ControlNet take the {latent} latent channels, got {unet_cfg['in_channels']} and {cn_cfg['in_channels']}")
        if cn_cfg.get("conditioning_channels", 3) != 3:
            raise PipelineFolderError(f"diffusion pretrained={folder}: the ControlNet takes {cn_cfg['conditioning_channels']} conditioning channels; the degraded RGB image has 3")
        cn_down = 2 ** (len(cn_cfg["conditioning_embedding_out_channels"]) - 1)
        if cn_down != 2 ** (len(codec_cfg["block_out_channels"]) - 1):
            raise PipelineFolderError(f"diffusion pretrained={folder}: the ControlNet's conditioning embedding downsamples {cn_down}x but the autoencoder {2 ** (len(codec_cfg['block_out_channels']) - 1)}x")
        condition = "controlnet"
    else:
        extra = unet_cfg["in_channels"] - latent
        condition = {3: "image", latent: "latent"}.get(extra)
        if condition is None or unet_cfg["out_channels"] != latent:
            raise PipelineFolderError(f"diffusion pretrained={folder}: the U-Net has {unet_cfg['in_channels']} input and {unet_cfg['out_channels']} output channels; "
                                      f"conditioning by concatenation needs {latent} + 3 (the degraded image) or {2 * latent} (its latent) in and {latent} out")
    if unet_cfg.get("out_channels") != latent:
        raise PipelineFolderError(f"diffusion pretrained={folder}: the U-Net outputs {unet_cfg.get('out_channels')} channels, the latent has {latent}")
    class_labels = unet_cls == "UNet2DConditionModel" and (unet_cfg.get("num_class_embeds") or unet_cfg.get("class_embed_type"))
    if class_labels:
        if not (index.get("low_res_scheduler") and index["low_res_scheduler"][1]):
            raise PipelineFolderError(f"diffusion pretrained={folder}: the U-Net takes class labels (the x4 upscaler's noise level) but there is no low_res_scheduler/")
        _config(folder, "low_res_scheduler", "scheduler_config.json")
        limit = min(index.get("max_noise_level", 350), (unet_cfg.get("num_class_embeds") or 10**9) - 1)
        if cfg.noise_level > limit:
            raise PipelineFolderError(f"policy.diffusion.noise_level={cfg.noise_level} exceeds {limit} (max_noise_level / num_class_embeds of {folder})")
    text = unet_cls == "UNet2DConditionModel"
    if text and cfg.prompt_embeds is None:
        for part in ("text_encoder", "tokenizer"):
            if not (index.get(part) and index[part][1]) or not (folder / part).is_dir():
                raise PipelineFolderError(f"diffusion pretrained={folder}: the U-Net cross-attends to a prompt but {part}/ is missing; add it or set policy.diffusion.prompt_embeds")
    for key, value in (("prediction_type", sched.get("prediction_type", "epsilon")), ("clip_x0", sched.get("clip_sample", True)),
                       ("train_timesteps", sched.get("num_train_timesteps", 1000)), ("beta_schedule", sched.get("beta_schedule", "linear"))):
        # a field left at its default yields to the folder (a config dumped into a checkpoint lists every field)
        if getattr(cfg, key) != type(cfg).model_fields[key].default and getattr(cfg, key) != value:
            raise PipelineFolderError(f"policy.diffusion.{key}={getattr(cfg, key)!r} but {folder}/scheduler says {value!r}; the folder's scheduler decides: drop the setting")
    if cfg.guidance_scale > 1 and not text:
        raise PipelineFolderError(f"policy.diffusion.guidance_scale={cfg.guidance_scale} needs a prompt-conditioned U-Net; {folder}'s is a {unet_cls}")
    return {"index": index, "unet_cls": unet_cls, "codec_part": codec_part, "controlnet": has_controlnet, "text": text,
            "class_labels": bool(class_labels), "scheduler": sched, "condition": condition}


def _encode_prompts(folder: Path, cfg: DiffusionConfig, index: dict) -> tuple[Tensor, Tensor | None]:
    if cfg.prompt_embeds is not None:
        from safetensors.torch import load_file

        if not Path(cfg.prompt_embeds).is_file():
            raise PipelineFolderError(f"policy.diffusion.prompt_embeds={cfg.prompt_embeds}: file not found")
        saved = load_file(str(cfg.prompt_embeds))
        if "prompt_embeds" not in saved or (cfg.guidance_scale > 1 and "negative_prompt_embeds" not in saved):
            raise PipelineFolderError(f"{cfg.prompt_embeds} needs 'prompt_embeds'{' and negative_prompt_embeds' if cfg.guidance_scale > 1 else ''}; it holds {sorted(saved)}")
        neg = saved.get("negative_prompt_embeds") if cfg.guidance_scale > 1 else None
        return saved["prompt_embeds"].float(), None if neg is None else neg.float()
    import transformers

    tokenizer = getattr(transformers, index["tokenizer"][1]).from_pretrained(folder / "tokenizer", local_files_only=True)
    encoder = getattr(transformers, index["text_encoder"][1]).from_pretrained(folder / "text_encoder", local_files_only=True).eval()
    prompts = [cfg.prompt] + ([cfg.negative_prompt] if cfg.guidance_scale > 1 else [])
    # as the Stable Diffusion pipelines encode: padded to the tokenizer's length, the last hidden state
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        embeds = encoder(ids)[0].float()
    del encoder
    gc.collect()
    return embeds[:1], embeds[1:] if cfg.guidance_scale > 1 else None


def load_pipeline_folder(folder: Path, cfg: DiffusionConfig) -> PipelineParts:
    """The parts of `folder`, checked first; the prompt encoded and its text encoder released."""
    import diffusers

    plan = _check(folder, cfg)
    index = plan["index"]

    def load(part: str, cls: str) -> nn.Module:
        try:
            return getattr(diffusers, cls).from_pretrained(folder / part, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise PipelineFolderError(f"diffusion pretrained={folder}: cannot load {part}/ as {cls} ({exc})") from None

    unet = load("unet", plan["unet_cls"])
    autoencoder = load(plan["codec_part"], CODEC_PARTS[plan["codec_part"]])
    if index.get("_class_name") == "StableDiffusionUpscalePipeline":
        scaling = X4_SCALING_FACTOR
    else:
        scaling = 1.0 if plan["codec_part"] == "vqvae" else float(autoencoder.config.scaling_factor)
    controlnet = load("controlnet", "ControlNetModel") if plan["controlnet"] else None
    low_res = None
    if plan["class_labels"]:
        low_res = diffusers.DDPMScheduler.from_config(_config(folder, "low_res_scheduler", "scheduler_config.json"))
    prompt = negative = None
    if plan["text"]:
        prompt, negative = _encode_prompts(folder, cfg, index)
        if prompt.shape[-1] != unet.config.cross_attention_dim:
            raise PipelineFolderError(f"prompt embeddings have width {prompt.shape[-1]}; the U-Net cross-attends to {unet.config.cross_attention_dim}")
    log.info("diffusion policy: %s from %s (%s, %s conditioning, scaling factor %g)", plan["unet_cls"], folder, CODEC_PARTS[plan["codec_part"]], plan["condition"], scaling)
    return PipelineParts(unet, controlnet, LatentCodec(autoencoder, scaling), plan["scheduler"], low_res, prompt, negative, plan["condition"])
