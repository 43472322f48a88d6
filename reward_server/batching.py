"""Micro-batching: items of concurrent requests are scored together in one device pass.

A single worker thread runs the scorer, so the device sees one batch at a time and the event loop
stays free to accept and decode requests meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from reward_server.schemas import ItemResult
from reward_server.scorer import ScoreItem, Scorer


class MicroBatcher:
    def __init__(
        self,
        scorer: Scorer,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int, float], None] = lambda n, s: None,
    ):
        self.scorer = scorer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
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

    async def submit(self, items: list[ScoreItem]) -> list[ItemResult]:
        assert self._queue is not None, "MicroBatcher.start() was not awaited"
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        for item, fut in zip(items, futures):
            self._queue.put_nowait((item, fut))
        return list(await asyncio.gather(*futures))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
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
            live = [(item, fut) for item, fut in batch if not fut.done()]  # cancelled by a gone client
            if not live:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._pool, self.scorer.score, [item for item, _ in live])
            except Exception as exc:  # noqa: BLE001 - delivered to every waiting request, which answers 500
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.on_batch(len(live), time.perf_counter() - t0)
            for (_, fut), res in zip(live, results):
                if not fut.done():
                    fut.set_result(res)
