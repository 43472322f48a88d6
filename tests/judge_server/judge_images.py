"""Test images of the judge tests (a module name of its own: every test folder has a conftest)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def sample_image(seed: int, size: int = 64) -> np.ndarray:
    """A smooth colour gradient with mild noise, float32 (H, W, 3) in [0, 1]."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, size, dtype=np.float32)
    img = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, 1 - ramp), np.full((size, size), 0.4)], axis=-1)
    return np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1).astype(np.float32)


def image_bytes(seed: int, fmt: str = "PNG", size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((sample_image(seed, size) * 255).astype(np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
