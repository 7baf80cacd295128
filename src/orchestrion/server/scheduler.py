"""Work off the event loop, most urgent first.

    ChunkScheduler   worker threads for short blocking jobs (building and storing a piece, rendering a
                     file, checking an upload), by priority
    PriorityGate     slots for the streams' own threads (`streams.py`): a stream of a model that cannot
                     share its steps makes each chunk in a slot, with the number of chunks it already sent
                     as the priority, so a client that just asked gets its first measure before the streams
                     already playing get their next one (they are ahead of their listeners anyway)

Ties go first come, first served.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


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


class PriorityGate:
    """At most `slots` holders at once; a freed slot goes to the waiter of lowest priority (then the oldest).

    Streams whose model cannot share its steps (markov, sashimi) make each chunk inside a slot, with the
    number of chunks they already sent as the priority: a stream's first measure goes before another
    stream's next one, and the machine's cores are not oversubscribed.
    """

    def __init__(self, slots: int):
        self.slots = max(1, slots)
        self._held = 0
        self._lock = threading.Lock()
        self._waiters: list[tuple[int, int, threading.Event]] = []  # a heap
        self._order = itertools.count()

    @contextmanager
    def slot(self, priority: int) -> Iterator[None]:
        import heapq

        with self._lock:
            if self._held < self.slots and not self._waiters:
                self._held += 1
                event = None
            else:
                event = threading.Event()
                heapq.heappush(self._waiters, (priority, next(self._order), event))
        if event is not None:
            event.wait()  # the slot is handed over, already counted as held
        try:
            yield
        finally:
            with self._lock:
                if self._waiters:
                    heapq.heappop(self._waiters)[2].set()
                else:
                    self._held -= 1
