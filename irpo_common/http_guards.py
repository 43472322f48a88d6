"""HTTP pieces shared by the services: a request-body size limit, optional bearer-token auth and
request counting for Prometheus.

Kept free of model code so the judge service can import it without loading torch models.
"""

from __future__ import annotations

import hmac

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from pydantic import SecretStr


class BodyLimit:
    """ASGI middleware refusing bodies over `max_bytes` with 413: by Content-Length, and while
    streaming, since a chunked upload announces no length."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            resp = JSONResponse({"detail": f"body of {int(length)} bytes exceeds the limit of {limit}"}, status_code=413)
            return await resp(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:  # raised inside the route's body read, rendered by FastAPI's exception handler
                raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)


def bearer_guard(token: SecretStr | None):
    """A FastAPI dependency requiring `Authorization: Bearer <token>`; a no-op when token is None."""
    secret = token.get_secret_value().encode() if token is not None else None

    def require_token(request: Request) -> None:
        if secret is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), secret):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return require_token


def count_requests(app: FastAPI, counter: Counter) -> None:
    """Count every response in `counter`, labelled (route template, status code). The template, not the
    raw path, keeps the label values few; requests that match no route count as 'unmatched'."""

    @app.middleware("http")
    async def counted(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        counter.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response
