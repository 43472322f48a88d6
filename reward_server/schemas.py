"""Request and response bodies of the reward service (JSON), shared with the client."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from irpo_common.tasks import TASKS, Task


class ItemOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    task: Task | None = Field(None, description=f"One of {', '.join(TASKS)}, or null (no task term).")
    weights: dict[str, float] | None = Field(None, description="Per-request weight overrides by name.")
    judge: float | None = Field(None, ge=0, le=1, description="R_judge in [0, 1] from the judge service, if any.")


class ScoreRequest(ItemOptions):
    restored: str = Field(description="Base64 PNG/JPEG (or data: URL) of the restored image.")
    reference: str | None = Field(None, description="Base64 ground truth, same size as restored.")
    degraded: str | None = Field(None, description="Base64 degraded input, same size as restored.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ScoreRequest] = Field(min_length=1, description="Items of one request; at most max_batch_items (see /v1/info).")


class ItemResult(BaseModel):
    # PSNR of identical images is +inf: serialised as the string "Infinity", parsed back to float.
    model_config = ConfigDict(ser_json_inf_nan="strings")
    reward: float = Field(description="Combined reward with the applied (renormalised) weights.")
    task: str | None
    terms: dict[str, float] = Field(description="Per-term rewards in [0, 1] (lowlight's task term is at most 0.3).")
    metrics: dict[str, float] = Field(description="Raw values: psnr (dB), ssim, lpips distance, clip_similarity (cosine), aesthetic (rating), clip_iqa, "
                                             "brisque, niqe, piqe (their own scales, lower is better), hps (cosine), task.")
    weights: dict[str, float] = Field(description="Flat weights actually applied; they sum to 1.")
    skipped: dict[str, str] = Field(description="Terms not computed, with the reason.")
    renormalised: bool = Field(description="True when a term with a positive weight was skipped and the others renormalised.")
    random_weights: list[str] = Field(description="Computed terms that ran on RANDOM model weights (development flag).")
    precision: dict[str, str] = Field(description="Network behind the computed terms -> the precision it ran in (float32, "
                                      "bfloat16, float16); every other term ran in float32.")


class BatchResponse(BaseModel):
    model_config = ConfigDict(ser_json_inf_nan="strings")
    results: list[ItemResult]
