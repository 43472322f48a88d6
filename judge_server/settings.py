"""Settings of the judge service: defaults, overridden by a YAML file, overridden by env vars.

Every field can be set in the YAML file given with `judge-server --config FILE` (keys are the
field names below) and by an environment variable JUDGE_SERVER_<FIELD NAME IN CAPITALS>, which
wins over the file. Unknown keys and unknown JUDGE_SERVER_* variables are errors (typo guard).

Environment variables:
  JUDGE_SERVER_HOST               bind address (default 127.0.0.1: loopback only)
  JUDGE_SERVER_PORT               port (default 8200)
  JUDGE_SERVER_TOKEN              bearer token clients must send; unset = no auth
  JUDGE_SERVER_BACKEND_URL        OpenAI-compatible base URL, up to /v1 (default http://127.0.0.1:8000/v1)
  JUDGE_SERVER_BACKEND_API_KEY    API key sent to the backend as a bearer token; unset = none
  JUDGE_SERVER_MODEL              model name sent to the backend (default Qwen/Qwen2.5-VL-7B-Instruct)
  JUDGE_SERVER_MAX_CONCURRENCY    backend requests in flight at once (default 8)
  JUDGE_SERVER_TIMEOUT_S          timeout of one backend request in seconds (default 120)
  JUDGE_SERVER_CONNECT_TIMEOUT_S  timeout of connecting to the backend (default 5)
  JUDGE_SERVER_RETRIES            retries of a failed backend request (default 3)
  JUDGE_SERVER_BACKOFF_S          first retry delay, doubled per retry (default 0.5)
  JUDGE_SERVER_REASONED_MAX_TOKENS  token budget of a reasoned answer (default 512)
  JUDGE_SERVER_TEMPERATURE        sampling temperature of reasoned answers (default 0: greedy)
  JUDGE_SERVER_TOP_LOGPROBS       top logprobs asked for in fast mode (default 20, vLLM's cap)
  JUDGE_SERVER_MIN_DIGIT_MASS     fast mode: least probability mass on the digits 1-5 for a score (default 0.5)
  JUDGE_SERVER_FAST_ASSISTANT_PREFIX  fast mode: start of the answer the model continues, ending where
                                  the digit goes (default "<Score>"; uses vLLM's continue_final_message);
                                  empty = no prefill, for endpoints without that extension
  JUDGE_SERVER_CACHE_SIZE         results kept in the LRU cache (default 1024; 0 = off)
  JUDGE_SERVER_MAX_BATCH          most items in one batch request (default 64)
  JUDGE_SERVER_MAX_IMAGE_PIXELS   largest accepted image, width x height (default 4096*4096)
  JUDGE_SERVER_MAX_BODY_BYTES     largest accepted request body; larger ones get 413 (default 64 MiB)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from reward_server.imaging import DEFAULT_MAX_PIXELS

ENV_PREFIX = "JUDGE_SERVER_"


class JudgeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(8200, ge=1, le=65535)
    token: SecretStr | None = None
    backend_url: str = "http://127.0.0.1:8000/v1"
    backend_api_key: SecretStr | None = None
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    max_concurrency: int = Field(8, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0)
    backoff_s: float = Field(0.5, ge=0)
    reasoned_max_tokens: int = Field(512, ge=16)
    temperature: float = Field(0.0, ge=0)
    top_logprobs: int = Field(20, ge=5)
    min_digit_mass: float = Field(0.5, ge=0, le=1)
    fast_assistant_prefix: str = "<Score>"
    cache_size: int = Field(1024, ge=0)
    max_batch: int = Field(64, ge=1)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1)


class SettingsError(ValueError):
    """The config file or an env var is unusable; the message says which and why."""


def load_settings(config: Path | None = None, environ: Mapping[str, str] | None = None) -> JudgeSettings:
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
    try:
        return JudgeSettings(**values)
    except ValidationError as exc:
        raise SettingsError(f"invalid judge settings: {exc}") from None
