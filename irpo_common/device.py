"""Run-time device choice shared by the reward service and the trainer: nothing hard-codes cuda or cpu.

Only torch is imported, so the trainer's actors can use it without loading the reward models.
"""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    """'auto' = cuda when this process sees a GPU (Ray hides GPUs an actor did not ask for), else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but this process sees no CUDA device")
    return device
