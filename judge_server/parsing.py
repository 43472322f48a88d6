"""Turning a judge model's answer into a score, or into an explicit reason why there is none.

Three answer shapes:
- `reasoned`: free text holding one <Assessment> block with <DegradationType>, <Analysis> and
  <Score>1..5</Score>. Anything ambiguous (two blocks, two scores, a score outside 1..5, a
  truncated block) is rejected with a reason, never guessed.
- `fast`: the top logprobs of the one token generated where the score digit goes. The score is
  the expected value over the digits 1..5 under their renormalised probabilities (the
  Q-Align / DeQA-Score recipe); the probability mass the model put on those digits is reported,
  and a mass below the caller's threshold yields no score.
- `iqa`: the same expectation over the first token's quality words excellent/good/fair/poor/bad
  (weights 5..1), as Q-Align and DeQA-Score score one image.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from irpo_common.tasks import check_covers_tasks

DIGITS = {d: int(d) for d in "12345"}
LEVELS = {"bad": 1, "poor": 2, "fair": 3, "good": 4, "excellent": 5}  # Q-Align's levels and weights

# Degradation names the model may use, mapped to the trainer's task names.
_TASK_WORDS = {
    "denoise": ("noise", "noisy", "denois", "grain"),
    "derain": ("rain",),
    "dehaze": ("haze", "hazy", "fog", "dehaz"),
    "deblur": ("blur",),
    "lowlight": ("low-light", "low light", "lowlight", "dark", "underexpos"),
    "face": ("face", "facial"),
}
check_covers_tasks(_TASK_WORDS, "judge_server.parsing._TASK_WORDS")

_BLOCK = re.compile(r"<assessment>(.*?)</assessment>", re.IGNORECASE | re.DOTALL)


def _tag(name: str) -> re.Pattern[str]:
    return re.compile(rf"<{name}>(.*?)</{name}>", re.IGNORECASE | re.DOTALL)


_SCORE, _DEGRADATION, _ANALYSIS = _tag("score"), _tag("degradationtype"), _tag("analysis")


@dataclass(frozen=True)
class Assessment:
    """A parsed reasoned answer; `score` is None exactly when `error` says why."""

    score: int | None
    degradation_type: str | None = None
    degradation_task: str | None = None
    analysis: str | None = None
    error: str | None = None


def degradation_to_task(text: str) -> str | None:
    """The trainer task a free-text degradation name refers to, or None when unclear."""
    lowered = text.lower()
    hits = [task for task, words in _TASK_WORDS.items() if any(w in lowered for w in words)]
    return hits[0] if len(hits) == 1 else None


def _single(pattern: re.Pattern[str], text: str, name: str) -> tuple[str | None, str | None]:
    found = pattern.findall(text)
    if len(found) > 1:
        return None, f"{len(found)} <{name}> elements in the assessment"
    return (found[0].strip(), None) if found else (None, None)


def parse_assessment(text: str) -> Assessment:
    blocks = _BLOCK.findall(text)
    if not blocks:
        if re.search(r"<assessment>", text, re.IGNORECASE):
            return Assessment(None, error="the <Assessment> block is not closed (answer truncated?)")
        return Assessment(None, error="no <Assessment> block in the answer")
    if len(blocks) > 1:
        return Assessment(None, error=f"{len(blocks)} <Assessment> blocks in the answer")
    block = blocks[0]
    degradation, error = _single(_DEGRADATION, block, "DegradationType")
    analysis, error2 = _single(_ANALYSIS, block, "Analysis")
    raw_score, error3 = _single(_SCORE, block, "Score")
    fields = dict(
        degradation_type=degradation,
        degradation_task=degradation_to_task(degradation) if degradation else None,
        analysis=analysis,
    )
    if error or error2 or error3:
        return Assessment(None, **fields, error=error or error2 or error3)
    if raw_score is None:
        return Assessment(None, **fields, error="no <Score> element in the assessment")
    if not re.fullmatch(r"[1-5]", raw_score):
        return Assessment(None, **fields, error=f"score {raw_score!r} is not an integer from 1 to 5")
    return Assessment(int(raw_score), **fields)


@dataclass(frozen=True)
class Expectation:
    """Expected score over answer tokens; `score` is None exactly when `error` says why."""

    score: float | None
    mass: float
    probs: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def expected_score(logprobs: dict[str, float], values: dict[str, int], min_mass: float, what: str) -> Expectation:
    """`logprobs` maps candidate tokens (as text) to their log-probabilities; `values` the answers
    (lower case) to their scores; `what` names the answers in messages.

    Tokens that read as one answer after stripping whitespace and lower-casing are pooled (a
    tokenizer may offer "3" and " 3", "Good" and " good"); answers absent from the top list count
    as zero.
    """
    mass = dict.fromkeys(values, 0.0)
    for token, logprob in logprobs.items():
        answer = token.strip().lower()
        if answer in mass and math.isfinite(logprob):
            mass[answer] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0.0:
        return Expectation(None, 0.0, error=f"none of {what} among the top logprobs")
    if total < min_mass:
        return Expectation(None, total, error=f"probability mass on {what} is {total:.4f}, below the threshold {min_mass}")
    probs = {a: m / total for a, m in mass.items()}
    return Expectation(sum(values[a] * p for a, p in probs.items()), total, probs)


def expected_digit_score(logprobs: dict[str, float], min_mass: float) -> Expectation:
    return expected_score(logprobs, DIGITS, min_mass, "the digits 1-5")


def expected_level_score(logprobs: dict[str, float], min_mass: float) -> Expectation:
    return expected_score(logprobs, LEVELS, min_mass, "the words excellent/good/fair/poor/bad")
