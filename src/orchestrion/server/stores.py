"""What the server keeps on disk: uploaded prompts and finished pieces, both surviving a restart or a crash.

    PromptStore   <id>.mid|.abc|.wav, at most `capacity` (oldest first out); a request names a prompt by id,
                  so no client path ever reaches a composer
    PieceStore    <id>.mid / .abc / .wav (float WAV) then <id>.json: provenance, sample rate, and each file's
                  size and SHA-256; at most `capacity` pieces and `max_bytes`, oldest first out

Every file is written with `orchestrion.core.files.write_atomic(..., durable=True)`: whole or not at all,
and on the disk before an id is reported. A piece exists exactly when its record does. At start each store
indexes what is whole and removes the rest: temporary files of writes a crash cut short (`is_temporary`),
data without a record, a record whose data is short. Ids are 16 random hex digits.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrion.composer import Piece
from orchestrion.core.files import is_temporary, write_atomic
from orchestrion.core.music import midi_bytes
from orchestrion.server.errors import PIECE_ID, PROMPT_ID, ApiError

# ----------------------------------------------------------------------------------- files on disk

log = logging.getLogger("orchestrion.server")


def _remove_strays(directory: Path, keep: set[str]) -> list[str]:
    """Delete every file of the store's directory that is not kept; their names.

    What a crash leaves is the temporary file of a write it cut short (`core.files.is_temporary`), data whose
    record was never written, or a record beside damaged data; the store owns its directory, so anything
    else found there is not a piece either and goes too. Unfinished writes are logged as such.
    """
    removed = []
    for entry in sorted(directory.iterdir()):
        if entry.name in keep or not entry.is_file():
            continue
        entry.unlink(missing_ok=True)
        removed.append(entry.name)
    if removed:
        unfinished = sum(is_temporary(name) for name in removed)
        log.warning(
            "removed %d files from %s (%d unfinished writes, %d not part of a whole record): %s",
            len(removed),
            directory,
            unfinished,
            len(removed) - unfinished,
            ", ".join(removed),
        )
    return removed


# ---------------------------------------------------------------------------------------- prompts

PROMPT_FILE = re.compile(r"^([0-9a-f]{16})(\.mid|\.abc|\.wav)$")


@dataclass
class PromptStore:
    """Uploaded prompts, each saved as `<id>.<suffix>` in a directory the server owns.

    Requests name a prompt by its id only; a client-given path never reaches a composer. At most `capacity`
    are kept (the oldest file goes first), so uploads cannot fill the disk. The files outlive the process: a
    new store on the same directory serves the prompts already there.
    """

    directory: Path
    capacity: int = 256
    kinds: OrderedDict[str, str] = field(default_factory=OrderedDict)  # id -> suffix, oldest first
    stray: list[str] = field(default_factory=list)  # files found at start that were not prompts (then removed)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        found = []
        for entry in self.directory.iterdir():
            if (match := PROMPT_FILE.match(entry.name)) and entry.is_file():
                found.append((entry.stat().st_mtime_ns, match[1], match[2]))
        for _, prompt_id, suffix in sorted(found):
            self.kinds[prompt_id] = suffix
        self.stray = _remove_strays(self.directory, {f"{i}{s}" for i, s in self.kinds.items()})
        self._evict()

    def add(self, data: bytes, suffix: str) -> str:
        prompt_id = secrets.token_hex(8)
        write_atomic(self.directory / f"{prompt_id}{suffix}", data, durable=True)
        with self._lock:
            self.kinds[prompt_id] = suffix
            self._evict()
        return prompt_id

    def discard(self, prompt_id: str) -> None:
        """Forget a prompt (one refused after it was stored) and delete its file."""
        with self._lock:
            suffix = self.kinds.pop(prompt_id, None)
        if suffix is not None:
            (self.directory / f"{prompt_id}{suffix}").unlink(missing_ok=True)

    def _evict(self) -> None:
        while len(self.kinds) > self.capacity:
            old_id, old_suffix = self.kinds.popitem(last=False)
            (self.directory / f"{old_id}{old_suffix}").unlink(missing_ok=True)

    def path(self, prompt_id: str) -> Path:
        with self._lock:
            suffix = self.kinds.get(prompt_id) if isinstance(prompt_id, str) and PROMPT_ID.match(prompt_id) else None
        if suffix is None:
            raise ApiError(
                422,
                "prompt",
                f"unknown prompt id {str(prompt_id)[:64]!r}: upload the file with POST /api/prompts and use its id",
            )
        return self.directory / f"{prompt_id}{suffix}"


# ----------------------------------------------------------------------------------------- pieces

PIECE_FILE = re.compile(r"^([0-9a-f]{16})\.(json|mid|abc|wav)$")


class PieceStore:
    """Finished pieces on disk, so a client can download what it heard, even after a server restart.

    Each piece is `<id>.mid` (its notes), `<id>.abc` (its text) and/or `<id>.wav` (its audio, 32-bit float so
    nothing is lost), then `<id>.json`: provenance, sample rate, and each file's size and SHA-256. Every file is
    written atomically and the JSON record last, so a piece exists exactly when its record does; `add` returns
    only after all of it is on disk, which is when the id may be reported. At start the store indexes the
    complete records and removes the rest (temporary files, data files without a record), listing them in
    `stray`. At most `capacity` pieces and `max_bytes` of files are kept; the oldest go first.
    """

    def __init__(self, directory: Path | None = None, capacity: int = 128, max_bytes: int = 256 * 2**20):
        if directory is None:  # a private store, removed with this object (tests, scripts)
            import shutil
            import tempfile
            import weakref

            directory = Path(tempfile.mkdtemp(prefix="orchestrion-pieces-"))
            weakref.finalize(self, shutil.rmtree, directory, True)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, int] = OrderedDict()  # id -> bytes on disk, oldest first
        self._summaries: dict[str, dict] = {}  # id -> what the history shows (formats.summarize)
        self._bytes = 0
        self._lock = threading.Lock()
        self.stray = self._index()
        with self._lock:
            self._evict()

    def _index(self) -> list[str]:
        found, keep = [], set()
        for entry in self.directory.glob("*.json"):
            match = PIECE_FILE.match(entry.name)
            record = self._read_record(match[1]) if match else None
            if record is None:
                continue
            files = record["files"]
            if all(
                (self.directory / f"{match[1]}.{ext}").stat().st_size == meta["bytes"] for ext, meta in files.items()
            ):
                size = entry.stat().st_size + sum(meta["bytes"] for meta in files.values())
                found.append((record["created"], match[1], size, _listing(match[1], record)))
                keep |= {entry.name, *(f"{match[1]}.{ext}" for ext in files)}
        for _, piece_id, size, listing in sorted(found, key=lambda f: f[:3]):
            self._items[piece_id] = size
            self._summaries[piece_id] = listing
            self._bytes += size
        return _remove_strays(self.directory, keep)

    def _read_record(self, piece_id: str) -> dict | None:
        try:
            record = json.loads((self.directory / f"{piece_id}.json").read_bytes())
            files = record["files"]
            for ext, meta in files.items():
                if (
                    ext not in ("mid", "abc", "wav")
                    or not isinstance(meta["bytes"], int)
                    or not (self.directory / f"{piece_id}.{ext}").is_file()
                ):
                    return None
            return record
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, piece: Piece) -> str:
        """Write the piece; its id, once every byte of it is on disk. Blocking: call it from a worker thread."""
        import hashlib
        import time

        from orchestrion.server.formats import summarize

        piece_id = secrets.token_hex(8)
        files = {}
        if piece.score is not None:
            files["mid"] = midi_bytes(piece.score)[0]
        if piece.abc is not None:
            files["abc"] = piece.abc.encode()
        if piece.audio is not None:
            files["wav"] = _float_wav(piece.audio, piece.sample_rate)
        for ext, data in files.items():
            write_atomic(self.directory / f"{piece_id}.{ext}", data, durable=True)
        record = {
            "id": piece_id,
            "created": time.time_ns(),
            "sample_rate": piece.sample_rate,
            "provenance": piece.provenance,
            "summary": summarize(piece),
            "files": {
                ext: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()} for ext, data in files.items()
            },
        }
        text = json.dumps(record, separators=(",", ":")).encode()
        write_atomic(self.directory / f"{piece_id}.json", text, durable=True)
        with self._lock:
            self._items[piece_id] = len(text) + sum(len(d) for d in files.values())
            self._summaries[piece_id] = _listing(piece_id, record)
            self._bytes += self._items[piece_id]
            self._evict()
        return piece_id

    def summary(self, piece_id: str) -> dict | None:
        with self._lock:
            return self._summaries.get(piece_id)

    def listing(self, limit: int | None = None) -> list[dict]:
        """The pieces kept, newest first: what GET /api/pieces answers and the page's history shows."""
        with self._lock:
            ids = list(reversed(self._items))[:limit]
            return [self._summaries[i] for i in ids if i in self._summaries]

    def _evict(self) -> None:
        while len(self._items) > 1 and (len(self._items) > self.capacity or self._bytes > self.max_bytes):
            old_id, size = self._items.popitem(last=False)
            self._summaries.pop(old_id, None)
            self._bytes -= size
            # The record goes first: from then on the piece is gone as a whole, whatever is left of its data.
            for ext in ("json", "mid", "abc", "wav"):
                (self.directory / f"{old_id}.{ext}").unlink(missing_ok=True)

    def get(self, piece_id: str) -> Piece:
        """The piece as stored (read and checked against its record). Blocking: call it from a worker thread."""
        import hashlib

        with self._lock:
            known = PIECE_ID.match(piece_id) is not None and piece_id in self._items
        record = self._read_record(piece_id) if known else None
        if record is None:
            raise ApiError(404, "piece", f"no piece {piece_id[:64]!r}: the server keeps only the most recent pieces")
        data = {}
        for ext, meta in record["files"].items():
            try:
                data[ext] = (self.directory / f"{piece_id}.{ext}").read_bytes()
            except FileNotFoundError as exc:  # evicted between the record and this read
                raise ApiError(
                    404, "piece", f"no piece {piece_id!r}: the server keeps only the most recent pieces"
                ) from exc
            if hashlib.sha256(data[ext]).hexdigest() != meta["sha256"]:
                log.error("piece %s: %s.%s does not match its record", piece_id, piece_id, ext)
                raise ApiError(500, "piece", f"piece {piece_id!r} is damaged on the server's disk; compose it again")
        return _piece_from_files(record, data)


def _listing(piece_id: str, record: dict) -> dict:
    """A piece as the history lists it; records written before summaries existed get what their request says."""
    provenance = record.get("provenance") or {}
    request = dict(provenance.get("request") or {})
    if "prompt" in request:
        request["prompt"] = Path(str(request["prompt"])).stem
    summary = record.get("summary") or {"model": provenance.get("model", ""), "seed": request.get("seed")}
    return {
        "id": piece_id,
        "created": int(record.get("created", 0)) // 1_000_000,  # milliseconds since the epoch
        "formats": sorted(record.get("files", {})),
        **summary,
        "request": request,
    }


def _float_wav(audio: Any, sample_rate: int) -> bytes:
    import io

    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, audio, sample_rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _piece_from_files(record: dict, data: dict[str, bytes]) -> Piece:
    import io

    import numpy as np

    score = audio = None
    if "mid" in data:
        from symusic import Score

        score = Score.from_midi(data["mid"])
    if "wav" in data:
        import soundfile

        audio, _ = soundfile.read(io.BytesIO(data["wav"]), dtype="float32", always_2d=False)
        audio = np.ascontiguousarray(audio)
    return Piece(
        provenance=record["provenance"],
        score=score,
        audio=audio,
        sample_rate=int(record["sample_rate"]),
        abc=data["abc"].decode() if "abc" in data else None,
    )
