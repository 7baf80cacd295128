"""Worker threads that run composition off the event loop, most urgent work first.

Streams submit one chunk at a time with the number of chunks they already sent as the priority, so a client
that just asked gets its first measure before the streams already playing get their next one (they are
ahead of their listeners anyway). Ties go first come, first served.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

URGENT = -1  # cleanup (closing a generator) before any composing


class ChunkScheduler:
    def __init__(self, workers: int):
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._threads = [
            threading.Thread(target=self._work, name=f"compose-{i}", daemon=True) for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, priority: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        self._queue.put((priority, next(self._order), future, fn, args))
        return future

    async def run(self, priority: int, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self.submit(priority, fn, *args))

    def _work(self) -> None:
        while True:
            _, _, future, fn, args = self._queue.get()
            if future is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever awaits the future, as an executor would
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Stop the workers once the work already queued is done (daemon threads: never blocks exit)."""
        for _ in self._threads:
            self._queue.put((float("inf"), next(self._order), None, None, None))
