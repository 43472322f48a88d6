"""Does the policy's exploration reach its output? Action sensitivity and within-group spread.

GRPO can only learn what its candidates differ in. Two measurements say how much that is:
- action sensitivity: for each of the 12 actions, the mean absolute change of the clamped output
  when that action moves from `low` to `high` with the others held at the deterministic
  trajectory's Beta means. An action that moves the output by less than one 8-bit level (1/255)
  is called inert: the reward cannot see it.
- within-group spread: G candidates per image sampled as in a rollout; per image the range (max -
  min) of their PSNR and SSIM against the target, and of their reward R when a scorer is given.

`python -m trainer.diagnose` prints both for any checkpoint; every training run logs the action
sensitivity at its start (trainer/actors/learner.py) and warns when most actions are inert. The
sensitivity needs a policy with a few named actions (the IRPO family); the spread works for any.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from trainer.metrics import psnr_ssim
from trainer.model.policy import NUM_MODULES
from trainer.policies import Policy

log = logging.getLogger(__name__)

# The policy's action order (trainer/model/policy.py): per module r_h, r_l, g_f, g_o.
ACTION_NAMES = tuple(f"fre{m + 1}.{a}" for m in range(NUM_MODULES) for a in ("r_h", "r_l", "g_f", "g_o"))
LEVEL_8BIT = 1.0 / 255.0
# Fewer live actions than this share of the 12 and a run is warned: its exploration is mostly noise.
MIN_LIVE_SHARE = 0.5

# restored (N, 3, H, W) in [0, 1], reference, degraded, tasks -> rewards (N,)
Score = Callable[[Tensor, Tensor, Tensor, list[str]], Tensor]


@runtime_checkable
class NamedActions(Protocol):
    """A policy whose output depends on a few named actions (the IRPO family's 12, ACTION_NAMES)."""

    def mean_actions(self, x: Tensor) -> Tensor: ...

    def evaluate_actions(self, x: Tensor, actions: Tensor): ...


@dataclass
class Sensitivity:
    change: dict[str, float]  # action name -> mean |output(high) - output(low)|, output clamped to [0, 1]
    low: float
    high: float
    images: int

    @property
    def live(self) -> list[str]:
        return [name for name, c in self.change.items() if c > LEVEL_8BIT]

    @property
    def live_share(self) -> float:
        return len(self.live) / len(self.change)

    def warning(self) -> str | None:
        """A sentence when fewer than MIN_LIVE_SHARE of the actions are live, else None."""
        if self.live_share >= MIN_LIVE_SHARE:
            return None
        inert = [n for n in self.change if n not in self.live]
        return (f"actions are INERT: only {len(self.live)} of {len(self.change)} move the output by more than one 8-bit level "
                f"(inert: {', '.join(inert)}); GRPO's candidates differ little and its advantages are mostly noise")

    def table(self) -> str:
        lines = [
            f"action sensitivity: mean |change| of the clamped output when one action moves {self.low:g} -> {self.high:g}, "
            f"the others at their Beta means ({self.images} images)",
            "",
            "| action | mean abs change | 8-bit levels | live (> 1 level) |",
            "|---|---|---|---|",
        ]
        for name, c in self.change.items():
            lines.append(f"| {name} | {c:.3g} | {c / LEVEL_8BIT:.3f} | {'yes' if c > LEVEL_8BIT else 'no'} |")
        lines.append("")
        lines.append(f"live actions: {len(self.live)} / {len(self.change)} ({self.live_share:.0%})")
        return "\n".join(lines)

    def metrics(self) -> dict[str, float]:
        """Flat numbers for a run's log."""
        out = {f"action_change/{name}": c for name, c in self.change.items()}
        out["action_change/live_share"] = self.live_share
        return out


@torch.no_grad()
def action_sensitivity(policy: Policy, x: Tensor, low: float = 0.05, high: float = 0.95) -> Sensitivity | None:
    """Sensitivity of the output of `policy` to each action on images x (N, 3, H, W); None for a policy
    without named actions (a diffusion restorer acts on the whole image at every step)."""
    if not isinstance(policy, NamedActions):
        return None
    if not 0.0 < low < high < 1.0:
        raise ValueError(f"need 0 < low < high < 1, got low={low}, high={high}")
    base = policy.mean_actions(x)
    change = {}
    for k, name in enumerate(ACTION_NAMES):
        outs = []
        for value in (low, high):
            actions = base.clone()
            actions[:, k] = value
            outs.append(policy.evaluate_actions(x, actions).images.clamp(0.0, 1.0))
        change[name] = (outs[1] - outs[0]).abs().mean().item()
    return Sensitivity(change, low, high, x.shape[0])


@dataclass
class Spread:
    """Per-image ranges over the G candidates of each image."""

    psnr: list[float]  # dB
    ssim: list[float]
    reward: list[float] | None  # None when no scorer was given
    reward_mean: float | None
    group_size: int

    def summary(self) -> str:
        def fmt(name: str, values: list[float], unit: str, digits: int) -> str:
            return f"{name} range median {statistics.median(values):.{digits}f}{unit} (mean {statistics.fmean(values):.{digits}f}, max {max(values):.{digits}f})"

        parts = [fmt("PSNR", self.psnr, " dB", 3), fmt("SSIM", self.ssim, "", 4)]
        if self.reward is None:
            parts.append("R: not measured (no reward service)")
        else:
            parts.append(fmt("R", self.reward, "", 4) + f", median range / mean R {statistics.median(self.reward) / self.reward_mean:.2%}")
        return f"within-group spread over {len(self.psnr)} images, G = {self.group_size} candidates each: " + "; ".join(parts)

    def metrics(self) -> dict[str, float]:
        out = {"group_spread/psnr_median": statistics.median(self.psnr), "group_spread/ssim_median": statistics.median(self.ssim)}
        if self.reward is not None:
            out["group_spread/reward_median"] = statistics.median(self.reward)
        return out


@torch.no_grad()
def group_spread(policy: Policy, degraded: Tensor, target: Tensor, tasks: list[str], group_size: int,
                 generator: torch.Generator | None = None, score: Score | None = None) -> Spread:
    """Sample G candidates per image as a rollout does and measure how far apart they land."""
    if group_size < 2:
        raise ValueError(f"a spread needs group_size >= 2, got {group_size}")
    sample = policy.sample(degraded, group_size, generator=generator)
    restored = sample.images.clamp(0.0, 1.0).cpu()
    reference = target.cpu().repeat_interleave(group_size, dim=0)
    metrics = torch.tensor([psnr_ssim(r, t) for r, t in zip(restored, reference)]).view(-1, group_size, 2)
    ranges = metrics.amax(dim=1) - metrics.amin(dim=1)
    reward = reward_mean = None
    if score is not None:
        r = score(restored, reference, degraded.cpu().repeat_interleave(group_size, dim=0), [t for t in tasks for _ in range(group_size)])
        r = r.view(-1, group_size)
        reward, reward_mean = (r.amax(dim=1) - r.amin(dim=1)).tolist(), r.mean().item()
    return Spread(ranges[:, 0].tolist(), ranges[:, 1].tolist(), reward, reward_mean, group_size)
