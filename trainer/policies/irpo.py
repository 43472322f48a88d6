"""The IRPO family in the registry (`policy.kind: irpo`): AdaIR + GDM Beta heads from trainer/model,
configured by the `model:` section."""

from __future__ import annotations

from trainer.config import ModelConfig
from trainer.model import RestorationPolicy, build_policy
from trainer.policies.registry import register_family


@register_family("irpo")
def build_irpo_policy(cfg: ModelConfig, load_weights: bool = True) -> RestorationPolicy:
    return build_policy(cfg) if load_weights else RestorationPolicy(cfg)
