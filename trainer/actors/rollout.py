"""A rollout actor: holds a policy copy, samples G candidates per image in one batched call, scores them.

It knows the policy only through the interface (trainer/policies): the family comes from policy.kind.
When the policy offers intermediate estimates (step-wise rewards), they are scored in the same
request as the final outputs.
"""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import torch

from irpo_common.device import resolve_device
from trainer.actors.messages import ImageBatch, Rollout, RolloutStats
from trainer.actors.scoring import Scorer
from trainer.config import TrainConfig
from trainer.policies import build_policy


def sampling_seed(domain: str, *parts: int) -> int:
    """A seed that depends only on a domain tag and these integers, e.g. ("rollout", run seed, step, actor
    rank) for a rollout's candidate draws: a retried or resumed step draws the same. The tag keeps the
    draws of different uses apart, and the count of parts goes in too: SeedSequence pads its entropy with
    zeros, so (a, b, c) and (a, b, c, 0) alone would give the same seed."""
    tag = int.from_bytes(hashlib.sha256(domain.encode()).digest()[:8], "little")
    return int(np.random.SeedSequence([tag, len(parts), *parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class RolloutWorker:
    """Runs as a threaded Ray actor (max_concurrency = staleness bound + 1): while calls wait for the
    reward and judge services, the next call can already sample. The lock keeps the policy to one call at a time."""

    def __init__(self, cfg: TrainConfig, rank: int):
        self.cfg = cfg
        self.rank = rank
        self.device = resolve_device(cfg.device)
        # no checkpoint load here: the learner's weights come with every rollout call
        self.policy = build_policy(cfg.policy_section, load_weights=False).to(self.device).eval()
        self.version = -1
        self._policy_lock = threading.Lock()
        self.scorer = Scorer(cfg.reward, cfg.judge, concurrency=cfg.rollout.max_staleness + 1)

    def ping(self) -> str:
        return str(self.device)

    def _load(self, version: int, weights: dict[str, torch.Tensor]) -> float:
        if version == self.version:
            return 0.0
        t0 = time.perf_counter()
        self.policy.load_state_dict(weights)
        self.version = version
        return time.perf_counter() - t0

    def rollout(self, batch: ImageBatch, version: int, weights: dict[str, torch.Tensor]) -> tuple[RolloutStats, Rollout]:
        """Sample with policy `version` (its weights come with the call, so a restarted actor needs no resync).

        Two results, called with num_returns=2: the stats for the driver's log, the rollout for the learner.
        """
        g = self.cfg.grpo.group_size
        with self._policy_lock:
            sync = self._load(version, weights)
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(sampling_seed("rollout", self.cfg.seed, batch.step, self.rank))
            sample = self.policy.sample(batch.degraded.to(self.device), g, generator=gen)
            t1 = time.perf_counter()
        b = len(batch.ids)
        n = b * g
        # the final outputs, then each estimate column: blocks of N rows, each image-major in groups of G
        estimates = [] if sample.estimates is None else list(sample.estimates.clamp(0.0, 1.0).cpu().unbind(dim=1))
        blocks = 1 + len(estimates)
        scored = self.scorer.score(
            restored=torch.cat([sample.images.clamp(0.0, 1.0).cpu(), *estimates]),
            reference=batch.target.repeat_interleave(g, dim=0).repeat(blocks, 1, 1, 1),
            degraded=batch.degraded.repeat_interleave(g, dim=0).repeat(blocks, 1, 1, 1),
            tasks=[t for t in batch.tasks for _ in range(g)] * blocks,
            group_size=g,
        )
        rewards = scored.rewards.view(blocks, b, g)
        trajectory = sample.trajectory.to("cpu")
        rollout = Rollout(
            step=batch.step,
            version=version,
            ids=batch.ids,
            tasks=batch.tasks,
            degraded=batch.degraded,
            target=batch.target,
            trajectory=trajectory,
            rewards=rewards[0],
            terms={k: v[:n].view(b, g) for k, v in scored.terms.items()},
            estimate_rewards=rewards[1:].permute(1, 2, 0) if estimates else None,
            estimate_steps=sample.estimate_steps,
            judge_dropped=scored.judge_dropped,
            judge_unscored=scored.judge_unscored,
            times={"sample": t1 - t0, "weight_sync": sync, **scored.times},
        )
        return rollout.stats(), rollout
