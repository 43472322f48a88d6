"""The diffusion policy family: a conditional UNet2DModel restorer sampled by a stochastic DDIM chain."""

import logging
from pathlib import Path

from trainer.policies.diffusion.config import DIFFUSION_TINY, DiffusionConfig, DiffusionRLConfig
from trainer.policies.diffusion.policy import DiffusionEvaluation, DiffusionPolicy
from trainer.policies.diffusion.trajectory import DiffusionTrajectory
from trainer.policies.registry import register_family
from trainer.policies.weights import load_policy_state

log = logging.getLogger(__name__)


@register_family("diffusion")
def build_diffusion_policy(cfg: DiffusionConfig, load_weights: bool = True) -> DiffusionPolicy:
    """The policy of `cfg`; pretrained may be a diffusers folder (read by the network) or our .safetensors of the policy."""
    policy = DiffusionPolicy(cfg, load_weights)
    if load_weights and cfg.pretrained is not None and Path(cfg.pretrained).suffix == ".safetensors":
        log.info("diffusion policy: loaded %d tensors from %s", load_policy_state(policy, cfg.pretrained), cfg.pretrained)
    return policy


__all__ = ["DIFFUSION_TINY", "DiffusionConfig", "DiffusionEvaluation", "DiffusionPolicy", "DiffusionRLConfig", "DiffusionTrajectory", "build_diffusion_policy"]
