"""What travels between the driver, the rollout actors and the learner (plain data, no Ray).

A rollout goes from its actor to the learner by object reference; the driver gets only its stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

from trainer.policies import Trajectory


@dataclass
class ImageBatch:
    """Training images of one step's part (one rollout actor's share when all are healthy)."""

    step: int
    part: int  # which share of the step: its candidate draws follow from (seed, step, part), whichever actor runs it
    ids: list[str]
    tasks: list[str]
    degraded: torch.Tensor  # (B, 3, H, W) in [0, 1]
    target: torch.Tensor  # (B, 3, H, W) in [0, 1]


@dataclass(kw_only=True)
class RolloutStats:
    """What the driver logs of a rollout: small, so it alone comes back to the driver process."""

    step: int
    version: int  # policy version that sampled
    rewards: torch.Tensor  # (B, G)
    terms: dict[str, torch.Tensor]  # term name -> (B, G); NaN where the term was not computed
    judge_dropped: int = 0  # candidates scored without the judge because it was down (outage policy 'drop')
    judge_unscored: int = 0  # candidates whose judge answer held no score
    times: dict[str, float] = field(default_factory=dict)  # seconds: sample, reward, judge, score, weight_load
    # step-wise rewards: (B, G, R) rewards of the intermediate estimates the policy offered (R = 0 for none),
    # column r scoring the estimate produced by sampling step estimate_steps[r]
    estimate_rewards: torch.Tensor | None = None
    estimate_steps: list[int] = field(default_factory=list)

    def stats(self) -> "RolloutStats":
        return RolloutStats(**{f.name: getattr(self, f.name) for f in fields(RolloutStats)})

    @staticmethod
    def concat(parts: list["RolloutStats"]) -> "RolloutStats":
        """One step's stats from the parts of several actors (all sampled by the same version)."""
        if len({p.version for p in parts}) != 1 or len({p.step for p in parts}) != 1:
            raise ValueError("rollout parts of one step must share step and policy version")
        if len({tuple(p.estimate_steps) for p in parts}) != 1:
            raise ValueError("rollout parts of one step must score the same estimate steps")
        names = sorted(set().union(*(p.terms for p in parts)))

        def term(p: RolloutStats, name: str) -> torch.Tensor:
            return p.terms.get(name, torch.full_like(p.rewards, float("nan")))

        return RolloutStats(
            step=parts[0].step,
            version=parts[0].version,
            rewards=torch.cat([p.rewards for p in parts]),
            terms={n: torch.cat([term(p, n) for p in parts]) for n in names},
            judge_dropped=sum(p.judge_dropped for p in parts),
            judge_unscored=sum(p.judge_unscored for p in parts),
            estimate_rewards=None if parts[0].estimate_rewards is None else torch.cat([p.estimate_rewards for p in parts]),
            estimate_steps=parts[0].estimate_steps,
            # actors run side by side: a stage takes as long as its slowest actor
            times={k: max(p.times.get(k, 0.0) for p in parts) for k in set().union(*(p.times for p in parts))},
        )


@dataclass(kw_only=True)
class Rollout(RolloutStats):
    """G scored candidates per image, with the trajectory (and log-probs) of the policy that sampled them;
    it travels from the rollout actor to the learner through the object store, not the driver."""

    ids: list[str]
    tasks: list[str]
    degraded: torch.Tensor  # (B, 3, H, W)
    target: torch.Tensor  # (B, 3, H, W)
    trajectory: Trajectory  # B*G rows, image-major; trajectory.log_prob (B*G, S) is the sampling policy's

    @staticmethod
    def concat(parts: list["Rollout"]) -> "Rollout":
        if len(parts) == 1:
            return parts[0]
        stats = RolloutStats.concat(parts)
        return Rollout(
            **{f.name: getattr(stats, f.name) for f in fields(RolloutStats)},
            ids=[i for p in parts for i in p.ids],
            tasks=[t for p in parts for t in p.tasks],
            degraded=torch.cat([p.degraded for p in parts]),
            target=torch.cat([p.target for p in parts]),
            trajectory=type(parts[0].trajectory).cat([p.trajectory for p in parts]),
        )
