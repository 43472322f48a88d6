"""Batched scoring: one call scores many items on the device and returns one ItemResult each.

Items of the same size carrying the same images are stacked and measured together by the
term table (reward_server.terms); one CLIP forward serves every CLIP-based term.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch

from irpo_common.reward_spec import GEN_TERMS, RewardWeights, combine_rewards
from irpo_common.tasks import TASKS
from reward_server import terms as table
from reward_server.config import RewardSettings
from reward_server.models import RewardModels
from reward_server.schemas import ItemResult


class InvalidItemError(ValueError):
    """An item is unusable (shape, size); the message is returned to the client as a 4xx."""


@dataclass
class ScoreItem:
    restored: torch.Tensor  # (3, H, W) float32 in [0, 1]
    reference: torch.Tensor | None
    degraded: torch.Tensor | None
    task: str | None
    weights: RewardWeights
    judge: float | None


def make_item(
    restored: torch.Tensor,
    reference: torch.Tensor | None,
    degraded: torch.Tensor | None,
    *,
    task: str | None,
    weights: RewardWeights,
    judge: float | None,
    settings: RewardSettings,
    label: str = "",
) -> ScoreItem:
    """Check one item's tensors (3, H, W) in [0, 1] against each other, the limits and its weights."""
    if task is not None and task not in TASKS:
        raise InvalidItemError(f"{label}task: unknown task {task!r}; allowed: {list(TASKS)} or null")
    for name, t in (("restored", restored), ("reference", reference), ("degraded", degraded)):
        if t is None:
            continue
        if t.ndim != 3 or t.shape[0] != 3:
            raise InvalidItemError(f"{label}{name}: expected 3 channels (3, H, W), got shape {tuple(t.shape)}")
        h, w = t.shape[1:]
        if min(h, w) < settings.min_side:
            raise InvalidItemError(f"{label}{name}: {w}x{h} is smaller than the minimum side {settings.min_side}")
        if h * w > settings.max_pixels:
            raise InvalidItemError(f"{label}{name}: {w}x{h} = {h * w} pixels exceeds the limit of {settings.max_pixels}")
        if name != "restored" and t.shape != restored.shape:
            rh, rw = restored.shape[1:]
            raise InvalidItemError(f"{label}{name}: size {w}x{h} differs from restored {rw}x{rh}")
        if not torch.isfinite(t).all():
            raise InvalidItemError(f"{label}{name}: contains NaN or infinite values")
        if t.min() < 0 or t.max() > 1:
            raise InvalidItemError(f"{label}{name}: values outside [0, 1]; send images in [0, 1] (clamp them first)")
    size = tuple(restored.shape[1:])
    for name, reason in table.unavailable(settings).items():  # a weighted term without its model: refused, not renormalised away
        if getattr(weights, name) > 0 and weights.gen > 0:
            raise InvalidItemError(f"{label}weights: {name} > 0 but {reason}")
    for name, reason in table.too_small(size, settings).items():  # a weighted term the image cannot give: refused, not renormalised away
        if getattr(weights, name) > 0 and weights.gen > 0:
            raise InvalidItemError(f"{label}restored: {reason}")
    present, _ = table.present_terms(_given(reference, degraded), size, task, judge is not None, settings)
    try:  # refuse before any compute when nothing weighted would be computed
        combine_rewards(dict.fromkeys(present, 0.0), weights)
    except ValueError as exc:
        raise InvalidItemError(f"{label}weights: {exc}") from None
    as_float = lambda t: None if t is None else t.float()  # noqa: E731
    return ScoreItem(as_float(restored), as_float(reference), as_float(degraded), task, weights, judge)


def _given(reference: torch.Tensor | None, degraded: torch.Tensor | None) -> frozenset[str]:
    """The images an item carries besides `restored`."""
    return frozenset(name for name, t in (("reference", reference), ("degraded", degraded)) if t is not None)


class Scorer:
    def __init__(self, models: RewardModels, settings: RewardSettings):
        self.models = models
        self.settings = settings

    @torch.inference_mode()
    def score(self, items: list[ScoreItem]) -> list[ItemResult]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[(tuple(item.restored.shape), _given(item.reference, item.degraded))].append(i)
        results: list[ItemResult | None] = [None] * len(items)
        for (_, given), idx in groups.items():
            for i, res in zip(idx, self._score_alike([items[i] for i in idx], given)):
                results[i] = res
        return results  # type: ignore[return-value]

    def _score_alike(self, items: list[ScoreItem], given: frozenset[str]) -> list[ItemResult]:
        images = {
            name: torch.stack([getattr(it, name) for it in items]).to(self.models.device) if name in given else None
            for name in ("reference", "degraded")
        }
        restored = torch.stack([it.restored for it in items]).to(self.models.device)
        batch = table.Batch(self.models, restored, images["reference"], images["degraded"])
        columns = {k: v.tolist() for k, v in table.measure(batch, given, self.settings).items()}
        return [self._result(it, given, {k: col[i] for k, col in columns.items()}) for i, it in enumerate(items)]

    def _result(self, item: ScoreItem, given: frozenset[str], raw: dict[str, float]) -> ItemResult:
        present, skipped = table.present_terms(given, tuple(item.restored.shape[1:]), item.task, item.judge is not None, self.settings)
        terms = {t.name: t.to_unit(raw[t.name], self.settings) for t in table.TERMS if t.name in present}
        if "task" in present:
            terms["task"] = raw[item.task]
        if "judge" in present:
            terms["judge"] = item.judge
        reward, applied = combine_rewards(terms, item.weights)
        w = item.weights.model_dump()
        renormalised = any(w[k] > 0 and (k not in GEN_TERMS or w["gen"] > 0) for k in skipped)
        metric_vals = {m.name: raw[m.name] for m in table.METRICS if m.name in raw}
        if "task" in terms:
            metric_vals["task"] = terms["task"]
        return ItemResult(
            reward=reward,
            task=item.task,
            terms=terms,
            metrics=metric_vals,
            weights=applied,
            skipped=skipped,
            renormalised=renormalised,
            random_weights=[t for t in self.models.random_terms() if t in terms],
            precision=self.models.precision_of(terms),
        )
