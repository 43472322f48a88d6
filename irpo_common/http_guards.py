"""HTTP pieces shared by the services: a request-body size and time limit, bearer-token auth that
refuses an empty secret, one outermost guard that counts every answer (500s included) and turns
an escaped exception into a plain 500 without closing the client's keep-alive connection, the
cancellation of a request's work when its client disconnects, and the answers to the errors the
shared floor raises. Every answer here is a Problem body (irpo_common.problem).

Kept free of model code so the judge service can import it without loading torch models.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from prometheus_client import Counter
from pydantic import AfterValidator, SecretStr, ValidationError

from irpo_common.imaging import ImageError
from irpo_common.json_input import BadJSON, validation_detail
from irpo_common.problem import problem

log = logging.getLogger(__name__)

T = TypeVar("T")


def _nonempty_token(token: SecretStr | None) -> SecretStr | None:
    if token is not None and not token.get_secret_value().strip():
        raise ValueError("token is empty; unset the variable to run without auth, or set a non-empty secret")
    return token


# The settings type of a service token: an empty string (`X_TOKEN=`) is a start-up error, never auth
# with an empty secret.
BearerToken = Annotated[SecretStr | None, AfterValidator(_nonempty_token)]


class BodyLimit:
    """ASGI middleware refusing bodies over `max_bytes` with 413 (by Content-Length, and while
    streaming, since a chunked upload announces no length) and bodies still arriving after
    `timeout_s` with 408, so a slow upload cannot hold a connection and a worker for ever."""

    def __init__(self, app, max_bytes: int, timeout_s: float | None = None):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            resp = problem(413, f"body of {int(length)} bytes exceeds the limit of {limit}")
            return await resp(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout_s is None else loop.time() + self.timeout_s
        seen, done = 0, False

        async def limited():
            nonlocal seen, done
            if done or deadline is None:  # after the body, receive() waits for a disconnect: no deadline
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
                except TimeoutError:  # raised inside the route's body read, rendered by FastAPI's exception handler
                    raise HTTPException(408, f"request body not received within {self.timeout_s:g} s") from None
            seen += len(message.get("body", b""))
            done = done or not message.get("more_body", False)
            if seen > limit:
                raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
            return message

        await self.app(scope, limited, send)


def accepted_media_type(request: Request, accepted: tuple[str, ...]) -> str:
    """The body's media type (lower case, no parameters) when it is one of `accepted`; else a 415."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in accepted:
        raise HTTPException(415, f"content type not accepted: send {' or '.join(accepted)}")
    return kind


def on_error(app: FastAPI, exc_type: type[Exception], respond: Callable[[Exception], Response]) -> None:
    """Answer `exc_type` with `respond(exc)` on the event loop. (Starlette runs a plain-def exception
    handler in its 40-thread pool, where a burst of sheds, 503s, would queue behind each other.)"""

    async def handler(request: Request, exc: Exception) -> Response:
        return respond(exc)

    app.add_exception_handler(exc_type, handler)


def answer_shared_errors(app: FastAPI) -> None:
    """The answers of both services to what the shared floor raises: unreadable JSON and unusable
    images 400, a body off its schema 422 (a list of ErrorItem), a client gone 499 (its work was
    cancelled; nobody reads the answer, but it is counted). HTTPException (401, 408, 413, ...) keeps
    FastAPI's handler, whose body is a Problem too."""
    on_error(app, BadJSON, lambda e: problem(400, str(e)))
    on_error(app, ImageError, lambda e: problem(400, str(e)))
    on_error(app, ValidationError, lambda e: problem(422, validation_detail(e)))
    on_error(app, ClientGone, lambda e: problem(499, "the client closed the request; its work was cancelled"))


def bearer_guard(token: SecretStr | None):
    """A FastAPI dependency requiring `Authorization: Bearer <token>`; a no-op when token is None."""
    secret = _nonempty_token(token).get_secret_value().encode() if token is not None else None

    # async: FastAPI runs a plain-def dependency in its thread pool (40 threads), which a burst of
    # requests then queues behind; this check does no blocking work.
    async def require_token(request: Request) -> None:
        if secret is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        given = given.strip().encode()
        if scheme.lower() != "bearer" or not given or not hmac.compare_digest(given, secret):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    return require_token


class _Guard:
    """Outermost ASGI layer of a service (inside only Starlette's error middleware).

    It counts every answer by (route template, status) after the handler has finished, so 500s
    count too; an exception that escapes the app is logged and answered with a plain 500 here,
    because Starlette's error middleware re-raises it after answering and the server then closes
    the connection, resetting the client's next keep-alive request.
    """

    def __init__(self, app, counter: Counter):
        self.app, self.counter = app, counter

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = None

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except Exception:  # noqa: BLE001 - the last line of defence: answer, log, keep the connection
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if status is None:
                await problem(500, "internal error (logged by the service)")(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")  # the template keeps the label values few
            self.counter.labels(route, str(status) if status is not None else "no_response").inc()


def count_requests(app: FastAPI, counter: Counter) -> None:
    """Install the outermost guard: count every answer in `counter` labelled (route template, status
    code; requests that match no route count as 'unmatched') and answer escaped exceptions with 500.
    Call it after the service's other middleware so that their answers (413, 408) are counted too."""
    app.add_middleware(_Guard, counter=counter)


class ClientGone(Exception):
    """The client disconnected before its answer; the work for it was cancelled (answered 499, counted)."""


async def _disconnected(request: Request) -> None:
    # Once the body is read, the next ASGI message of the request is its disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Awaitable[T], timeout_s: float | None = None) -> T:
    """Await `work` (its body read already) unless the client leaves (ClientGone) or `timeout_s`
    passes (TimeoutError) first: then `work` is cancelled, and has unwound, before this raises. So no
    work outlives the client that asked for it (vLLM aborts the requests of disconnected clients the
    same way), and a client's retry never adds to a copy still running."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task  # let it drop its queued work before we answer (a late result or error is moot)
    if gone in done:
        raise ClientGone()
    raise TimeoutError()
