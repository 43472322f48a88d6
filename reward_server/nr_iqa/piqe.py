"""PIQE (Venkatanath et al., NCC 2015), as MATLAB's piqe; no trained parameters; 0..100, lower is better.

- grey Y = 0.299 R + 0.587 G + 0.114 B, scaled to round(255 Y / max Y); bottom/right padded
  symmetrically by (H mod 16, W mod 16) rows/columns (the release's padding), then cut into whole
  16x16 blocks of the MSCN map (7x7 Gaussian, sigma 7/6, border replicated, C = 1);
- a block is active when its MSCN variance (unbiased) exceeds 0.1;
- noticeable distortion: on any of its four edges a 6-sample segment has std < 0.1;
- noise: sigma > 2 beta, beta = |sigma - r| / max(sigma, r), r = std of the block's centre columns
  over std of its surround (the release's centre is columns 8-9 of 16 and its surround drops
  columns 8 and 10, 1-based);
- score = 100 (1 + sum over active blocks of [distorted (1 - var) + noisy var]) / (1 + active blocks).
"""

from __future__ import annotations

import torch

from . import nss

BLOCK = 16
_ACTIVITY, _IMPAIRED, _SEGMENT = 0.1, 0.1, 6
_Y = (0.299, 0.587, 0.114)


def _pad_symmetric(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W) -> (N, H + H mod 16, W + W mod 16), mirrored including the edge row/column."""
    h, w = x.shape[-2:]
    rows = torch.cat([torch.arange(h), torch.arange(h - 1, h - 1 - h % BLOCK, -1)]).to(x.device)
    cols = torch.cat([torch.arange(w), torch.arange(w - 1, w - 1 - w % BLOCK, -1)]).to(x.device)
    return x[:, rows][:, :, cols]


def blocks(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> (N, B, 16, 16) MSCN blocks."""
    y = torch.einsum("nchw,c->nhw", rgb.to(torch.float64), torch.tensor(_Y, dtype=torch.float64, device=rgb.device))
    y = torch.round(255 * y / y.flatten(1).amax(1).clamp_min(1e-12)[:, None, None])
    m = nss.mscn(_pad_symmetric(y), "replicate")
    n, h, w = m.shape
    m = m[:, : h - h % BLOCK, : w - w % BLOCK]
    return m.unfold(1, BLOCK, BLOCK).unfold(2, BLOCK, BLOCK).reshape(n, -1, BLOCK, BLOCK)


def _std(x: torch.Tensor, dims) -> torch.Tensor:
    return torch.std(x, dim=dims, unbiased=True)


def piqe(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1], sides >= 16 -> (N,) float64 PIQE scores."""
    b = blocks(rgb)
    var = torch.var(b, dim=(-2, -1), unbiased=True)
    active = var > _ACTIVITY
    edges = torch.stack([b[..., 0, :], b[..., :, -1], b[..., -1, :], b[..., :, 0]], dim=-2)  # (N, B, 4, 16)
    distorted = (_std(edges.unfold(-1, _SEGMENT, 1), -1) < _IMPAIRED).flatten(-2).any(-1)
    sigma = var.sqrt()
    centre = _std(b[..., 7:9], (-2, -1))
    surround = _std(b[..., [c for c in range(BLOCK) if c not in (7, 9)]], (-2, -1))
    r = torch.nan_to_num(centre / surround)
    beta = (sigma - r).abs() / torch.maximum(sigma, r)
    noisy = sigma > 2 * beta
    per_block = active * (distorted * (1 - var) + noisy * var)
    return 100 * (1 + per_block.sum(-1)) / (1 + active.sum(-1))


class Piqe:
    """Scores batches on `device`; `__call__` returns (N,) float64 PIQE values (0..100)."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        if min(rgb.shape[-2:]) < BLOCK:
            raise ValueError(f"PIQE needs a side of at least {BLOCK} px (one 16x16 block), got {tuple(rgb.shape[-2:])}")
        return piqe(rgb.to(self.device))
