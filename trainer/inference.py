"""Deterministic full-image restoration, tiled for images too large to run in one pass."""

from __future__ import annotations

import torch
from torch import Tensor

from trainer.policies import Policy

# AdaIR's U-Net downsamples three times, so every input side must be a multiple of 8 (the tiny
# diffusion U-Nets need 4 or 8; a deeper one says so itself).
SIDE_MULTIPLE = 8


def _starts(size: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


@torch.no_grad()
def restore(policy: Policy, degraded: Tensor, tile: int | None = None, overlap: int = 32) -> Tensor:
    """Deterministic output (policy.deterministic: Beta means, or the fixed-noise eta = 0 chain) for (N, 3, H, W), H and W multiples of 8.

    With `tile`, overlapping tile x tile windows (of the input; the sr task's output windows are 4x larger) are
    restored separately and averaged where they overlap; each window's actions come from that window, as in AdaIR's tiled testing.
    """
    h, w = degraded.shape[-2:]
    if h % SIDE_MULTIPLE or w % SIDE_MULTIPLE:
        raise ValueError(f"image sides must be multiples of {SIDE_MULTIPLE}, got {h}x{w}")
    if tile is None or (h <= tile and w <= tile):
        return policy.deterministic(degraded)
    if tile % SIDE_MULTIPLE or overlap >= tile:
        raise ValueError(f"tile ({tile}) must be a multiple of {SIDE_MULTIPLE} and larger than the overlap ({overlap})")
    th, tw = min(tile, h), min(tile, w)
    out = weight = None
    for top in _starts(h, th, th - overlap):
        for left in _starts(w, tw, tw - overlap):
            restored = policy.deterministic(degraded[..., top : top + th, left : left + tw])
            s = restored.shape[-1] // tw  # the output's scale over the input's (4 for the sr task)
            if out is None:
                out = restored.new_zeros((*degraded.shape[:2], h * s, w * s))
                weight = restored.new_zeros((degraded.shape[0], 1, h * s, w * s))
            out[..., top * s : (top + th) * s, left * s : (left + tw) * s] += restored
            weight[..., top * s : (top + th) * s, left * s : (left + tw) * s] += 1
    return out / weight
