"""The denoiser: a diffusers UNet2DModel that sees [x_t, condition] stacked on channels.

Built from the config's fields, or loaded from a local save_pretrained folder (never a hub id:
local_files_only). Either way its channels must fit the codec: 2 C in, C out. Our .safetensors
files of the whole policy are loaded by the family's builder (trainer/policies/diffusion/__init__.py)
into a U-Net built from the fields.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffusers import UNet2DModel

from trainer.config import DiffusionConfig
from trainer.policies.weights import WeightsError

log = logging.getLogger(__name__)


class DenoiserError(WeightsError):
    """The configured U-Net cannot be built or loaded; the message says what to fix."""


def _from_folder(folder: Path, load_weights: bool) -> UNet2DModel:
    if not (folder / "config.json").is_file():
        raise DenoiserError(f"diffusion pretrained={folder}: not a diffusers model folder (no config.json); expected UNet2DModel.save_pretrained output")
    try:
        if not load_weights:  # the architecture only
            return UNet2DModel.from_config(UNet2DModel.load_config(folder, local_files_only=True))
        return UNet2DModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DenoiserError(f"diffusion pretrained={folder}: cannot load a UNet2DModel ({exc})") from None


def build_denoiser(cfg: DiffusionConfig, channels: int, load_weights: bool = True) -> UNet2DModel:
    """The U-Net of `cfg`: from cfg.pretrained when it is a diffusers folder (its weights unless load_weights=False),
    else from the fields with fresh weights (RANDOM, logged, when nothing is to be loaded)."""
    pretrained = None if cfg.pretrained is None else Path(cfg.pretrained)
    if pretrained is not None and pretrained.is_dir():
        unet = _from_folder(pretrained, load_weights)
        if load_weights:
            log.info("diffusion denoiser loaded from %s", pretrained)
    elif pretrained is not None and pretrained.suffix != ".safetensors":
        raise DenoiserError(f"diffusion pretrained={pretrained}: neither a diffusers model folder nor a .safetensors file of the policy")
    else:
        levels = len(cfg.block_out_channels)
        down = ["DownBlock2D"] * levels
        up = ["UpBlock2D"] * levels
        if cfg.attention:
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        unet = UNet2DModel(
            in_channels=2 * channels,
            out_channels=channels,
            block_out_channels=tuple(cfg.block_out_channels),
            layers_per_block=cfg.layers_per_block,
            down_block_types=tuple(down),
            up_block_types=tuple(up),
            norm_num_groups=cfg.norm_num_groups,
        )
        if pretrained is None and load_weights:
            log.warning("diffusion denoiser built with RANDOM weights (policy.diffusion.pretrained is not set)")
    got = (unet.config.in_channels, unet.config.out_channels)
    if got != (2 * channels, channels):
        raise DenoiserError(f"the U-Net has {got[0]} input and {got[1]} output channels; conditioning by concatenation needs {2 * channels} and {channels}")
    return unet
