"""Seeded synthesis of the five training degradations and of out-of-distribution variants.

Every function maps a clean (3, H, W) float image in [0, 1] to a degraded one, drawing all its
randomness from the torch.Generator it is given, so (image, task, variant, seed) fixes the
result. The OOD variants use degradation families the training set never shows (signal-
dependent noise, defocus blur, coloured haze, slanted heavy rain, colour-cast low light), for a
table in the spirit of IRPO's real-world OOD evaluation.
"""

from __future__ import annotations

import hashlib
import io
from typing import Callable

import kornia
import numpy as np
import torch
from PIL import Image
from torch import Tensor

Degrade = Callable[[Tensor, torch.Generator], Tensor]


def stable_seed(*parts: object) -> int:
    """A seed from any printable parts that is the same in every process and run (unlike hash())."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _odd(n: float) -> int:
    k = int(round(n))
    return k if k % 2 else k + 1


def jpeg(img: Tensor, quality: int) -> Tensor:
    """Encode a (3, H, W) image in [0, 1] as an 8-bit JPEG at `quality` and decode it (Pillow's libjpeg)."""
    arr = (img.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return torch.from_numpy(out.copy()).permute(2, 0, 1).float() / 255.0


def gaussian_noise(sigma: float) -> Degrade:
    """Additive white Gaussian noise; sigma on the 0-255 scale (AdaIR: 15, 25, 50)."""

    def apply(img: Tensor, g: torch.Generator) -> Tensor:
        return (img + torch.randn(img.shape, generator=g) * (sigma / 255.0)).clamp(0, 1)

    return apply


def _streaks(shape: tuple[int, int], g: torch.Generator, density: float, length: float, angle: float) -> Tensor:
    """A (1, H, W) rain layer: sparse drops smeared along `angle` (degrees) by a motion kernel."""
    h, w = shape
    drops = (torch.rand(1, 1, h, w, generator=g) < density).float() * (0.5 + 0.5 * torch.rand(1, 1, h, w, generator=g))
    layer = kornia.filters.motion_blur(drops, _odd(length), angle, 0.0, border_type="constant")
    return (layer[0] / layer.amax().clamp_min(1e-6)).clamp(0, 1)


def rain(img: Tensor, g: torch.Generator) -> Tensor:
    """Light near-vertical streaks, screen-blended (bright streaks over the scene, as Rain100L)."""
    layer = _streaks(img.shape[-2:], g, _uniform(g, 0.004, 0.010), _uniform(g, 11, 21), _uniform(g, 80, 100)) * _uniform(g, 0.6, 0.9)
    return 1 - (1 - img) * (1 - layer)


def heavy_slanted_rain(img: Tensor, g: torch.Generator) -> Tensor:
    """OOD: dense long streaks at 30-50 degrees off vertical plus the veil heavy rain leaves."""
    angle = 90 + _uniform(g, 30, 50) * (1 if float(torch.rand((), generator=g)) < 0.5 else -1)
    layer = _streaks(img.shape[-2:], g, _uniform(g, 0.015, 0.025), _uniform(g, 25, 35), angle) * 0.9
    veiled = 0.85 * img + 0.15 * 0.8
    return 1 - (1 - veiled) * (1 - layer)


def _depth(shape: tuple[int, int], g: torch.Generator) -> Tensor:
    """(1, H, W) smooth pseudo-depth in [0, 1]: farther towards the top, with low-frequency variation."""
    h, w = shape
    ramp = torch.linspace(1.0, 0.0, h).view(h, 1).expand(h, w)
    coarse = torch.rand(1, 1, 4, 4, generator=g)
    blobs = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0, 0]
    return (0.7 * ramp + 0.3 * blobs).clamp(0, 1).unsqueeze(0)


def _scatter(img: Tensor, depth: Tensor, beta: float, airlight: Tensor) -> Tensor:
    """Atmospheric scattering model I = J t + A (1 - t), t = exp(-beta d)."""
    t = torch.exp(-beta * depth)
    return (img * t + airlight.view(3, 1, 1) * (1 - t)).clamp(0, 1)


def haze(img: Tensor, g: torch.Generator) -> Tensor:
    a = _uniform(g, 0.8, 1.0)
    return _scatter(img, _depth(img.shape[-2:], g), _uniform(g, 0.6, 1.6), torch.tensor([a, a, a]))


def coloured_dense_haze(img: Tensor, g: torch.Generator) -> Tensor:
    """OOD: thicker haze with a yellow-brown airlight (dust/smog) instead of grey."""
    airlight = torch.tensor([0.92, 0.82, 0.62]) * _uniform(g, 0.9, 1.0)
    return _scatter(img, _depth(img.shape[-2:], g), _uniform(g, 2.0, 2.8), airlight)


def motion_blur(img: Tensor, g: torch.Generator) -> Tensor:
    """Linear motion blur of random length (9-21 px) and direction."""
    k, angle, direction = _odd(_uniform(g, 9, 21)), _uniform(g, 0, 180), _uniform(g, -1, 1)
    return kornia.filters.motion_blur(img[None], k, angle, direction)[0].clamp(0, 1)


def defocus_blur(img: Tensor, g: torch.Generator) -> Tensor:
    """OOD: isotropic Gaussian (defocus-like) blur, a kernel family absent from training."""
    sigma = _uniform(g, 1.8, 3.0)
    k = _odd(6 * sigma)
    return kornia.filters.gaussian_blur2d(img[None], k, (sigma, sigma))[0].clamp(0, 1)


def low_light(img: Tensor, g: torch.Generator) -> Tensor:
    """Under-exposure: gamma, exposure scale, then sensor noise on the dark image."""
    dark = _uniform(g, 0.12, 0.3) * img.clamp(0, 1) ** _uniform(g, 1.4, 2.2)
    return (dark + torch.randn(img.shape, generator=g) * _uniform(g, 0.005, 0.02)).clamp(0, 1)


def colour_cast_low_light(img: Tensor, g: torch.Generator) -> Tensor:
    """OOD: darker, with a per-channel (tungsten-like) cast and signal-dependent noise."""
    cast = torch.tensor([1.0, 0.8, 0.55]).view(3, 1, 1)
    dark = _uniform(g, 0.05, 0.1) * cast * img.clamp(0, 1) ** _uniform(g, 1.8, 2.6)
    return poisson_noise(dark, g, peak=_uniform(g, 80, 150))


def poisson_noise(img: Tensor, g: torch.Generator, peak: float = 25.0) -> Tensor:
    """Shot noise: photon counts with `peak` photons at white (signal-dependent)."""
    return (torch.poisson(img.clamp(0, 1) * peak, generator=g) / peak).clamp(0, 1)


def poisson_gaussian_noise(img: Tensor, g: torch.Generator) -> Tensor:
    """OOD for denoising: shot noise plus a weak Gaussian read noise (sigma 5/255)."""
    shot = poisson_noise(img, g, peak=_uniform(g, 15, 40))
    return (shot + torch.randn(img.shape, generator=g) * (5 / 255)).clamp(0, 1)


def training_variants(noise_sigmas: list[float]) -> dict[str, dict[str, Degrade]]:
    """task -> variant name -> degradation, for the in-distribution train and test sets."""
    return {
        "denoise": {f"sigma{s:g}": gaussian_noise(s) for s in noise_sigmas},
        "derain": {"streaks": rain},
        "dehaze": {"haze": haze},
        "deblur": {"motion": motion_blur},
        "lowlight": {"lowlight": low_light},
    }


OOD_VARIANTS: dict[str, dict[str, Degrade]] = {
    "denoise": {"poisson_gaussian": poisson_gaussian_noise},
    "derain": {"heavy_slanted": heavy_slanted_rain},
    "dehaze": {"coloured_dense": coloured_dense_haze},
    "deblur": {"defocus": defocus_blur},
    "lowlight": {"colour_cast": colour_cast_low_light},
}


def synthesize(clean: Tensor, degrade: Degrade, seed: int) -> Tensor:
    """Apply `degrade` to a clean (3, H, W) image with a generator seeded by `seed`."""
    if clean.dim() != 3 or clean.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {tuple(clean.shape)}")
    return degrade(clean.float().cpu(), torch.Generator().manual_seed(seed))

