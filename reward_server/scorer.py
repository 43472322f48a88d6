"""Batched scoring: one call scores many items on the device and returns one ItemResult each.

Items of the same size are stacked; one CLIP forward over restored and reference images serves
CLIP similarity, CLIP-IQA and the aesthetic head.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reward_server import metrics
from reward_server.combine import combine_rewards
from reward_server.config import GEN_TERMS, TASKS, RewardSettings, RewardWeights
from reward_server.models import RewardModels
from reward_server.nr_terms import NR_TERMS, NoReferenceTerms, size_error, wanted
from reward_server.schemas import ItemResult

_IQA_LOGIT_SCALE = 100.0  # CLIP's trained logit scale, as in CLIP-IQA
_NEEDS_REFERENCE = ("clip_similarity", "lpips", "psnr", "ssim")


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
    """Check one item's tensors (3, H, W) against each other and the limits; values are clamped to [0, 1]."""
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
    present = ["aesthetic", "clip_iqa"] + (list(_NEEDS_REFERENCE) if reference is not None else [])
    if task is not None and (reference is not None or task == "derain"):
        present.append("task")
    if judge is not None:
        present.append("judge")
    present += wanted(weights)
    if (err := size_error(wanted(weights), *restored.shape[1:])) is not None:
        raise InvalidItemError(f"{label}restored: {err}")
    try:  # refuse before any compute when nothing weighted would be computed
        combine_rewards(dict.fromkeys(present, 0.0), weights)
    except ValueError as exc:
        raise InvalidItemError(f"{label}weights: {exc}") from None
    clamp = lambda t: None if t is None else t.float().clamp(0, 1)  # noqa: E731
    return ScoreItem(clamp(restored), clamp(reference), clamp(degraded), task, weights, judge)


def _unit(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    return ((x - lo) / (hi - lo)).clamp(0, 1)


class Scorer:
    def __init__(self, models: RewardModels, settings: RewardSettings):
        self.models = models
        self.settings = settings
        self.nr_terms = NoReferenceTerms(settings, models.device)

    def _clip_embed(self, images: torch.Tensor) -> torch.Tensor:
        m = self.models
        th, tw = m.clip_size
        h, w = images.shape[-2:]
        s = max(th / h, tw / w)  # resize the shorter side, then centre-crop (open_clip's 'shortest' mode)
        x = F.interpolate(images, size=(max(th, round(h * s)), max(tw, round(w * s))), mode="bicubic", antialias=True, align_corners=False)
        top, left = (x.shape[-2] - th) // 2, (x.shape[-1] - tw) // 2
        x = x[..., top : top + th, left : left + tw].clamp(0, 1)
        emb = m.clip.encode_image((x - m.clip_mean) / m.clip_std).float()
        return emb / emb.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def score(self, items: list[ScoreItem]) -> list[ItemResult]:
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, item in enumerate(items):
            groups[tuple(item.restored.shape)].append(i)
        results: list[ItemResult | None] = [None] * len(items)
        for idx in groups.values():
            for i, res in zip(idx, self._score_same_size([items[i] for i in idx])):
                results[i] = res
        return results  # type: ignore[return-value]

    def _score_same_size(self, items: list[ScoreItem]) -> list[ItemResult]:
        m, dev = self.models, self.models.device
        n = len(items)
        restored = torch.stack([it.restored for it in items]).to(dev)
        ref_idx = [i for i, it in enumerate(items) if it.reference is not None]
        refs = torch.stack([items[i].reference for i in ref_idx]).to(dev) if ref_idx else None

        if refs is None:
            emb_r = self._clip_embed(restored)
        else:
            # a GRPO batch repeats each reference for its G candidates: embed every distinct one once
            distinct, inverse = torch.unique(refs.flatten(1), dim=0, return_inverse=True)
            emb = self._clip_embed(torch.cat([restored, distinct.view(-1, *refs.shape[1:])]))
            emb_r, emb_ref = emb[:n], emb[n:][inverse]
        raw: list[dict[str, float]] = [{} for _ in range(n)]
        cols: dict[str, torch.Tensor] = {
            "aesthetic": m.aesthetic(emb_r),
            "clip_iqa": torch.softmax(_IQA_LOGIT_SCALE * emb_r @ m.iqa_text.T, dim=-1)[:, 0],
            "derain": metrics.derain_term(restored),
        }
        for name, col in cols.items():
            for i, v in enumerate(col.tolist()):
                raw[i][name] = v
        for r, nr in zip(raw, self.nr_terms.raw(restored, [it.weights for it in items])):
            r.update(nr)

        if refs is not None:
            r_sub = restored[ref_idx]
            ref_cols = {
                "clip_similarity": (emb_r[ref_idx] * emb_ref).sum(-1),
                "psnr": metrics.psnr(r_sub, refs),
                "ssim": metrics.ssim(r_sub, refs),
                "lpips": m.lpips(r_sub, refs, normalize=True).flatten(),
                **metrics.task_terms(r_sub, refs),
            }
            for name, col in ref_cols.items():
                for j, v in zip(ref_idx, col.tolist()):
                    raw[j][name] = v
            deg_idx = [k for k, i in enumerate(ref_idx) if items[i].degraded is not None]
            if deg_idx:
                deg = torch.stack([items[ref_idx[k]].degraded for k in deg_idx]).to(dev)
                for name, fn in (("psnr_degraded", metrics.psnr), ("ssim_degraded", metrics.ssim)):
                    for k, v in zip(deg_idx, fn(deg, refs[deg_idx]).tolist()):
                        raw[ref_idx[k]][name] = v
        return [self._result(it, r) for it, r in zip(items, raw)]

    def _result(self, item: ScoreItem, raw: dict[str, float]) -> ItemResult:
        st = self.settings
        has_ref = item.reference is not None
        terms: dict[str, float | None] = {
            "aesthetic": _unit(torch.tensor(raw["aesthetic"]), *st.aesthetic_range).item(),
            "clip_iqa": raw["clip_iqa"],
        }
        skipped: dict[str, str] = {}
        terms.update({k: self.nr_terms.term(k, raw[k]) for k in NR_TERMS if k in raw})  # computed only when weighted
        if has_ref:
            psnr = raw["psnr"]
            terms["psnr"] = 1.0 if math.isinf(psnr) else _unit(torch.tensor(psnr), *st.psnr_range_db).item()
            terms["ssim"] = min(max(raw["ssim"], 0.0), 1.0)
            terms["lpips"] = min(max(1.0 - raw["lpips"], 0.0), 1.0)
            terms["clip_similarity"] = min(max(raw["clip_similarity"], 0.0), 1.0)
        else:
            skipped.update({t: "no reference given" for t in _NEEDS_REFERENCE})
        if item.task is None:
            skipped["task"] = "no task given"
        elif item.task in raw:  # derain needs no reference; the others are only computed with one
            terms["task"] = raw[item.task]
        else:
            skipped["task"] = f"no reference given (the {item.task} term compares with the ground truth)"
        if item.judge is None:
            skipped["judge"] = "no judge score supplied (the judge service is separate; pass `judge` to include it)"
        else:
            terms["judge"] = item.judge

        reward, applied = combine_rewards(terms, item.weights)
        w = item.weights.model_dump()
        renormalised = any(w[k] > 0 and (k not in GEN_TERMS or w["gen"] > 0) for k in skipped)
        metric_names = ("psnr", "ssim", "lpips", "clip_similarity", "aesthetic", "clip_iqa", "psnr_degraded", "ssim_degraded", *NR_TERMS)
        metric_vals = {k: raw[k] for k in metric_names if k in raw}
        if "task" in terms:
            metric_vals["task"] = terms["task"]
        return ItemResult(
            reward=reward,
            task=item.task,
            terms={k: v for k, v in terms.items() if v is not None},
            metrics=metric_vals,
            weights=applied,
            skipped=skipped,
            renormalised=renormalised,
            random_weights=[t for t in self.models.random_terms() if t in terms],
        )
