"""Built-in corpora from the music21 package's bundled corpus (no network), and folder scanning.

    bach-chorales   ~400 four-part chorales (MusicXML)  -> MIDI, tracks soprano/alto/tenor/bass
    palestrina      ~1300 Palestrina pieces (Humdrum kern) -> MIDI, one track per voice
    folk-abc        ~11,600 ABC tunes of essenFolksong, oneills1850 and ryansMammoth -> one .abc per tune

music21 needs 0.1-1 s per piece, so each corpus is converted once, in parallel (`orchestrion.core.engine`:
local processes, or Ray with `corpus export --engine ray`), into a cache directory (`~/.cache/orchestrion`,
or $ORCHESTRION_CACHE, or an explicit `cache_dir`). Every file is written under a temporary name and
renamed, so an interrupted conversion leaves only whole files and the next call carries on where it
stopped. A `manifest.json` written when a corpus is complete lets later calls return
the file list without looking at music21 at all. Pieces that fail are reported and skipped.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrion.core import abcfile
from orchestrion.core.files import write_atomic
from orchestrion.errors import BadInput

if TYPE_CHECKING:
    import symusic

    from orchestrion.core.engine import Parallel

CORPORA: dict[str, str] = {
    "bach-chorales": "J. S. Bach's four-part chorales (music21 corpus), as MIDI with soprano/alto/tenor/bass tracks",
    "palestrina": "Palestrina's masses and motets (music21 corpus, Humdrum kern), as MIDI with one track per voice",
    "folk-abc": "folk tunes in ABC (music21's essenFolksong, oneills1850, ryansMammoth), one .abc file per tune",
}
# Bump when a conversion changes: the cache lives in "<name>-v<version>", so old files are never reused.
CONVERTER_VERSION = 1
FOLK_SOURCES = ("essenFolksong", "oneills1850", "ryansMammoth")
TPQ = 480
DEFAULT_QPM = 90.0  # neither the chorales nor the kern files carry tempo marks
VELOCITY = 80
CHOIR_AAHS = 52  # General MIDI program 53 (0-based 52): a sung corpus sounds sung when rendered
SATB = ("soprano", "alto", "tenor", "bass")
_SOURCE_PREFERENCE = {".mxl": 0, ".xml": 1, ".musicxml": 1, ".krn": 2}


# -------------------------------------------------------------------------------------------- paths


def cache_dir(override: Path | None = None) -> Path:
    """The conversion cache: `override`, else $ORCHESTRION_CACHE, else ~/.cache/orchestrion."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("ORCHESTRION_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "orchestrion"


def _corpus_root(name: str, override: Path | None) -> Path:
    return cache_dir(override) / f"{name}-v{CONVERTER_VERSION}"


def music21_corpus_dir() -> Path:
    """music21's bundled corpus folder, found without importing music21 (which takes a second)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("the music21 package is not installed; the built-in corpora come from it")
    return Path(next(iter(spec.submodule_search_locations))) / "corpus"


def _check_name(name: str) -> None:
    if name not in CORPORA:
        raise BadInput(f"unknown corpus {name!r}; the built-in corpora are: {', '.join(CORPORA)}")


def _read_manifest(root: Path) -> dict:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return manifest if manifest.get("version") == CONVERTER_VERSION else {}


def _write_manifest(root: Path, manifest: dict) -> None:
    write_atomic(root / "manifest.json", (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())


# ------------------------------------------------------------------------------- music21 -> symusic


def _sources(name: str) -> list[Path]:
    """The music21 corpus files of a MIDI corpus, one per piece, sorted by name."""
    folder = music21_corpus_dir() / ("bach" if name == "bach-chorales" else "palestrina")
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if suffix not in _SOURCE_PREFERENCE:
            continue
        # A few chorales exist as both MusicXML and kern: keep one, the richer MusicXML.
        kept = by_stem.get(path.stem)
        if kept is None or _SOURCE_PREFERENCE[suffix] < _SOURCE_PREFERENCE[kept.suffix.lower()]:
            by_stem[path.stem] = path
    return [by_stem[stem] for stem in sorted(by_stem)]


def _voice_name(part: object, index: int) -> str:
    name = (getattr(part, "partName", None) or getattr(part, "id", None) or "").strip()
    # music21 invents numeric or hex ids for unnamed parts; they say nothing to a reader.
    if not name or re.fullmatch(r"[0-9a-fx]+", str(name).lower()):
        return f"voice {index + 1}"
    return str(name).lower()


def pick_satb(parts: list) -> list[tuple[str, object]]:
    """The soprano, alto, tenor and bass parts of a chorale (other instruments dropped)."""
    found: dict[str, object] = {}
    for part in parts:
        label = (getattr(part, "partName", None) or str(getattr(part, "id", "")) or "").strip().lower()
        for voice in SATB:
            if voice not in found and (label.startswith(voice) or label in (voice[0], voice[0] + ".")):
                found[voice] = part
                break
    if len(found) == 4:
        return [(voice, found[voice]) for voice in SATB]
    if len(parts) == 4:  # unnamed parts in score order are S, A, T, B
        return list(zip(SATB, parts, strict=True))
    labels = [getattr(p, "partName", None) or getattr(p, "id", "?") for p in parts]
    raise BadInput(f"not a four-part chorale: its {len(parts)} parts are {labels}")


def music21_to_score(m21: object, *, chorale: bool = False) -> symusic.Score:
    """Convert a parsed music21 score into a symusic Score (ticks at 480 per quarter).

    Ties are merged, grace notes dropped, and a pickup measure is padded so that bar lines fall on
    whole bars of the MIDI file (what bar-based encodings and the piano roll expect). With `chorale`,
    the result has exactly the four tracks soprano, alto, tenor, bass.
    """
    import numpy as np
    import symusic
    from music21 import stream

    if isinstance(m21, stream.Opus):
        m21 = m21.scores[0]
    parts = list(m21.parts) if hasattr(m21, "parts") else []
    if not parts:
        raise BadInput("the score has no parts")
    voices = pick_satb(parts) if chorale else [(_voice_name(p, i), p) for i, p in enumerate(parts)]

    measures = list(parts[0].getElementsByClass("Measure"))
    shift = float(measures[0].paddingLeft) if measures else 0.0
    score = symusic.Score(TPQ)

    def tick(quarters: float) -> int:
        return round((float(quarters) + shift) * TPQ)

    flat0 = parts[0].flatten()
    tempos = list(flat0.getElementsByClass("MetronomeMark"))
    qpm = float(tempos[0].getQuarterBPM() or DEFAULT_QPM) if tempos else DEFAULT_QPM
    score.tempos.append(symusic.Tempo(0, qpm))
    for mark in tempos[1:]:
        if mark.getQuarterBPM():
            score.tempos.append(symusic.Tempo(tick(mark.offset), float(mark.getQuarterBPM())))
    for i, ts in enumerate(flat0.getElementsByClass("TimeSignature")):
        score.time_signatures.append(
            symusic.TimeSignature(0 if i == 0 else tick(ts.offset), ts.numerator, ts.denominator)
        )
    for i, ks in enumerate(flat0.getElementsByClass("KeySignature")):
        minor = 1 if getattr(ks, "mode", "major") == "minor" else 0
        score.key_signatures.append(symusic.KeySignature(0 if i == 0 else tick(ks.offset), int(ks.sharps), minor))

    for name, part in voices:
        starts, durations, pitches = _part_notes(part, tick)
        track = symusic.Track(name, CHOIR_AAHS, False)
        if starts:
            start = np.asarray(starts, dtype=np.int32)
            pitch = np.clip(np.asarray(pitches), 0, 127).astype(np.int8)
            order = np.lexsort((pitch, start))
            track.notes = symusic.Note.from_numpy(
                start[order],
                np.asarray(durations, dtype=np.int32)[order],
                pitch[order],
                np.full(len(start), VELOCITY, dtype=np.int8),
            )
        score.tracks.append(track)
    if sum(len(t.notes) for t in score.tracks) == 0:
        raise BadInput("the score has no notes")
    return score


def _part_notes(part: object, tick: Callable[[float], int]) -> tuple[list[int], list[int], list[int]]:
    """(starts, durations, pitches) of a part in ticks, tied notes merged into one.

    music21's `stripTies` does the same but costs ~30x more than this single pass over the flat part.
    """
    starts: list[int] = []
    durations: list[int] = []
    pitches: list[int] = []
    open_ties: dict[int, int] = {}  # MIDI pitch -> index of the note its tie continues
    for element in part.flatten().notes:
        quarters = float(element.quarterLength)
        if quarters <= 0:  # grace notes have no duration of their own
            continue
        start, end = tick(element.offset), tick(float(element.offset) + quarters)
        members = element.notes if hasattr(element, "notes") and element.isChord else [element]
        for note in members:
            midi = int(note.pitch.midi)
            tie = (note.tie or element.tie).type if (note.tie or element.tie) else None
            if tie in ("stop", "continue") and midi in open_ties:
                index = open_ties[midi]
                durations[index] = max(1, end - starts[index])
                if tie == "stop":
                    del open_ties[midi]
                continue
            open_ties.pop(midi, None)
            starts.append(start)
            durations.append(max(1, end - start))
            pitches.append(midi)
            if tie in ("start", "continue"):
                open_ties[midi] = len(starts) - 1
    return starts, durations, pitches


def _convert_one(job: tuple[str, str, str], context: object = None) -> str | None:
    """Engine worker: convert one music21 corpus file (corpus, source, dest) to MIDI at `dest`; returns an error
    message or None."""
    from orchestrion.core.files import atomic_path

    corpus, source, dest = job
    try:
        from music21 import converter

        # forceSource: otherwise music21 keeps a pickled copy of every parsed file in its scratch folder.
        score = music21_to_score(converter.parse(source, forceSource=True), chorale=corpus == "bach-chorales")
        with atomic_path(dest) as tmp:
            score.dump_midi(str(tmp))
        return None
    except BadInput as exc:
        return exc.reason
    except Exception as exc:  # music21 raises many kinds of errors on odd scores; report and go on
        return f"{type(exc).__name__}: {exc}"


def _run_parallel(
    jobs: list[tuple[str, str, str]],
    parallel: Parallel,
    label: str,
    on_result: Callable[[tuple[str, str, str], str | None], None],
) -> None:
    """Run `_convert_one` over `jobs` on the engine's workers (`orchestrion.core.engine`), with a progress bar;
    `on_result(job, error or None)` in job order, as they come."""
    from orchestrion.core.engine import Failed, imap

    for job, error in zip(jobs, imap(_convert_one, jobs, parallel, label=f"converting {label}"), strict=True):
        if isinstance(error, Failed):
            error = error.reason
        if error is None and not Path(job[2]).is_file():
            raise BadInput(
                "a worker wrote this file where this machine cannot see it: with --engine ray on several machines, "
                "the corpus cache must be on a file system that every node mounts at the same path",
                job[2],
            )
        on_result(job, error)


def _midi_corpus(
    name: str, workers: int, override: Path | None, limit: int | None, parallel: Parallel | None = None
) -> list[Path]:
    """The MIDI files of a music21 corpus, converting the missing ones on `parallel`'s workers (default:
    `workers` local processes)."""
    from orchestrion.core.engine import Parallel

    parallel = parallel or Parallel(workers=workers, chunk=1)  # a piece is a big task (0.1-1 s)
    root = _corpus_root(name, override)
    manifest = _read_manifest(root)
    if manifest.get("complete"):
        files = [root / "files" / f for f in manifest["files"]]
        return files[:limit] if limit is not None else files

    sources = _sources(name)
    wanted = sources[:limit] if limit is not None else sources
    failed: dict[str, str] = dict(manifest.get("failed", {}))
    out_dir = root / "files"
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        (name, str(src), str(out_dir / f"{src.stem}.mid"))
        for src in wanted
        if not (out_dir / f"{src.stem}.mid").is_file() and src.name not in failed
    ]

    def record(job: tuple[str, str, str], error: str | None) -> None:
        if error is not None:
            failed[Path(job[1]).name] = error

    try:
        if jobs:
            _run_parallel(jobs, parallel, name, record)
    finally:
        # Written even when interrupted, so that known failures are not retried on the next call.
        done = sorted(f"{s.stem}.mid" for s in sources if (out_dir / f"{s.stem}.mid").is_file())
        complete = all((out_dir / f"{s.stem}.mid").is_file() or s.name in failed for s in sources)
        _write_manifest(
            root,
            {
                "version": CONVERTER_VERSION,
                "corpus": name,
                "complete": complete,
                "sources": len(sources),
                "files": done,
                "failed": failed,
            },
        )
    new_failures = [Path(j[1]).name for j in jobs if Path(j[1]).name in failed]
    if new_failures:
        _report_failures(name, {k: failed[k] for k in new_failures})
    return [out_dir / f"{s.stem}.mid" for s in wanted if (out_dir / f"{s.stem}.mid").is_file()]


def _report_failures(name: str, failures: dict[str, str]) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    console.print(f"[yellow]{len(failures)} piece(s) of {name} could not be converted and were skipped:[/yellow]")
    for source, reason in list(failures.items())[:20]:
        console.print(f"  {source}: {reason}", markup=False, highlight=False)
    if len(failures) > 20:
        console.print(f"  ... and {len(failures) - 20} more (see manifest.json in the cache)")


# ------------------------------------------------------------------------------------------ folk ABC


def _scan_folk() -> list[dict]:
    """Every tune of music21's folk ABC files, each carrying its file's header fields after its X: line."""
    records = []
    base = music21_corpus_dir()
    for source in FOLK_SOURCES:
        for path in sorted((base / source).rglob("*.abc")):
            found = abcfile.split(abcfile.decode(path.read_bytes()))
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.relative_to(base / source).with_suffix("").as_posix())
            for index, tune in enumerate(found.tunes, start=1):
                tune = abcfile.with_fields(tune, found.fields)
                records.append(
                    {"id": f"{source}-{stem}-{index:04d}", "source": source, "title": abcfile.title(tune), "abc": tune}
                )
    return records


def folk_tunes(cache_dir: Path | None = None) -> list[dict]:
    """The built-in folk tunes: records {"id", "source", "title", "abc"}, one per tune (~11,600).

    Read once from music21's ABC files (split by `orchestrion.core.abcfile`) and kept as JSONL in the cache.
    """
    path = _corpus_root("folk-abc", cache_dir) / "tunes.jsonl"
    if path.is_file():
        try:
            with open(path, encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]
        except ValueError:  # a damaged cache (cut short, overwritten) is rebuilt, never half-read
            pass
    records = _scan_folk()
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return records


def _folk_corpus(override: Path | None, limit: int | None) -> list[Path]:
    root = _corpus_root("folk-abc", override)
    manifest = _read_manifest(root)
    if manifest.get("complete"):
        files = [root / "files" / f for f in manifest["files"]]
        return files[:limit] if limit is not None else files
    from rich.progress import track

    records = sorted(folk_tunes(override), key=lambda r: r["id"])
    wanted = records[:limit] if limit is not None else records
    out_dir = root / "files"
    for record in track(wanted, description="writing folk-abc tunes", transient=True, disable=len(wanted) < 500):
        target = out_dir / f"{record['id']}.abc"
        if not target.is_file():
            write_atomic(target, record["abc"])
    if limit is None:
        _write_manifest(
            root,
            {
                "version": CONVERTER_VERSION,
                "corpus": "folk-abc",
                "complete": True,
                "files": [f"{r['id']}.abc" for r in records],
                "failed": {},
            },
        )
    return [out_dir / f"{r['id']}.abc" for r in wanted]


# ------------------------------------------------------------------------------------------ public


def corpus_files(name: str, *, workers: int = 0, cache_dir: Path | None = None, limit: int | None = None) -> list[Path]:
    """The cached files of a built-in corpus, converting them first if needed (sorted by name).

    MIDI for bach-chorales and palestrina, one .abc file per tune for folk-abc. `workers` is the number
    of conversion processes (0 = all cores); `limit` converts and returns only the first N pieces.
    """
    _check_name(name)
    if limit is not None and limit < 0:
        raise BadInput(f"limit must be 0 or more, not {limit}")
    if name == "folk-abc":
        return _folk_corpus(cache_dir, limit)
    return _midi_corpus(name, workers, cache_dir, limit)


def resolve_inputs(inputs: list[str], suffixes: tuple[str, ...]) -> list[Path]:
    """Expand `builtin:NAME` corpora, folders (recursively, sorted) and files into a list of files.

    Folders contribute the files whose suffix is in `suffixes`; named files are taken as they are.
    A missing path, an unknown corpus, or a corpus or folder with no such files raises BadInput.
    """
    wanted = tuple(s.lower() for s in suffixes)
    result: list[Path] = []
    for item in inputs:
        if item.startswith("builtin:"):
            corpus = item.removeprefix("builtin:")
            _check_name(corpus)
            files = [p for p in corpus_files(corpus) if p.suffix.lower() in wanted]
            if not files:
                raise BadInput(
                    f"the corpus {corpus!r} has no {'/'.join(wanted)} files (it holds "
                    f"{'ABC' if corpus == 'folk-abc' else 'MIDI'})",
                    item,
                )
            result.extend(files)
            continue
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
            if not files:
                raise BadInput(f"the folder holds no {'/'.join(wanted)} files", path)
            result.extend(files)
        elif path.is_file():
            result.append(path)
        else:
            raise BadInput("no such file or folder", path)
    return result


def export_corpus(
    name: str,
    out: Path,
    *,
    workers: int = 0,
    cache_dir: Path | None = None,
    engine: str = "local",
    address: str | None = None,
) -> list[Path]:
    """Copy a built-in corpus out of the cache into `out` (converting it first if needed).

    Pieces are converted on `workers` processes (0 = all cores) of `engine` (local, or ray: a private Ray,
    or the cluster at `address`); the files are the same whatever they are. Every cached file is checked
    first (MIDI loads whole, ABC equals its tune), and a damaged one is converted again, so a cache cut short
    by a full disk or a crash is never exported as it is.
    """
    from rich.console import Console

    from orchestrion.core.engine import Parallel

    _check_name(name)
    parallel = Parallel(workers=workers, engine=engine, address=address, chunk=1)
    if name == "folk-abc":
        files = corpus_files(name, cache_dir=cache_dir)
    else:
        files = _midi_corpus(name, workers, cache_dir, None, parallel)
    files = _repair_cache(name, files, parallel, cache_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in files:
        dest = out / src.name
        stat = src.stat()
        # copy2 keeps the modification time, so an unchanged file is recognised and not copied again.
        if not (dest.is_file() and dest.stat().st_size == stat.st_size and dest.stat().st_mtime_ns == stat.st_mtime_ns):
            shutil.copy2(src, dest)
        written.append(dest)
    kind = "ABC tunes" if name == "folk-abc" else "MIDI files"
    Console(stderr=True).print(f"{name}: {len(written)} {kind} in {out}")
    return written


def _cached_midi_problem(path: Path) -> str | None:
    from orchestrion.core.music import load_midi

    try:
        load_midi(path)
    except BadInput as exc:
        return exc.reason
    return None


def _repair_cache(name: str, files: list[Path], parallel: Parallel, override: Path | None) -> list[Path]:
    """`files` with every damaged cached file converted again (or dropped, and reported, when that fails)."""
    from rich.console import Console

    console = Console(stderr=True)
    if name == "folk-abc":
        tunes = {f"{r['id']}.abc": r["abc"].encode("utf-8") for r in folk_tunes(override)}
        damaged = [p for p in files if not p.is_file() or p.read_bytes() != tunes.get(p.name)]
        for path in damaged:
            if path.name in tunes:
                write_atomic(path, tunes[path.name])
        if damaged:
            console.print(f"[yellow]{len(damaged)} cached tune(s) of {name} were damaged; written again[/yellow]")
        return [p for p in files if p.name in tunes]
    problems = {p: reason for p in files if (reason := _cached_midi_problem(p)) is not None}
    if not problems:
        return files
    console.print(f"[yellow]{len(problems)} cached file(s) of {name} were damaged; converting them again:[/yellow]")
    for path, reason in list(problems.items())[:20]:
        console.print(f"  {path.name}: {reason}", markup=False, highlight=False, soft_wrap=True)
    by_name = {f"{src.stem}.mid": src for src in _sources(name)}
    for path in problems:
        path.unlink(missing_ok=True)
    jobs = [(name, str(by_name[p.name]), str(p)) for p in problems if p.name in by_name]
    failed: dict[str, str] = {}

    def record(job: tuple[str, str, str], error: str | None) -> None:
        if error is not None:
            failed[Path(job[1]).name] = error

    if jobs:
        _run_parallel(jobs, parallel, f"{name} (damaged cache files)", record)
    lost = {p for p in problems if _cached_midi_problem(p) is not None}
    if lost:
        root = _corpus_root(name, override)
        manifest = _read_manifest(root)
        if manifest:
            manifest["files"] = [f for f in manifest["files"] if f not in {p.name for p in lost}]
            manifest["failed"] = {**manifest.get("failed", {}), **failed}
            _write_manifest(root, manifest)
        reasons = {
            p.name: failed.get(by_name[p.name].name, "converted again, still damaged")
            if p.name in by_name
            else "its music21 source is gone"
            for p in lost
        }
        _report_failures(name, reasons)
    return [p for p in files if p not in lost]


def cached_count(name: str, override: Path | None = None) -> tuple[int, bool]:
    """How many files of a corpus are in the cache, and whether its conversion is complete."""
    root = _corpus_root(name, override)
    manifest = _read_manifest(root)
    if manifest.get("complete"):
        return len(manifest["files"]), True
    folder = root / "files"
    count = sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else 0
    return count, False


def print_corpus_table(override: Path | None = None) -> None:
    """Print the built-in corpora with their cache state (for `orchestrion corpus list`)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"built-in corpora (cache: {cache_dir(override)})")
    table.add_column("name", style="bold")
    table.add_column("format")
    table.add_column("cached")
    table.add_column("description")
    for name, description in CORPORA.items():
        count, complete = cached_count(name, override)
        state = (
            f"{count} files"
            if complete
            else (f"{count} so far (partial)" if count else "not yet (converted on first use)")
        )
        table.add_row(name, "ABC" if name == "folk-abc" else "MIDI", state, description)
    Console().print(table)
