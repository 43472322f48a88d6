"""A burst of concurrent requests against a running service, for its overload test and benchmark.

`n` POSTs of one JSON payload leave at once (each on its own connection, as many trainer workers
would); every `abandon_every`-th client gives up after `abandon_after_s`, as a client with a short
timeout does. Returns each request's outcome; latency is measured from the burst's start.

The load generator shares the machine with the service, so it must cost little next to it: the body
is serialised once and sent with aiohttp. (httpx's per-request overhead made this client, not the
service, the bottleneck of an 800-request burst on 2 cores: every answer arrived after ~2.7 s.)
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: the client gave up (timeout) or the connection failed
    latency_s: float
    retry_after: str | None
    abandoned: bool  # this client was one that gives up early
    body: bytes = b""


async def _burst(url: str, body: bytes, n: int, headers: dict, abandon_every: int, abandon_after_s: float, timeout_s: float) -> list[Outcome]:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # a connection per request, none reused
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:
        go = asyncio.Event()

        async def one(i: int) -> Outcome:
            gives_up = bool(abandon_every) and i % abandon_every == abandon_every - 1
            timeout = aiohttp.ClientTimeout(total=abandon_after_s if gives_up else timeout_s)
            await go.wait()
            t0 = time.perf_counter()
            try:
                async with session.post("/v1/score", data=body, timeout=timeout) as r:
                    content = await r.read()
            except (aiohttp.ClientError, TimeoutError):
                return Outcome(None, time.perf_counter() - t0, None, gives_up)
            return Outcome(r.status, time.perf_counter() - t0, r.headers.get("retry-after"), gives_up, content)

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0)
        go.set()
        return list(await asyncio.gather(*tasks))


def burst(url: str, payload: dict, n: int, *, token: str | None = None, abandon_every: int = 0,
          abandon_after_s: float = 0.5, timeout_s: float = 120.0) -> list[Outcome]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    return asyncio.run(_burst(url, json.dumps(payload).encode(), n, headers, abandon_every, abandon_after_s, timeout_s))
