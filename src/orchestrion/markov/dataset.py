"""The events codec over many files, on the engine's workers: `orchestrion encode events` and `train markov`.

MIDI files are read directly; ABC files (`.abc`, one or more tunes each) go through abc2midi
(`orchestrion.core.abcmidi`) first, one score per tune, so folk tunes train the same chains as MIDI.

    orchestrion encode events INPUT... --out DIR [--workers N] [--engine local|ray] [--address HOST:PORT]

DIR holds

    events.jsonl    one line per usable file, in input order: `PieceEvents.to_json()`
    problems.txt    one line per file left out, in input order: 'FILE: reason'
    .cache/         the engine's store (`orchestrion.core.engine`): each file's result, keyed by its path as
                    given and resolved, size, mtime and the codec's settings, so a rerun (after a `kill -9`)
                    encodes only the files it has not seen

Files go to local processes or Ray (`orchestrion.core.engine`) and results come back in input order, so
both files are a function of the inputs only, whatever the workers or the engine. `train markov` streams
the events (`events_of`) into counts instead, shard by shard, and keeps each shard's counts until the model
is written (`shard_paths`, `finished_shards`): those are its resume points; `training_report` lists the
files it read and left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path

from orchestrion.core.engine import Failed, Parallel, Store, file_key, imap
from orchestrion.core.music import MIDI_SUFFIXES
from orchestrion.markov import events as ev
from orchestrion.markov.events import PieceEvents

CACHE_VERSION = 3  # bump when the codec changes in a way its settings below do not show (2: ABC, 3: repairs)
REPAIRED = "repaired: "  # how a line about a damaged file that was read anyway starts, among the problems
CHUNK = 8  # files per engine task
ABC_SUFFIXES = (".abc",)
ABC_CORPORA = ("builtin:folk-abc",)
FINGERPRINT = json.dumps(
    [CACHE_VERSION, ev.STEPS_PER_QUARTER, list(ev.DURATIONS), ev.LOWEST_PITCH, ev.MAX_CHORD_PCS, ev.REST]
)


def _encode_one(path: str, context: object = None) -> PieceEvents | list[PieceEvents] | str:
    """Engine worker: one file's events (a list for an ABC file of several tunes), or why it cannot be used
    ('FILE: reason'; a batch reports it and goes on)."""
    from orchestrion.core.music import read_midi
    from orchestrion.errors import OrchestrionError

    if Path(path).suffix.lower() in ABC_SUFFIXES:
        return _encode_abc(path)
    try:
        score, dropped = read_midi(path)
        piece = ev.encode(score, transpose=True, name=path)
    except OrchestrionError as exc:
        return str(exc)
    if piece.is_empty:
        return f"{path}: no sounding notes"
    # A damaged file is read leniently; what was dropped travels with the piece, as a line of its own.
    return [piece, f"{REPAIRED}{path}: dropped {'; '.join(dropped)}"] if dropped else piece


def _encode_abc(path: str) -> PieceEvents | list[PieceEvents] | str:
    """Every tune of an ABC file through abc2midi into events; tunes abc2midi refuses are left out."""
    from orchestrion.core import abcfile, abcmidi
    from orchestrion.errors import OrchestrionError

    try:
        found = abcfile.split(abcfile.decode(Path(path).read_bytes()))
    except OSError as exc:
        return f"{path}: cannot read the file ({exc.strerror})"
    pieces, reasons = [], []
    for index, tune in enumerate(found.tunes, start=1):
        try:
            piece = ev.encode(abcmidi.abc_to_score(abcfile.with_fields(tune, found.fields)), name=f"{path}#{index}")
        except OrchestrionError as exc:
            reasons.append(getattr(exc, "reason", str(exc)))
            continue
        if not piece.is_empty:
            pieces.append(piece)
    if not pieces:
        return f"{path}: no tune abc2midi could compile" + (f" ({reasons[0]})" if reasons else "")
    return pieces[0] if len(pieces) == 1 else pieces


def _encode_json(path: str, context: object = None) -> list[dict] | str:
    """Engine worker for the store: `_encode_one` with the events as JSON (a list, one per piece)."""
    result = _encode_one(path)
    if isinstance(result, str):
        return result
    return [
        p.to_json() if isinstance(p, PieceEvents) else {"repaired": p}
        for p in (result if isinstance(result, list) else [result])
    ]


def events_of(
    paths: list[Path],
    *,
    workers: int = 0,
    engine: str = "local",
    address: str | None = None,
    label: str = "encoding events",
) -> Iterator[PieceEvents | list[PieceEvents] | str]:
    """Every file's events (a list for an ABC file of several tunes), or its problem as 'FILE: reason', in
    input order, streamed as they are made on
    `workers` processes (0 = all cores) of `engine` (local, or ray: a private Ray, or the cluster at `address`)."""
    parallel = Parallel(workers=workers, engine=engine, address=address, chunk=CHUNK)
    with closing(imap(_encode_one, [str(p) for p in paths], parallel, label=label)) as results:
        for path, result in zip(paths, results, strict=True):
            yield f"{path}: {result.reason}" if isinstance(result, Failed) else result


def split_results(results: Iterable[PieceEvents | list[PieceEvents] | str]) -> tuple[list[PieceEvents], list[str]]:
    """(pieces, problems) of `events_of`'s results, each in input order."""
    pieces: list[PieceEvents] = []
    problems: list[str] = []
    for result in results:
        if isinstance(result, str):
            problems.append(result)
        elif isinstance(result, list):
            pieces.extend(p for p in result if isinstance(p, PieceEvents))
            problems.extend(p for p in result if isinstance(p, str))  # the repaired lines (REPAIRED)
        else:
            pieces.append(result)
    return pieces, problems


def encode_files(
    paths: list[Path],
    workers: int = 0,
    description: str = "encoding events",
    *,
    engine: str = "local",
    address: str | None = None,
) -> tuple[list[PieceEvents], list[str]]:
    """Encode files on `workers` processes (0 = all cores) of `engine` (local, or ray: a private Ray, or the
    cluster at `address`): (pieces with notes, problems as 'file: reason'), in file order, so any workers and
    engine give the same pieces."""
    return split_results(events_of(paths, workers=workers, engine=engine, address=address, label=description))


def encode_to_dir(
    inputs: list[str], out: str | Path, *, workers: int = 0, engine: str = "local", address: str | None = None
) -> Path:
    """`orchestrion encode events`: every input file's events as one JSON line of `out/events.jsonl`.

    Files that cannot be read are listed in `out/problems.txt` and skipped; see the module docstring.
    """
    from orchestrion.core.files import write_atomic

    parallel = Parallel(workers=workers, engine=engine, address=address, chunk=CHUNK)
    paths = input_files(inputs)
    out = Path(out)
    store = Store(out / ".cache")
    # The path as given is in the key too: it is in the results (sources, problems), and one file may be
    # named relatively in one run and absolutely in the next.
    keys = [file_key(p, f"{FINGERPRINT}|{p}") for p in paths]
    results = store.map(_encode_json, [str(p) for p in paths], keys, parallel, label="encoding events")
    lines: list[str] = []
    problems: list[str] = []
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, Failed):
            problems.append(f"{path}: {result.reason}")
        elif isinstance(result, str):
            problems.append(result)
        else:
            records = result if isinstance(result, list) else [result]
            problems.extend(record["repaired"] for record in records if "repaired" in record)
            lines.extend(json.dumps(record) for record in records if "repaired" not in record)
    write_atomic(out / "events.jsonl", "\n".join(lines) + ("\n" if lines else ""))
    write_atomic(out / "problems.txt", "".join(f"{p}\n" for p in problems))
    store.prune(keys)
    return out / "events.jsonl"


def input_files(inputs: list[str]) -> list[Path]:
    """The files of `inputs`: MIDI files in folders and MIDI corpora; ABC from `builtin:folk-abc` and from
    .abc files named one by one (a folder gives its MIDI files only, so that a folder of MIDI with a stray
    ABC file in it trains what its MIDI alone trains)."""
    from orchestrion.core.corpora import resolve_inputs

    paths: list[Path] = []
    for item in inputs:
        abc = item in ABC_CORPORA or (Path(item).suffix.lower() in ABC_SUFFIXES and Path(item).is_file())
        paths += resolve_inputs([item], ABC_SUFFIXES if abc else MIDI_SUFFIXES)
    return paths


# ------------------------------------------------------------------------- train markov's resume points


def shard_paths(folder: Path, index: int) -> tuple[Path, Path]:
    """Where `train markov` keeps a shard's counts and metadata until the model is written."""
    return folder / f"shard-{index:05d}.safetensors", folder / f"shard-{index:05d}.json"


def shard_fingerprint(paths: list[Path]) -> str:
    """Which files (names, sizes, times) a shard was counted from, so a resumed run never reuses a stale one."""
    import hashlib

    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def finished_shards(shards: list[list[Path]], folder: Path) -> dict[int, dict]:
    """The metadata of every shard an earlier run counted from the same files, by shard index."""
    finished = {}
    for index, shard in enumerate(shards):
        counts_path, meta_path = shard_paths(folder, index)
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() and counts_path.is_file() else {}
        if meta.get("fingerprint") == shard_fingerprint(shard):
            finished[index] = meta
    return finished


def training_report(paths: list[Path], pieces: dict[str, int], problems: list[str]) -> dict:
    """What a run read: how many files, how many it learned from, and each file it skipped with the reason.

    Kept beside the model (report.json), not in config.json, so that the same music read from a folder
    with broken files in it gives the same model files.
    """
    by_prefix = {f"{p}: ": str(p) for p in paths}
    skipped, repaired = [], []
    for problem in problems:
        if problem.startswith(REPAIRED):
            repaired.append(problem[len(REPAIRED) :])
            continue
        path = next((p for prefix, p in by_prefix.items() if problem.startswith(prefix)), "")
        skipped.append({"path": path, "reason": problem[len(path) + 2 :] if path else problem})
    return {"files": len(paths), "pieces": sum(pieces.values()), "skipped": skipped, "repaired": repaired}
