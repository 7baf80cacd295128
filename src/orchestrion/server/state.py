"""What the routes share: the loaded models, the job limiter, the prompt and piece stores.

One `ServerState` lives on `app.state.hub`, built in the app's lifespan. Requests are checked here, once,
for both the REST API and the websocket, so both give the same 422s naming the same fields.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrion.composer import Composer
from orchestrion.requests import ComposeRequest
from orchestrion.server.errors import ApiError, api_error_from
from orchestrion.server.scheduler import ChunkScheduler
from orchestrion.server.stores import PieceStore, PromptStore

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

    def prepare(self, body: Any) -> tuple[Composer, ComposeRequest]:
        """A JSON body -> (the loaded composer, its validated request with a concrete seed) or an ApiError."""
        if not isinstance(body, dict):
            raise ApiError(
                422, "body", 'the request must be a JSON object such as {"model": "builtin:markov", "bars": 8}'
            )
        try:
            request = ComposeRequest(**body)
        except Exception as exc:  # pydantic's ValidationError, or a TypeError from odd keys
            raise api_error_from(exc) from exc
        composer = self.composers.get(request.model)
        if composer is None:
            loaded = ", ".join(self.composers) or "none"
            raise ApiError(422, "model", f"model {request.model[:64]!r} is not served here; available: {loaded}")
        if request.num_samples != 1:
            raise ApiError(422, "num_samples", "the server composes one piece per request (use num_samples 1)")
        if request.prompt is not None:
            request = request.model_copy(update={"prompt": str(self.prompts.path(request.prompt))})
        try:
            request = composer.validate(request)
        except Exception as exc:
            raise api_error_from(exc) from exc
        return composer, request

    def public_request(self, request: ComposeRequest) -> dict:
        """The request as the client may see it: the prompt back as its id, never a server path."""
        data = request.model_dump(exclude_none=True)
        if "prompt" in data:
            data["prompt"] = Path(data["prompt"]).stem
        return data
