"""Wall-clock timing of device work: CUDA runs kernels asynchronously, so a timer must synchronise on both sides."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synced_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of fn takes on `device`, its queued GPU work included."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0
