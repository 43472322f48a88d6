"""Policy families behind one interface (interface.py), built by name (registry.py).

The families it ships, imported on first use by the registry: 'irpo' (trainer/policies/irpo.py over
trainer/model) and 'diffusion' (trainer/policies/diffusion).
"""

from trainer.policies.interface import Evaluation, ParameterGroup, Policy, PolicySample, Trajectory, optimizer_groups
from trainer.policies.registry import build_policy, families, register_family
from trainer.policies.weights import WeightsError, load_policy_state, save_policy

__all__ = ["Evaluation", "ParameterGroup", "Policy", "PolicySample", "Trajectory", "WeightsError", "build_policy", "families", "load_policy_state", "optimizer_groups", "register_family", "save_policy"]
