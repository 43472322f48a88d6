"""Constructed test images (float32, (3, H, W) in [0, 1]) for the reward tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

SIZE = 64


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def photo(seed: int = 0, size: int = SIZE) -> np.ndarray:
    """Smooth random texture with edges: a stand-in for a natural image."""
    r = rng(seed)
    base = ndimage.gaussian_filter(r.random((3, size, size)), sigma=(0, 3, 3))
    base = (base - base.min()) / (base.max() - base.min())
    yy, xx = np.mgrid[:size, :size]
    square = ((yy > size // 4) & (yy < 3 * size // 4) & (xx > size // 3) & (xx < 2 * size // 3)).astype(float)
    return np.clip(0.7 * base + 0.3 * square, 0, 1).astype(np.float32)


def noisy(img: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    return np.clip(img + sigma * rng(seed).standard_normal(img.shape), 0, 1).astype(np.float32)


def smoothed(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    return ndimage.gaussian_filter(img, sigma=(0, sigma, sigma)).astype(np.float32)


def striped(img: np.ndarray, period: int = 4, amp: float = 0.3) -> np.ndarray:
    """Vertical bright streaks, as rain leaves them: horizontal gradients dominate."""
    stripes = (np.arange(img.shape[-1]) % period == 0).astype(np.float32) * amp
    return np.clip(img + stripes[None, None, :], 0, 1).astype(np.float32)


def hazy(img: np.ndarray, t: float = 0.5, airlight: float = 0.8) -> np.ndarray:
    return (t * img + (1 - t) * airlight).astype(np.float32)


def darkened_tinted(img: np.ndarray, gain: float = 0.4, tint=(1.0, 0.8, 0.6)) -> np.ndarray:
    return np.clip(img * gain * np.asarray(tint, np.float32)[:, None, None], 0, 1).astype(np.float32)


def hwc(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(img.transpose(1, 2, 0))


# Direct numpy evaluation of the task formulas (../shared/notes/method.md), independent of the service.
EPS = 1e-6


def _luma(x: np.ndarray) -> np.ndarray:
    return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]


def _grad(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # scipy's 'nearest' mode replicates the border pixel
    return ndimage.sobel(y, axis=1, mode="nearest"), ndimage.sobel(y, axis=0, mode="nearest")


def _mag(y: np.ndarray) -> np.ndarray:
    gx, gy = _grad(y)
    return np.sqrt(gx**2 + gy**2 + 1e-12)


def clip01(v: float) -> float:
    return float(min(max(v, 0.0), 1.0))


def task_formula(task: str, y: np.ndarray, gt: np.ndarray) -> float:
    y, gt = y.astype(np.float64), gt.astype(np.float64)
    ly, lg = _luma(y), _luma(gt)
    if task == "denoise":
        return clip01(1 - np.abs(_mag(ly) - _mag(lg)).mean() / (_mag(lg).mean() + EPS))
    if task == "derain":
        gx, gy = _grad(ly)
        ex, ey = np.abs(gx).mean(), np.abs(gy).mean()
        return 1 - clip01(abs(ex - ey) / max(ex + ey, EPS))
    if task in ("dehaze", "deblur"):
        a, b = (ly.std(), lg.std()) if task == "dehaze" else (_mag(ly).mean(), _mag(lg).mean())
        return clip01(min(a / (b + EPS), b / (a + EPS)))
    if task == "lowlight":
        lum = clip01(1 - abs(ly.mean() - lg.mean()) / 0.5)
        col = clip01(1 - np.abs(y.mean(axis=(1, 2)) - gt.mean(axis=(1, 2))).sum() / 0.6)
        return 0.2 * lum + 0.1 * col
    raise ValueError(task)
