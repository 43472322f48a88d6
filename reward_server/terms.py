"""The reward-term table: every measurement of the service is one entry here.

An entry names its raw metric (computed batched on the device), its mapping to a term in [0, 1]
(None for a diagnostic that is reported but never weighted), the images it needs besides the
restored one, and the loaded model components it uses with where their weights come from. Adding
a generic term is one entry below plus its RewardWeights field (irpo_common.reward_spec) and test.

Which terms an item gets is decided once, by `present_terms`, from the images it carries: the
scorer refuses an item before any compute with it and reports the skipped ones with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from irpo_common.reward_spec import GEN_TERMS
from irpo_common.tasks import TASKS
from reward_server import metrics
from reward_server.nr_iqa import niqe

if TYPE_CHECKING:
    from reward_server.config import RewardSettings

_IQA_LOGIT_SCALE = 100.0  # CLIP's trained logit scale, as in CLIP-IQA
CLIP_WEIGHTS = "open_clip checkpoint: weights_dir/clip/ or the Hugging Face cache"


def _embed(images: torch.Tensor, model, mean: torch.Tensor, std: torch.Tensor, size: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """L2-normalised open_clip image embeddings, preprocessed as open_clip does."""
    th, tw = size
    h, w = images.shape[-2:]
    s = max(th / h, tw / w)  # resize the shorter side, then centre-crop (open_clip's 'shortest' mode)
    x = F.interpolate(images, size=(max(th, round(h * s)), max(tw, round(w * s))), mode="bicubic", antialias=True, align_corners=False)
    top, left = (x.shape[-2] - th) // 2, (x.shape[-1] - tw) // 2
    x = x[..., top : top + th, left : left + tw].clamp(0, 1)
    emb = model.encode_image(((x - mean) / std).to(dtype)).float()
    return emb / emb.norm(dim=-1, keepdim=True)


class Batch:
    """Same-size images of items that all carry the same inputs, on the device; CLIP embeddings
    are computed once, on first use, for every term that needs them. `models` is the service's
    RewardModels (not imported: reward_server.models reads this table)."""

    def __init__(self, models, restored: torch.Tensor, reference: torch.Tensor | None, degraded: torch.Tensor | None):
        self.models, self.restored, self.reference, self.degraded = models, restored, reference, degraded

    def _clip_embed(self, images: torch.Tensor) -> torch.Tensor:
        m = self.models
        return _embed(images, m.clip, m.clip_mean, m.clip_std, m.clip_size, m.clip_dtype)

    @cached_property
    def hps(self) -> torch.Tensor:
        """(N,) cosine of each restored image with the human-preference model's prompt (HPSv2's score)."""
        h = self.models.hps
        return (_embed(self.restored, h.model, h.mean, h.std, h.size, torch.float32) @ h.text.T)[:, 0]

    @cached_property
    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.reference is None:
            return self._clip_embed(self.restored), None
        # a GRPO batch repeats each reference for its G candidates: embed every distinct one once
        refs = self.reference
        distinct, inverse = torch.unique(refs.flatten(1), dim=0, return_inverse=True)
        emb = self._clip_embed(torch.cat([self.restored, distinct.view(-1, *refs.shape[1:])]))
        n = self.restored.shape[0]
        return emb[:n], emb[n:][inverse]

    @property
    def clip_restored(self) -> torch.Tensor:
        return self._embeddings[0]

    @property
    def clip_reference(self) -> torch.Tensor:
        return self._embeddings[1]


def _clip01(x: float, _: RewardSettings) -> float:
    return min(max(x, 0.0), 1.0)


def _linear(lo: float, hi: float, x: float) -> float:
    return min(max((x - lo) / (hi - lo), 0.0), 1.0)


_NR_PIXELS_PER_PASS = 8 * 1024 * 1024  # bounds the float64 working set of one BRISQUE/NIQE/PIQE pass (~1 GiB)
_NR_SOURCE = "the release's published parameters: reward_server/nr_iqa/params/provenance.json"


def _in_passes(metric: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    per_pass = max(1, _NR_PIXELS_PER_PASS // (images.shape[-1] * images.shape[-2]))
    return torch.cat([metric(images[i : i + per_pass]) for i in range(0, images.shape[0], per_pass)]).float()


# The smallest side LPIPS's backbone takes (its pooling stages shrink the map to nothing below it);
# tests/reward_server check each against the lpips package.
LPIPS_MIN_SIDE = {"alex": 31, "vgg": 16, "squeeze": 17}


@dataclass(frozen=True)
class Metric:
    name: str
    raw: Callable[[Batch], torch.Tensor]  # (N,) raw values for a batch
    to_unit: Callable[[float, RewardSettings], float] | None  # raw -> term in [0, 1]; None: diagnostic only
    needs: tuple[str, ...] = ()  # images besides `restored`: "reference", "degraded"
    components: tuple[str, ...] = ()  # loaded model components (RewardModels.provenance keys)
    weights_from: str = "none: a formula"
    min_side: Callable[[RewardSettings], int] = lambda st: 1  # the smallest side the configured model takes
    size_error: Callable[[int, int], str | None] = lambda h, w: None  # a further size rule (NIQE's patches)
    unavailable: Callable[[RewardSettings], str | None] = lambda st: None  # why the service has no model for it

    def why_too_small(self, h: int, w: int, settings: RewardSettings) -> str | None:
        """Why an h x w image has no value of this metric (None when it has one)."""
        side = self.min_side(settings)
        if min(h, w) < side:
            return f"{self.name.upper()} needs a side of at least {side} px, got {w}x{h}"
        return self.size_error(h, w)


METRICS: tuple[Metric, ...] = (
    Metric("clip_similarity", lambda b: (b.clip_restored * b.clip_reference).sum(-1), _clip01,
           needs=("reference",), components=("clip",), weights_from=CLIP_WEIGHTS),
    Metric("lpips", lambda b: b.models.lpips(b.restored, b.reference, normalize=True).flatten(),
           lambda d, _: _clip01(1.0 - d, _), needs=("reference",), components=("lpips_backbone",),
           min_side=lambda st: LPIPS_MIN_SIDE[st.lpips_net],
           weights_from="torchvision ImageNet backbone: weights_dir/torchvision/ or torch.hub's cache; linear layers from the lpips wheel"),
    Metric("aesthetic", lambda b: b.models.aesthetic(b.clip_restored), lambda r, st: _linear(*st.aesthetic_range, r),
           components=("clip", "aesthetic"), weights_from=f"{CLIP_WEIGHTS}; LAION MLP: weights_dir/aesthetic/"),
    Metric("psnr", lambda b: metrics.psnr(b.restored, b.reference),
           lambda p, st: 1.0 if math.isinf(p) else _linear(*st.psnr_range_db, p), needs=("reference",)),
    Metric("ssim", lambda b: metrics.ssim(b.restored, b.reference), _clip01, needs=("reference",)),
    Metric("clip_iqa", lambda b: torch.softmax(_IQA_LOGIT_SCALE * b.clip_restored @ b.models.iqa_text.T, dim=-1)[:, 0],
           lambda r, _: r, components=("clip",), weights_from=CLIP_WEIGHTS),
    Metric("brisque", lambda b: _in_passes(b.models.brisque, b.restored), lambda r, st: 1.0 - _linear(*st.brisque_range, r),
           components=("brisque",), weights_from=_NR_SOURCE, min_side=lambda st: st.nr_min_side["brisque"]),
    Metric("niqe", lambda b: _in_passes(b.models.niqe, b.restored), lambda r, st: 1.0 - _linear(*st.niqe_range, r),
           components=("niqe",), weights_from=_NR_SOURCE, min_side=lambda st: st.nr_min_side["niqe"], size_error=niqe.size_error),
    Metric("piqe", lambda b: _in_passes(b.models.piqe, b.restored), lambda r, st: 1.0 - _linear(*st.piqe_range, r),
           components=("piqe",), min_side=lambda st: st.nr_min_side["piqe"]),
    Metric("hps", lambda b: b.hps, lambda r, st: _linear(*st.hps_range, r), components=("hps",),
           weights_from="HPSv2-style open_clip model: weights_dir/hps/<hps_file>",
           unavailable=lambda st: None if st.hps_model else "no human-preference model configured (hps_model)"),
    Metric("psnr_degraded", lambda b: metrics.psnr(b.degraded, b.reference), None, needs=("reference", "degraded")),
    Metric("ssim_degraded", lambda b: metrics.ssim(b.degraded, b.reference), None, needs=("reference", "degraded")),
)
TERMS = tuple(m for m in METRICS if m.to_unit is not None)
if tuple(sorted(t.name for t in TERMS)) != tuple(sorted(GEN_TERMS)):
    raise RuntimeError(f"reward_server.terms: terms {[t.name for t in TERMS]} differ from RewardWeights' {list(GEN_TERMS)}")

# Tasks without a published task-aware term: R_task is absent for them, reported in `skipped`, and its
# weight renormalised away like any absent term. LRPO's face reward has no task term.
NO_TASK_TERM: dict[str, str] = {"face": "no task-aware term exists for face (LRPO's reward has none); its weight is renormalised away"}
# The task-aware terms (reward_server.metrics.task_terms): derain's needs only the restored image.
TASK_NEEDS: dict[str, tuple[str, ...]] = {t: () if t == "derain" else ("reference",) for t in TASKS if t not in NO_TASK_TERM}


def random_terms(provenance: dict) -> list[str]:
    """Terms computed with a component that runs on RANDOM weights (the development flag)."""
    return sorted(t.name for t in TERMS if any(c in provenance and provenance[c].random for c in t.components))


def _why_absent(m: Metric, given: frozenset[str], size: tuple[int, int], settings: RewardSettings) -> str | None:
    missing = [n for n in m.needs if n not in given]
    return m.unavailable(settings) or (f"no {missing[0]} given" if missing else m.why_too_small(*size, settings))


def too_small(size: tuple[int, int], settings: RewardSettings) -> dict[str, str]:
    """Terms an image of this (H, W) cannot give, with the reason (a weighted one is refused with a 4xx)."""
    return {t.name: reason for t in TERMS if (reason := t.why_too_small(*size, settings))}


def unavailable(settings: RewardSettings) -> dict[str, str]:
    """Terms this service has no model for, with the reason (a weighted one is refused with a 4xx)."""
    return {t.name: reason for t in TERMS if (reason := t.unavailable(settings))}


def min_sides(settings: RewardSettings) -> dict[str, int]:
    """The smallest side each term takes with the configured models (NIQE also needs two whole patches)."""
    return {t.name: max(t.min_side(settings), settings.min_side) for t in TERMS}


def min_side_for(weights, settings: RewardSettings) -> int:
    """The smallest side at which every generic term these weights use can be computed (NIQE, when
    weighted, also needs two whole patches): a caller's crop size must not go below it."""
    used = [t for t in TERMS if weights.gen > 0 and getattr(weights, t.name) > 0]
    return max([settings.min_side, *(min_sides(settings)[t.name] for t in used)])


def present_terms(
    given: frozenset[str], size: tuple[int, int], task: str | None, judge: bool, settings: RewardSettings
) -> tuple[list[str], dict[str, str]]:
    """(terms an item gets, skipped term -> reason) from the images it carries besides `restored` and their (H, W)."""
    present: list[str] = []
    skipped: dict[str, str] = {}
    for t in TERMS:
        reason = _why_absent(t, given, size, settings)
        if reason:
            skipped[t.name] = reason
        else:
            present.append(t.name)
    if task is None:
        skipped["task"] = "no task given"
    elif task in NO_TASK_TERM:
        skipped["task"] = NO_TASK_TERM[task]
    elif all(n in given for n in TASK_NEEDS[task]):
        present.append("task")
    else:
        skipped["task"] = f"no reference given (the {task} term compares with the ground truth)"
    if judge:
        present.append("judge")
    else:
        skipped["judge"] = "no judge score supplied (the judge service is separate; pass `judge` to include it)"
    return present, skipped


def measure(batch: Batch, given: frozenset[str], settings: RewardSettings) -> dict[str, torch.Tensor]:
    """Every metric the batch's inputs and image size allow, and the task terms, each (N,)."""
    size = tuple(batch.restored.shape[-2:])
    out = {m.name: m.raw(batch) for m in METRICS if _why_absent(m, given, size, settings) is None}
    if batch.reference is not None:
        out.update(metrics.task_terms(batch.restored, batch.reference))
    else:
        out["derain"] = metrics.derain_term(batch.restored)
    return out
