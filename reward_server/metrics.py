"""Batched full-reference metrics and the IRPO task-aware terms, on (N, 3, H, W) tensors in [0, 1].

Convention (AdaIR's evaluation, ../shared/notes/method.md): RGB in [0, 1], PSNR with data_range 1 over
all pixels and channels, SSIM as scikit-image's default (7x7 uniform window, sample covariance,
K1 0.01, K2 0.03, valid region only, mean over channels). Task terms use luma
Y = 0.299 R + 0.587 G + 0.114 B and unnormalised 3x3 Sobel gradients with replicated borders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import spatial_gradient

from irpo_common.tasks import check_covers_tasks
_EPS = 1e-6
_LUMA = (0.299, 0.587, 0.114)
_SSIM_WIN = 7
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per item (inf for identical images); MSE in float64 so near-identical pairs stay exact."""
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse)).float()


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean SSIM per item, equal to skimage.metrics.structural_similarity(..., data_range=1, channel_axis)."""
    def avg(t: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(t, _SSIM_WIN, stride=1)

    n_pix = _SSIM_WIN * _SSIM_WIN
    cov_norm = n_pix / (n_pix - 1)
    ux, uy = avg(x), avg(y)
    vx = cov_norm * (avg(x * x) - ux * ux)
    vy = cov_norm * (avg(y * y) - uy * uy)
    vxy = cov_norm * (avg(x * y) - ux * uy)
    s = ((2 * ux * uy + _SSIM_C1) * (2 * vxy + _SSIM_C2)) / ((ux * ux + uy * uy + _SSIM_C1) * (vx + vy + _SSIM_C2))
    return s.flatten(1).mean(1)


def luma(x: torch.Tensor) -> torch.Tensor:
    w = x.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _sobel(y_luma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    g = spatial_gradient(y_luma, mode="sobel", order=1, normalized=False)  # (N, 1, 2, H, W)
    return g[:, 0, 0], g[:, 0, 1]


def _magnitude(gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(gx * gx + gy * gy + 1e-12)


def _ratio_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.minimum(a / (b + _EPS), b / (a + _EPS)).clamp(0, 1)


def derain_term(restored: torch.Tensor) -> torch.Tensor:
    """1 - clip01(|Ex - Ey| / max(Ex + Ey, eps)): rain streaks make gradients anisotropic. No reference needed."""
    gx, gy = _sobel(luma(restored))
    ex, ey = gx.abs().flatten(1).mean(1), gy.abs().flatten(1).mean(1)
    return 1 - ((ex - ey).abs() / (ex + ey).clamp_min(_EPS)).clamp(0, 1)


def task_terms(restored: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
    """All five task-aware terms per item (each (N,)); the caller picks the item's task."""
    y_r, y_g = luma(restored), luma(reference)
    m_r, m_g = _magnitude(*_sobel(y_r)), _magnitude(*_sobel(y_g))
    denoise = (1 - (m_r - m_g).abs().flatten(1).mean(1) / (m_g.flatten(1).mean(1) + _EPS)).clamp(0, 1)
    dehaze = _ratio_similarity(y_r.flatten(1).std(1, correction=0), y_g.flatten(1).std(1, correction=0))
    deblur = _ratio_similarity(m_r.flatten(1).mean(1), m_g.flatten(1).mean(1))
    lum_gap = (y_r.flatten(1).mean(1) - y_g.flatten(1).mean(1)).abs()
    col_gap = (restored.flatten(2).mean(2) - reference.flatten(2).mean(2)).abs().sum(1)
    lowlight = 0.2 * (1 - lum_gap / 0.5).clamp(0, 1) + 0.1 * (1 - col_gap / 0.6).clamp(0, 1)
    return {
        "denoise": denoise,
        "derain": derain_term(restored),
        "dehaze": dehaze,
        "deblur": deblur,
        "lowlight": lowlight,
    }
