"""The blind-face-restoration degradation of GFPGAN, CodeFormer and the diffusion BFR papers (DiffBIR, LRPO).

    y = resize_back( JPEG_q( downsample_s( x * k_sigma ) + n_delta ) )

Gaussian blur k_sigma, bilinear downsampling by a factor s, additive Gaussian noise of sigma delta (0-255
scale), JPEG at quality q, bilinear upsampling back to the input size; sigma, s, delta and q are drawn
uniformly from the ranges of data.face (GFPGAN's training options by default). Every draw comes from the
generator it is given, so (image, ranges, seed) fixes the result, as for the other degradations.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import kornia
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from trainer.config import FaceConfig
from trainer.data.degradations import Degrade


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def jpeg(img: Tensor, quality: int) -> Tensor:
    """Encode a (3, H, W) image in [0, 1] as an 8-bit JPEG at `quality` and decode it (Pillow's libjpeg)."""
    arr = (img.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).float() / 255.0


def blur_kernel_size(sigma: float, largest: int, side: int) -> int:
    """Odd kernel covering +-3 sigma, at most `largest` (GFPGAN's fixed 41) and below the image side (reflect padding)."""
    k = min(largest, 2 * int(np.ceil(3 * sigma)) + 1, side - 1 if side % 2 == 0 else side - 2)
    return max(k, 3)


@dataclass(frozen=True)
class BfrDraw:
    """One draw of the degradation's factors."""

    blur_sigma: float
    downsample: float
    noise: float
    jpeg_quality: int


def draw(ranges: FaceConfig, g: torch.Generator) -> BfrDraw:
    """Each factor uniform in its range of data.face (the JPEG quality rounded to an integer)."""
    return BfrDraw(_uniform(g, *ranges.blur_sigma), _uniform(g, *ranges.downsample), _uniform(g, *ranges.noise),
                   round(_uniform(g, *ranges.jpeg_quality)))


def bfr_degradation(ranges: FaceConfig) -> Degrade:
    """The BFR degradation with the ranges of `ranges` (data.face), as a Degrade of trainer.data.degradations."""

    def apply(img: Tensor, g: torch.Generator) -> Tensor:
        d = draw(ranges, g)
        h, w = img.shape[-2:]
        k = blur_kernel_size(d.blur_sigma, ranges.blur_kernel_size, min(h, w))
        x = kornia.filters.gaussian_blur2d(img[None], (k, k), (d.blur_sigma, d.blur_sigma), border_type="reflect")
        small = (max(1, round(h / d.downsample)), max(1, round(w / d.downsample)))
        x = F.interpolate(x, size=small, mode="bilinear", align_corners=False)[0]
        x = (x + torch.randn(x.shape, generator=g) * (d.noise / 255.0)).clamp(0, 1)
        x = jpeg(x, d.jpeg_quality)
        return F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0].clamp(0, 1)

    return apply


# OOD for the face task: every factor beyond GFPGAN's training ranges (heavier blur, lower resolution, more
# noise, stronger compression), the regime of the real-world sets' worst faces.
SEVERE = FaceConfig(blur_sigma=(10.0, 15.0), downsample=(8.0, 16.0), noise=(20.0, 30.0), jpeg_quality=(30, 60))
