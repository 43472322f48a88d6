"""Request and response bodies of the judge service."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from irpo_common.tasks import TASKS, Task

Mode = Literal["fast", "reasoned", "iqa"]
Status = Literal["ok", "unparsed", "low_digit_mass", "low_level_mass"]


_IMAGE_PART = {"type": "string", "format": "binary", "description": "PNG or JPEG file"}
# The multipart form of POST /v1/judge, for the OpenAPI document (the route reads the form itself).
MULTIPART_SCHEMA = {
    "title": "JudgeUpload",
    "type": "object",
    "properties": {
        "degraded": _IMAGE_PART, "restored": _IMAGE_PART, "reference": _IMAGE_PART,
        "task": {"type": "string", "enum": list(TASKS), "description": "Task name; absent = none."},
        "mode": {"type": "string", "enum": list(get_args(Mode)), "description": "Judging mode; absent = fast."},
    },
    "required": ["restored"],
    "additionalProperties": False,
}


class JudgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: Task | None = None
    mode: Mode = "fast"


class JudgeRequest(JudgeOptions):
    """Images are base64 PNG/JPEG (a data: URL prefix is accepted).

    `reasoned` needs all three images. `fast` needs all three, or `restored` alone for the
    no-reference variant (an image-quality rating of the restored image). `iqa` takes `restored`
    alone (Q-Align-style expected quality level).
    """

    restored: str
    degraded: str | None = None
    reference: str | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[JudgeRequest] = Field(min_length=1)


class JudgeResult(BaseModel):
    """`score` (1..5) and `reward` ((score - 1) / 4) are set exactly when `status` is "ok";
    otherwise `detail` says why the answer gave no score."""

    status: Status
    score: float | None
    reward: float | None
    detail: str | None = None
    mode: Mode
    reference_free: bool
    task: Task | None = None
    # reasoned mode
    degradation_type: str | None = None
    degradation_task: Task | None = None
    analysis: str | None = None
    # fast mode: renormalised probabilities of the digits and the raw mass they held
    digit_probs: dict[str, float] | None = None
    digit_mass: float | None = None
    # iqa mode: renormalised probabilities of the five quality words and the raw mass they held
    level_probs: dict[str, float] | None = None
    level_mass: float | None = None
    raw_text: str
    finish_reason: str | None = None
    model: str
    latency_s: float = Field(description="Backend time of the judgement (of the original call when cached).")
    cached: bool = False


class BatchResult(BaseModel):
    results: list[JudgeResult]
    latency_s: float
