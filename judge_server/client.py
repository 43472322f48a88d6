"""Synchronous Python client of the judge service, for the trainer.

    client = JudgeClient("http://127.0.0.1:8200", token=None)
    results = client.judge_batch(degraded, restored, reference, tasks=["derain"] * n, mode="fast")
    rewards = [r.reward for r in results]   # None where r.status != "ok"

Images are float arrays or torch tensors of shape (N, 3, H, W) in [0, 1]. An outage (the service
answers 503 or 504 because its backend is down or too slow, another 5xx such as 502 for a malformed
backend answer persists through the retries, the service cannot be reached, or it sends no answer
within timeout_s) raises JudgeUnavailable, so the trainer can apply its outage policy; a 4xx
refusal raises JudgeRequestError. 503, 504 and a timed-out request are not resent: the service
has already spent its own retries on them, and a resent request would repeat that work (keep
timeout_s above the service's request_timeout_s, which it answers within). Items the model
answered without a usable score come back with their status ("unparsed", "low_digit_mass",
"low_level_mass") and score None; they are not raised.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import httpx
import numpy as np

from irpo_common.imaging import encode_base64_png
from irpo_common.service_client import ServiceClient

from .schemas import BatchResult, JudgeResult, Mode


class JudgeUnavailable(RuntimeError):
    """The judge cannot answer now: its backend is down/timing out, or the service is unreachable."""


class JudgeRequestError(RuntimeError):
    """The service refused the request (bad images, bad options, auth); the message has its reason."""


def _as_images(batch, name: str) -> list[np.ndarray] | None:
    if batch is None:
        return None
    if hasattr(batch, "detach"):  # a torch tensor, without making torch a dependency here
        batch = batch.detach().to("cpu").float().numpy()
    arr = np.asarray(batch, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(f"{name}: expected shape (N, 3, H, W), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return list(arr.transpose(0, 2, 3, 1))


class JudgeClient(ServiceClient):
    def __init__(self, base_url: str | Sequence[str], token: str | None = None, timeout_s: float = 120.0, retries: int = 3):
        super().__init__(base_url, token, timeout_s)
        self.timeout_s, self.retries = timeout_s, retries

    def _request(self, method: str, path: str, **kwargs) -> dict:
        reason = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            try:
                response = self._send(method, path, **kwargs)
            except (httpx.ReadTimeout, httpx.WriteTimeout) as exc:
                raise JudgeUnavailable(
                    f"judge service {path}: no answer within timeout_s = {self.timeout_s:g} s ({type(exc).__name__}); "
                    "the service answers within its request_timeout_s, which must be shorter"
                ) from None
            except httpx.TransportError as exc:  # cannot connect, or the connection broke: resend
                reason = f"{type(exc).__name__}: {exc or 'no detail'}"
                continue
            if response.status_code in (503, 504):
                raise JudgeUnavailable(f"judge service {path} answered {response.status_code}: {_detail(response)}")
            if response.status_code >= 500:  # a server-side fault (e.g. 502: the backend's answer was malformed): retry
                reason = f"{response.status_code}: {_detail(response)}"
                continue
            if response.status_code != 200:
                raise JudgeRequestError(f"judge service {path} answered {response.status_code}: {_detail(response)}")
            return response.json()
        raise JudgeUnavailable(f"judge service at {self.base_url}: no answer after {self.retries + 1} attempt(s); last: {reason}")

    def healthz(self) -> dict:
        return self._request("GET", "/healthz")

    def readyz(self) -> dict:
        """The readiness answer; raises JudgeUnavailable with the reason when not ready."""
        return self._request("GET", "/readyz")

    def info(self) -> dict:
        return self._request("GET", "/v1/info")

    def judge_batch(
        self, degraded, restored, reference, tasks: Sequence[str | None] | None = None, mode: Mode = "fast"
    ) -> list[JudgeResult]:
        """One result per item, in order. `degraded` and `reference` may both be None (fast mode; iqa
        mode requires it): then the judge rates `restored` alone (no-reference)."""
        restored_imgs = _as_images(restored, "restored")
        if restored_imgs is None:
            raise ValueError("restored: required")
        n = len(restored_imgs)
        others = {"degraded": _as_images(degraded, "degraded"), "reference": _as_images(reference, "reference")}
        for name, imgs in others.items():
            if imgs is not None and len(imgs) != n:
                raise ValueError(f"{name}: {len(imgs)} images for {n} restored ones")
        if tasks is not None and len(tasks) != n:
            raise ValueError(f"tasks: {len(tasks)} entries for {n} images")
        items = []
        for i in range(n):
            item = {"restored": encode_base64_png(restored_imgs[i]), "mode": mode}
            item.update({name: encode_base64_png(imgs[i]) for name, imgs in others.items() if imgs is not None})
            if tasks is not None and tasks[i] is not None:
                item["task"] = tasks[i]
            items.append(item)
        answer = self._request("POST", "/v1/judge/batch", json={"items": items})
        return BatchResult.model_validate(answer).results


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:500]
