"""Admission control of scoring requests: a bounded number in flight, a bounded expected wait, a
deadline each, and the cancellation of work whose client has gone.

A request is shed with 503 + Retry-After before its body is read when `max_pending_requests` are in
flight, or when the work already admitted would take the device longer than `max_queue_wait_s`
(Triton's queue policy rejects on queue time the same way): an admitted request is then answered
within about that wait plus its own scoring, however large the burst. The wait is estimated from the
measured device seconds per item and the items of the admitted requests (for those whose body is
not read yet, the recent mean items per request). One that is still unanswered at its deadline, or
whose client disconnects, has its queued items dropped (vLLM aborts the requests of disconnected
clients the same way), so no work outlives the client that asked for it, and a client's retry never
adds to a copy still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from irpo_common.http_guards import while_connected
from reward_server.batching import Overloaded

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """A request was not answered within its deadline; its queued items were dropped (a 503)."""


# Weight of the newest observation in the running means of device seconds per item and items per
# request: a few batches follow a change of load or of image size.
EWMA_WEIGHT = 0.2


class Ticket:
    """An admitted request: its deadline, and the items it brought once its body is read."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.items: int | None = None


class Admission:
    def __init__(self, max_pending: int, timeout_s: float, max_wait_s: float = 0.0):
        self.max_pending, self.timeout_s, self.max_wait_s = max_pending, timeout_s, max_wait_s
        self._tickets: set[Ticket] = set()
        self.item_s: float | None = None  # device seconds per item; None until a batch was scored
        self.items_per_request = 1.0

    @property
    def pending(self) -> int:
        """Requests admitted and not yet answered."""
        return len(self._tickets)

    def observe_batch(self, items: int, seconds: float) -> None:
        """A device batch of `items` took `seconds` (the micro-batcher's report)."""
        per_item = seconds / items
        self.item_s = per_item if self.item_s is None else (1 - EWMA_WEIGHT) * self.item_s + EWMA_WEIGHT * per_item

    def expected_wait_s(self) -> float:
        """Device time of the work already admitted (0 until a first batch has been timed)."""
        if self.item_s is None:
            return 0.0
        items = sum(self.items_per_request if t.items is None else t.items for t in self._tickets)
        return items * self.item_s

    def read(self, ticket: Ticket, items: int) -> None:
        """The ticket's body is read: it brings `items` items."""
        ticket.items = items
        self.items_per_request = (1 - EWMA_WEIGHT) * self.items_per_request + EWMA_WEIGHT * items

    @contextlib.asynccontextmanager
    async def slot(self):
        """Hold one of the `max_pending` places; Overloaded when none is free or the expected wait is
        over `max_wait_s` (0: no bound; a request that finds nothing in flight is always taken). Yields a Ticket."""
        if self.pending >= self.max_pending:
            raise Overloaded(f"{self.pending} requests in flight; the limit is {self.max_pending}")
        wait = self.expected_wait_s()
        if self.pending and self.max_wait_s and wait > self.max_wait_s:
            raise Overloaded(f"the {self.pending} requests in flight need about {wait:.1f} s of scoring; the limit is "
                             f"{self.max_wait_s:g} s (max_queue_wait_s)", retry_after_s=math.ceil(wait))
        ticket = Ticket(asyncio.get_running_loop().time() + self.timeout_s)
        self._tickets.add(ticket)
        try:
            yield ticket
        finally:
            self._tickets.discard(ticket)

    async def watch(self, request: Request, ticket: Ticket, work: Awaitable[T]) -> T:
        """Await `work` unless the client leaves (ClientGone) or the ticket's deadline passes first: then it is cancelled."""
        try:
            return await while_connected(request, work, max(ticket.deadline - asyncio.get_running_loop().time(), 0.0))
        except TimeoutError:
            raise DeadlineExceeded(f"not answered within the deadline of {self.timeout_s:g} s (request_timeout_s); "
                                   "its items were dropped") from None
