"""Natural-scene statistics shared by BRISQUE, NIQE and PIQE, batched in torch (float64 on any device).

MSCN coefficients (Mittal et al. 2012): (I - mu) / (sigma + 1) on a 0-255 grey image, mu and sigma
from a 7x7 Gaussian window (sigma 7/6), padded as the MATLAB releases do: zeros in BRISQUE (filter2
'same'), the border replicated in NIQE and PIQE (imfilter 'replicate'). Pairwise products with the four neighbours
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


def _cubic(x: torch.Tensor) -> torch.Tensor:
    """MATLAB imresize's bicubic kernel (a = -0.5)."""
    a = x.abs()
    return torch.where(a <= 1, 1.5 * a**3 - 2.5 * a**2 + 1, torch.where(a <= 2, -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2, 0.0))


def _halving_matrix(n: int, device: torch.device) -> torch.Tensor:
    """(ceil(n/2), n) weights of MATLAB's imresize(x, 0.5) along one axis: the bicubic kernel widened
    2x (antialiasing), 10 taps per output, mirrored indices at the borders, each row summing to 1."""
    out = torch.arange(1, math.ceil(n / 2) + 1, dtype=_DT, device=device)
    u = 2 * out - 0.5  # the output pixel's centre in input coordinates (1-based)
    idx = torch.floor(u - 4)[:, None] + torch.arange(10, dtype=_DT, device=device)
    w = 0.5 * _cubic(0.5 * (u[:, None] - idx))
    w = w / w.sum(1, keepdim=True)
    mirror = torch.cat([torch.arange(n, device=device), torch.arange(n - 1, -1, -1, device=device)])
    cols = mirror[(idx.long() - 1) % (2 * n)]
    return torch.zeros(len(out), n, dtype=_DT, device=device).scatter_add_(1, cols, w)


def half_size(grey: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, ceil(H/2), ceil(W/2)): MATLAB's imresize(x, 0.5) (bicubic, antialiased), exactly."""
    h, w = grey.shape[-2:]
    x = grey.to(_DT)
    return _halving_matrix(h, x.device) @ x @ _halving_matrix(w, x.device).T


def gaussian_taps(device: torch.device | str = "cpu") -> torch.Tensor:
    """The 7 taps of the separable 7x7 Gaussian, sigma 7/6, summing to 1 (fspecial('gaussian', 7, 7/6))."""
    g = torch.exp(-torch.arange(-3, 4, dtype=_DT, device=device) ** 2 / (2 * (7 / 6) ** 2))
    return g / g.sum()


def _blur(x: torch.Tensor, taps: torch.Tensor, padding: str) -> torch.Tensor:
    """Separable 'same' filtering of (N, H, W), padded with zeros ("constant") or the border ("replicate").

    Two 1-D convolutions (rows, then columns): in flat regions the MSCN map is rounding noise whose
    sign decides the AGGD halves, and of the summation orders tried this one reproduces the releases'
    values on the calibration images (docs/benchmarks.md, issue 23)."""
    xp = F.pad(x[:, None], (3, 3, 3, 3), mode=padding)
    return F.conv2d(F.conv2d(xp, taps.view(1, 1, 7, 1)), taps.view(1, 1, 1, 7))[:, 0]


def mscn_sigma(grey: torch.Tensor, padding: str = "constant") -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) grey 0..255 -> ((N, H, W) MSCN coefficients (C = 1), the local sigma they divide by)."""
    x = grey.to(_DT)
    taps = gaussian_taps(x.device)
    mu = _blur(x, taps, padding)
    sigma = torch.sqrt(torch.abs(_blur(x * x, taps, padding) - mu * mu))
    return (x - mu) / (sigma + 1), sigma


def mscn(grey: torch.Tensor, padding: str = "constant") -> torch.Tensor:
    """(N, H, W) grey 0..255 -> (N, H, W) MSCN coefficients; `padding` "constant" (zeros) or "replicate"."""
    return mscn_sigma(grey, padding)[0]


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


def aggd_fit(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AGGD over the last dim: (alpha, left std, right std) by the moment matching of Lasmar et al.,
    as the MATLAB releases: zeros count in neither half; an empty half has a NaN std (the mean of
    nothing) and then alpha is the grid's first value, 0.2 (MATLAB's min over NaNs)."""
    sq = x * x
    left, right = x < 0, x > 0
    left_std = torch.sqrt((sq * left).sum(-1) / left.sum(-1))
    right_std = torch.sqrt((sq * right).sum(-1) / right.sum(-1))
    g = left_std / right_std
    r_hat = x.abs().mean(-1) ** 2 / sq.mean(-1)
    r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    idx = _nearest_on_grid(_RHO, torch.nan_to_num(r_norm, nan=0.0, posinf=1.0))
    alpha = torch.where(r_norm.isnan(), _GRID[0], _GRID.to(x.device)[idx])
    return alpha, left_std, right_std


def aggd_mean_factor(alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Gamma(2/a) / Gamma(1/a), sqrt(Gamma(1/a) / Gamma(3/a))): the AGGD mean is
    (beta_r - beta_l) times the first, and beta = std times the second."""
    g1, g2, g3 = _gamma(1 / alpha), _gamma(2 / alpha), _gamma(3 / alpha)
    return g2 / g1, torch.sqrt(g1 / g3)
