"""The reward specification shared by the reward service and the trainer: term names, weights, and
the one combination of R.

Weights are the paper's (IRPO Appendix B, ../shared/notes/method.md):
R = 0.6 R_gen + 0.1 R_judge + 0.3 R_task, R_gen = 0.25 CLIP + 0.25 LPIPS + 0.15 aesthetic
+ 0.20 PSNR + 0.15 SSIM. `clip_iqa` is our extra no-reference term; weight 0 by default so the
paper's reward is unchanged, but it is always computed and reported.

R = w_gen R_gen + w_judge R_judge + w_task R_task, R_gen = sum_k w_k r_k / sum_k w_k over the
generic terms that were computed. Absent terms (None or missing) are dropped and the remaining
weights renormalised at both levels, so R_gen keeps its share when e.g. no reference is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, model_validator

GROUPS = ("gen", "judge", "task")


class RewardWeights(BaseModel):
    """Two-level weights: `gen` terms make R_gen; groups gen/judge/task make R."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    clip_similarity: float = Field(0.25, ge=0, description="R_gen: CLIP cosine similarity of restored and reference.")
    lpips: float = Field(0.25, ge=0, description="R_gen: 1 - LPIPS distance to the reference.")
    aesthetic: float = Field(0.15, ge=0, description="R_gen: LAION aesthetic rating mapped by aesthetic_range.")
    psnr: float = Field(0.20, ge=0, description="R_gen: PSNR to the reference mapped by psnr_range_db.")
    ssim: float = Field(0.15, ge=0, description="R_gen: SSIM to the reference.")
    clip_iqa: float = Field(0.0, ge=0, description="R_gen: CLIP-IQA (no reference); 0 keeps the paper's reward.")
    brisque: float = Field(0.0, ge=0, description="R_gen: BRISQUE (no reference; the LIVE release's model) mapped by brisque_range; 0 keeps the paper's reward.")
    niqe: float = Field(0.0, ge=0, description="R_gen: NIQE (no reference; the MATLAB release's pristine model) mapped by niqe_range; 0 keeps the paper's reward.")
    piqe: float = Field(0.0, ge=0, description="R_gen: PIQE (no reference, no trained parameters) mapped by piqe_range; 0 keeps the paper's reward.")
    hps: float = Field(0.0, ge=0, description="R_gen: human-preference score (HPSv2-style open_clip model: cosine of the image and a quality prompt; the reward service's hps_* settings) mapped by hps_range; LRPO's preference term; 0 keeps the paper's reward.")
    gen: float = Field(0.6, ge=0, description="R: weight of the generic term R_gen.")
    judge: float = Field(0.1, ge=0, description="R: weight of the caller-supplied judge score.")
    task: float = Field(0.3, ge=0, description="R: weight of the task-aware term R_task.")

    @model_validator(mode="after")
    def _sums_are_finite(self) -> "RewardWeights":
        # each weight is finite, but two near 1.8e308 sum to inf and would turn every applied weight into 0
        w = self.model_dump()
        if not math.isfinite(sum(w[k] for k in GEN_TERMS)) or not math.isfinite(sum(w[g] for g in GROUPS)):
            raise ValueError("weights: their sum overflows a float; use weights of ordinary size (they are renormalised)")
        return self

    def override(self, partial: dict[str, float] | None) -> "RewardWeights":
        """A copy with some weights replaced; unknown names or negative values raise ValueError."""
        if not partial:
            return self
        unknown = sorted(set(partial) - set(WEIGHT_KEYS))
        if unknown:
            raise ValueError(f"weights: unknown name(s) {unknown}; allowed: {list(WEIGHT_KEYS)}")
        return RewardWeights.model_validate({**self.model_dump(), **partial})


# The generic terms are RewardWeights' fields other than the groups: a new term is one field above
# (and one entry in the reward service's term table).
WEIGHT_KEYS = tuple(RewardWeights.model_fields)
GEN_TERMS = tuple(k for k in WEIGHT_KEYS if k not in GROUPS)


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
