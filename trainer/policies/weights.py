"""A policy's weights as one safetensors file of its state dict, loaded strictly: the same for every family.

Pre-training writes it, checkpoints hold it (policy.safetensors) and each family's starting-weights
field reads it back; a family adds its own foreign formats (AdaIR .ckpt, diffusers folders).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not fit the policy; the message says how."""


def save_policy(policy: nn.Module, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    save_file(state, str(path), metadata={"format": "irpo-policy"})
    return path


def check_fits(path: Path, expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> None:
    """Raise WeightsError naming the missing, unexpected and mis-shaped tensors of `found`."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [f"{k}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}" for k in sorted(set(expected) & set(found)) if found[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {missing[:8]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {unexpected[:8]})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (first: {shapes[:4]})")
        raise WeightsError(f"{path} does not fit the policy (check the policy config): " + "; ".join(parts))


def load_policy_state(policy: nn.Module, path: str | Path) -> int:
    """Load a .safetensors file of the whole policy strictly; returns the number of tensors."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    check_fits(path, policy.state_dict(), state)
    policy.load_state_dict(state)
    return len(state)
