"""The one reward combination, shared by the service and the trainer (which adds the judge term itself).

R = w_gen R_gen + w_judge R_judge + w_task R_task, R_gen = sum_k w_k r_k / sum_k w_k over the
generic terms that were computed. Absent terms (None or missing) are dropped and the remaining
weights renormalised at both levels, so R_gen keeps its share when e.g. no reference is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from reward_server.config import GEN_TERMS, RewardWeights


def combine_rewards(
    terms: Mapping[str, float | None], weights: RewardWeights | Mapping[str, float] | None = None
) -> tuple[float, dict[str, float]]:
    """Combine per-term rewards in [0, 1] into R; returns (reward, applied flat weights summing to 1).

    `terms` keys: the generic terms (clip_similarity, lpips, aesthetic, psnr, ssim, clip_iqa), "task"
    and "judge". Raises ValueError for unknown keys, non-finite values, or when no present term has a
    positive weight (there is nothing to score with: never a made-up value).
    """
    if weights is None:
        weights = RewardWeights()
    elif not isinstance(weights, RewardWeights):
        weights = RewardWeights().override(dict(weights))
    unknown = sorted(set(terms) - set(GEN_TERMS) - {"task", "judge"})
    if unknown:
        raise ValueError(f"unknown reward term(s) {unknown}")
    present = {k: float(v) for k, v in terms.items() if v is not None}
    bad = sorted(k for k, v in present.items() if not math.isfinite(v))
    if bad:
        raise ValueError(f"non-finite reward term(s) {bad}")

    w = weights.model_dump()
    gen_sum = sum(w[k] for k in GEN_TERMS if k in present)
    groups = {g: w[g] for g in ("judge", "task") if g in present}
    if gen_sum > 0:
        groups["gen"] = w["gen"]
    top_sum = sum(groups.values())
    if top_sum <= 0:
        raise ValueError(f"no computed term has a positive weight (present: {sorted(present)})")

    applied: dict[str, float] = {}
    for k in GEN_TERMS:
        if k in present and "gen" in groups:
            applied[k] = groups["gen"] / top_sum * w[k] / gen_sum
    for g in ("judge", "task"):
        if g in groups:
            applied[g] = groups[g] / top_sum
    reward = sum(applied[k] * present[k] for k in applied)
    return reward, applied
