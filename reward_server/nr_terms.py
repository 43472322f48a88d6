"""BRISQUE and NIQE as reward terms: which items ask for them, the batched computation, the mapping.

Both are lower-is-better raw values (BRISQUE about 0-150, NIQE about 0-100, pyiqa's conventions),
mapped onto [0, 1] as clip01((hi - raw) / (hi - lo)) with the configured ranges. They need no
reference and are computed only for items that weight them (weight > 0 and gen > 0), since
NIQE needs whole 96x96 patches and both cost CPU time on large images.
"""

from __future__ import annotations

import torch

from reward_server.config import RewardSettings, RewardWeights
from reward_server.nr_iqa import Brisque, Niqe, brisque, niqe, provenance_note

NR_TERMS = ("brisque", "niqe")
_PIXELS_PER_PASS = 8 * 1024 * 1024  # bounds the float64 working set of one pass (~1 GiB)


def wanted(weights: RewardWeights) -> list[str]:
    """The no-reference terms an item's weights ask for."""
    return [t for t in NR_TERMS if getattr(weights, t) > 0 and weights.gen > 0]


def size_error(terms: list[str], h: int, w: int) -> str | None:
    """Why an h x w image cannot give one of `terms` (answered with a 4xx), or None."""
    if "brisque" in terms and min(h, w) < brisque.MIN_SIDE:
        return f"BRISQUE needs a side of at least {brisque.MIN_SIDE} px, got {w}x{h}"
    return niqe.size_error(h, w) if "niqe" in terms else None


class NoReferenceTerms:
    def __init__(self, settings: RewardSettings, device: torch.device):
        self.metrics = {"brisque": Brisque(device), "niqe": Niqe(device)}
        self.ranges = {"brisque": settings.brisque_range, "niqe": settings.niqe_range}

    def raw(self, restored: torch.Tensor, weights: list[RewardWeights]) -> list[dict[str, float]]:
        """Raw values for the items of one same-size batch (N, 3, H, W) that ask for them."""
        out: list[dict[str, float]] = [{} for _ in weights]
        per_pass = max(1, _PIXELS_PER_PASS // (restored.shape[-1] * restored.shape[-2]))
        for name, metric in self.metrics.items():
            idx = [i for i, w in enumerate(weights) if name in wanted(w)]
            for start in range(0, len(idx), per_pass):
                chunk = idx[start : start + per_pass]
                for i, v in zip(chunk, metric(restored[chunk]).tolist()):
                    out[i][name] = v
        return out

    def term(self, name: str, raw: float) -> float:
        lo, hi = self.ranges[name]
        return min(max((hi - raw) / (hi - lo), 0.0), 1.0)

    def info(self) -> dict[str, dict]:
        return {
            name: {"provenance": provenance_note(name), "raw_range": self.ranges[name], "lower_is_better": True, "needs_reference": False}
            for name in NR_TERMS
        }
