"""AdaIR family weights: our .safetensors files (trainer/policies/weights.py) and AdaIR's Lightning .ckpt checkpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainer.policies.weights import WeightsError, check_fits, load_policy_state, save_policy  # noqa: F401 (save_policy: trainer.model exports it)

if TYPE_CHECKING:
    from trainer.model.policy import RestorationPolicy

log = logging.getLogger(__name__)

LIGHTNING_PREFIX = "net."


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


def load_policy_weights(policy: RestorationPolicy, path: str | Path) -> LoadReport:
    """Load strictly: our .safetensors must match the whole policy; an AdaIR .ckpt the whole backbone.

    An AdaIR checkpoint has no policy heads: they keep their initialisation and the report says so.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        report = LoadReport(path, "safetensors", load_policy_state(policy, path))
    elif path.suffix in (".ckpt", ".pth", ".pt"):
        state = _read_lightning(path)
        check_fits(path, policy.backbone.state_dict(), state)
        policy.backbone.load_state_dict(state)
        heads = [k for k in policy.state_dict() if not k.startswith("backbone.")]
        report = LoadReport(path, "adair-ckpt", len(state), heads)
    else:
        raise WeightsError(f"{path}: unknown weights format (expected .safetensors or an AdaIR .ckpt)")
    log.info(report.summary())
    return report
