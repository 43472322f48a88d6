"""The rollout actors as one group (the role of OpenRLHF's actor groups and verl's worker groups):
placement, dispatch, failover and weight publication, so trainer/run.py keeps only the schedule.

- Placement: one placement-group bundle per actor. Resources no node offers stop the run within
  rollout.placement_timeout_s with a message naming what is missing, never a silent wait.
- Dispatch: a step is cut into parts (rollout.images_per_worker images each); a part goes to the
  free actor with the fewest calls outstanding (its own actor first, so a healthy group keeps each
  actor on its share). A part's candidate draws follow from (seed, step, part), not from the actor,
  so where it runs changes nothing in the result.
- Failover: when an actor dies, every part it held moves at once to the healthy actors; the group
  shrinks, and grows back when Ray has restarted the actor (its ping answers). With no actor alive
  the work waits up to rollout.restart_timeout_s.
- Weights: trainer/actors/weight_sync.py packets, pushed to every live actor as soon as a version is
  published (receive, or a broadcast from learner rank 0 with rollout.weight_sync.transport 'collective':
  trainer/actors/collective.py), and passed with every call (a restarted actor fetches what it lacks).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

from trainer.actors.collective import Broadcaster
from trainer.actors.messages import ImageBatch, RolloutStats
from trainer.actors.placement import Placement, bundle
from trainer.actors.rollout import RolloutWorker
from trainer.actors.scoring import ServiceUnavailable
from trainer.actors.weight_sync import pack
from trainer.config import TrainConfig

log = logging.getLogger(__name__)
ACTOR_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)
_POLL_S = 0.2  # how often the wait loop looks at restarted actors and delayed retries


class RolloutGroupError(RuntimeError):
    """The group cannot be placed or cannot finish a step; the message says why and what to change."""


@dataclass
class _Part:
    batch: ImageBatch
    version: int
    retries: int = 0  # service failures so far (rollout.step_retries bounds them)
    not_before: float = 0.0  # monotonic time before which a retry is not sent
    actor: int | None = None
    refs: tuple[ray.ObjectRef, ray.ObjectRef] | None = None
    lost_from: tuple[int, float] | None = None  # (dead actor, monotonic time its loss was seen), until resent

    @property
    def key(self) -> tuple[int, int]:
        return self.batch.step, self.batch.part


@dataclass
class Move:
    """A part that left a dead actor: when the loss was seen and when the part was running elsewhere."""

    step: int
    part: int
    from_actor: int
    to_actor: int
    lost_at: float  # monotonic
    sent_at: float  # monotonic

    @property
    def seconds(self) -> float:
        return self.sent_at - self.lost_at


@dataclass
class RolloutGroup:
    cfg: TrainConfig
    worker_cls: type = RolloutWorker  # tests give a stand-in with the same methods
    faults: Counter = field(default_factory=Counter)
    moves: list[Move] = field(default_factory=list)

    def __post_init__(self):
        r = self.cfg.rollout
        self.size = r.num_workers
        self.capacity = r.max_staleness + 1  # rollout calls an actor runs at once (the rest wait on services)
        what = "the rollout group (rollout.num_workers x rollout.cpus_per_worker / rollout.gpus_per_worker / rollout.resources)"
        self.placement = Placement(bundle(r.cpus_per_worker, r.gpus_per_worker, r.resources), self.size, r.placement_strategy, r.placement_timeout_s, what)
        remote = ray.remote(self.worker_cls)
        self.actors = [
            remote.options(
                num_cpus=r.cpus_per_worker, num_gpus=r.gpus_per_worker, resources=r.resources or None,
                max_restarts=r.max_restarts, max_concurrency=self.capacity + 2,  # + 2: receive() or link_receive() of the next versions
                scheduling_strategy=self.placement.strategy(i),
            ).remote(self.cfg, i)
            for i in range(self.size)
        ]
        self.alive = [True] * self.size
        self._pings: dict[int, ray.ObjectRef] = {}
        self._pending: list[_Part] = []
        self._running: dict[ray.ObjectRef, _Part] = {}  # stats ref -> part
        self._done: dict[tuple[int, int], tuple[RolloutStats, ray.ObjectRef]] = {}
        self._parts: dict[tuple[int, int], _Part] = {}  # every part submitted and not yet handed out
        self._handed: tuple[int, list[_Part]] = (-1, [])  # the step last gathered, kept for redo()
        self._no_actor_since: float | None = None
        self.frozen: ray.ObjectRef | None = None
        self.weights: dict[int, ray.ObjectRef] = {}
        self._receipts: dict[int, list[ray.ObjectRef]] = {}  # version -> receive() refs of the actors live at publication
        self.incarnation = [0] * self.size  # losses seen per actor: a restarted actor is a new member of the broadcast group
        self.broadcaster = Broadcaster(r.weight_sync, self.faults) if r.weight_sync.transport == "collective" else None
        self.broadcast: set[int] = set()  # versions that went by broadcast to every live actor
        self._devices: list[str] = ["cpu"] * self.size

    def devices(self) -> list[str]:
        """The actors' devices, once every actor has reached every service replica from its own node."""
        problems = [f"rollout actor {i} on {node}: {p}" for i, (node, found) in enumerate(ray.get([a.check_services.remote() for a in self.actors])) for p in found]
        if problems:
            raise RolloutGroupError("; ".join(problems) + " (the driver reached them: check the worker nodes' network, DNS and the URLs)")
        self._devices = ray.get([a.ping.remote() for a in self.actors])
        return self._devices

    # -- weights ------------------------------------------------------------------------
    def publish(self, version: int, packet: ray.ObjectRef, source=None) -> None:
        """A new version: kept for the calls that sample with it and pushed to every live actor now, by
        broadcast from `source` (learner rank 0's actor) when the collective transport is on and can."""
        self.weights[version] = packet
        self._settle_broadcast()
        live = {i: a for i, a in enumerate(self.actors) if self.alive[i]}
        receipts = None
        if self.broadcaster is not None and source is not None:
            receipts = self.broadcaster.start(version, source, live, tuple((i, self.incarnation[i]) for i in live), self._devices)
        self._receipts[version] = list(receipts.values()) if receipts else [a.receive.remote(version, [packet]) for a in live.values()]

    def _settle_broadcast(self) -> None:
        """Finish the broadcast under way (bounded); the actors it missed get its version from the object store."""
        if self.broadcaster is None or self.broadcaster.round is None:
            return
        r, missed = self.broadcaster.settle()
        if not missed:
            self.broadcast.add(r.version)
        elif r.version in self._receipts:
            kept = [ref for i, ref in r.receipts.items() if i not in missed]
            self._receipts[r.version] = kept + [self.actors[i].receive.remote(r.version, [self.weights[r.version]]) for i in missed if self.alive[i]]

    def sync_metrics(self, version: int) -> dict[str, float | None]:
        """time/weight_sync of a version and, with the collective transport, whether it went by broadcast."""
        seconds = self.sync_seconds(version)
        return {"time/weight_sync": seconds, **({"weight_sync/broadcast": float(version in self.broadcast)} if self.broadcaster else {})}

    def sync_seconds(self, version: int, timeout_s: float = 60.0) -> float | None:
        """time/weight_sync of a version: from the learner's export start until the last live actor
        had it in memory (None when no actor received it, e.g. all were down)."""
        if self.broadcaster is not None and self.broadcaster.round is not None and self.broadcaster.round.version == version:
            self._settle_broadcast()
        refs = self._receipts.pop(version, [])
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        seconds = []
        for ref in ready:
            try:
                seconds.append(ray.get(ref))
            except ACTOR_LOST:  # died since: its parts move; its restart fetches the version with its next call
                pass
            except RayTaskError as exc:  # e.g. its node's object store went away mid-fetch: its next call fetches the version
                log.warning("version %d: an actor's early fetch failed (%s); it loads the version with its next call", version, str(exc).splitlines()[0])
        return max(seconds) if seconds else None

    def forget_before(self, version: int) -> None:
        for v in [v for v in self.weights if v < version]:
            del self.weights[v]
            self._receipts.pop(v, None)
            self.broadcast.discard(v)

    def version_refs(self, version: int) -> list[ray.ObjectRef]:
        """The packets (frozen, changing) that make up a published version; full_state(*ray.get(...)) is
        its whole state dict (checkpoints keep the versions in-flight rollouts sample with)."""
        return [self.frozen, self.weights[version]]

    def restore_weights(self, version: int, state: dict) -> None:
        self.weights[version] = ray.put(pack(state, version))

    # -- work ----------------------------------------------------------------------------
    def drop_work(self) -> None:
        """Forget every part and version: a restarted learner resumes from a checkpoint and the run submits
        its steps again. Calls still running finish on their actors and are ignored."""
        for store in (self._pending, self._running, self._done, self._parts, self.weights, self._receipts, self.broadcast):
            store.clear()
        self._handed = (-1, [])
        if self.broadcaster is not None:  # its source, learner rank 0, is gone
            self.broadcaster.reset("the learner group restarts")

    def submit(self, batches: list[ImageBatch], version: int) -> None:
        parts = [_Part(b, version) for b in batches]
        self._parts.update((p.key, p) for p in parts)
        self._pending.extend(parts)
        self._dispatch()

    def gather(self, step: int) -> tuple[RolloutStats, list[ray.ObjectRef]]:
        """Wait for every part of a step; returns its stats and the rollout refs in part order (the
        rollouts stay in the object store, for the learner). Other steps' results are kept as they come."""
        keys = sorted(k for k in self._parts if k[0] == step)
        if not keys:
            raise RolloutGroupError(f"step {step} was never submitted")
        while not all(k in self._done for k in keys):
            self._revive()
            self._dispatch()
            self._check_no_actor()
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=_POLL_S) if self._running else ([], [])
            for ref in ready:
                self._collect(ref)
        done = [self._done.pop(k) for k in keys]
        self._handed = (step, [self._parts.pop(k) for k in keys])
        return RolloutStats.concat([s for s, _ in done]), [r for _, r in done]

    def redo(self, step: int) -> tuple[RolloutStats, list[ray.ObjectRef]]:
        """Sample the step just gathered again: its rollouts were lost before the learner read them
        (kept only in the object store of a node that died since)."""
        handed_step, parts = self._handed
        if handed_step != step:
            raise RolloutGroupError(f"step {step} is not the step last gathered ({handed_step})")
        self.faults["rollout_outputs_lost"] += 1
        for part in parts:
            part.retries, part.not_before, part.actor = 0, 0.0, None
            self._parts[part.key] = part
            self._requeue(part)
        return self.gather(step)

    def _collect(self, ref: ray.ObjectRef) -> None:
        part = self._running.pop(ref)
        try:
            self._done[part.key] = (ray.get(ref), part.refs[1])
        except ACTOR_LOST as exc:
            part.lost_from = (part.actor, time.monotonic())
            self._lost(part.actor, exc)
            self._requeue(part)
        except ServiceUnavailable as exc:
            self.faults["service_unavailable"] += 1
            if part.retries == self.cfg.rollout.step_retries:
                raise RolloutGroupError(f"step {part.key[0]} part {part.key[1]}: the reward service stayed unavailable {part.retries + 1} times: {exc}") from None
            log.warning("step %d part %d: reward service unavailable, retrying: %s", *part.key, str(exc).splitlines()[0])
            part.not_before = time.monotonic() + min(2.0**part.retries, 30.0)
            part.retries += 1
            self._requeue(part)

    def _requeue(self, part: _Part) -> None:
        part.refs = None
        self._pending.append(part)

    def _lost(self, actor: int, exc: Exception) -> None:
        """An actor died: mark it down and move every part it held to the pending queue at once."""
        if not self.alive[actor]:
            return
        self.alive[actor] = False
        self.incarnation[actor] += 1
        self.faults["rollout_actor_lost"] += 1
        lost_at = time.monotonic()
        log.warning("rollout actor %d lost (%s); moving its parts to %d live actor(s)", actor, str(exc).splitlines()[0], sum(self.alive))
        for ref, part in list(self._running.items()):
            if part.actor == actor:
                del self._running[ref]
                part.lost_from = (actor, lost_at)
                self._requeue(part)
        for key in [k for k in self._done if self._parts[k].actor == actor]:  # its outputs may have gone with its node
            del self._done[key]
            self._requeue(self._parts[key])
        self._pings[actor] = self.actors[actor].ping.remote()

    def _revive(self) -> None:
        """Actors Ray has restarted answer their ping: the group grows back."""
        for i, ref in list(self._pings.items()):
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                continue
            del self._pings[i]
            try:
                ray.get(ref)
            except ACTOR_LOST:  # still restarting, or gone for good (restart_timeout_s bounds the wait)
                self._pings[i] = self.actors[i].ping.remote()
                continue
            self.alive[i] = True
            log.warning("rollout actor %d is back; %d live actor(s)", i, sum(self.alive))

    def _check_no_actor(self) -> None:
        if any(self.alive):
            self._no_actor_since = None
            return
        now = time.monotonic()
        self._no_actor_since = self._no_actor_since or now
        if now - self._no_actor_since > self.cfg.rollout.restart_timeout_s:
            raise RolloutGroupError(f"no rollout actor alive for {self.cfg.rollout.restart_timeout_s:.0f} s (rollout.restart_timeout_s; rollout.max_restarts={self.cfg.rollout.max_restarts}): the actors' restarts are exhausted or no node can hold them")

    def _dispatch(self) -> None:
        now = time.monotonic()
        load = Counter(p.actor for p in self._running.values())
        waiting = []
        for part in sorted(self._pending, key=lambda p: p.key):
            free = [i for i in range(self.size) if self.alive[i] and load[i] < self.capacity]
            if part.not_before > now or not free:
                waiting.append(part)
                continue
            home = part.batch.part % self.size
            actor = home if home in free else min(free, key=lambda i: (load[i], i))
            load[actor] += 1
            part.actor = actor
            part.refs = self.actors[actor].rollout.options(num_returns=2).remote(part.batch, part.version, [self.frozen], [self.weights[part.version]])
            self._running[part.refs[0]] = part
            if part.lost_from is not None:
                self.moves.append(Move(*part.key, part.lost_from[0], actor, part.lost_from[1], time.monotonic()))
                part.lost_from = None
        self._pending = waiting

    def close(self) -> None:
        if self.broadcaster is not None:
            self.broadcaster.reset()
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.placement.release()
