"""The contract every policy family implements, so the actors, the learner, checkpoints and
evaluation run without knowing which family is configured.

Rows are image-major throughout: with B images and G candidates, row i * G + j is candidate j of
image i (N = B * G). A trajectory holds S action steps per row: S = 1 for the AdaIR family (one
joint draw of its 12 Beta actions), S = sampling_steps - 1 for a diffusion restorer (one Gaussian
per stochastic denoising step; the last, noiseless step to t = 0 is no action).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

import torch
from torch import Tensor, nn

T = TypeVar("T", bound="Trajectory")


@runtime_checkable
class Trajectory(Protocol):
    """What a rollout records: enough to recompute its log-density later under other weights.

    Plain CPU-movable tensors, so it travels from a rollout actor to the learner in a Ray object.
    """

    log_prob: Tensor  # (N, S) float32: log-density of each action step under the policy that sampled

    def to(self: T, device: torch.device | str) -> T: ...

    def rows(self: T, start: int, stop: int) -> T:
        """Rows start..stop-1 (a micro-batch or a learner rank's share of whole groups)."""
        ...

    @classmethod
    def cat(cls: type[T], parts: Sequence[T]) -> T:
        """One trajectory from the rows of several (the parts of one step from several actors)."""
        ...


@runtime_checkable
class Evaluation(Protocol):
    """A recorded trajectory re-evaluated under current parameters (differentiable)."""

    log_prob: Tensor  # (N, S), comparable to Trajectory.log_prob: ratio = exp(log_prob - old)
    entropy: Tensor | None  # (N, S), or None where it does not depend on the parameters

    def kl(self, reference: "Evaluation") -> Tensor:
        """(N, S) KL(pi || pi_ref) per step, closed form; `reference` evaluated the same trajectory."""
        ...


@dataclass
class PolicySample:
    images: Tensor  # (N, 3, H, W) raw output in about [0, 1] (clamp before scoring)
    trajectory: Trajectory
    # (N, R, 3, H, W) in [0, 1]: intermediate images the rollout scores too (step-wise rewards); None
    # when only the final output is scored. estimate_steps[r]: the action step that produced column r.
    estimates: Tensor | None = None
    estimate_steps: list[int] = field(default_factory=list)


@dataclass
class ParameterGroup:
    """A named slice of the trainable parameters with its learning-rate multiplier (IRPO: heads x6)."""

    name: str
    params: list[nn.Parameter]
    lr_scale: float = 1.0


@runtime_checkable
class Policy(Protocol):
    """A restoration policy: degraded (B, 3, H, W) images in [0, 1] -> restorations, stochastically or not.

    Also an nn.Module: `state_dict()` / `load_state_dict()` are its save/load (checkpoints store
    the state dict as safetensors), and `.to()`, `.train()`, `.eval()` behave as usual.
    """

    kind: str  # the config's `policy.kind`, the registry key

    def sample(self, x: Tensor, group_size: int, generator: torch.Generator | None = None) -> PolicySample:
        """G candidates per image in one batched call, without gradients; a CPU generator makes it reproducible."""
        ...

    def evaluate(self, x: Tensor, trajectory: Trajectory) -> Evaluation:
        """Log-density (and entropy) of a recorded trajectory under the current parameters.

        x: the (B, 3, H, W) images the trajectory was sampled for (not repeated); rows of the
        trajectory are the B * G candidates. Differentiable with respect to the parameters.
        """
        ...

    def deterministic(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) output for evaluation: no randomness, the same for the same input."""
        ...

    def parameter_groups(self) -> list[ParameterGroup]:
        """Groups that partition the trainable parameters, for the optimiser."""
        ...

    def supervised_loss(self, x: Tensor, target: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B,) the family's supervised loss per image (pre-training, SFT control, L_SFT): differentiable."""
        ...

    def state_dict(self, *args, **kwargs) -> Mapping[str, Tensor]: ...

    def load_state_dict(self, state_dict: Mapping[str, Tensor], strict: bool = True): ...

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    # Optional: `shared_reference()` -> an object with evaluate(x, trajectory), state_dict() and
    # load_state_dict() that evaluates the frozen reference without a second copy of the weights (the
    # diffusion family under LoRA: adapters disabled), or None; the learner deep-copies the policy otherwise.


def optimizer_groups(policy: Policy, lr: float) -> list[dict]:
    """torch.optim parameter groups at lr * lr_scale, checked to partition the trainable parameters."""
    groups = [(g, [p for p in g.params if p.requires_grad]) for g in policy.parameter_groups()]
    seen: set[int] = set()
    for g, params in groups:
        ids = {id(p) for p in params}
        if ids & seen:
            raise ValueError(f"parameter group {g.name!r} overlaps an earlier group")
        seen |= ids
    trainable = {id(p) for p in policy.parameters() if p.requires_grad}
    if seen != trainable:
        raise ValueError(f"parameter_groups() cover {len(seen)} tensors but the policy has {len(trainable)} trainable ones")
    return [{"params": params, "lr": lr * g.lr_scale, "name": g.name} for g, params in groups if params]
