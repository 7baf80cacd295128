"""Fuzzing orchestrion's readers: seeded mutations of real inputs, and a harness that classifies each run.

The promise under test: every reader (MIDI, mmm tokens, ABC text, audio), fed any input, either decodes it
or raises our own error type (`OrchestrionError`, normally `BadInput`) within a time limit, without
crashing the process or growing its memory. `fuzz_reader` runs one reader over a stream of inputs and counts
what happened; `tests/system/test_fuzz.py` runs it briefly in the default suite and at length under `slow`, and
`benchmarks/fuzz.py` prints the table.

The inputs come from `orchestrion.testing.fuzz_inputs` (mutated fixture and corpus files, and inputs generated from
scratch), all from one seeded `random.Random` per reader, so a failure is reproduced by reader, seed and index.
"""

from __future__ import annotations

import faulthandler
import json
import os
import random
import resource
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrion.abc import text as abc
from orchestrion.core import abcfile
from orchestrion.core.abcmidi import Validity, compile_notes
from orchestrion.core.audio import load_audio
from orchestrion.core.corpora import cache_dir
from orchestrion.core.isolate import Isolated
from orchestrion.core.music import load_midi
from orchestrion.core.render import render_file
from orchestrion.errors import BadInput, OrchestrionError
from orchestrion.mmm.codec import decode, encode_batch, encode_windows
from orchestrion.mmm.vocabulary import MMMOptions, vocabulary
from orchestrion.testing.fuzz_inputs import abc_inputs, midi_inputs, mmm_inputs, wav_inputs, wav_seeds

# ------------------------------------------------------------------------------------------ harness


class Hang(BaseException):
    """Raised by the per-input timer; a BaseException so that no `except Exception` in a reader swallows it."""


@dataclass
class Failure:
    """One input that broke the promise: what it raised and the input itself (bytes or text)."""

    index: int
    kind: str  # "foreign" or "hang"
    error: str
    data: bytes | str


@dataclass
class FuzzStats:
    reader: str
    inputs: int = 0
    decoded: int = 0
    our_error: int = 0
    foreign: int = 0
    hangs: int = 0
    max_ms: float = 0.0
    seconds: float = 0.0
    rss_start: int = 0  # bytes, after the warm-up inputs
    rss_peak: int = 0  # the highest resident memory seen at the samples (every 256 inputs)
    maxrss: int = 0  # bytes: the process's peak resident memory when the run ended (getrusage, spikes included)
    failures: list[Failure] = field(default_factory=list)
    errors_seen: dict[str, int] = field(default_factory=dict)  # our error messages' first words -> count
    contained: int = 0  # child processes that died by a signal on an input (render readers): ours, not a crash
    crashed: list[bytes | str] = field(default_factory=list)  # the first inputs that ended a child, to study

    @property
    def rss_growth(self) -> int:
        return max(0, self.rss_peak - self.rss_start)


def rss_bytes() -> int:
    """The process's resident memory now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fuzz_reader(
    reader: str,
    run: Callable[[object], object],
    inputs: Iterator[object],
    *,
    limit_s: float = 2.0,
    warmup: int = 200,
    keep_failures: int = 20,
) -> FuzzStats:
    """Run `run` on every input with a per-input time limit and classify the outcome.

    The soft limit is SIGALRM (raises `Hang` at the next Python bytecode, which also interrupts `re`); the hard
    limit is faulthandler's watchdog thread, which dumps every thread's stack and exits the process when a
    reader is stuck in C code for ten times the soft limit. The limits need the main thread; elsewhere
    inputs run without them.
    """
    stats = FuzzStats(reader)
    main = threading.current_thread() is threading.main_thread()
    previous_handler = previous_timer = None
    if main:

        def fire(signum: int, frame: object) -> None:
            raise Hang

        previous_handler = signal.signal(signal.SIGALRM, fire)
        previous_timer = signal.setitimer(signal.ITIMER_REAL, 0)  # pytest-timeout's, restored below
    began = time.perf_counter()
    try:
        for index, data in enumerate(inputs):
            if index == warmup:
                stats.rss_start = stats.rss_peak = rss_bytes()
            t0 = time.perf_counter()
            try:
                if main:
                    faulthandler.dump_traceback_later(10 * limit_s, exit=True)
                    signal.setitimer(signal.ITIMER_REAL, limit_s)
                try:
                    run(data)
                finally:
                    if main:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                        faulthandler.cancel_dump_traceback_later()
                stats.decoded += 1
            except OrchestrionError as exc:
                stats.our_error += 1
                words = " ".join(str(getattr(exc, "reason", exc)).split()[:4])
                stats.errors_seen[words] = stats.errors_seen.get(words, 0) + 1
            except Hang:
                stats.hangs += 1
                if len(stats.failures) < keep_failures:
                    stats.failures.append(Failure(index, "hang", f"over {limit_s} s", data))
            except Exception as exc:  # the promise is broken: recorded, not raised, so the run goes on
                stats.foreign += 1
                if len(stats.failures) < keep_failures:
                    stats.failures.append(Failure(index, "foreign", f"{type(exc).__name__}: {exc}"[:500], data))
            stats.max_ms = max(stats.max_ms, 1000 * (time.perf_counter() - t0))
            stats.inputs += 1
            if index >= warmup and index % 256 == 0:
                stats.rss_peak = max(stats.rss_peak, rss_bytes())
    finally:
        if main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous_handler)
            if previous_timer and previous_timer[0] > 0:
                signal.setitimer(signal.ITIMER_REAL, max(previous_timer[0] - (time.perf_counter() - began), 0.01))
    if stats.inputs > warmup:
        stats.rss_peak = max(stats.rss_peak, rss_bytes())
    stats.seconds = time.perf_counter() - began
    stats.maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return stats


# ----------------------------------------------------------------------------------------- readers


def read_midi(data: bytes) -> object:
    """What `encode` does with one file: load it, then encode it into 4-bar windows as the pipeline does."""
    score = load_midi(data)
    result = encode_batch([score], MMMOptions(bars=4, hop=2))[0]
    if isinstance(result, OrchestrionError):
        raise result
    return result


def read_midi_path(data: bytes, path: Path) -> object:
    path.write_bytes(data)
    return load_midi(path)


def read_mmm(text: str) -> object:
    """The CLI's `decode mmm`: a line of tokens into a score, which is then written as MIDI."""
    score, _ = decode(text)
    return score.dumps_midi()


def read_abc(text: str) -> object:
    """Every pure-Python ABC step a tune or a generated sample goes through."""
    tunes = abc.split_tunes(text)
    cleaned = abc.clean(text)
    spaceless = abc.spaceless(cleaned.abc)
    line = abc.escape_newlines(spaceless)
    readable = abc.to_readable(line)
    abc.is_binary(text)
    return tunes, readable, abc.header(readable)


def read_abc2midi(text: str) -> object:
    """abc2midi on a tune (an external program): it must be classified, never raise or run past its timeout."""
    validity, notes = compile_notes(text, timeout=5)
    if not isinstance(validity, Validity) or (notes is None) != (validity.status == "errors"):
        raise AssertionError(f"unclassified abc2midi result {validity!r}")
    if notes is None:  # classified as errors: counted with our errors
        raise BadInput("abc2midi: " + (validity.messages or ["errors"])[0])
    return notes


def read_render(text: str, scratch: Path, child: Isolated, limit_s: float) -> object:
    """`orchestrion render FILE.abc --svg`: each tune compiled by abc2midi, then engraved in the child process."""
    path = scratch / "input.abc"
    path.write_text(text, encoding="utf-8", errors="replace")
    return render_file(path, svg=scratch / "out.svg", child=child, problems=[], timeout=limit_s)


def read_engrave(text: str, scratch: Path, child: Isolated, limit_s: float) -> object:
    """verovio on the text after our own check (`abcfile.engraving_problem`) and no abc2midi before it to refuse
    what it cannot compile, in the child: `contained` counts the crashes the check does not foresee."""
    problem = abcfile.engraving_problem(text)
    if problem:
        raise BadInput(problem)
    path = scratch / "input.abc"
    path.write_text(text, encoding="utf-8", errors="replace")
    return child.call("svg", path, scratch / "out.svg", timeout=limit_s, name=path)


def read_render_midi(data: bytes, scratch: Path, child: Isolated, limit_s: float) -> object:
    """`orchestrion render FILE.mid --svg --wav`: FluidSynth, then music21 and verovio, in the child process."""
    path = scratch / "input.mid"
    path.write_bytes(data)
    outs = {"svg": scratch / "out.svg", "wav": scratch / "out.wav"}
    return render_file(path, **outs, child=child, problems=[], timeout=limit_s, sample_rate=8000)


def read_audio(data: bytes, path: Path) -> object:
    path.write_bytes(data)
    return load_audio(path)


def read_audio_soundfile(data: bytes, path: Path) -> object:
    """`load_audio` with the ffmpeg fallback turned into BadInput: the in-process path, fast enough for 10^5 runs."""
    path.write_bytes(data)
    return load_audio(path, use_ffmpeg=False)


# ------------------------------------------------------------------------------------------- seeds


def midi_seeds(fixtures: Path, corpus_limit: int = 0) -> list[bytes]:
    """The MIDI fixtures, plus up to `corpus_limit` cached corpus files (never converts a corpus)."""
    files = sorted(fixtures.glob("*.mid"))
    if corpus_limit:
        for name in ("bach-chorales-v1", "palestrina-v1"):
            files += sorted((cache_dir() / name / "files").glob("*.mid"))[: corpus_limit // 2]
    return [f.read_bytes() for f in files if 0 < f.stat().st_size < 200_000]


def abc_seeds(fixtures: Path, corpus_limit: int = 0) -> list[str]:
    seeds = [p.read_text(encoding="utf-8") for p in sorted(fixtures.glob("*.abc"))]
    if corpus_limit:
        jsonl = cache_dir() / "folk-abc-v1" / "tunes.jsonl"
        if jsonl.is_file():
            with jsonl.open(encoding="utf-8") as f:
                for i, line in enumerate(f):
                    if i >= corpus_limit:
                        break
                    seeds.append(json.loads(line)["abc"])
    return seeds


def mmm_seeds(midi: list[bytes]) -> list[list[str]]:
    out = []
    for data in midi:
        try:
            out.extend(encode_windows(load_midi(data), MMMOptions(bars=4, hop=4))[:3])
        except OrchestrionError:
            continue
    return out


# ------------------------------------------------------------------------------------------ targets


def run_all(
    fixtures: Path,
    n: int,
    *,
    seed: int = 0,
    corpus_limit: int = 0,
    readers: tuple[str, ...] = ("midi", "midi-path", "mmm", "abc", "audio-soundfile", "audio-ffmpeg"),
    ffmpeg_n: int | None = None,
    abc2midi_n: int | None = None,
    render_midi_n: int | None = None,
    limit_s: float = 2.0,
    warmup: int = 200,
) -> list[FuzzStats]:
    """Fuzz each named reader with `n` inputs; the external programs may get fewer (`ffmpeg_n`, default `n // 50`,
    for the ffmpeg fallback: one process per input; `abc2midi_n`, default `n // 100`, for abc2midi;
    `render_midi_n`, default `n // 50`, for rendering MIDI through music21, verovio and FluidSynth).

    The render readers (`render`, `engrave`, `render-midi`) engrave and synthesise in one child process,
    started again after a crash; `FuzzStats.contained` counts the children that died on an input."""
    midi = midi_seeds(fixtures, corpus_limit)
    results = []
    with tempfile.TemporaryDirectory(prefix="orchestrion-fuzz-") as tmp:
        scratch = Path(tmp)
        for reader in readers:
            rng = random.Random(f"{seed}:{reader}")
            if reader == "midi":
                stats = fuzz_reader(reader, read_midi, midi_inputs(midi, rng, n), limit_s=limit_s, warmup=warmup)
            elif reader == "midi-path":
                path = scratch / "input.mid"
                count = n
                stats = fuzz_reader(
                    reader,
                    lambda d, p=path: read_midi_path(d, p),
                    midi_inputs(midi, rng, count),
                    limit_s=limit_s,
                    warmup=min(warmup, count // 2),
                )
            elif reader == "mmm":
                inputs = mmm_inputs(mmm_seeds(midi[:40]), vocabulary(), rng, n)
                stats = fuzz_reader(reader, read_mmm, inputs, limit_s=limit_s, warmup=warmup)
            elif reader == "abc":
                stats = fuzz_reader(
                    reader,
                    read_abc,
                    abc_inputs(abc_seeds(fixtures, corpus_limit), rng, n),
                    limit_s=limit_s,
                    warmup=warmup,
                )
            elif reader in ("render", "engrave", "render-midi"):
                stats = _fuzz_render(reader, fixtures, corpus_limit, midi, rng, scratch, n, render_midi_n, limit_s)
            elif reader == "abc2midi":
                count = abc2midi_n if abc2midi_n is not None else max(n // 100, 1)
                inputs = abc_inputs(abc_seeds(fixtures, corpus_limit), rng, count)
                stats = fuzz_reader(
                    reader, read_abc2midi, inputs, limit_s=max(limit_s, 30.0), warmup=min(20, count // 2)
                )
            elif reader == "audio-soundfile":
                path = scratch / "input.wav"
                seeds = [*wav_seeds(rng), *(p.read_bytes() for p in sorted(fixtures.glob("*.wav")))]
                inputs = wav_inputs(seeds, rng, n)
                stats = fuzz_reader(
                    reader, lambda d, p=path: read_audio_soundfile(d, p), inputs, limit_s=limit_s, warmup=warmup
                )
            elif reader == "audio-ffmpeg":
                # Inputs libsndfile rejects go to ffmpeg (one process each): the same mutations, fewer of them,
                # half under a suffix only ffmpeg reads.
                count = ffmpeg_n if ffmpeg_n is not None else max(n // 50, 1)
                seeds = [*wav_seeds(rng), *(p.read_bytes() for p in sorted(fixtures.glob("*.wav")))]
                paths = [scratch / "input.wav", scratch / "input.mp3"]
                inputs = wav_inputs(seeds, rng, count)
                stats = fuzz_reader(
                    reader,
                    lambda d, r=rng, p=paths: read_audio(d, p[r.random() < 0.5]),
                    inputs,
                    limit_s=max(limit_s, 30.0),
                    warmup=min(20, count // 2),
                )
            else:
                raise ValueError(f"unknown reader {reader!r}")
            results.append(stats)
    return results


def _fuzz_render(
    reader: str,
    fixtures: Path,
    corpus_limit: int,
    midi: list[bytes],
    rng: random.Random,
    scratch: Path,
    n: int,
    render_midi_n: int | None,
    limit_s: float,
) -> FuzzStats:
    """One render reader over its inputs, with one child process (recycled every 2,000 calls) for all of them.

    The child's limit is below the harness's, so a stuck engraver is killed and reported as our error."""
    child_limit = max(limit_s, 10.0)
    with Isolated(quiet=True, recycle=2_000) as child:
        if reader == "render-midi":
            count = render_midi_n if render_midi_n is not None else max(n // 50, 1)
            run = lambda d: read_render_midi(d, scratch, child, child_limit)  # noqa: E731
            inputs: Iterator = midi_inputs(midi, rng, count)
        else:
            count = n
            read = read_render if reader == "render" else read_engrave
            run = lambda t: read(t, scratch, child, child_limit)  # noqa: E731
            inputs = abc_inputs(abc_seeds(fixtures, corpus_limit), rng, count)
        crashed: list[bytes | str] = []

        def kept(data: bytes | str, read: Callable[[object], object] = run) -> object:
            before = child.crashes
            try:
                return read(data)
            finally:
                if child.crashes > before and len(crashed) < 20:
                    crashed.append(data)

        stats = fuzz_reader(reader, kept, inputs, limit_s=4 * child_limit + 20, warmup=min(200, count // 2))
        stats.contained, stats.crashed = child.crashes, crashed
    return stats


def format_table(results: list[FuzzStats]) -> str:
    head = (
        "| reader | inputs | decoded | our error | foreign exceptions | hangs | max ms per input | RSS growth "
        "| peak RSS so far | child crashes contained |"
    )
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in results:
        rows.append(
            f"| {s.reader} | {s.inputs:,} | {s.decoded:,} | {s.our_error:,} | {s.foreign} | {s.hangs} | "
            f"{s.max_ms:.1f} | {s.rss_growth / 2**20:.1f} MiB | {s.maxrss / 2**20:.0f} MiB | {s.contained} |"
        )
    return "\n".join(rows)
