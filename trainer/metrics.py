"""Full-reference PSNR/SSIM in the two conventions restoration papers use.

'adair' (AdaIR/PromptIR test code, used by IRPO's tables): RGB in [0, 1] clipped, scikit-image
PSNR with data_range 1 and SSIM with its defaults (7x7 uniform window) over the channels, no
border crop; images already cut to multiples of 16 by the data loader.
'basicsr': both images quantised to 8 bits, the Y channel of BT.601 studio-swing YCbCr on the
0-255 scale, crop_border pixels removed, PSNR with data_range 255 and SSIM with an 11x11
Gaussian window (sigma 1.5, population covariance), as BasicSR's calculate_psnr/ssim(test_y_channel).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import Tensor

Convention = Literal["adair", "basicsr"]

# BT.601 luma with studio swing (Y in [16, 235]) from RGB in [0, 1].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def _hwc(img: Tensor) -> np.ndarray:
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {tuple(img.shape)}")
    return img.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64)


def luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ _Y_WEIGHTS + 16.0


def at_size(img: Tensor, size: tuple[int, int]) -> Tensor:
    """(..., 3, h, w) bicubic-upsampled to `size`, or `img` itself at that size: the sr task's smaller input where it is
    measured or shown beside its output (the reward service upsamples it the same way)."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    x = img if img.dim() == 4 else img[None]
    out = F.interpolate(x.float(), size=tuple(size), mode="bicubic", align_corners=False).clamp(0, 1)
    return out if img.dim() == 4 else out[0]


def psnr_ssim(restored: Tensor, target: Tensor, convention: Convention = "adair", crop_border: int = 0) -> tuple[float, float]:
    """PSNR (dB) and SSIM of one (3, H, W) image pair in the chosen convention."""
    if restored.shape != target.shape:
        raise ValueError(f"restored {tuple(restored.shape)} and target {tuple(target.shape)} differ in shape")
    x, y = _hwc(restored), _hwc(target)
    if convention == "adair":
        psnr = peak_signal_noise_ratio(y, x, data_range=1.0)
        ssim = structural_similarity(y, x, data_range=1.0, channel_axis=2)
        return float(psnr), float(ssim)
    if convention != "basicsr":
        raise ValueError(f"unknown metric convention {convention!r}")
    x, y = (luma(np.round(a * 255.0) / 255.0) for a in (x, y))
    if crop_border:
        x, y = x[crop_border:-crop_border, crop_border:-crop_border], y[crop_border:-crop_border, crop_border:-crop_border]
    psnr = peak_signal_noise_ratio(y, x, data_range=255.0)
    ssim = structural_similarity(y, x, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return float(psnr), float(ssim)
