"""The parts of an OpenAI chat completion the judge reads, validated before any of it is used.

A backend is a separate program (vLLM, another OpenAI-compatible server, a proxy in front of one)
and can answer anything: content that is not text, token ids instead of token strings, a
finish_reason that is a number, "log-probabilities" above 0 whose probabilities add up to more
than 1. Each would otherwise surface as a crash (500) or, worse, as a made-up score; here it is a
ValidationError that the backend client turns into BackendError (502) naming the field.
Strict mode: no string is read as a number, no number as a string.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Rounding in a backend's log-softmax can push the logprob of a near-certain token a hair above 0,
# and the top list's probabilities a hair above 1; anything beyond this slack is not a distribution.
_SLACK = 1e-4


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True)  # unknown fields are ignored: backends add their own


class TokenLogprob(_Strict):
    token: str
    logprob: float

    @field_validator("logprob")
    @classmethod
    def _is_a_log_probability(cls, value: float) -> float:
        if math.isnan(value) or value > _SLACK:
            raise ValueError(f"{value!r} is not a log-probability (it must be at most 0)")
        return min(value, 0.0)


class PositionLogprobs(TokenLogprob):
    """One generated position: the sampled token and the most likely alternatives."""

    top_logprobs: list[TokenLogprob] | None = None

    @model_validator(mode="after")
    def _top_list_is_a_distribution(self) -> "PositionLogprobs":
        total = sum(math.exp(t.logprob) for t in self.top_logprobs or [])  # distinct token ids: at most 1
        if total > 1.0 + _SLACK:
            raise ValueError(f"the top logprobs add up to a probability of {total:.4g}, more than 1")
        return self


class Logprobs(_Strict):
    content: list[PositionLogprobs] | None = None


class Message(_Strict):
    content: str | None = None


class Choice(_Strict):
    message: Message
    finish_reason: str | None = None
    logprobs: Logprobs | None = None


class Completion(_Strict):
    choices: list[Choice] = Field(min_length=1)
