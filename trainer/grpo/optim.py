"""Optimiser of the learner: Adam with a learning-rate multiplier on the policy heads."""

from __future__ import annotations

import torch

from trainer.config import OptimConfig


def build_optimizer(policy: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Adam:
    """Adam over two groups: the backbone at lr, the policy heads at lr * head_lr_mult (IRPO: x6)."""
    heads = [p for p in policy.head_parameters() if p.requires_grad]
    backbone = [p for p in policy.backbone_parameters() if p.requires_grad]
    n_total = sum(1 for p in policy.parameters() if p.requires_grad)
    if len(heads) + len(backbone) != n_total or {id(p) for p in heads} & {id(p) for p in backbone}:
        raise ValueError("head_parameters() and backbone_parameters() must partition the policy's trainable parameters")
    groups = [
        {"params": backbone, "lr": cfg.lr, "name": "backbone"},
        {"params": heads, "lr": cfg.lr * cfg.head_lr_mult, "name": "heads"},
    ]
    return torch.optim.Adam(groups, betas=cfg.betas, weight_decay=cfg.weight_decay)
