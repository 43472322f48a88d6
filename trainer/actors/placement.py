"""Reserving an actor group's resources with a Ray placement group, or a clear error within a bounded time.

A request the cluster cannot place would otherwise wait forever without a word (Ray queues it for an
autoscaler that may never come). Shared by the learner group and the rollout group.

A run that is itself a task inside a placement group (trainer.experiment reserves each arm's CPUs so)
places its actors in that group: Ray does not nest groups, and a new one would wait for the CPUs its
parent holds.
"""

from __future__ import annotations

import logging

import ray
from ray.exceptions import GetTimeoutError
from ray.util.placement_group import PlacementGroup, get_current_placement_group, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

log = logging.getLogger(__name__)


class PlacementError(RuntimeError):
    """An actor group's resources could not be reserved; the message names what is missing and what to change."""


def bundle(cpus: float, gpus: float, resources: dict[str, float] | None = None) -> dict[str, float]:
    return {"CPU": cpus, **({"GPU": gpus} if gpus else {}), **(resources or {})}


def missing_resources(bundle: dict[str, float], count: int) -> list[str]:
    """What the alive nodes lack for `count` bundles: per-node for one bundle, cluster-wide for all."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    out = []
    for key, need in bundle.items():
        best = max((n.get(key, 0.0) for n in nodes), default=0.0)
        total = sum(n.get(key, 0.0) for n in nodes)
        if best < need:
            out.append(f"{key}: {need:g} per actor, but the largest node offers {best:g}")
        elif total < need * count:
            out.append(f"{key}: {need * count:g} for {count} actors, but the cluster has {total:g} in all")
    return out


class Placement:
    """`count` bundles reserved for one actor group: a placement group of its own, or the enclosing one."""

    def __init__(self, bundle: dict[str, float], count: int, strategy: str, timeout_s: float, what: str):
        self.parent = get_current_placement_group()
        self.group = self.parent or _reserve(bundle, count, strategy, timeout_s, what)

    def strategy(self, index: int) -> PlacementGroupSchedulingStrategy:
        """Where the group's actor `index` goes (anywhere in an enclosing group: its bundles are not ours)."""
        return PlacementGroupSchedulingStrategy(self.group, placement_group_bundle_index=-1 if self.parent else index)

    def release(self) -> None:
        if self.parent is None:
            remove_placement_group(self.group)


def _reserve(bundle: dict[str, float], count: int, strategy: str, timeout_s: float, what: str) -> PlacementGroup:
    """A ready placement group of `count` bundles, or PlacementError after timeout_s naming what is missing
    (`what` names the group and the config fields that size it)."""
    missing = missing_resources(bundle, count)
    if missing:  # an autoscaler may still add nodes: say so now, stop at the deadline
        log.warning("%s: no room yet (%s); waiting up to %.0f s for nodes", what, "; ".join(missing), timeout_s)
    group = placement_group([dict(bundle)] * count, strategy=strategy)
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except GetTimeoutError:
        remove_placement_group(group)
        missing = missing_resources(bundle, count) or ["resources the cluster has but cannot free (held by other work)"]
        raise PlacementError(
            f"{what}: {count} bundle(s) of {bundle} ({strategy}) could not be placed within {timeout_s:g} s: {'; '.join(missing)}. "
            "Lower the request or add nodes that offer it."
        ) from None
    return group
