"""Natural-scene statistics shared by BRISQUE and NIQE, batched in torch (float64 on any device).

MSCN coefficients (Mittal et al. 2012): (I - mu) / (sigma + 1) on a 0-255 grey image, mu and sigma
from a 7x7 Gaussian window (sigma 7/6) with zero padding (MATLAB's filter2 'same' in BRISQUE,
scipy's 'constant' mode in scikit-video's NIQE). Pairwise products with the four neighbours
(horizontal, vertical, main and secondary diagonal) use circular shifts, as MATLAB's circshift and
numpy's roll do. The generalised Gaussian (GGD) and asymmetric GGD (AGGD) shape alpha is found
by moment matching on the grid 0.2:0.001:10 (nearest grid value), as both reference codes do.
Statistics reduce over the last dimension, so any leading dims (images, patches) batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_DT = torch.float64
_TINY = 1e-12  # keeps the moment ratios finite on flat inputs (empty or all-zero halves)
_GRID = 0.2 + 0.001 * torch.arange(9801, dtype=_DT)  # MATLAB's 0.2:0.001:10


def _gamma(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.special.gammaln(x))


# rho(alpha) = Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a)): increasing in alpha, from ~0 to 3/4
_RHO = _gamma(2 / _GRID) ** 2 / (_gamma(1 / _GRID) * _gamma(3 / _GRID))
assert bool((_RHO.diff() > 0).all())


def _nearest_on_grid(table: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Index of the entry of an increasing `table` nearest to each value (argmin |table - v|)."""
    table = table.to(values.device)
    idx = torch.searchsorted(table, values.contiguous()).clamp(1, len(table) - 1)
    lo, hi = table[idx - 1], table[idx]
    return torch.where(values - lo <= hi - values, idx - 1, idx)


def grey255(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, H, W) grey in 0..255, rounded as MATLAB's rgb2gray on uint8."""
    weights = torch.tensor([0.298936021293776, 0.587043074451121, 0.114020904255103], dtype=_DT, device=rgb.device)
    return torch.round(255 * torch.einsum("nchw,c->nhw", rgb.to(_DT), weights))


def half_size(grey: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, ceil(H/2), ceil(W/2)): bicubic with antialiasing (MATLAB imresize 0.5, PIL's resize)."""
    h, w = grey.shape[-2:]
    out = F.interpolate(grey[:, None], size=(math.ceil(h / 2), math.ceil(w / 2)), mode="bicubic", antialias=True, align_corners=False)
    return out[:, 0]


def gaussian_taps(device: torch.device | str = "cpu") -> torch.Tensor:
    """The 7 taps of the separable 7x7 Gaussian, sigma 7/6, summing to 1 (fspecial('gaussian', 7, 7/6))."""
    g = torch.exp(-torch.arange(-3, 4, dtype=_DT, device=device) ** 2 / (2 * (7 / 6) ** 2))
    return g / g.sum()


def _blur(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Separable 'same' filtering of (N, H, W) with zero padding, as sums of shifted copies
    (float64 conv2d is several times slower on the CPU)."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (3, 3, 3, 3))
    rows = sum(taps[i] * xp[..., i : i + h, :] for i in range(7))
    return sum(taps[j] * rows[..., :, j : j + w] for j in range(7))


def mscn(grey: torch.Tensor) -> torch.Tensor:
    """(N, H, W) grey 0..255 -> (N, H, W) MSCN coefficients (zero padding, C = 1)."""
    x = grey.to(_DT)
    taps = gaussian_taps(x.device)
    mu = _blur(x, taps)
    sigma = torch.sqrt(torch.abs(_blur(x * x, taps) - mu * mu))
    return (x - mu) / (sigma + 1)


def pair_products(m: torch.Tensor) -> torch.Tensor:
    """(..., H, W) -> (..., 4, H, W): products with the horizontal, vertical, main- and secondary-diagonal
    neighbour, shifting circularly within the last two dims."""
    shifts = ((0, 1), (1, 0), (1, 1), (-1, 1))
    return torch.stack([m * torch.roll(m, s, dims=(-2, -1)) for s in shifts], dim=-3)


def ggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-mean GGD over the last dim: (alpha, sigma^2), matching E[x^2] / E|x|^2 (BRISQUE's MATLAB code)."""
    sigma_sq = (x * x).mean(-1)
    e_abs = x.abs().mean(-1)
    # MATLAB takes the grid point nearest to E[x^2] / E|x|^2 on 1 / rho(alpha), decreasing in alpha
    r_gam = (1 / _RHO).flip(0).to(x.device)
    idx = _nearest_on_grid(r_gam, sigma_sq / (e_abs**2).clamp_min(_TINY))
    return _GRID.to(x.device).flip(0)[idx], sigma_sq


def aggd_fit(x: torch.Tensor, zero_is_right: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AGGD over the last dim: (alpha, left std, right std) by the moment matching of Lasmar et al.

    `zero_is_right`: exact zeros count in the right half (scikit-video's x >= 0) or in neither
    (MATLAB's x > 0 and x < 0)."""
    sq = x * x
    left = x < 0
    right = x >= 0 if zero_is_right else x > 0
    left_std = torch.sqrt((sq * left).sum(-1) / left.sum(-1).clamp_min(1))
    right_std = torch.sqrt((sq * right).sum(-1) / right.sum(-1).clamp_min(1))
    g = left_std / right_std.clamp_min(_TINY)
    r_hat = x.abs().mean(-1) ** 2 / sq.mean(-1).clamp_min(_TINY)
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    alpha = _GRID.to(x.device)[_nearest_on_grid(_RHO, r_norm)]
    return alpha, left_std, right_std


def aggd_mean_factor(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Gamma(2/a) / Gamma(1/a), sqrt(Gamma(1/a) / Gamma(3/a))): the AGGD mean is
    (beta_r - beta_l) times the first, and beta = std times the second."""
    g1, g2, g3 = _gamma(1 / alpha), _gamma(2 / alpha), _gamma(3 / alpha)
    return g2 / g1, torch.sqrt(g1 / g3)
