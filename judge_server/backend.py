"""Client of the OpenAI-compatible chat endpoint that hosts the judge model (vLLM by default).

One pooled httpx.AsyncClient per service; a semaphore bounds the requests in flight. Connection
failures, timeouts, 429 and 5xx answers are retried with exponential backoff; once the retries
are spent the request fails with BackendUnavailable (the service answers 503). Any other error
answer, or an answer without the fields we asked for, is BackendError (the service answers 502).
"""

from __future__ import annotations

import asyncio
import time

import httpx

from .settings import JudgeSettings


class BackendUnavailable(RuntimeError):
    """The backend is down, overloaded or timing out; the message says which."""


class BackendError(RuntimeError):
    """The backend answered, but not usefully (a 4xx, or a malformed completion)."""


_RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


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

    async def chat(self, body: dict) -> tuple[dict, float]:
        """POST chat/completions with retries; returns the first choice and the latency in seconds."""
        async with self._slots:
            start = time.perf_counter()
            answer = await self._post_with_retries("chat/completions", body)
            latency = time.perf_counter() - start
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
            raise BackendError("backend answered without a chat completion choice")
        return choices[0], latency

    async def _post_with_retries(self, path: str, body: dict) -> dict:
        reason = ""
        for attempt in range(self.settings.retries + 1):
            if attempt:
                await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            try:
                response = await self._client.post(path, json=body)
            except httpx.TimeoutException as exc:
                reason = f"timed out after {self.settings.timeout_s:g} s ({type(exc).__name__})"
                continue
            except httpx.TransportError as exc:
                reason = f"cannot reach {self.settings.backend_url}: {exc or type(exc).__name__}"
                continue
            if response.status_code in _RETRYABLE_STATUS:
                reason = f"backend answered {response.status_code}: {response.text[:300]}"
                continue
            if response.status_code != 200:
                raise BackendError(f"backend rejected the request with {response.status_code}: {response.text[:500]}")
            try:
                return response.json()
            except ValueError:
                raise BackendError("backend answered 200 with a body that is not JSON") from None
        raise BackendUnavailable(f"judge backend unavailable after {self.settings.retries + 1} attempt(s): {reason}")

    async def models(self) -> list[str]:
        """Model ids the backend serves (one GET, no retries: this is a readiness probe)."""
        try:
            response = await self._client.get("models", timeout=self.settings.connect_timeout_s)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"cannot reach {self.settings.backend_url}: {exc or type(exc).__name__}") from None
        if response.status_code != 200:
            raise BackendUnavailable(f"backend /models answered {response.status_code}: {response.text[:300]}")
        try:
            return [m["id"] for m in response.json()["data"]]
        except (ValueError, KeyError, TypeError):
            raise BackendUnavailable("backend /models answer is not an OpenAI model list") from None
