"""GRPO mathematics of IRPO: pure functions, no Ray and no I/O."""

from trainer.grpo.advantages import HistoryTracker, group_advantages
from trainer.grpo.losses import (
    LossCoefs,
    beta_kl,
    best_candidate_index,
    difficulty_weights,
    grpo_loss,
    linear_anneal,
    ppo_clip_objective,
)
from trainer.grpo.optim import build_optimizer

__all__ = [
    "HistoryTracker",
    "LossCoefs",
    "beta_kl",
    "best_candidate_index",
    "build_optimizer",
    "difficulty_weights",
    "group_advantages",
    "grpo_loss",
    "linear_anneal",
    "ppo_clip_objective",
]
