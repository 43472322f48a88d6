"""The diffusion policy family: a conditional UNet2DModel restorer sampled by a stochastic DDIM chain."""

from trainer.policies.diffusion.config import DIFFUSION_TINY, DiffusionConfig, DiffusionRLConfig
from trainer.policies.diffusion.policy import DiffusionEvaluation, DiffusionPolicy
from trainer.policies.diffusion.trajectory import DiffusionTrajectory
from trainer.policies.registry import register_family


@register_family("diffusion")
def build_diffusion_policy(cfg: DiffusionConfig) -> DiffusionPolicy:
    return DiffusionPolicy(cfg)


__all__ = ["DIFFUSION_TINY", "DiffusionConfig", "DiffusionEvaluation", "DiffusionPolicy", "DiffusionRLConfig", "DiffusionTrajectory", "build_diffusion_policy"]
