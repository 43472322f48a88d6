"""Does a no-reference IQA metric get worse with each step of noise, blur and JPEG? (issue 23)

A case is one (photo, degradation, step): the clean photo and three increasing levels give three
steps per degradation; the metric's monotone share is the fraction of cases where its raw
(lower-is-better) value rises from one level to the next. Used by benchmarks/bench_nr_iqa_sizes.py
and tests/reward_server/test_nr_iqa.py.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable

import numpy as np
import torch
from PIL import Image, ImageFilter

STEPS = {"noise": (5, 15, 30), "blur": (1, 2, 4), "jpeg": (90, 50, 10)}  # grey-level sigma, px sigma, quality


def degrade(img: Image.Image, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8-valued array of `img` with one degradation at `level`."""
    a = np.asarray(img, dtype=np.float64)
    if kind == "noise":
        return np.clip(np.round(a + rng.normal(0, level, a.shape)), 0, 255)
    if kind == "blur":
        return np.asarray(img.filter(ImageFilter.GaussianBlur(level)))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=level)
    return np.asarray(Image.open(buf).convert("RGB"))


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float64) / 255).permute(2, 0, 1)[None]


def centre_square(img: Image.Image, side: int) -> Image.Image:
    """The centre side x side crop of `img` (whose short side must be >= side)."""
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def rises(photos: Iterable[Image.Image], metrics: dict[str, Callable[[torch.Tensor], torch.Tensor]], seed: int = 0) -> dict[str, list[bool]]:
    """metric -> one bool per (photo, degradation, step): did the value rise with the step?"""
    rng = np.random.default_rng(seed)
    out: dict[str, list[bool]] = {name: [] for name in metrics}
    for img in photos:
        for kind, levels in STEPS.items():
            x = torch.cat([to_tensor(np.asarray(img))] + [to_tensor(degrade(img, kind, lv, rng)) for lv in levels])
            for name, metric in metrics.items():
                v = metric(x).tolist()
                out[name] += [v[i + 1] > v[i] for i in range(len(levels))]
    return out
