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
import ray
import torch

from irpo_common.device import resolve_device
from trainer.actors.collective import WeightLink
from trainer.actors.messages import ImageBatch, Rollout, RolloutStats
from trainer.actors.scoring import Scorer, unreachable
from trainer.actors.weight_sync import PacketHeader, WeightPacket, load_packet
from trainer.config import TrainConfig
from trainer.policies import build_policy


def sampling_seed(domain: str, *parts: int) -> int:
    """A seed that depends only on a domain tag and these integers, e.g. ("rollout", run seed, step, actor
    rank) for a rollout's candidate draws: a retried or resumed step draws the same. The tag keeps the
    draws of different uses apart, and the count of parts goes in too: SeedSequence pads its entropy with
    zeros, so (a, b, c) and (a, b, c, 0) alone would give the same seed."""
    tag = int.from_bytes(hashlib.sha256(domain.encode()).digest()[:8], "little")
    return int(np.random.SeedSequence([tag, len(parts), *parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


class RolloutWorker(WeightLink):
    """Runs as a threaded Ray actor (max_concurrency = staleness bound + 3): while calls wait for the
    reward and judge services, the next call can already sample, and a new version's weights can be
    fetched (from the object store, or by broadcast: trainer/actors/collective.py). The lock keeps the
    policy to one call at a time."""

    def __init__(self, cfg: TrainConfig, rank: int):
        self.cfg = cfg
        self.rank = rank
        self.device = resolve_device(cfg.device)
        # no checkpoint load here: the frozen weights come with the first rollout call, the changing ones with every call
        self.policy = build_policy(cfg.policy_section, load_weights=False).to(self.device).eval()
        self.version = -1
        self.has_frozen = False
        self._staged: dict[int, WeightPacket] = {}  # fetched ahead by receive() or link_receive(), loaded when a rollout needs them
        self._arriving: dict[int, threading.Event] = {}  # versions a broadcast is bringing now
        self._policy_lock = threading.Lock()
        self.scorer = Scorer(cfg.reward, cfg.judge, concurrency=cfg.rollout.max_staleness + 1)

    def ping(self) -> str:
        return str(self.device)

    def check_services(self) -> tuple[str, list[str]]:
        """(this node's address, the service replicas this actor cannot reach)."""
        return ray.util.get_node_ip_address(), unreachable(self.cfg.reward, self.cfg.judge)

    def receive(self, version: int, weights: list[ray.ObjectRef]) -> float:
        """Fetch a new version's packet ahead of use, outside the policy lock (a rollout may be sampling).
        Returns time/weight_sync: seconds from the learner's export start until the packet is in this
        process (wall clocks of two nodes: as close as their clock sync)."""
        packet = ray.get(weights[0])
        if version > self.version:
            self._staged[version] = packet
        return time.time() - packet.export_start

    def link_receive(self, gen: int, header: PacketHeader) -> float:
        """Receive a version that learner rank 0 broadcasts in group `gen` into a spare buffer and stage it as
        a packet, as receive() does; returns time/weight_sync the same way."""
        arriving = self._arriving.setdefault(header.version, threading.Event())
        try:
            buffer = self._link_broadcast(gen, self._link_spare(header.nbytes))
            if header.version > self.version:
                self._staged[header.version] = header.packet(buffer)
        finally:
            arriving.set()
            self._arriving.pop(header.version, None)
        return time.time() - header.export_start

    def _load(self, version: int, frozen: list[ray.ObjectRef], weights: list[ray.ObjectRef]) -> float:
        """Refs come wrapped in lists so Ray does not fetch them for a call that does not need them."""
        t0 = time.perf_counter()
        if not self.has_frozen:
            load_packet(self.policy, ray.get(frozen[0]))
            self.has_frozen = True
        if version != self.version:
            arriving = self._arriving.get(version)
            if arriving is not None:  # a broadcast brings it now: wait (bounded) rather than fetch it a second time
                arriving.wait(self.cfg.rollout.weight_sync.timeout_s)
            packet = self._staged.pop(version, None) or ray.get(weights[0])
            load_packet(self.policy, packet)
            self._link_recycle(packet, keep=self.cfg.rollout.max_staleness + 1)
            self.version = version
        for v in [v for v in list(self._staged) if v < version]:
            self._link_recycle(self._staged.pop(v), keep=self.cfg.rollout.max_staleness + 1)
        return time.perf_counter() - t0

    def rollout(self, batch: ImageBatch, version: int, frozen: list[ray.ObjectRef], weights: list[ray.ObjectRef]) -> tuple[RolloutStats, Rollout]:
        """Sample with policy `version` (its weights come with the call, so a restarted actor needs no resync).

        Two results, called with num_returns=2: the stats for the driver's log, the rollout for the learner.
        """
        g = self.cfg.grpo.group_size
        with self._policy_lock:
            load = self._load(version, frozen, weights)
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(sampling_seed("rollout", self.cfg.seed, batch.step, batch.part))
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
            times={"sample": t1 - t0, "weight_load": load, **scored.times},
        )
        return rollout.stats(), rollout
