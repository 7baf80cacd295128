"""What the routes share: the loaded models, the job limiter, the stores, the gate, the render cache.

One `ServerState` lives on `app.state.hub`, built in the app's lifespan. Requests are checked here, once,
for both the REST API and the websocket, so both give the same 422s naming the same fields, and every
error a client sees passes `scrub`, so that no message names a path on the server.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrion.composer import Composer
from orchestrion.requests import ComposeRequest
from orchestrion.server.errors import ApiError, api_error_from
from orchestrion.server.preview import ABCPreview
from orchestrion.server.scheduler import ChunkScheduler, PriorityGate
from orchestrion.server.stores import PieceStore, PromptStore
from orchestrion.server.streams import StreamRunner

MAX_JSON_BYTES = 2**20  # a compose request, by POST or websocket message


# ------------------------------------------------------------------------------------------- jobs


class JobLimiter:
    """At most `limit` compositions at once; past it, `slot()` raises a clear 'busy' ApiError (503)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.active = 0
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        self.chunks = 0
        self._lock = threading.Lock()

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._lock:
            if self.active >= self.limit:
                raise ApiError(
                    503,
                    "request",
                    f"the server is busy: {self.active} compositions are running (the limit is {self.limit}); "
                    "try again in a moment",
                    busy=True,
                )
            self.active += 1
            self.started += 1
        try:
            yield
        finally:
            with self._lock:
                self.active -= 1
                self.finished += 1

    def count_chunk(self) -> None:
        with self._lock:
            self.chunks += 1

    def count_cancel(self) -> None:
        with self._lock:
            self.cancelled += 1

    def to_json(self) -> dict:
        return {
            "active": self.active,
            "limit": self.limit,
            "started": self.started,
            "finished": self.finished,
            "cancelled": self.cancelled,
            "chunks": self.chunks,
        }


# ------------------------------------------------------------------------------------------ state


class RenderCache:
    """Rendered files of recent pieces (WAV, SVG, ...), at most `max_bytes`: a player that seeks asks for
    the same WAV many times, in ranges, and FluidSynth need not run for each."""

    def __init__(self, max_bytes: int = 96 * 2**20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, piece_id: str, fmt: str) -> bytes | None:
        with self._lock:
            data = self._items.get((piece_id, fmt))
            if data is not None:
                self._items.move_to_end((piece_id, fmt))
            return data

    def put(self, piece_id: str, fmt: str, data: bytes) -> None:
        if len(data) > self.max_bytes // 4:
            return
        with self._lock:
            if (piece_id, fmt) in self._items:
                return
            self._items[(piece_id, fmt)] = data
            self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old)


# An absolute path in a message (a prompt's file, a temporary file): shown by its last part only.
_PATH = re.compile(r"(?<![\w.:/])(?:/[^\s/'\"<>():,;]+){2,}/?")


def scrub(message: str) -> str:
    """A message fit for a client: every absolute server path cut to its file name."""
    return _PATH.sub(lambda m: Path(m.group(0)).name or "a file", message)


@dataclass
class ServerState:
    composers: dict[str, Composer]
    descriptions: dict[str, str]
    load_errors: dict[str, str]
    jobs: JobLimiter
    scheduler: ChunkScheduler
    prompts: PromptStore
    pieces: PieceStore
    max_upload_bytes: dict[str, int]
    gate: PriorityGate = field(default_factory=lambda: PriorityGate(4))
    shared: dict[str, Callable[[], dict]] = field(default_factory=dict)  # model -> how its steps were shared
    renders: RenderCache = field(default_factory=RenderCache)

    def prepare(self, body: Any) -> tuple[Composer, ComposeRequest]:
        """A JSON body -> (the loaded composer, its validated request with a concrete seed) or an ApiError."""
        if not isinstance(body, dict):
            raise ApiError(
                422, "body", 'the request must be a JSON object such as {"model": "builtin:markov", "bars": 8}'
            )
        try:
            request = ComposeRequest(**body)
        except Exception as exc:  # pydantic's ValidationError, or a TypeError from odd keys
            raise self.client_error(exc) from exc
        composer = self.composers.get(request.model)
        if composer is None:
            loaded = ", ".join(self.composers) or "none"
            raise ApiError(422, "model", f"model {request.model[:64]!r} is not served here; available: {loaded}")
        if request.num_samples != 1:
            raise ApiError(422, "num_samples", "the server composes one piece per request (use num_samples 1)")
        if request.variations_of is not None and "\n" not in request.variations_of.strip():
            # A composer reads a one-line value as a file name: a client names no file on this machine.
            raise ApiError(422, "variations_of", "give the ABC text of the tune to vary (several lines), not a name")
        if request.prompt is not None:
            request = request.model_copy(update={"prompt": str(self.prompts.path(request.prompt))})
        try:
            request = composer.validate(request)
        except Exception as exc:
            raise self.client_error(exc) from exc
        return composer, request

    def runner(self, composer: Composer, request: ComposeRequest) -> StreamRunner:
        """A stream on a thread of its own; gated unless the model shares its steps; ABC tunes previewed."""
        import asyncio

        preview = ABCPreview() if composer.options().get("encoding") == "abc" else None
        gate = None if request.model in self.shared else self.gate
        return StreamRunner(composer, request, asyncio.get_running_loop(), gate=gate, preview=preview)

    def client_error(self, exc: BaseException) -> ApiError:
        """The ApiError a client gets for `exc`, with no server path in its message."""
        err = api_error_from(exc) if isinstance(exc, Exception) else ApiError(500, "server", "stopped")
        return ApiError(err.status, err.field, scrub(err.message), busy=err.busy)

    def public_request(self, request: ComposeRequest) -> dict:
        """The request as the client may see it: the prompt back as its id, never a server path."""
        data = request.model_dump(exclude_none=True)
        if "prompt" in data:
            data["prompt"] = Path(data["prompt"]).stem
        return data
