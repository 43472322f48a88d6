"""BRISQUE (Mittal, Moorthy, Bovik 2012) with the original LIVE model; lower is better.

Follows the authors' MATLAB release (brisque_feature.m, brisquequality.m), whose feature ranges
ship with the model (the GGD shape range ends at the 0.2:0.001:10 grid's top, 9.999):
- grey image in 0..255 (rgb2gray on 8-bit), MSCN with zero padding, at full and half size
  (bicubic with antialiasing, as MATLAB's imresize);
- per scale 18 features: GGD (alpha, sigma^2) of the MSCN map, then for each of the four
  neighbour products AGGD (alpha, mean, left sigma^2, right sigma^2);
- libsvm scaling of each feature to [-1, 1] from the training min/max, then the epsilon-SVR
  with RBF kernel: sum_i coef_i exp(-gamma |x - sv_i|^2) - rho.
"""

from __future__ import annotations

import torch

from . import nss
from .params import load

MIN_SIDE = 7  # smallest side the features are defined on here (a 7x7 window; half size >= 4 px)


def scale_features(m: torch.Tensor) -> torch.Tensor:
    """(N, H, W) MSCN map -> (N, 18) features of one scale."""
    flat = m.flatten(1)
    alpha, sigma_sq = nss.ggd_fit(flat)
    feats = [alpha, sigma_sq]
    a, left, right = nss.aggd_fit(nss.pair_products(m).flatten(2), zero_is_right=False)
    ratio_mean, beta_factor = nss.aggd_mean_factor(a)
    mean = (right - left) * ratio_mean * beta_factor
    feats += [torch.stack([a, mean, left**2, right**2], dim=-1).flatten(1)]
    return torch.cat([torch.stack(feats[:2], dim=-1), feats[2]], dim=-1)


def features(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, 36) BRISQUE features."""
    grey = nss.grey255(rgb)
    return torch.cat([scale_features(nss.mscn(grey)), scale_features(nss.mscn(nss.half_size(grey)))], dim=-1)


class Brisque:
    """Scores batches on `device`; `__call__` returns (N,) float64 BRISQUE values (about 0..150)."""

    def __init__(self, device: torch.device | str = "cpu"):
        p = {k: torch.from_numpy(v).to(device) for k, v in load("brisque").items()}
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
