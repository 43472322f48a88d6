"""An HTTP proxy that holds every request for a fixed time before forwarding it (benchmarks only).

It stands in for a service on its own machine: the trainer sees the latency of a remote reward
service without the service's compute competing for the trainer's cores. The forwarded request
and the answer are passed through unchanged, so the scores are the real service's.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_HOP_BY_HOP = {"host", "content-length", "connection", "transfer-encoding"}


def latency_proxy(upstream: str, latency_s: float) -> Starlette:
    client = httpx.AsyncClient(base_url=upstream, timeout=300.0)

    async def forward(request: Request) -> Response:
        body = await request.body()
        await asyncio.sleep(latency_s)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        answer = await client.request(request.method, request.url.path, params=request.query_params, content=body, headers=headers)
        passed = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP | {"content-encoding"}}
        return Response(answer.content, status_code=answer.status_code, headers=passed)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await client.aclose()

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])], lifespan=lifespan)
