"""The Markov composer: six sparse transition counts, streamed multi-voice generation.

Training reads each piece as events (`orchestrion.codecs.events`), moved to tonic C, and counts, for
major and minor pieces apart, three chains:

    high, low   2nd order: (previous event, current event) -> next event; backs off to 1st order, then
                to the unigram distribution when a state was never seen
    chords      1st order, one chord per beat: previous chord -> next chord

Counts are sparse: sorted flattened keys and their counts (only observed transitions), saved as
`counts.safetensors` plus `config.json`; two models merge by adding counts. Counting flattens every
transition of a chain into one uint32 key and reduces them with one sort (`np.unique`), or with
`torch.unique` + `index_add_` on CUDA, and equals the plain sequential counter `count_sequential`.

Generation keeps, per chain and temperature, CSR-style rows with cumulative weights, so a step is a dict
lookup and a bisection: no row is normalised while composing. All voices share one chord progression
(sampled once per beat); melodic voices are pulled toward its tones by rejection (a tone outside the
chord is kept with probability 1/pull), lines are cut at bar lines so that every voice fills every
measure, and the piece is made one `Measure` at a time.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from orchestrion.codecs import events as ev
from orchestrion.composers.base import Composer, Measure, Note, Piece, Voice
from orchestrion.errors import BadInput, InvalidRequest, ModelNotFound
from orchestrion.requests import MAX_BARS, MAX_VOICES, ComposeRequest


@dataclass
class MarkovConfig:
    """What a saved model holds besides its counts (config.json)."""

    composer: str = "markov"
    format_version: int = 1
    pieces: dict[str, int] = field(default_factory=lambda: {"major": 0, "minor": 0})
    transitions: int = 0
    sources: list[str] = field(default_factory=list)
    steps_per_quarter: int = ev.STEPS_PER_QUARTER
    durations: list[int] = field(default_factory=lambda: list(ev.DURATIONS))
    lowest_pitch: int = ev.LOWEST_PITCH
    max_chord_pcs: int = ev.MAX_CHORD_PCS
    pull: float = 4.0  # a melodic tone outside the current chord is kept with probability 1/pull
    pull_tries: int = 4


MODES = ("major", "minor")
LINES = ("high", "low", "chords")
KIND_LINES = {0: "high", 1: "low", 2: "chords"}
KIND_NAMES = {0: "high melody", 1: "low melody", 2: "chords"}
MELODY_BOS = ev.N_MELODY_EVENTS  # 657: "before the piece", so that pieces learn how to begin
CHORD_BOS = ev.N_CHORDS  # 22621
VOCAB = {"high": MELODY_BOS + 1, "low": MELODY_BOS + 1, "chords": CHORD_BOS + 1}
ORDERS = {"high": 2, "low": 2, "chords": 1}
# General MIDI programs by voice kind, taken in turn by the voices of that kind.
DEFAULT_PROGRAMS = {0: (40, 73, 71, 68), 1: (42, 32, 70, 58), 2: (48, 0, 19, 46)}
VELOCITY = {0: 84, 1: 76, 2: 60}

Counts = dict[str, tuple[np.ndarray, np.ndarray]]  # "major.high.2" -> (sorted keys, counts)


def chain_name(mode: str, line: str, order: int) -> str:
    return f"{mode}.{line}.{order}"


# ---------------------------------------------------------------------------------------- counting


def _padded(sequences: list[np.ndarray], bos: int, order: int) -> np.ndarray:
    """All sequences back to back, each after `order` BOS symbols, as one uint32 array."""
    parts = []
    pad = np.full(order, bos, dtype=np.uint32)
    for seq in sequences:
        parts.append(pad)
        parts.append(np.asarray(seq, dtype=np.uint32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint32)


def transition_keys(sequences: list[np.ndarray], line: str) -> dict[int, np.ndarray]:
    """Flattened keys of every transition, per order: {2: (a*V+b)*V+c, 1: b*V+c, 0: c} (uint32).

    With `order` BOS symbols before each piece, an n-gram belongs to one piece exactly when its last
    symbol is not BOS, so one mask drops every n-gram that would cross from one piece into the next.
    """
    bos, size, top = VOCAB[line] - 1, VOCAB[line], ORDERS[line]
    x = _padded(sequences, bos, top)  # (N,)
    real = x[top:] != bos
    keys = {0: x[top:][real]}
    for order in range(1, top + 1):
        key = np.zeros(len(x) - top, dtype=np.uint32)
        for j in range(order, -1, -1):  # Horner: oldest symbol most significant
            key = key * np.uint32(size) + x[top - j : len(x) - j]
        keys[order] = key[real]
    return keys


def reduce_keys(keys: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique keys, their counts): one sort on the CPU, an index-add on CUDA."""
    if device.startswith("cuda"):
        import torch

        k = torch.from_numpy(keys.astype(np.int64)).to(device)
        unique, inverse = torch.unique(k, sorted=True, return_inverse=True)
        counts = torch.zeros(len(unique), dtype=torch.int64, device=device)
        counts.index_add_(0, inverse, torch.ones_like(inverse))  # the reference system's atomicAdd
        return unique.cpu().numpy().astype(np.uint32), counts.cpu().numpy()
    unique, counts = np.unique(keys, return_counts=True)
    return unique.astype(np.uint32), counts.astype(np.int64)


def count_pieces(pieces: list[ev.PieceEvents], device: str = "cpu") -> Counts:
    """Vectorised counts of all six chains and their lower orders over `pieces`."""
    counts: Counts = {}
    for mode in MODES:
        group = [p for p in pieces if p.mode == mode]
        for line in LINES:
            keys = transition_keys([getattr(p, line) for p in group], line)
            for order, k in keys.items():
                counts[chain_name(mode, line, order)] = reduce_keys(k, device)
    return counts


def count_sequential(pieces: list[ev.PieceEvents]) -> Counts:
    """The plain reference: walk every piece step by step and count in dicts (for tests and benchmarks)."""
    tables: dict[str, dict[int, int]] = {
        chain_name(m, line, o): {} for m in MODES for line in LINES for o in range(ORDERS[line] + 1)
    }
    for piece in pieces:
        for line in LINES:
            size, bos, top = VOCAB[line], VOCAB[line] - 1, ORDERS[line]
            history = [bos] * top
            for symbol in getattr(piece, line).tolist():
                context = history + [symbol]
                for order in range(top + 1):
                    key = 0
                    for s in context[top - order :]:
                        key = key * size + s
                    table = tables[chain_name(piece.mode, line, order)]
                    table[key] = table.get(key, 0) + 1
                history = history[1:] + [symbol]
    return {
        name: (np.asarray(sorted(t), dtype=np.uint32), np.asarray([t[k] for k in sorted(t)], dtype=np.int64))
        for name, t in tables.items()
    }


def merge_counts(*parts: Counts) -> Counts:
    """Add counts: models trained on different shards merge into the model of all the data."""
    merged: Counts = {}
    for name in sorted({n for p in parts for n in p}):
        keys = np.concatenate([p[name][0] for p in parts if name in p])
        values = np.concatenate([p[name][1] for p in parts if name in p])
        unique, inverse = np.unique(keys, return_inverse=True)
        merged[name] = (unique.astype(np.uint32), np.bincount(inverse, weights=values).astype(np.int64))
    return merged


def counts_nbytes(counts: Counts) -> int:
    return int(sum(k.nbytes + c.nbytes for k, c in counts.values()))


def dense_nbytes(bytes_per_cell: int = 4) -> int:
    """Size of the same six chains as dense row-major matrices (the reference system's layout)."""
    melody, chords = ev.N_MELODY_EVENTS, ev.N_CHORDS
    return len(MODES) * (2 * melody**3 + chords**2) * bytes_per_cell


def save_counts(counts: Counts, path: Path) -> None:
    from safetensors.numpy import save_file

    tensors = {}
    for name, (keys, values) in counts.items():
        tensors[f"{name}.keys"] = np.ascontiguousarray(keys, dtype=np.uint32)
        # int32 halves the file; a chain would need 2**31 sightings of one transition to overflow it.
        tensors[f"{name}.counts"] = np.ascontiguousarray(values, dtype=np.int32)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp))
    tmp.chmod(0o644)
    tmp.replace(path)


def load_counts(path: Path) -> Counts:
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    names = sorted({k.rsplit(".", 1)[0] for k in tensors})
    return {n: (tensors[f"{n}.keys"].astype(np.uint32), tensors[f"{n}.counts"].astype(np.int64)) for n in names}


# -------------------------------------------------------------------------------------- sampling


class Chain:
    """One chain ready to sample: rows {state: (lo, hi, total)} per order over one cumulative-weight list.

    Row `(lo, hi, total)` of order k covers entries lo..hi-1 of `cols`/`cums`, whose cumulative weights
    restart at every row; sampling is `bisect_right(cums, u * total, lo, hi)`, never a normalisation.
    """

    def __init__(self, counts: Counts, mode: str, line: str, temperature: float = 1.0):
        self.line, self.size, self.top = line, VOCAB[line], ORDERS[line]
        self.rows: list[dict[int, tuple[int, int, float]]] = []
        cols: list[np.ndarray] = []
        cums: list[np.ndarray] = []
        offset = 0
        for order in range(self.top + 1):
            keys, values = counts.get(chain_name(mode, line, order), (np.zeros(0, np.uint32), np.zeros(0)))
            if len(keys) == 0:
                self.rows.append({})
                continue
            keys = keys.astype(np.int64)
            weights = values.astype(np.float64) ** (1.0 / temperature)
            state, col = np.divmod(keys, self.size) if order else (np.zeros_like(keys), keys)
            first = np.flatnonzero(np.r_[True, state[1:] != state[:-1]])  # row starts, (R,)
            last = np.r_[first[1:], len(keys)]
            cum = np.cumsum(weights)
            base = np.r_[0.0, cum[first[1:] - 1]]
            row_cum = cum - np.repeat(base, last - first)  # cumulative weight restarting at every row
            spans = zip((first + offset).tolist(), (last + offset).tolist(), row_cum[last - 1].tolist(), strict=True)
            self.rows.append(dict(zip(state[first].tolist(), spans, strict=True)))
            cols.append(col)
            cums.append(row_cum)
            offset += len(keys)
        if not self.rows[0]:
            raise BadInput(f"the model has no {line} events for {mode} pieces: it was trained on no usable notes")
        self.cols: list[int] = np.concatenate(cols).tolist()
        self.cums: list[float] = np.concatenate(cums).tolist()
        self.unigram = self.rows[0][0]

    def draw(self, history: tuple[int, ...], u: float) -> int:
        """Next symbol after `history` (the last `top` symbols), backing off to shorter histories."""
        row = None
        for order in range(self.top, 0, -1):
            state = 0
            for s in history[self.top - order :]:
                state = state * self.size + s
            row = self.rows[order].get(state)
            if row is not None:
                break
        lo, hi, total = row or self.unigram
        i = bisect_right(self.cums, u * total, lo, hi)
        return self.cols[i if i < hi else hi - 1]


def key_shift(tonic: int) -> int:
    """Semitones from C to `tonic`, the smaller way round (-5..+6), so lines keep their register."""
    return tonic if tonic <= 6 else tonic - 12


def place(tone: int, shift: int) -> int:
    """A C-space tone moved to the piece's key, kept inside MIDI 36-107 by octaves."""
    t = tone + shift
    if t < 0:
        t += 12
    elif t >= ev.N_TONES:
        t -= 12
    return t + ev.LOWEST_PITCH


# Per melody event: its tone, its length in steps, and its pitch-class bit (all bits for a rest, which
# fits every chord), as plain lists because the sampling loop indexes them once per note.
EVENT_TONE = [e // ev.N_DURATIONS for e in range(ev.N_MELODY_EVENTS)]
EVENT_STEPS = [ev.DURATIONS[e % ev.N_DURATIONS] for e in range(ev.N_MELODY_EVENTS)]
EVENT_PCBIT = [0xFFF if t == ev.REST else 1 << (t % 12) for t in EVENT_TONE]


class _Line:
    """One melodic voice: its chain history, the note it carries across a bar line, its random stream."""

    def __init__(self, chain: Chain, rng: random.Random):
        self.chain, self.rng = chain, rng
        self.a, self.b = MELODY_BOS, MELODY_BOS  # the last two events
        self.carry: tuple[int, int] | None = None  # (tone, steps) still to sound in the next measure

    def measure(self, masks: list[int], pull: float, tries: int) -> list[tuple[int, int, int]]:
        """(tone, start step, steps) of the notes and rests filling one measure exactly.

        This loop runs once per note of every voice, so the chain lookups are inlined here.
        """
        out, pos = [], 0
        if self.carry is not None:
            tone, steps = self.carry
            fit = steps if steps < ev.MEASURE_STEPS else ev.MEASURE_STEPS
            out.append((tone, 0, fit))
            pos = fit
            self.carry = (tone, steps - fit) if steps > fit else None
        chain, random_ = self.chain, self.rng.random
        rows2, rows1, unigram, size = chain.rows[2], chain.rows[1], chain.unigram, chain.size
        cums, cols = chain.cums, chain.cols
        a, b = self.a, self.b
        end = ev.MEASURE_STEPS
        while pos < end:
            mask = masks[pos // ev.STEPS_PER_QUARTER] if masks else 0
            for _ in range(tries):
                lo, hi, total = rows2.get(a * size + b) or rows1.get(b) or unigram
                i = bisect_right(cums, random_() * total, lo, hi)
                event = cols[i if i < hi else hi - 1]
                # Rejection toward the chord: a non-chord tone survives with probability 1/pull.
                if not mask or mask & EVENT_PCBIT[event] or random_() * pull < 1.0:
                    break
            a, b = b, event
            steps = EVENT_STEPS[event]
            fit = steps if pos + steps <= end else end - pos
            out.append((EVENT_TONE[event], pos, fit))
            if steps > fit:  # split at the bar line; the rest sounds at the start of the next measure
                self.carry = (EVENT_TONE[event], steps - fit)
            pos += fit
        self.a, self.b = a, b
        return out


@dataclass
class _Plan:
    """Everything `stream` needs, worked out once per request."""

    kinds: list[int]
    programs: list[int]
    bars: int
    mode: str
    tonic: int
    tempo: float
    temperature: float
    seed: int
    pull: bool


class MarkovComposer(Composer):
    """2nd-order melody and 1st-order chord Markov chains, major and minor, any of the 24 keys."""

    kind = "markov"

    def __init__(self, counts: Counts, config: MarkovConfig | None = None):
        super().__init__()
        self.counts = counts
        self.config = config or MarkovConfig()
        self._chains: dict[tuple[str, str, float], Chain] = {}
        self._masks: dict[int, int] = {}
        self._voicings: dict[tuple[int, int, int], list[int]] = {}
        self.problems: list[str] = []  # files a training run could not use, with the reason
        if not any(len(self.counts.get(chain_name(m, "high", 0), ((), ()))[0]) for m in MODES):
            raise BadInput("the model has no melody events: it was trained on a corpus with no usable notes")

    # ------------------------------------------------------------------------------- persistence

    @classmethod
    def load(cls, directory: str | Path) -> MarkovComposer:
        directory = Path(directory)
        path = directory / "counts.safetensors"
        if not path.is_file():
            raise ModelNotFound(f"{directory}: no counts.safetensors; train one with 'orchestrion train markov'")
        record = json.loads((directory / "config.json").read_text())
        known = MarkovConfig.__dataclass_fields__
        return cls(load_counts(path), MarkovConfig(**{k: v for k, v in record.items() if k in known}))

    def save(self, directory: str | Path) -> Path:
        from orchestrion.datasets import atomic_write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_counts(self.counts, directory / "counts.safetensors")
        atomic_write_text(directory / "config.json", json.dumps(asdict(self.config), indent=2) + "\n")
        return directory

    def merge(self, other: MarkovComposer) -> MarkovComposer:
        config = MarkovConfig(**asdict(self.config))
        config.pieces = {m: self.config.pieces.get(m, 0) + other.config.pieces.get(m, 0) for m in MODES}
        config.transitions = self.config.transitions + other.config.transitions
        config.sources = self.config.sources + other.config.sources
        return MarkovComposer(merge_counts(self.counts, other.counts), config)

    def chain(self, mode: str, line: str, temperature: float = 1.0) -> Chain:
        """The sampling tables of one chain, built on first use and kept (a few per model)."""
        if not len(self.counts.get(chain_name(mode, line, 0), ((), ()))[0]):
            mode = MODES[1 - MODES.index(mode)]  # a model that never saw this mode uses the other one
        key = (mode, line, round(temperature, 6))
        if key not in self._chains:
            if len(self._chains) >= 12:
                self._chains.pop(next(iter(self._chains)))
            self._chains[key] = Chain(self.counts, mode, line, temperature)
        return self._chains[key]

    def warm(self) -> None:
        """Build the default tables now (servers call it at start-up so the first request is quick)."""
        for mode in MODES:
            for line in LINES:
                if len(self.counts.get(chain_name(mode, line, 0), ((), ()))[0]):
                    self.chain(mode, line)

    # -------------------------------------------------------------------------------- requests

    def options(self) -> dict:
        return {
            **super().options(),
            "voice_kinds": KIND_NAMES,
            "max_voices": MAX_VOICES,
            "max_bars": MAX_BARS,
            "default_programs": {k: list(v) for k, v in DEFAULT_PROGRAMS.items()},
            "defaults": {"voices": [0, 1, 2], "bars": 16, "key": "C major", "tempo": 120.0, "chord_pull": True},
            "trained_on": self.config.pieces,
        }

    def validate(self, request: ComposeRequest) -> ComposeRequest:
        from orchestrion.music import parse_key

        voices = request.voices if request.voices is not None else [0, 1, 2]
        if not 1 <= len(voices) <= MAX_VOICES:
            raise InvalidRequest("voices", f"give 1 to {MAX_VOICES} voices, not {len(voices)}")
        for kind in voices:
            if kind not in KIND_NAMES:
                raise InvalidRequest("voices", f"unknown voice kind {kind}: use 0 (high melody), 1 (low melody) or 2 (chords)")
        bars = request.bars
        if bars is None and request.seconds is not None:
            bars = max(1, math.ceil(request.seconds * request.tempo / 60 / 4))
        bars = 16 if bars is None else bars
        if not 1 <= bars <= MAX_BARS:
            raise InvalidRequest("bars", f"give 1 to {MAX_BARS} measures, not {bars}")
        programs = request.programs
        if programs is None:
            seen = {0: 0, 1: 0, 2: 0}
            programs = []
            for kind in voices:
                programs.append(DEFAULT_PROGRAMS[kind][seen[kind] % len(DEFAULT_PROGRAMS[kind])])
                seen[kind] += 1
        if len(programs) != len(voices) or any(not 0 <= p <= 127 for p in programs):
            raise InvalidRequest("programs", f"give one General MIDI program (0-127) per voice ({len(voices)})")
        try:
            key = parse_key(request.key or "C major").name
        except BadInput as exc:
            raise InvalidRequest("key", str(exc)) from exc
        if request.prompt is not None:
            raise InvalidRequest("prompt", "the markov composer does not continue prompts; leave it out")
        if not 0 < request.temperature <= 10:
            raise InvalidRequest("temperature", "use a temperature above 0 and at most 10")
        update = {"voices": list(voices), "bars": bars, "programs": list(programs), "key": key}
        return request.model_copy(update=update).with_seed()

    def _plan(self, request: ComposeRequest) -> _Plan:
        from orchestrion.music import parse_key

        key = parse_key(request.key or "C major")
        return _Plan(
            list(request.voices or [0, 1, 2]), list(request.programs or []), int(request.bars or 16),
            key.mode, key.tonic, float(request.tempo), float(request.temperature), int(request.seed or 0),
            bool(request.chord_pull),
        )  # fmt: skip

    def _mask(self, code: int) -> int:
        if code not in self._masks:
            self._masks[code] = ev.chord_mask(code)
        return self._masks[code]

    # ------------------------------------------------------------------------------- composing

    def voices(self, request: ComposeRequest) -> list[Voice]:
        kinds, programs = request.voices or [0, 1, 2], request.programs or []
        return [Voice(program=p, name=f"{KIND_NAMES[k]} {i + 1}", kind=k) for i, (k, p) in enumerate(zip(kinds, programs, strict=True))]

    def stream(self, request: ComposeRequest) -> Iterator[Measure]:
        """Yield the piece one 4/4 measure (all voices) at a time."""
        request = self.validate(request)
        voices, tempo = self.voices(request), float(request.tempo)
        for index, raw in enumerate(self.raw_measures(request)):
            notes = [Note(v, p, s / ev.STEPS_PER_QUARTER, d / ev.STEPS_PER_QUARTER, vel) for v, p, s, d, vel in raw]
            yield Measure(index=index, notes=notes, voices=voices, tempo=tempo)

    def compose(self, request: ComposeRequest) -> Piece:
        """The stream's piece, built from plain tuples (no per-note objects): the same MIDI, faster."""
        from orchestrion.composers.base import STREAM_TPQ
        from orchestrion.music import score_from_notes

        request = self.validate(request)
        voices = self.voices(request)
        flat = itertools.chain.from_iterable(itertools.chain.from_iterable(self.raw_measures(request)))
        a = np.fromiter(flat, dtype=np.int64).reshape(-1, 5)  # (N, voice pitch start steps velocity)
        scale = STREAM_TPQ // ev.STEPS_PER_QUARTER
        tracks = []
        for i, v in enumerate(voices):
            mine = a[a[:, 0] == i]
            tracks.append({"name": v.name, "program": v.program, "pitch": mine[:, 1], "start": mine[:, 2] * scale, "duration": mine[:, 3] * scale, "velocity": mine[:, 4]})
        score = score_from_notes(tracks, tpq=STREAM_TPQ, tempo_qpm=float(request.tempo))
        return Piece(provenance=self.provenance(request), score=score)

    def raw_measures(self, request: ComposeRequest) -> Iterator[list[tuple[int, int, int, int, int]]]:
        """The core: per measure, (voice, pitch, start step, steps, velocity) of every note, 12 steps a quarter.

        `request` must have been through `validate`.
        """
        plan = self._plan(request)
        shift = key_shift(plan.tonic)
        pitch_of = [place(t, shift) for t in range(ev.N_TONES)]
        kinds = plan.kinds
        has_chords = 2 in kinds
        lines = {
            i: _Line(self.chain(plan.mode, KIND_LINES[k], plan.temperature), random.Random(f"markov:{plan.seed}:voice:{i}"))
            for i, k in enumerate(kinds)
            if k != 2
        }
        harmony = self.chain(plan.mode, "chords", plan.temperature) if has_chords else None
        harmony_rng = random.Random(f"markov:{plan.seed}:chords")
        chord = CHORD_BOS
        tonic_triad = ev.chord_code([7, 4, 0]) if plan.mode == "major" else ev.chord_code([7, 3, 0])
        pull_on = plan.pull and has_chords
        nth_chord_voice = {i: n for n, i in enumerate(i for i, k in enumerate(kinds) if k == 2)}
        pull, tries = self.config.pull, self.config.pull_tries
        for index in range(plan.bars):
            last = index == plan.bars - 1
            codes: list[int] = []
            if harmony is not None:
                for _ in range(4):
                    chord = harmony.draw((chord,), harmony_rng.random())
                    codes.append(chord)
                if last and codes[-1] == ev.NO_CHORD:
                    codes[-1] = tonic_triad  # end on a chord, never on silence
            masks = [self._mask(c) for c in codes] if pull_on else []
            notes: list[tuple[int, int, int, int, int]] = []
            origin = index * ev.MEASURE_STEPS
            for i, kind in enumerate(kinds):
                velocity = VELOCITY[kind]
                if kind == 2:
                    self._chord_notes(notes, i, nth_chord_voice[i], codes, shift, origin, velocity)
                    continue
                parts = lines[i].measure(masks, pull, tries)
                if last:
                    parts = _close(parts, fallback_tone=36 if kind == 0 else 12)
                for tone, start, steps in parts:
                    if tone != ev.REST:
                        notes.append((i, pitch_of[tone], origin + start, steps, velocity))
            yield notes

    def _chord_notes(self, notes: list, voice: int, nth: int, codes: list[int], shift: int, origin: int, velocity: int) -> None:
        """One chord voice's notes for a measure: held while the chord repeats (every beat when nth % 3 == 2)."""
        top = 69 if nth % 2 == 0 else 57  # alternate chord voices sit an octave apart
        beat = 0
        while beat < len(codes):
            end = beat + 1
            if nth % 3 != 2:
                while end < len(codes) and codes[end] == codes[beat]:
                    end += 1
            key = (codes[beat], shift, top)
            pitches = self._voicings.get(key)
            if pitches is None:
                pitches = self._voicings[key] = ev.voice_chord(ev.transpose_chord(codes[beat], shift), top=top)
            for pitch in pitches:
                notes.append((voice, pitch, origin + beat * ev.STEPS_PER_QUARTER, (end - beat) * ev.STEPS_PER_QUARTER, velocity))
            beat = end


def _close(parts: list[tuple[int, int, int]], fallback_tone: int) -> list[tuple[int, int, int]]:
    """The last measure of a line: trailing rests become the last note held, so every track ends on time."""
    while parts and parts[-1][0] == ev.REST:
        parts = parts[:-1]
    if not parts:
        return [(fallback_tone, 0, ev.MEASURE_STEPS)]  # a whole-bar tonic rather than a silent ending
    tone, start, _ = parts[-1]
    return parts[:-1] + [(tone, start, ev.MEASURE_STEPS - start)]


# --------------------------------------------------------------------------------------- training


def _shard_counts(paths: list[Path], workers: int) -> tuple[Counts, dict[str, int], list[str]]:
    pieces, problems = ev.encode_files(paths, workers)
    tally = {m: sum(p.mode == m for p in pieces) for m in MODES}
    return count_pieces(pieces), tally, problems


def train(inputs: list[str], out: str | Path, *, workers: int = 0, shard_size: int = 256) -> MarkovComposer:
    """Train on MIDI files, folders or builtin:CORPUS names; resumable shard by shard.

    Each shard's counts are kept under `out/shards/` until the model is written, so an interrupted run
    picks up where it stopped. The result does not depend on `workers` or on interruptions.
    """
    from orchestrion.corpora import resolve_inputs
    from orchestrion.music import MIDI_SUFFIXES

    out = Path(out)
    paths = sorted(resolve_inputs(inputs, MIDI_SUFFIXES), key=str)
    if not paths:
        raise BadInput(f"no MIDI files found in {' '.join(inputs)}")
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    parts: list[Counts] = []
    pieces = {m: 0 for m in MODES}
    problems: list[str] = []
    for n, lo in enumerate(range(0, len(paths), shard_size)):
        counts_path, meta_path = shard_dir / f"shard-{n:05d}.safetensors", shard_dir / f"shard-{n:05d}.json"
        if counts_path.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            counts = load_counts(counts_path)
        else:
            counts, tally, shard_problems = _shard_counts(paths[lo : lo + shard_size], workers)
            meta = {"pieces": tally, "problems": shard_problems}
            save_counts(counts, counts_path)
            meta_path.write_text(json.dumps(meta))
        parts.append(counts)
        pieces = {m: pieces[m] + meta["pieces"][m] for m in MODES}
        problems.extend(meta["problems"])
    if sum(pieces.values()) == 0:
        raise BadInput(f"no usable notes in {len(paths)} file(s) of {' '.join(inputs)}: nothing to learn from")
    counts = merge_counts(*parts)
    config = MarkovConfig(
        pieces=pieces,
        transitions=int(sum(counts[chain_name(m, line, ORDERS[line])][1].sum() for m in MODES for line in LINES)),
        sources=list(inputs),
    )
    composer = MarkovComposer(counts, config)
    composer.save(out)
    for path in shard_dir.iterdir():
        path.unlink()
    shard_dir.rmdir()
    composer.problems = problems
    return composer
