"""Numeric precision of the reward networks (CLIP, LPIPS backbone): which one a device runs fast,
which one it cannot run, and a wrapper that runs a network in low precision and hands back float32.

The formulas (PSNR, SSIM, task terms, BRISQUE/NIQE) and every reduction after a network stay in
float32; only the big matrix products move to bfloat16 / float16. 'auto' picks bfloat16 only where
the hardware has native bfloat16 arithmetic (checked, never assumed): a CUDA device of compute
capability 8.0 or newer, or a CPU with AMX tiles or AVX512-BF16 (torch's own capability checks).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Precision = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class PrecisionError(ValueError):
    """The device cannot run the requested precision; raised at start-up."""


def native_bf16(device: torch.device) -> str | None:
    """What gives this device native bfloat16 arithmetic, or None when it has none."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"CUDA compute capability {major}.{minor}" if major >= 8 else None
    if device.type == "cpu":
        found = [name for name, check in (("AMX", torch.cpu._is_amx_tile_supported),
                                          ("AVX512-BF16", torch.cpu._is_avx512_bf16_supported)) if check()]
        return "CPU with " + " and ".join(found) if found else None
    return None


def resolve_precision(requested: Precision, device: torch.device) -> Literal["float32", "bfloat16", "float16"]:
    """The precision to run on `device`: 'auto' resolved, an impossible request refused."""
    if requested == "auto":
        return "bfloat16" if native_bf16(device) else "float32"
    if requested == "float16" and device.type != "cuda":
        raise PrecisionError(f"precision float16 runs on CUDA only; device {device} cannot run it (use bfloat16 or float32)")
    if requested == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        major, minor = torch.cuda.get_device_capability(device)
        raise PrecisionError(f"precision bfloat16 needs CUDA compute capability 8.0 or newer; {device} has {major}.{minor} "
                             "(use float16 or float32)")
    return requested


def network_precisions(requested: Precision, device: torch.device, clip_iqa_weighted: bool) -> dict[str, str]:
    """Network (RewardModels.provenance key) -> its precision. Under 'auto', CLIP stays float32 when the
    service weights CLIP-IQA: that term multiplies an image-text cosine by CLIP's logit scale (100), so
    bfloat16 rounding through the tower (cosines off by ~4e-4) moved it by up to 1.6e-2 on photos,
    while CLIP similarity and the aesthetic rating stayed within 1e-4 (docs/benchmarks.md)."""
    precision = resolve_precision(requested, device)
    clip = "float32" if requested == "auto" and clip_iqa_weighted else precision
    return {"clip": clip, "lpips_backbone": precision}


class LowPrecision(nn.Module):
    """Runs `inner` with its weights and input in `dtype`; every tensor it returns comes back as float32
    (the caller's normalisations, differences and means stay in float32)."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.inner, self.dtype = inner.to(dtype), dtype

    def forward(self, x: torch.Tensor):
        out = self.inner(x.to(self.dtype))
        if isinstance(out, torch.Tensor):
            return out.float()
        return type(out)(*(t.float() for t in out))  # lpips' backbones return a namedtuple of feature maps
