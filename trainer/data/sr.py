"""The sr task's degradation: the ground truth downscaled 4x, in Real-ESRGAN's first-order order.

    y = JPEG_q( down_4( x * k_sigma ) + n_delta )

Isotropic Gaussian blur k_sigma, antialiased bicubic downscaling by irpo_common.tasks.INPUT_SCALE['sr']
(MATLAB imresize's kernel, what the classical x4 benchmarks use), additive Gaussian noise of sigma delta (0-255
scale), JPEG at quality q (Wang et al. 2021, Real-ESRGAN's first order; its second order is not modelled). Each
step runs only when data.sr gives it a range, so the default is bicubic downscaling alone. Every draw comes from
the generator it is given: (image, ranges, seed) fixes the result, as for the other degradations.
"""

from __future__ import annotations

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from irpo_common.tasks import input_scale
from trainer.config import SrConfig
from trainer.data.degradations import Degrade, jpeg

SCALE = input_scale("sr")
# OOD for sr: Real-ESRGAN's full first-order ranges (options/train_realesrnet_x4plus.yml: blur_sigma [0.2, 3],
# noise_range [1, 30], jpeg_range [30, 95]), absent from the default bicubic-only training set.
REAL_ESRGAN_FIRST_ORDER = SrConfig(blur_sigma=(0.2, 3.0), noise=(1.0, 30.0), jpeg_quality=(30, 95))


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def downscale(img: Tensor) -> Tensor:
    """(3, H, W) -> (3, H / 4, W / 4) antialiased bicubic; H and W must be multiples of 4."""
    h, w = img.shape[-2:]
    if h % SCALE or w % SCALE:
        raise ValueError(f"the sr task downscales {SCALE}x: sides must be multiples of {SCALE}, got {h}x{w}")
    return F.interpolate(img[None], size=(h // SCALE, w // SCALE), mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)


def sr_degradation(cfg: SrConfig) -> Degrade:
    """blur -> 4x bicubic downscale -> noise -> JPEG, each step only when cfg gives its range."""

    def apply(img: Tensor, g: torch.Generator) -> Tensor:
        x = img
        if cfg.blur_sigma is not None:
            sigma = max(_uniform(g, *cfg.blur_sigma), 1e-3)
            k = 2 * int(np.ceil(3 * sigma)) + 1  # +-3 sigma, as Real-ESRGAN's kernel sizes (7..21) cover
            x = kornia.filters.gaussian_blur2d(x[None], (k, k), (sigma, sigma), border_type="reflect")[0]
        x = downscale(x)
        if cfg.noise is not None:
            x = (x + torch.randn(x.shape, generator=g) * (_uniform(g, *cfg.noise) / 255.0)).clamp(0, 1)
        if cfg.jpeg_quality is not None:
            x = jpeg(x, round(_uniform(g, *cfg.jpeg_quality)))
        return x

    return apply
