"""Micro-batching: items of concurrent requests are scored together in one device pass.

A single worker thread runs the scorer, so the device sees one batch at a time and the event loop
stays free to accept and decode requests meanwhile. The queue is bounded (as TorchServe's job queue
and Triton's max queue size): a request that would overfill it is shed at once with Overloaded
(a 503 with Retry-After) instead of waiting behind work it cannot finish in time. Items whose
request was abandoned (client gone, deadline passed) are dropped before they reach the device,
and an item that fails is scored again alone, so it never fails its batch-mates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from reward_server.schemas import ItemResult
from reward_server.scorer import ScoreItem, Scorer

log = logging.getLogger(__name__)


class Overloaded(Exception):
    """The service cannot take a request now; the message says why, `retry_after_s` when to come back."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ItemFailed(Exception):
    """Scoring one item raised; its batch-mates were scored without it (logged with the traceback)."""


class MicroBatcher:
    def __init__(
        self,
        scorer: Scorer,
        max_batch: int,
        max_wait_s: float,
        max_queue_items: int,
        on_batch: Callable[[int, float], None] = lambda n, s: None,
        on_dropped: Callable[[int], None] = lambda n: None,
    ):
        self.scorer = scorer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue_items = max_queue_items
        self.on_batch, self.on_dropped = on_batch, on_dropped
        self._queue: asyncio.Queue[tuple[ScoreItem, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reward-scorer")

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._pool.shutdown(wait=True)

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    async def submit(self, items: list[ScoreItem]) -> list[ItemResult]:
        """Results in order; raises Overloaded when the queue cannot take the items, ItemFailed when
        one of them failed. Cancelling the caller drops its items that are still queued."""
        assert self._queue is not None, "MicroBatcher.start() was not awaited"
        if self.queued + len(items) > self.max_queue_items:
            raise Overloaded(f"{self.queued} items queued; the limit is {self.max_queue_items}")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, fut in zip(items, futures):
            self._queue.put_nowait((item, fut))
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for fut in futures:  # on an error or a cancel, the request's other items need no work
                fut.cancel()

    async def _collect(self) -> list[tuple[ScoreItem, asyncio.Future]]:
        loop = asyncio.get_running_loop()
        batch = [await self._queue.get()]
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self.max_batch:
            if self._queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            else:
                batch.append(self._queue.get_nowait())
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            live = [(item, fut) for item, fut in batch if not fut.done()]  # abandoned items never reach the device
            if len(live) < len(batch):
                self.on_dropped(len(batch) - len(live))
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._pool, self.scorer.score, [item for item, _ in live])
            except Exception:  # noqa: BLE001 - find the failing item(s): each is scored again alone
                log.warning("a micro-batch of %d items failed; scoring its items one by one", len(live), exc_info=True)
                results = [None if fut.done() else await loop.run_in_executor(self._pool, self._score_alone, item)
                           for item, fut in live]
            self.on_batch(len(live), time.perf_counter() - t0)
            for (_, fut), res in zip(live, results):
                if fut.done():
                    continue
                if isinstance(res, Exception):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    def _score_alone(self, item: ScoreItem) -> ItemResult | ItemFailed:
        try:
            return self.scorer.score([item])[0]
        except Exception as exc:  # noqa: BLE001 - logged here, answered as a 500 for this item only
            log.exception("scoring an item of %s failed", tuple(item.restored.shape))
            return ItemFailed(f"scoring failed: {type(exc).__name__} (logged by the service)")
