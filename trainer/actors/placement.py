"""Reserving an actor group's resources with a Ray placement group, or a clear error within a bounded time.

A request the cluster cannot place would otherwise wait forever without a word (Ray queues it for an
autoscaler that may never come). Shared by the learner group and the rollout group.
"""

from __future__ import annotations

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group


class PlacementError(RuntimeError):
    """An actor group's resources could not be reserved; the message names what was asked and what exists."""


def bundle(cpus: float, gpus: float) -> dict[str, float]:
    return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}


def cluster_summary() -> str:
    """'node 10.0.0.1: CPU 8 (6 free), GPU 1 (0 free); ...' of the alive nodes."""
    free = ray.available_resources()
    parts = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = node.get("Resources", {})
        kinds = ", ".join(f"{k} {res.get(k, 0):g}" for k in ("CPU", "GPU"))
        parts.append(f"node {node.get('NodeManagerAddress')}: {kinds}")
    return "; ".join(parts) + f" (free in the cluster now: CPU {free.get('CPU', 0):g}, GPU {free.get('GPU', 0):g})"


def reserve(bundles: list[dict[str, float]], strategy: str, timeout_s: float, what: str) -> PlacementGroup:
    """A ready placement group of `bundles`, or PlacementError after timeout_s naming `what` (the config fields to change)."""
    group = placement_group(bundles, strategy=strategy)
    ready, _ = ray.wait([group.ready()], timeout=timeout_s)
    if not ready:
        remove_placement_group(group)
        raise PlacementError(
            f"{what}: {len(bundles)} x {bundles[0]} ({strategy}) could not be placed within {timeout_s:g} s; "
            f"the cluster has {cluster_summary()}. Lower the request or add nodes with these resources."
        )
    return group
