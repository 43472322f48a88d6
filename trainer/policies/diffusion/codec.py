"""Where the denoising chain runs: the one seam between images and the diffusion space.

The pixel-space model runs on the images themselves, mapped from [0, 1] to the [-1, 1] range its
schedule assumes. A latent model runs on its autoencoder's latents:
- AutoencoderKL (Stable Diffusion family): encode to latent_dist.mean * scaling_factor, decode from
  latents / scaling_factor. The factor comes from the VAE's config; StableDiffusionUpscalePipeline
  forces 0.08333 whatever the config says, and so do we for that layout (pipeline_folder.py).
- VQModel (LDMSuperResolutionPipeline): the chain runs on the pre-quantisation latents unscaled and
  decode quantises them first, exactly as that pipeline does.
The autoencoder is frozen: encode/decode run without gradients, in half precision on a GPU (fp32 on
a CPU), and it is not part of the policy's state (it never travels with the weights).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PixelCodec:
    channels = 3
    downscale = 1

    def encode(self, images: Tensor) -> Tensor:
        return images * 2 - 1

    def decode(self, latents: Tensor) -> Tensor:
        return (latents + 1) / 2


class LatentCodec:
    """A frozen diffusers AutoencoderKL or VQModel; images in [0, 1], latents float32 on the images' device."""

    def __init__(self, autoencoder: nn.Module, scaling_factor: float):
        self.autoencoder = autoencoder.eval().requires_grad_(False)
        self.vq = type(autoencoder).__name__ == "VQModel"
        cfg = autoencoder.config
        self.channels = int(cfg.latent_channels)
        self.downscale = 2 ** (len(cfg.block_out_channels) - 1)
        self.scaling_factor = float(scaling_factor)

    def _place(self, device: torch.device) -> None:
        # half precision on GPUs (the memory budget); fp32 on CPUs, where fp16 convolutions are slow or missing
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        p = next(self.autoencoder.parameters())
        if p.device != device or p.dtype != dtype:
            self.autoencoder.to(device=device, dtype=dtype)

    def _dtype(self) -> torch.dtype:
        return next(self.autoencoder.parameters()).dtype

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        self._place(images.device)
        x = (images * 2 - 1).to(self._dtype())
        if self.vq:
            return self.autoencoder.encode(x).latents.float()
        return self.autoencoder.encode(x).latent_dist.mean.float() * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        self._place(latents.device)
        z = latents.to(self._dtype())
        out = self.autoencoder.decode(z if self.vq else z / self.scaling_factor).sample
        return (out.float() + 1) / 2
