"""Client of the OpenAI-compatible chat endpoint that hosts the judge model (vLLM by default).

One pooled httpx.AsyncClient per service; a semaphore bounds the requests in flight. Two clocks:
`timeout_s` bounds one backend call from sending to the last byte of the answer (a total, not
httpx's per-read timeout, which a backend dripping a byte a second never trips), and the caller's
deadline bounds everything one service request does (waiting for a slot, every attempt, every
backoff), so the service answers before its clients give up and resend. Connection failures,
timeouts, 429 and 5xx answers are retried with exponential backoff while the deadline allows;
then the request fails with BackendUnavailable (503), or BackendTimeout (504) when the deadline
ended it. Any other error answer, or an answer that is not a usable chat completion
(judge_server/completion.py), is BackendError (502).
"""

from __future__ import annotations

import asyncio
import time

import httpx
from pydantic import ValidationError

from irpo_common.json_input import validation_detail

from .completion import Choice, Completion
from .settings import JudgeSettings


class BackendUnavailable(RuntimeError):
    """The backend is down, overloaded or timing out; the message says which."""


class BackendTimeout(BackendUnavailable):
    """The request's deadline passed before the backend answered; the message has the last reason."""


class BackendError(RuntimeError):
    """The backend answered, but not usefully (a 4xx, or a malformed completion)."""


_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def _invalid(exc: ValidationError) -> str:
    """'loc: message' of the errors, bounded and without the offending input (it may be huge or hostile)."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in validation_detail(exc))


class _Progress:
    """What one request's attempts came to, for the message when its deadline ends them."""

    def __init__(self):
        self.attempts, self.running, self.reason = 0, False, ""

    def failed(self, reason: str) -> None:
        self.running, self.reason = False, reason

    def describe(self, slots: int) -> str:
        if not self.attempts:
            return f"no attempt started: all {slots} backend slots (max_concurrency) stayed busy"
        text = f"{self.attempts} attempt(s)"
        if self.running:
            text += ", the last still running"
        return text + (f"; last failure: {self.reason}" if self.reason else "")


class ChatBackend:
    def __init__(self, settings: JudgeSettings):
        self.settings = settings
        headers = {}
        if settings.backend_api_key is not None:
            headers["Authorization"] = f"Bearer {settings.backend_api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=settings.backend_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(
                max_connections=settings.max_concurrency, max_keepalive_connections=settings.max_concurrency
            ),
        )
        self._slots = asyncio.Semaphore(settings.max_concurrency)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def chat(self, body: dict, deadline: float) -> tuple[Choice, float]:
        """POST chat/completions with retries until `deadline` (event-loop time); returns the first
        choice and the backend latency in seconds."""
        progress = _Progress()
        try:
            async with asyncio.timeout_at(deadline), self._slots:
                start = time.perf_counter()
                raw = await self._post_with_retries("chat/completions", body, progress)
                latency = time.perf_counter() - start
        except TimeoutError:
            raise BackendTimeout(
                f"judge backend: no answer within the request deadline of {self.settings.request_timeout_s:g} s "
                f"({progress.describe(self.settings.max_concurrency)})"
            ) from None
        try:
            completion = Completion.model_validate_json(raw)
        except ValidationError as exc:
            raise BackendError(f"backend answer is not a usable chat completion: {_invalid(exc)}") from None
        return completion.choices[0], latency

    async def _post_with_retries(self, path: str, body: dict, progress: "_Progress") -> bytes:
        s = self.settings
        for attempt in range(s.retries + 1):
            if attempt:
                await asyncio.sleep(s.backoff_s * 2 ** (attempt - 1))
            progress.attempts, progress.running = attempt + 1, True
            try:
                async with asyncio.timeout(s.timeout_s):  # the whole call, however slowly the bytes come
                    response = await self._client.post(path, json=body)
            except (TimeoutError, httpx.TimeoutException) as exc:
                progress.failed(f"no complete answer within timeout_s = {s.timeout_s:g} s ({type(exc).__name__})")
                continue
            except httpx.TransportError as exc:
                progress.failed(f"cannot reach {s.backend_url}: {exc or type(exc).__name__}")
                continue
            if response.status_code in _RETRYABLE_STATUS:
                progress.failed(f"backend answered {response.status_code}: {response.text[:300]}")
                continue
            if response.status_code != 200:
                raise BackendError(f"backend rejected the request with {response.status_code}: {response.text[:500]}")
            return response.content
        raise BackendUnavailable(f"judge backend unavailable after {s.retries + 1} attempt(s): {progress.reason}")

    async def models(self) -> list[str]:
        """Model ids the backend serves (one GET, no retries: this is a readiness probe)."""
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                response = await self._client.get("models", timeout=self.settings.connect_timeout_s)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise BackendUnavailable(f"cannot reach {self.settings.backend_url}: {exc or type(exc).__name__}") from None
        if response.status_code != 200:
            raise BackendUnavailable(f"backend /models answered {response.status_code}: {response.text[:300]}")
        try:
            return [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise BackendUnavailable("backend /models answer is not an OpenAI model list") from None
