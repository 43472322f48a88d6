"""The next step's batches, built in a background thread while the driver waits on the current step.

Reading, cropping and degrading a step's images otherwise runs on the driver between the learner's
update and the next rollouts' launch. One worker thread builds every batch (prefetched or not), so the
dataset, whose epoch is set per item, is only ever touched by one thread; a step's batches depend on
the step alone (seeded crops and degradations), so prefetching changes no result.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class Prefetcher(Generic[T]):
    def __init__(self, build: Callable[[int], T], end: int):
        self._build = build
        self._end = end  # steps run below this
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches")
        self._ahead: dict[int, Future] = {}

    def get(self, step: int) -> T:
        """The batches of `step` (waiting for them if needed); then starts building step + 1's."""
        future = self._ahead.pop(step, None) or self._pool.submit(self._build, step)
        for stale in self._ahead.values():  # the driver went elsewhere (a restart): not needed
            stale.cancel()
        self._ahead.clear()
        if step + 1 < self._end:
            self._ahead[step + 1] = self._pool.submit(self._build, step + 1)
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
