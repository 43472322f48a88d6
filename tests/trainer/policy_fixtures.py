"""Shared piece of the trainer's model tests: a policy whose initial weights depend only on a seed."""

from __future__ import annotations

import torch

from trainer.config import ModelConfig
from trainer.model import RestorationPolicy, build_policy, model_preset


def seeded_policy(seed: int = 0, config: ModelConfig | None = None) -> RestorationPolicy:
    """A freshly built policy in eval mode, seeded with `seed`; the micro preset unless `config` is given."""
    torch.manual_seed(seed)
    return build_policy(model_preset("micro") if config is None else config).eval()
