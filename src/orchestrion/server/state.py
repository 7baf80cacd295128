"""What the routes share: the loaded models, the job limiter, the prompt and piece stores.

One `ServerState` lives on `app.state.hub`, built in the app's lifespan. Requests are checked here, once,
for both the REST API and the websocket, so both give the same 422s naming the same fields.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrion.composers.base import (
    AudioBlock,
    Chunk,
    Composer,
    Measure,
    Piece,
    TextChunk,
    score_from_measures,
)
from orchestrion.errors import BadInput, InvalidRequest, ModelNotFound, NotBuilt, OrchestrionError
from orchestrion.requests import ComposeRequest, first_error
from orchestrion.server.scheduler import ChunkScheduler

PROMPT_ID = re.compile(r"^[0-9a-f]{16}$")
PIECE_ID = re.compile(r"^[0-9a-f]{16}$")


class ApiError(Exception):
    """An answer to the client: HTTP `status`, the offending `field` and a message saying what to do."""

    def __init__(self, status: int, field: str, message: str, *, busy: bool = False):
        self.status = status
        self.field = field
        self.message = message
        self.busy = busy
        super().__init__(f"{field}: {message}")

    def to_json(self) -> dict:
        body = {"type": "error", "field": self.field, "message": self.message}
        if self.busy:
            body["busy"] = True
        return body


def api_error_from(exc: Exception) -> ApiError:
    """Map our own error types (and pydantic's) to the HTTP answer a client should get."""
    from pydantic import ValidationError

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError | InvalidRequest):
        return ApiError(422, *first_error(exc))
    if isinstance(exc, ModelNotFound):
        return ApiError(422, "model", str(exc))
    if isinstance(exc, BadInput):
        return ApiError(422, "prompt", str(exc))
    if isinstance(exc, NotBuilt):
        return ApiError(501, "model", str(exc))
    if isinstance(exc, OrchestrionError):
        return ApiError(500, "server", str(exc))
    return ApiError(500, "server", f"internal error ({type(exc).__name__}); the server is still running")


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


# ---------------------------------------------------------------------------------------- prompts


@dataclass
class PromptStore:
    """Uploaded prompts, each saved as `<id>.<suffix>` in a directory the server owns.

    Requests name a prompt by its id only; a client-given path never reaches a composer. At most `capacity`
    are kept (the oldest file goes first), so uploads cannot fill the disk.
    """

    directory: Path
    capacity: int = 256
    kinds: OrderedDict[str, str] = field(default_factory=OrderedDict)  # id -> suffix, oldest first

    def add(self, data: bytes, suffix: str) -> str:
        prompt_id = secrets.token_hex(8)
        path = self.directory / f"{prompt_id}{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        self.kinds[prompt_id] = suffix
        while len(self.kinds) > self.capacity:
            old_id, old_suffix = self.kinds.popitem(last=False)
            (self.directory / f"{old_id}{old_suffix}").unlink(missing_ok=True)
        return prompt_id

    def path(self, prompt_id: str) -> Path:
        if not PROMPT_ID.match(prompt_id) or prompt_id not in self.kinds:
            raise ApiError(
                422, "prompt", f"unknown prompt id {prompt_id!r}: upload the file with POST /api/prompts and use its id"
            )
        return self.directory / f"{prompt_id}{self.kinds[prompt_id]}"


# ----------------------------------------------------------------------------------------- pieces


class PieceStore:
    """The last finished pieces (at most `capacity`, and at most `max_bytes` of them in memory), so the client
    can download what it heard without composing it again; the oldest go first."""

    def __init__(self, capacity: int = 128, max_bytes: int = 256 * 2**20):
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Piece, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def size(piece: Piece) -> int:
        notes = sum(len(t.notes) for t in piece.score.tracks) if piece.score is not None else 0
        audio = piece.audio.nbytes if piece.audio is not None else 0
        return 1024 + 32 * notes + audio + len(piece.abc or "")

    def add(self, piece: Piece) -> str:
        piece_id = secrets.token_hex(8)
        size = self.size(piece)
        with self._lock:
            self._items[piece_id] = (piece, size)
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self.capacity or self._bytes > self.max_bytes):
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
        return piece_id

    def get(self, piece_id: str) -> Piece:
        with self._lock:
            item = self._items.get(piece_id) if PIECE_ID.match(piece_id) else None
        if item is None:
            raise ApiError(404, "piece", f"no piece {piece_id!r}: the server keeps only the most recent pieces")
        return item[0]


def assemble(composer: Composer, request: ComposeRequest, chunks: list[Chunk]) -> Piece:
    """The streamed chunks as a Piece: the same assembly as Composer.compose, without composing again."""
    import numpy as np

    measures = [c for c in chunks if isinstance(c, Measure)]
    audio = [c for c in chunks if isinstance(c, AudioBlock)]
    text = [c.text for c in chunks if isinstance(c, TextChunk) and c.complete]
    return Piece(
        provenance=composer.provenance(request),
        score=score_from_measures(measures) if measures else None,
        audio=np.concatenate([a.samples for a in audio]) if audio else None,
        sample_rate=audio[0].sample_rate if audio else 16000,
        abc="\n\n".join(text) if text else None,
    )


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
            raise ApiError(422, "body", "the request must be a JSON object such as {\"model\": \"builtin:markov\", \"bars\": 8}")
        try:
            request = ComposeRequest(**body)
        except Exception as exc:  # pydantic's ValidationError, or a TypeError from odd keys
            raise api_error_from(exc) from exc
        composer = self.composers.get(request.model)
        if composer is None:
            loaded = ", ".join(self.composers) or "none"
            raise ApiError(422, "model", f"model {request.model!r} is not served here; available: {loaded}")
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
