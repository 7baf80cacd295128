"""One thread per stream: a composer's generator is only ever resumed by the thread that started it.

    runner = StreamRunner(composer, request, loop, gate=..., preview=...)
    runner.start(); runner.want()            # ask for one chunk (credit); more as the client can take them
    event = await runner.next()              # ("chunk", chunk, text, extras) | ("end",) | ("error", exc)
    runner.stop()                            # ends at the next chunk boundary (or the next model step)

Why a thread of its own: model code may hold thread-local state across a `yield` (torch's inference mode,
grad mode, the intra-op thread count), so a generator resumed by another worker thread fails ("Inplace
update to inference tensor outside InferenceMode"). Each stream's thread makes a chunk only when the
consumer gave it credit, so a stream paced to its listener (`lead`) composes no further ahead than asked.

Streams of a model that shares its steps (`Composer.share_steps`: GPT models, whose concurrent streams
then run one batched forward per step) run freely; the others make each chunk inside a `PriorityGate`
slot, first measures first. A stopped stream's thread sets its `stop_event`, which a shared step checks,
so a client that left costs at most one more model step. Whatever fails is logged with its traceback and
ends that stream only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Callable

from orchestrion.composer import Chunk, Composer
from orchestrion.requests import ComposeRequest
from orchestrion.server.scheduler import PriorityGate

log = logging.getLogger("orchestrion.server")

_END = object()
_ids = itertools.count(1)


class StreamThread(threading.Thread):
    """A stream's own thread; `stop_event` tells model code that nobody listens any more."""

    def __init__(self, target: Callable[[], None], name: str):
        super().__init__(target=target, name=name, daemon=True)
        self.stop_event = threading.Event()


class StreamRunner:
    """Runs `composer.stream(request)` on a thread of its own and hands its chunks to the event loop."""

    live = 0  # stream threads running now (for /api/health and the tests)
    _live_lock = threading.Lock()

    def __init__(
        self,
        composer: Composer,
        request: ComposeRequest,
        loop: asyncio.AbstractEventLoop,
        *,
        gate: PriorityGate | None = None,
        preview: Callable[[Chunk], list[dict]] | None = None,
    ):
        self.composer = composer
        self.request = request
        self.loop = loop
        self.gate = gate
        self.preview = preview
        self._events: asyncio.Queue = asyncio.Queue()
        self._credit = threading.Semaphore(0)
        self.thread = StreamThread(self._run, name=f"stream-{next(_ids)}")

    def start(self) -> StreamRunner:
        self.thread.start()
        return self

    def want(self, chunks: int = 1) -> None:
        """Let the thread make `chunks` more chunks."""
        self._credit.release(chunks)

    def stop(self) -> None:
        """End the stream at the next chunk boundary (or the next shared model step); returns at once."""
        self.thread.stop_event.set()
        self._credit.release()

    @property
    def stopped(self) -> bool:
        return self.thread.stop_event.is_set()

    async def next(self) -> tuple:
        return await self._events.get()

    def _post(self, event: tuple) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: the server is stopping
            self.loop.call_soon_threadsafe(self._events.put_nowait, event)

    def _run(self) -> None:
        with StreamRunner._live_lock:
            StreamRunner.live += 1
        generator = None
        try:
            generator = self.composer.stream(self.request)
            sent = 0
            while True:
                self._credit.acquire()
                if self.stopped:
                    return
                with self.gate.slot(sent) if self.gate is not None else contextlib.nullcontext():
                    if self.stopped:  # stopped while waiting for a slot
                        return
                    chunk = next(generator, _END)
                    if chunk is _END:
                        self._post(("end",))
                        return
                    text = json.dumps(chunk.to_json(), separators=(",", ":"))
                    extras = self._previews(chunk)
                self._post(("chunk", chunk, text, extras))
                sent += 1
        except BaseException as exc:  # the stream's end, told to its client; never the server's
            if not self.stopped:
                log.error(
                    "composing with %s failed (request %s)",
                    self.request.model,
                    self.request.model_dump_json(exclude_none=True),
                    exc_info=exc,
                )
                self._post(("error", exc))
        finally:
            if generator is not None:
                try:
                    generator.close()  # on the thread that ran it
                except Exception:
                    log.exception("closing the stream of %s failed", self.request.model)
            with StreamRunner._live_lock:
                StreamRunner.live -= 1

    def _previews(self, chunk: Chunk) -> list[str]:
        if self.preview is None:
            return []
        try:
            return [json.dumps(m, separators=(",", ":")) for m in self.preview(chunk)]
        except Exception:  # a preview is a courtesy: the piece goes on without it
            log.exception("preview of a %s chunk failed", type(chunk).__name__)
            return []


async def collect(runner: StreamRunner) -> list[Chunk]:
    """Every chunk of a stream, as fast as they come (POST /api/compose); an error is raised."""
    chunks: list[Chunk] = []
    runner.start()
    try:
        while True:
            runner.want()
            event = await runner.next()
            if event[0] == "end":
                return chunks
            if event[0] == "error":
                raise event[1]
            chunks.append(event[1])
    finally:
        runner.stop()
