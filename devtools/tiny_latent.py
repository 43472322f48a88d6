"""Tiny latent diffusion restorers in the real diffusers folder layouts, built offline with random weights.

The configurations follow diffusers' own test fixtures (../shared/notes/method.md, "Latent diffusion
restorers in diffusers"); each folder is written with the pipeline's save_pretrained, so the trainer
reads exactly what a downloaded stable-diffusion-x4-upscaler or ldm-super-resolution folder holds.
Everything here is RANDOM: for tests, the CPU smoke preset and benchmarks only.

    python -m devtools.tiny_latent --kind x4 --out runs/tiny-x4
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

KINDS = ("x4", "ldm_sr", "controlnet")


def tiny_tokenizer():
    """A CLIPTokenizer that works offline: a byte-level vocabulary and no merges."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "vocab.json").write_text(json.dumps(vocab))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=5,
                                        vocab_size=1000, projection_dim=512, max_position_embeddings=77, bos_token_id=0, eos_token_id=2, pad_token_id=1))


def tiny_x4_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 32, 64), layers_per_block=2, sample_size=32, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, use_linear_projection=True,
        only_cross_attention=(True, True, False), num_class_embeds=100,
    )


def tiny_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=[32, 32, 64], in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
                         scaling_factor=0.08333)  # the released upscaler's vae/config.json (diffusers warns on any other)


def build_x4(out: Path, seed: int = 0) -> Path:
    """StableDiffusionUpscalePipeline layout: unet/ vae/ text_encoder/ tokenizer/ scheduler/ low_res_scheduler/."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline

    torch.manual_seed(seed)
    pipe = StableDiffusionUpscalePipeline(
        vae=tiny_vae(), text_encoder=tiny_text_encoder(), tokenizer=tiny_tokenizer(), unet=tiny_x4_unet(),
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction", clip_sample=False),
        safety_checker=None, feature_extractor=None, watermarker=None, max_noise_level=350,
    )
    pipe.save_pretrained(out)
    return out


def build_ldm_sr(out: Path, seed: int = 0) -> Path:
    """LDMSuperResolutionPipeline layout: unet/ (UNet2DModel, 3 latent + 3 image channels) vqvae/ scheduler/."""
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    torch.manual_seed(seed)
    unet = UNet2DModel(block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=6, out_channels=3,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    # three levels: a 4x autoencoder like the real ldm-super-resolution-4x's, so the latent has the input's size
    vq = VQModel(block_out_channels=[32, 32, 64], in_channels=3, out_channels=3, latent_channels=3,
                 down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3)
    LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler(clip_sample=False)).save_pretrained(out)
    return out


def build_controlnet(out: Path, seed: int = 0) -> Path:
    """A ControlNet restorer (SeeSR/PASD/DiffBIR structure) in StableDiffusionControlNetPipeline's layout."""
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(block_out_channels=(4, 8), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=32, attention_head_dim=2, norm_num_groups=1)
    controlnet = ControlNetModel(block_out_channels=(4, 8), layers_per_block=2, in_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                 cross_attention_dim=32, attention_head_dim=2, conditioning_embedding_out_channels=(16, 32), norm_num_groups=1)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    StableDiffusionControlNetPipeline(
        vae=vae, text_encoder=tiny_text_encoder(), tokenizer=tiny_tokenizer(), unet=unet, controlnet=controlnet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(out)
    return out


BUILDERS = {"x4": build_x4, "ldm_sr": build_ldm_sr, "controlnet": build_controlnet}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write a tiny RANDOM latent diffusion restorer in a diffusers pipeline folder.")
    ap.add_argument("--kind", choices=KINDS, default="x4")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(BUILDERS[args.kind](args.out, args.seed))


if __name__ == "__main__":
    main()
