"""The denoiser: a diffusers UNet2DModel that sees [x_t, condition] stacked on channels.

Built from the config with random weights, or loaded from a local save_pretrained folder
(never a hub id: local_files_only). Either way its channels must fit the codec: 2 C in, C out.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffusers import UNet2DModel

from trainer.policies.diffusion.config import DiffusionConfig

log = logging.getLogger(__name__)


class DenoiserError(ValueError):
    """The configured U-Net cannot be built or loaded; the message says what to fix."""


def _from_folder(folder: Path) -> UNet2DModel:
    if not (folder / "config.json").is_file():
        raise DenoiserError(f"diffusion pretrained={folder}: not a diffusers model folder (no config.json); expected UNet2DModel.save_pretrained output")
    try:
        return UNet2DModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DenoiserError(f"diffusion pretrained={folder}: cannot load a UNet2DModel ({exc})") from None


def build_denoiser(cfg: DiffusionConfig, channels: int) -> UNet2DModel:
    """The U-Net of `cfg` (weights from cfg.pretrained when set, else RANDOM, logged)."""
    if cfg.pretrained is not None:
        unet = _from_folder(Path(cfg.pretrained))
        log.info("diffusion denoiser loaded from %s", cfg.pretrained)
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
        log.warning("diffusion denoiser built with RANDOM weights (policy.pretrained is not set)")
    got = (unet.config.in_channels, unet.config.out_channels)
    if got != (2 * channels, channels):
        raise DenoiserError(f"the U-Net has {got[0]} input and {got[1]} output channels; conditioning by concatenation needs {2 * channels} and {channels}")
    return unet
