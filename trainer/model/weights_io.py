"""Policy weights: our .safetensors files and AdaIR's Lightning .ckpt checkpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from trainer.model.policy import RestorationPolicy

log = logging.getLogger(__name__)

LIGHTNING_PREFIX = "net."


class WeightsError(ValueError):
    """A weights file is missing, unreadable or does not fit the policy; the message says how."""


@dataclass
class LoadReport:
    path: Path
    kind: str  # "safetensors" or "adair-ckpt"
    loaded: int  # tensors copied into the policy
    fresh_heads: list[str] = field(default_factory=list)  # head tensors left at their initialisation

    def summary(self) -> str:
        text = f"loaded {self.loaded} tensors from {self.kind} {self.path}"
        if self.fresh_heads:
            text += f"; policy heads freshly initialised ({len(self.fresh_heads)} tensors not in the file)"
        return text


def save_policy(policy: RestorationPolicy, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    save_file(state, str(path), metadata={"format": "irpo-policy"})
    return path


def _read_lightning(path: Path) -> dict[str, torch.Tensor]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for foreign or corrupt pickles
        raise WeightsError(f"{path}: cannot read as a torch checkpoint ({exc})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: no state_dict of tensors found")
    if any(k.startswith(LIGHTNING_PREFIX) for k in state):
        outside = sorted(k for k in state if not k.startswith(LIGHTNING_PREFIX))
        if outside:
            raise WeightsError(f"{path}: keys outside '{LIGHTNING_PREFIX}': {outside[:10]}")
        state = {k[len(LIGHTNING_PREFIX) :]: v for k, v in state.items()}
    return state


def _check(path: Path, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> None:
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
        raise WeightsError(f"{path} does not fit the policy (check the model config): " + "; ".join(parts))


def load_policy_weights(policy: RestorationPolicy, path: str | Path) -> LoadReport:
    """Load strictly: our .safetensors must match the whole policy; an AdaIR .ckpt the whole backbone.

    An AdaIR checkpoint has no policy heads: they keep their initialisation and the report says so.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types for bad headers
            raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
        _check(path, policy.state_dict(), state)
        policy.load_state_dict(state)
        report = LoadReport(path, "safetensors", len(state))
    elif path.suffix in (".ckpt", ".pth", ".pt"):
        state = _read_lightning(path)
        _check(path, policy.backbone.state_dict(), state)
        policy.backbone.load_state_dict(state)
        heads = [k for k in policy.state_dict() if not k.startswith("backbone.")]
        report = LoadReport(path, "adair-ckpt", len(state), heads)
    else:
        raise WeightsError(f"{path}: unknown weights format (expected .safetensors or an AdaIR .ckpt)")
    log.info(report.summary())
    return report
