"""One judgement: validate and encode the images, ask the backend, turn the answer into a result."""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from irpo_common.imaging import ImageError, decode_base64_image, decode_image, encode_png

from .backend import BackendError, ChatBackend
from .completion import Choice
from .metrics import JudgeMetrics
from .parsing import expected_digit_score, expected_level_score, parse_assessment
from .prompts import chat_body
from .schemas import JudgeResult, Mode
from .settings import JudgeSettings

IMAGE_FIELDS = ("degraded", "restored", "reference")
PROMPT_ORDER = ("degraded", "reference", "restored")  # shared by a group first, the candidate last (prompts.py)


class RequestError(ValueError):
    """The request is well-formed JSON but asks for something impossible; answered with 422."""


@dataclass(frozen=True)
class PreparedItem:
    mode: Mode
    task: str | None
    pngs: list[bytes]  # PROMPT_ORDER, or restored alone (no-reference)
    key: str


def prepare(
    images: dict[str, bytes | str | None], mode: Mode, task: str | None, settings: JudgeSettings, prefix: str = ""
) -> PreparedItem:
    """Decode and check the images (raw bytes, or base64 text) and re-encode them as PNG.

    Raises ImageError or RequestError with a message naming the field (after `prefix`).
    """
    given = {name: data for name, data in images.items() if data is not None}
    if "restored" not in given:
        raise RequestError(f"{prefix}restored: required")
    if mode == "iqa" and len(given) > 1:
        raise RequestError(f"{prefix}{', '.join(n for n in given if n != 'restored')}: iqa mode rates `restored` alone")
    if mode == "reasoned" or len(given) > 1:
        missing = [name for name in IMAGE_FIELDS if name not in given]
        if missing:
            raise RequestError(
                f"{prefix}{', '.join(missing)}: required in {mode} mode with a reference; "
                "only `fast` accepts `restored` alone (no-reference rating)"
            )
    names = PROMPT_ORDER if len(given) == 3 else ("restored",)
    arrays = {}
    for name in names:
        data, field = given[name], prefix + name
        decode = decode_base64_image if isinstance(data, str) else decode_image
        arrays[name] = image = decode(data, field=field, max_pixels=settings.max_image_pixels)
        if min(image.shape[:2]) < settings.min_image_side:
            h, w = image.shape[:2]
            raise ImageError(f"{field}: {w}x{h} is smaller than the judge model's minimum side of {settings.min_image_side} px")
    sizes = {f"{w}x{h}" for h, w, _ in (a.shape for a in arrays.values())}
    if len(sizes) > 1:  # the prompt compares them pixel for pixel
        shown = ", ".join(f"{name} {arrays[name].shape[1]}x{arrays[name].shape[0]}" for name in IMAGE_FIELDS)
        raise RequestError(f"{prefix}degraded, restored, reference: the three images must have one size, got {shown}")
    pngs = [encode_png(a) for a in arrays.values()]
    digest = hashlib.sha256(f"{mode}|{task}|{settings.model}|{len(pngs)}".encode())
    for png in pngs:
        digest.update(hashlib.sha256(png).digest())
    return PreparedItem(mode, task, pngs, digest.hexdigest())


class _LRU:
    def __init__(self, size: int):
        self.size, self._items = size, OrderedDict()

    def get(self, key: str) -> JudgeResult | None:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return None

    def put(self, key: str, value: JudgeResult) -> None:
        if self.size:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class Judge:
    def __init__(self, settings: JudgeSettings, backend: ChatBackend, metrics: JudgeMetrics):
        self.settings, self.backend, self.metrics = settings, backend, metrics
        self._cache = _LRU(settings.cache_size)

    async def judge(self, item: PreparedItem, deadline: float) -> JudgeResult:
        """`deadline`: event-loop time by which the backend must have answered (else BackendTimeout)."""
        if (hit := self._cache.get(item.key)) is not None:
            self.metrics.cache_hits.inc()
            return hit.model_copy(update={"cached": True})
        body = chat_body(self.settings, item.mode, item.pngs, item.task)
        choice, latency = await self.backend.chat(body, deadline)
        self.metrics.backend_latency.labels(item.mode).observe(latency)
        result = self._interpret(item, choice, latency)
        self.metrics.items.labels(item.mode, result.status).inc()
        self._cache.put(item.key, result)
        return result

    async def judge_many(self, items: list[PreparedItem], deadline: float) -> list[JudgeResult]:
        """All items concurrently (bounded by the backend's semaphore) by one deadline; one outage fails them all."""
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.judge(item, deadline)) for item in items]
        except ExceptionGroup as failed:  # the first failure stands for the batch
            raise failed.exceptions[0] from None
        return [t.result() for t in tasks]

    def _interpret(self, item: PreparedItem, choice: Choice, latency: float) -> JudgeResult:
        text = choice.message.content or ""
        common = dict(
            mode=item.mode, reference_free=len(item.pngs) == 1, task=item.task, raw_text=text,
            finish_reason=choice.finish_reason, model=self.settings.model, latency_s=latency,
        )
        if item.mode == "reasoned":
            parsed = parse_assessment(text)
            fields = dict(
                degradation_type=parsed.degradation_type, degradation_task=parsed.degradation_task,
                analysis=parsed.analysis, **common,
            )
            if parsed.score is None:
                return JudgeResult(status="unparsed", score=None, reward=None, detail=parsed.error, **fields)
            return JudgeResult(status="ok", score=parsed.score, reward=(parsed.score - 1) / 4, **fields)
        if item.mode == "iqa":
            expectation = expected_level_score(first_token_logprobs(choice), self.settings.min_level_mass)
            kind = "level"
        else:
            expectation = expected_digit_score(first_token_logprobs(choice), self.settings.min_digit_mass)
            kind = "digit"
        if expectation.score is None:
            return JudgeResult(
                status=f"low_{kind}_mass", score=None, reward=None, detail=expectation.error,
                **{f"{kind}_mass": expectation.mass}, **common,
            )
        return JudgeResult(
            status="ok", score=expectation.score, reward=(expectation.score - 1) / 4,
            **{f"{kind}_probs": expectation.probs, f"{kind}_mass": expectation.mass}, **common,
        )


def first_token_logprobs(choice: Choice) -> dict[str, float]:
    """Token -> logprob of the first generated position (its top list plus the sampled token)."""
    positions = choice.logprobs.content if choice.logprobs is not None else None
    if not positions:
        raise BackendError("backend answered without the logprobs of the first token (fast and iqa modes need them)")
    first = positions[0]
    table = {entry.token: entry.logprob for entry in first.top_logprobs or []}
    table.setdefault(first.token, first.logprob)
    return table
