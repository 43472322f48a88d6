"""Settings of the judge service: defaults, overridden by a YAML file, overridden by env vars.

Every field can be set in the YAML file given with `judge-server --config FILE` (keys are the
field names below) and by an environment variable JUDGE_SERVER_<FIELD NAME IN CAPITALS>, which
wins over the file. Unknown keys and unknown JUDGE_SERVER_* variables are errors (typo guard).

Each field's meaning, unit and default are in its description below (also rendered in
docs/configuration.md by scripts/gen_config_docs.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from irpo_common.http_guards import BearerToken
from irpo_common.imaging import DEFAULT_MAX_PIXELS

ENV_PREFIX = "JUDGE_SERVER_"


class JudgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("127.0.0.1", description="Bind address; the default is loopback only.")
    port: int = Field(8200, ge=1, le=65535, description="TCP port the service listens on.")
    token: BearerToken = Field(None, description="Bearer token clients must send on /v1/*; unset = no auth, empty = a start-up error.")
    backend_url: str = Field(
        "http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL of the judge model's server, up to /v1."
    )
    backend_api_key: SecretStr | None = Field(None, description="API key sent to the backend as a bearer token; None = none.")
    model: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description="Model name sent to the backend; /readyz checks it is served.")
    max_concurrency: int = Field(8, ge=1, description="Backend requests in flight at once (also the connection pool size).")
    timeout_s: float = Field(
        60.0, gt=0,
        description="Timeout of one backend call in seconds, from sending to the last byte of the answer (a total, not per read).",
    )
    request_timeout_s: float = Field(
        100.0, gt=0,
        description="Deadline of one service request in seconds: waiting for a backend slot, every attempt and backoff; "
        "then 504. Keep it below the clients' timeout (the trainer's judge.timeout_s, checked at start), so that "
        "the service answers before a client gives up and resends the same work.",
    )
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of connecting to the backend (and of the /readyz probe), in seconds."
    )
    retries: int = Field(3, ge=0, description="Retries of a backend call after a connection error, timeout, 408, 429 or 5xx, while request_timeout_s allows.")
    backoff_s: float = Field(0.5, ge=0, description="Delay before the first retry in seconds, doubled for each further retry.")
    reasoned_max_tokens: int = Field(512, ge=16, description="Token budget of one reasoned-mode answer.")
    temperature: float = Field(
        0.0, ge=0, description="Sampling temperature of reasoned answers; 0 = greedy (fast mode is always greedy)."
    )
    top_logprobs: int = Field(20, ge=5, description="Top logprobs asked for in fast mode (20 is vLLM's cap).")
    min_digit_mass: float = Field(
        0.5, ge=0, le=1,
        description="Fast mode: least probability mass on the digits 1-5 for a score; below it the status is 'low_digit_mass'.",
    )
    fast_assistant_prefix: str = Field(
        "<Score>",
        description="Fast mode: start of the answer the model continues, ending where the digit goes (vLLM's "
        "continue_final_message); empty = no prefill, for endpoints without that extension.",
    )
    min_level_mass: float = Field(
        0.5, ge=0, le=1,
        description="IQA mode: least probability mass on the words excellent/good/fair/poor/bad for a score; below it the status is 'low_level_mass'.",
    )
    iqa_assistant_prefix: str = Field(
        "The quality of the image is",
        description="IQA mode: start of the answer the model continues (Q-Align's), so the next token is the quality word; empty = no prefill.",
    )
    cache_size: int = Field(1024, ge=0, description="Judgements kept in the LRU cache; 0 = no cache.")
    max_batch: int = Field(64, ge=1, description="Most items in one /v1/judge/batch request; more get 413.")
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1,
        description="Largest accepted image, width x height in pixels (default 4096 x 4096; decompression bombs).",
    )
    min_image_side: int = Field(
        28, ge=1,
        description="Smallest accepted image side in pixels; smaller images get 400. Qwen2.5-VL's image processor needs 28 "
        "(patch 14 x merge 2).",
    )
    max_body_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Largest accepted request body in bytes (default 64 MiB); larger ones get 413."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, description="Time a request body may take to arrive, in seconds; slower uploads get 408."
    )


class SettingsError(ValueError):
    """The config file or an env var is unusable; the message says which and why."""


def load_settings(
    config: Path | None = None, environ: Mapping[str, str] | None = None, overrides: Mapping[str, object] | None = None
) -> JudgeSettings:
    """Defaults < `config` < JUDGE_SERVER_* in `environ` < `overrides` (the CLI's flags), validated together."""
    environ = os.environ if environ is None else environ
    values: dict = {}
    if config is not None:
        try:
            loaded = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read config {config}: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise SettingsError(f"config {config}: expected a mapping of settings at the top level")
        values.update(loaded or {})
    fields = JudgeSettings.model_fields
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX):].lower()
        if key not in fields:
            raise SettingsError(f"unknown environment variable {name}; known: {', '.join(ENV_PREFIX + f.upper() for f in fields)}")
        values[key] = value
    values.update(overrides or {})
    try:
        return JudgeSettings(**values)
    except ValidationError as exc:
        raise SettingsError(f"invalid judge settings: {exc}") from None
