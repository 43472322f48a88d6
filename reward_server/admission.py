"""Admission control of scoring requests: a bounded number in flight, a deadline each, and the
cancellation of work whose client has gone.

A request beyond `max_pending_requests` is shed with 503 + Retry-After before its body is read;
one that is still unanswered at its deadline, or whose client disconnects, has its queued items
dropped (vLLM aborts the requests of disconnected clients the same way), so no work outlives the
client that asked for it, and a client's retry never adds to a copy still running.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request

from reward_server.batching import Overloaded

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """A request was not answered within its deadline; its queued items were dropped (a 503)."""


class ClientGone(Exception):
    """The client disconnected before its answer; its queued items were dropped."""


async def _disconnected(request: Request) -> None:
    # Once the body is read, the next ASGI message of the request is its disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


class Admission:
    def __init__(self, max_pending: int, timeout_s: float):
        self.max_pending, self.timeout_s = max_pending, timeout_s
        self.pending = 0

    @contextlib.asynccontextmanager
    async def slot(self):
        """Hold one of the `max_pending` places; Overloaded when none is free. Yields the deadline."""
        if self.pending >= self.max_pending:
            raise Overloaded(f"{self.pending} requests in flight; the limit is {self.max_pending}")
        self.pending += 1
        try:
            yield asyncio.get_running_loop().time() + self.timeout_s
        finally:
            self.pending -= 1

    async def watch(self, request: Request, deadline: float, work: Callable[[], Awaitable[T]]) -> T:
        """Await `work()` unless the client leaves or the deadline passes first: then it is cancelled."""
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(work())
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            done, _ = await asyncio.wait({task, gone}, timeout=max(deadline - loop.time(), 0.0),
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task  # let it drop its queued items before we answer (a late result or error is moot)
        if gone in done:
            raise ClientGone()
        raise DeadlineExceeded(f"not answered within the deadline of {self.timeout_s:g} s (request_timeout_s); "
                               "its items were dropped")
