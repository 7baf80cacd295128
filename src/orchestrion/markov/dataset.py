"""TODO: docstring."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrion.markov.events import PieceEvents, encode_file

if TYPE_CHECKING:
    pass


def _encode_one(path: str) -> PieceEvents | str:
    """Worker: one file's events, or the reason it cannot be used (a batch reports it and goes on)."""
    from orchestrion.errors import OrchestrionError

    try:
        return encode_file(path)
    except OrchestrionError as exc:
        return str(exc)


def encode_files(
    paths: list[Path], workers: int = 0, description: str = "encoding events"
) -> tuple[list[PieceEvents], list[str]]:
    """Encode files in parallel with a progress bar: (pieces with notes, problems as 'file: reason').

    Results come in file order, so any number of workers gives the same pieces.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor

    from rich.progress import Progress

    workers = workers or (os.cpu_count() or 1)
    pieces: list[PieceEvents] = []
    problems: list[str] = []
    pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 and len(paths) >= 16 else None
    try:
        results = pool.map(_encode_one, map(str, paths), chunksize=8) if pool else map(_encode_one, map(str, paths))
        with Progress(transient=True) as progress:
            task = progress.add_task(description, total=len(paths))
            for path, result in zip(paths, results, strict=True):
                if isinstance(result, str):
                    problems.append(result)
                elif result.is_empty:
                    problems.append(f"{path}: no sounding notes")
                else:
                    pieces.append(result)
                progress.advance(task)
    finally:
        if pool:
            pool.shutdown()
    return pieces, problems


def encode_to_dir(inputs: list[str], out: str | Path, *, workers: int = 0) -> Path:
    """`orchestrion encode events`: every input file's events as one JSON line of `out/events.jsonl`.

    Files that cannot be read are listed in `out/problems.txt` and skipped.
    """
    import json

    from orchestrion.core.corpora import resolve_inputs
    from orchestrion.core.music import MIDI_SUFFIXES
    from orchestrion.core.shards import atomic_write_text

    paths = resolve_inputs(inputs, MIDI_SUFFIXES)
    out = Path(out)
    pieces, problems = encode_files(paths, workers)
    lines = [json.dumps(p.to_json()) for p in pieces]
    atomic_write_text(out / "events.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    atomic_write_text(out / "problems.txt", "".join(f"{p}\n" for p in problems))
    return out / "events.jsonl"
