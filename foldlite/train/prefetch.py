"""Global batches of the coming training steps, made on host threads ahead of the step that
needs them (``Prefetcher``)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable


class Prefetcher:
    """Global batches of the coming steps, made (read, cropped, put on the devices) on host
    threads ahead of the step that needs them; measures how long the loop waited for data."""

    def __init__(self, make: Callable[[int], dict], depth: int):
        self._make = make
        self._depth = depth
        self._pool = ThreadPoolExecutor(depth, thread_name_prefix="foldlite-batch")
        self._futures: dict[int, Any] = {}
        self._wait = 0.0

    def schedule(self, step: int, end: int) -> None:
        """Have the batches of steps ``step .. step + depth - 1`` (below ``end``) in the making;
        forget those at or after ``end``."""
        for s in [s for s in self._futures if s >= end]:
            self._futures.pop(s).cancel()
        for s in range(step, min(step + self._depth, end)):
            if s not in self._futures:
                self._futures[s] = self._pool.submit(self._make, s)

    def get(self, step: int) -> dict:
        if step not in self._futures:
            self._futures[step] = self._pool.submit(self._make, step)
        t = time.perf_counter()
        batch = self._futures.pop(step).result()
        self._wait += time.perf_counter() - t
        return batch

    def take_wait(self) -> float:
        """Seconds the loop waited for batches since the last call."""
        w, self._wait = self._wait, 0.0
        return w

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
