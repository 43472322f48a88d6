"""Policy families behind one interface (interface.py), built by name (registry.py).

Importing this package registers the families it ships: 'diffusion' (trainer/policies/diffusion).
"""

from trainer.policies.interface import Evaluation, ParameterGroup, Policy, PolicySample, Trajectory, optimizer_groups
from trainer.policies.registry import build_policy, families, register_family
from trainer.policies import diffusion  # noqa: F401  (registers the family)

__all__ = ["Evaluation", "ParameterGroup", "Policy", "PolicySample", "Trajectory", "optimizer_groups", "build_policy", "families", "register_family"]
