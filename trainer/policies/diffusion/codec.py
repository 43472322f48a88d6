"""Where the denoising chain runs: the one seam between images and the diffusion space.

The pixel-space model runs on the images themselves, mapped from [0, 1] to the [-1, 1] range its
schedule assumes. A latent model plugs in here with a VAE (diffusers AutoencoderKL: encode to
latent_dist.mean * scaling_factor, decode from latents / scaling_factor); the policy encodes the
degraded condition with the same codec, so conditioning by channel concatenation is unchanged.
"""

from __future__ import annotations

from torch import Tensor


class PixelCodec:
    channels = 3
    downscale = 1

    def encode(self, images: Tensor) -> Tensor:
        return images * 2 - 1

    def decode(self, latents: Tensor) -> Tensor:
        return (latents + 1) / 2


def build_codec(space: str) -> PixelCodec:
    if space == "pixel":
        return PixelCodec()
    raise ValueError(f"unknown diffusion space {space!r} (only 'pixel' is implemented; a VAE codec plugs in here)")
