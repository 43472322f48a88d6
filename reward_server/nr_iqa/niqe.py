"""NIQE (Mittal, Soundararajan, Bovik 2013) with the MATLAB release's pristine model; lower is better.

Follows the release (computequality.m, computefeature.m, estimateaggdparam.m):
- grey image in 0..255 (rgb2gray on 8-bit), cropped at the bottom/right to whole 96x96 patches;
- MSCN with the border replicated, at full size and at half size (MATLAB's imresize 0.5 of the
  cropped image), patches 96x96 and 48x48;
- per patch and scale 18 features: AGGD of the MSCN map (alpha, (beta_l + beta_r) / 2), then for
  each of the four neighbour products (circular within the patch) AGGD (alpha, mean, beta_l, beta_r);
- a Gaussian fitted to the test patches as nanmean / nancov do (a feature of a patch with an empty
  AGGD half is NaN: the mean skips it per feature, the covariance skips the patch), and the distance
  sqrt((mu_p - mu)^T pinv((S_p + S) / 2) (mu_p - mu)).
"""

from __future__ import annotations

import torch

from . import nss
from .params import load

PATCH = 96
MIN_PATCHES = 2  # the sample covariance of the test image needs two patches


def size_error(h: int, w: int) -> str | None:
    """Why an image of h x w cannot be scored (None when it can)."""
    n = (h // PATCH) * (w // PATCH)
    if n < MIN_PATCHES:
        return f"NIQE needs at least {MIN_PATCHES} whole {PATCH}x{PATCH} patches (e.g. {PATCH}x{2 * PATCH}), got {w}x{h}"
    return None


def _patches(m: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) -> (N, P, size, size), row-major non-overlapping patches."""
    n, h, w = m.shape
    p = m.reshape(n, h // size, size, w // size, size).permute(0, 1, 3, 2, 4)
    return p.reshape(n, -1, size, size)


def patch_features(m: torch.Tensor) -> torch.Tensor:
    """(N, P, s, s) MSCN patches -> (N, P, 18) features of one scale (NaN where MATLAB's are)."""
    alpha, left, right = nss.aggd_fit(m.flatten(-2))
    _, beta_factor = nss.aggd_mean_factor(alpha)
    feats = [alpha, beta_factor * (left + right) / 2]
    a, pl, pr = nss.aggd_fit(nss.pair_products(m).flatten(-2))
    ratio_mean, beta_factor = nss.aggd_mean_factor(a)
    bl, br = beta_factor * pl, beta_factor * pr
    pairs = torch.stack([a, (br - bl) * ratio_mean, bl, br], dim=-1).flatten(-2)
    return torch.cat([torch.stack(feats, dim=-1), pairs], dim=-1)


def features(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, P, 36) NIQE features of the whole patches."""
    grey = nss.grey255(rgb)
    h, w = grey.shape[-2:]
    grey = grey[:, : h - h % PATCH, : w - w % PATCH]
    full = patch_features(_patches(nss.mscn(grey, "replicate"), PATCH))
    half = patch_features(_patches(nss.mscn(nss.half_size(grey), "replicate"), PATCH // 2))
    return torch.cat([full, half], dim=-1)


def nan_gaussian(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, P, D) -> mean (N, D) as MATLAB's nanmean, covariance (N, D, D) as nancov (complete patches
    only), and the number of complete patches (N,)."""
    mu = torch.nanmean(f, dim=1)
    complete = ~f.isnan().any(-1, keepdim=True)
    n = complete.sum(1, keepdim=True)
    g = torch.where(complete, f, 0.0)
    centred = torch.where(complete, g - g.sum(1, keepdim=True) / n, 0.0)
    return mu, centred.transpose(1, 2) @ centred / (n - 1), n[:, 0, 0]


class Niqe:
    """Scores batches on `device`; `__call__` returns (N,) float64 NIQE values (about 0..100)."""

    def __init__(self, device: torch.device | str = "cpu"):
        p = load("niqe")
        self.mu = torch.from_numpy(p["mu_pris_param"]).to(device)
        self.cov = torch.from_numpy(p["cov_pris_param"]).to(device)
        self.device = torch.device(device)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        if (err := size_error(*rgb.shape[-2:])) is not None:
            raise ValueError(err)
        mu, cov, n = nan_gaussian(features(rgb.to(self.device)))
        fitted = n >= MIN_PATCHES
        cov = torch.where(fitted[:, None, None], cov, self.cov)  # keeps pinv finite; the value is replaced below
        d = (self.mu - mu.nan_to_num(0.0))[..., None]
        dist_sq = (d.transpose(1, 2) @ torch.linalg.pinv((self.cov + cov) / 2, hermitian=True) @ d)[:, 0, 0]
        # fewer than two patches with any texture (a flat image: MATLAB's NaN): as unnatural as it gets
        return torch.where(fitted, torch.sqrt(dist_sq.clamp_min(0)), torch.inf)
