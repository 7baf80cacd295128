"""The one way orchestrion writes a file: whole or not at all.

Every file a reader, a resumed run or a restarted server may open is written to a temporary name in the same
folder and renamed over its target in one step, so a crash or `kill -9` at any instant leaves the old file or
the new one, never half of one. Temporary names all look alike, `.NAME.TOKEN.tmp[.SUFFIX]` (the suffix is kept
for writers that choose their format by it: matplotlib, soundfile, numpy), so cleaners know them.

    write_atomic(path, data)                  bytes or str (UTF-8)
    write_json(path, record)                  JSON with a trailing newline
    with atomic_path(path) as tmp: ...        for a library that writes the file itself (safetensors, numpy)

`durable=True` also fsyncs the file and its folder, for state that must survive a power cut (the server's
store); caches and datasets, which a rerun rebuilds, skip the cost.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.\w+)?$")  # what a write cut short leaves behind


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside `path` that keeps its suffix: a.wav -> .a.wav.1f2e3d4c.tmp.wav."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{path.suffix}")


def is_temporary(name: str) -> bool:
    """True for the name of a temporary file of a write that did not finish."""
    return TEMPORARY.match(name) is not None


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(path.parent)


def write_atomic(path: str | Path, data: bytes | str, *, durable: bool = False) -> Path:
    """Write all of `data` to `path`, or leave `path` as it was."""
    path = Path(path)
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def write_json(path: str | Path, record: object, *, durable: bool = False, indent: int | None = 1) -> Path:
    """`record` as JSON (keys in the order given, a trailing newline), written atomically."""
    return write_atomic(path, json.dumps(record, indent=indent, ensure_ascii=False) + "\n", durable=durable)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    if os.name == "posix":  # Windows cannot open a directory; its renames are durable enough for a cache
        _fsync(directory)
