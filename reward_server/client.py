"""Synchronous Python client of the reward service (the trainer runs it in threads)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import httpx

from irpo_common.service_client import ServiceClient
from reward_server.schemas import BatchResponse, ItemResult
from reward_server.wire import MEDIA_TYPE, encode_batch


class RewardRequestError(Exception):
    """The service refused the request (4xx): retrying cannot help. `status` and `detail` are the server's."""

    def __init__(self, status: int, detail):
        super().__init__(f"reward service answered {status}: {detail}")
        self.status, self.detail = status, detail


class RewardServiceUnavailable(Exception):
    """No usable answer after all retries (connection errors, timeouts, 5xx)."""


# Longest pause between two attempts: a restarted service is used soon after it is up.
MAX_BACKOFF_S = 10.0


class RewardClient(ServiceClient):
    """`retries` resends after connection errors, timeouts and 5xx, with exponential backoff; or, with
    `retry_for_s`, resends until that many seconds have passed since the first attempt, whatever
    `retries` says: a budget that can cover a restart of the service, whose cold start loads its
    models. The wait before a resend is the service's Retry-After when it gives one; otherwise the
    backoff doubles from backoff_s up to MAX_BACKOFF_S. `base_url` may list replicas: each attempt
    balances and fails over across them (irpo_common/service_client.py)."""

    def __init__(self, base_url: str | Sequence[str], token: str | None = None, timeout_s: float = 60.0, retries: int = 5, backoff_s: float = 0.5, retry_for_s: float | None = None):
        super().__init__(base_url, token, timeout_s)
        self.retries, self.backoff_s, self.retry_for_s = retries, backoff_s, retry_for_s

    def _gives_up(self, attempt: int, delay: float, started: float) -> bool:
        if self.retry_for_s is None:
            return attempt > self.retries
        return time.monotonic() + delay - started > self.retry_for_s

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        last = None
        started = time.monotonic()
        attempt, asked = 0, 0.0  # asked: the service's Retry-After for the last answer, 0 if it gave none
        while True:
            if attempt:
                # a service that says when to come back knows its queue better than a blind backoff
                delay = asked or min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                if self._gives_up(attempt, delay, started):
                    break
                time.sleep(delay)
            attempt += 1
            try:
                resp = self._send(method, path, **kwargs)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last, asked = f"{type(exc).__name__}: {exc}", 0.0
                continue
            if resp.status_code >= 500:  # 503 = overloaded or still loading its models: wait as it asks
                last = f"{resp.status_code}: {resp.text[:500]}"
                asked = _seconds(resp.headers.get("retry-after"))
                continue
            if resp.status_code >= 400:
                try:
                    detail = resp.json().get("detail", resp.text)
                except ValueError:
                    detail = resp.text
                raise RewardRequestError(resp.status_code, detail)
            return resp
        if self.retry_for_s is None:
            raise RewardServiceUnavailable(f"{method} {path}: no answer after {attempt} attempts; last: {last}")
        raise RewardServiceUnavailable(
            f"{method} {path}: no answer within the retry budget of {self.retry_for_s:g} s ({attempt} attempts); last: {last}; "
            "a service that needs longer to (re)start needs a larger budget (the trainer's reward.retry_for_s)"
        )

    def healthz(self) -> dict:
        return self._request("GET", "/healthz").json()

    def readyz(self) -> dict:
        return self._request("GET", "/readyz").json()

    def info(self) -> dict:
        return self._request("GET", "/v1/info").json()

    def score_batch(self, restored, reference=None, degraded=None, **options) -> list[ItemResult]:
        """Score float32 arrays or tensors (N, 3, H, W) in [0, 1], sent losslessly as safetensors.

        `options` are encode_batch's per-item `tasks`, `weights` and `judge` (see reward_server.wire).
        """
        body = encode_batch(restored, reference, degraded, **options)
        resp = self._request("POST", "/v1/score/batch", content=body, headers={"Content-Type": MEDIA_TYPE})
        return BatchResponse.model_validate_json(resp.content).results


def _seconds(retry_after: str | None) -> float:
    """A Retry-After header's delay in seconds (absent, malformed or the HTTP-date form: none)."""
    try:
        value = float(retry_after or 0)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0
