"""Synchronous Python client of the reward service (the trainer runs it in threads)."""

from __future__ import annotations

import time

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


class RewardClient(ServiceClient):
    def __init__(self, base_url: str, token: str | None = None, timeout_s: float = 60.0, retries: int = 5, backoff_s: float = 0.5):
        super().__init__(base_url, token, timeout_s)
        self.retries, self.backoff_s = retries, backoff_s

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        last = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = self._http.request(method, path, **kwargs)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code >= 500:
                last = f"{resp.status_code}: {resp.text[:500]}"
                continue
            if resp.status_code >= 400:
                try:
                    detail = resp.json().get("detail", resp.text)
                except ValueError:
                    detail = resp.text
                raise RewardRequestError(resp.status_code, detail)
            return resp
        raise RewardServiceUnavailable(f"{method} {path}: no answer after {self.retries + 1} attempts; last: {last}")

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
