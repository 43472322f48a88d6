"""Restoration policy (AdaIR backbone + IRPO Beta heads) and its weights IO."""

from trainer.model.policy import BetaEvaluation, BetaTrajectory, PolicyEval, RestorationPolicy, build_policy
from trainer.model.presets import model_preset
from trainer.model.weights_io import LoadReport, WeightsError, load_policy_weights, save_policy

__all__ = [
    "PolicyEval",
    "BetaEvaluation",
    "BetaTrajectory",
    "RestorationPolicy",
    "build_policy",
    "model_preset",
    "LoadReport",
    "WeightsError",
    "load_policy_weights",
    "save_policy",
]
