"""A burst of concurrent requests against a running service, for its overload test and benchmark.

`n` POSTs of one JSON payload leave at once (each on its own connection, as many trainer workers
would); every `abandon_every`-th client gives up after `abandon_after_s`, as a client with a short
timeout does. Returns each request's outcome; latency is measured from the burst's start.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: the client gave up (timeout) or the connection failed
    latency_s: float
    retry_after: str | None
    abandoned: bool  # this client was one that gives up early
    body: bytes = b""


async def _burst(url: str, payload: dict, n: int, headers: dict, abandon_every: int, abandon_after_s: float, timeout_s: float) -> list[Outcome]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        go = asyncio.Event()

        async def one(i: int) -> Outcome:
            gives_up = bool(abandon_every) and i % abandon_every == abandon_every - 1
            await go.wait()
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/score", json=payload, timeout=abandon_after_s if gives_up else timeout_s)
            except httpx.HTTPError:
                return Outcome(None, time.perf_counter() - t0, None, gives_up)
            return Outcome(r.status_code, time.perf_counter() - t0, r.headers.get("retry-after"), gives_up, r.content)

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0)
        go.set()
        return list(await asyncio.gather(*tasks))


def burst(url: str, payload: dict, n: int, *, token: str | None = None, abandon_every: int = 0,
          abandon_after_s: float = 0.5, timeout_s: float = 120.0) -> list[Outcome]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return asyncio.run(_burst(url, payload, n, headers, abandon_every, abandon_after_s, timeout_s))
