"""Optimiser of the learner: Adam over the policy's parameter groups, IRPO's heads at a multiple of the lr."""

from __future__ import annotations

import torch

from trainer.config import OptimConfig
from trainer.policies.interface import Policy, optimizer_groups


def build_optimizer(policy: Policy, cfg: OptimConfig) -> torch.optim.Adam:
    """Adam over policy.parameter_groups() at lr * lr_scale; a group named 'heads' (IRPO's Beta heads) also x head_lr_mult."""
    groups = optimizer_groups(policy, cfg.lr)
    for group in groups:
        if group["name"] == "heads":
            group["lr"] *= cfg.head_lr_mult
    return torch.optim.Adam(groups, betas=cfg.betas, weight_decay=cfg.weight_decay)
