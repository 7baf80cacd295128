"""The Markov composer: six sparse transition counts, streamed multi-voice generation.

Training (`orchestrion.markov.training`) reads each piece as events (`orchestrion.markov.events`), moved to
tonic C, and counts (`orchestrion.markov.counts`), for major and minor pieces apart, three chains:

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
chord is kept with probability 1/pull, up to `pull_tries` draws), lines are cut at bar lines so that
every voice fills every measure, and the piece is made one `Measure` at a time.
"""

from __future__ import annotations

import copy
import json
import math
import random
from bisect import bisect_right
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.composer import STREAM_TPQ, Composer, Measure, Note, Piece, Voice
from orchestrion.core.files import write_atomic
from orchestrion.core.music import parse_key, score_from_notes
from orchestrion.errors import BadInput, InvalidRequest, ModelNotFound
from orchestrion.markov import events as ev
from orchestrion.markov.counts import (
    CHORD_BOS,
    KIND_LINES,
    KIND_NAMES,
    LINES,
    MELODY_BOS,
    MODES,
    ORDERS,
    VOCAB,
    Counts,
    chain_name,
    load_counts,
    merge_counts,
    save_counts,
)
from orchestrion.markov.likelihood import markov_likelihood
from orchestrion.requests import MAX_BARS, MAX_VOICES, ComposeRequest

if TYPE_CHECKING:
    from orchestrion.evaluation.heldout import EvalConfig, HeldOut


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
    pull: float = 8.0  # under a chord, a melodic tone outside it is kept with probability 1/pull
    pull_tries: int = 6  # draws at most, after which the last one stands


# General MIDI programs by voice kind, taken in turn by the voices of that kind.
DEFAULT_PROGRAMS = {0: (40, 73, 71, 68), 1: (42, 32, 70, 58), 2: (48, 0, 19, 46)}
VELOCITY = {0: 84, 1: 76, 2: 60}


# -------------------------------------------------------------------------------------- sampling


class Chain:
    """One chain ready to sample, as CSR rows over one list of cumulative weights.

    `rows[k]` maps an order-k state to a row id; row r covers entries `lo[r]`..`hi[r]`-1 of `cols` and
    `cums` (cumulative weights restarting at every row) and weighs `totals[r]` in all. Sampling is
    `bisect_right(cums, u * totals[r], lo[r], hi[r])`, never a normalisation. Row ids start at 1 so that
    `rows[2].get(s) or rows[1].get(b) or unigram` backs off in one expression. The rows depend on the
    counts only; `at_temperature` re-weighs a copy (counts ** (1/T)) without rebuilding them.
    """

    def __init__(self, counts: Counts, mode: str, line: str):
        self.line, self.size, self.top = line, VOCAB[line], ORDERS[line]
        self.rows: list[dict[int, int]] = []
        cols, weights, firsts, lasts = [], [], [], []
        offset, next_id = 0, 1
        for order in range(self.top + 1):
            keys, values = counts.get(chain_name(mode, line, order), (np.zeros(0, np.uint32), np.zeros(0)))
            keys = keys.astype(np.int64)
            state, col = np.divmod(keys, self.size) if order else (np.zeros_like(keys), keys)
            first = np.flatnonzero(np.r_[True, state[1:] != state[:-1]]) if len(keys) else np.zeros(0, np.int64)
            self.rows.append(dict(zip(state[first].tolist(), range(next_id, next_id + len(first)), strict=True)))
            firsts.append(first + offset)
            lasts.append(np.r_[first[1:], len(keys)].astype(np.int64)[: len(first)] + offset)
            cols.append(col)
            weights.append(values.astype(np.float64))
            offset, next_id = offset + len(keys), next_id + len(first)
        if not self.rows[0]:
            raise BadInput(f"the model has no {line} events for {mode} pieces: it was trained on no usable notes")
        self._first, self._last = np.concatenate(firsts), np.concatenate(lasts)  # (R,) row spans
        self._weights = np.concatenate(weights)  # (E,) counts
        self.cols: list[int] = np.concatenate(cols).tolist()
        self.lo: list[int] = [0, *self._first.tolist()]
        self.hi: list[int] = [0, *self._last.tolist()]
        self.unigram = self.rows[0][0]
        self._weigh(1.0)

    def _weigh(self, temperature: float) -> None:
        weights = self._weights if temperature == 1.0 else self._weights ** (1.0 / temperature)
        cum = np.cumsum(weights)
        base = np.where(self._first > 0, cum[self._first - 1], 0.0)
        row_cum = cum - np.repeat(base, self._last - self._first)  # restarts at every row
        self.cums: list[float] = row_cum.tolist()
        self.totals: list[float] = [0.0, *row_cum[self._last - 1].tolist()]

    def at_temperature(self, temperature: float) -> Chain:
        chain = copy.copy(self)
        chain._weigh(temperature)
        return chain

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
        r = row or self.unigram
        hi = self.hi[r]
        i = bisect_right(self.cums, u * self.totals[r], self.lo[r], hi)
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


NoteTuple = tuple[int, int, int, int, int]  # (voice, MIDI pitch, start step, steps, velocity)


@dataclass
class Parts:
    """What `stream` and `compose` both draw from for one request (`MarkovComposer._parts`)."""

    kinds: list[int]  # per voice: 0 high melody, 1 low melody, 2 chords
    bars: int
    lines: dict[int, Generator]  # melodic voice -> its `melodic_line`, started
    fallbacks: dict[int, tuple[int, int, int]]  # melodic voice -> (voice, pitch, velocity) of a closing note
    progression: Callable[[int], list[int]]  # measure -> its chord codes, one per beat (call in order)
    chords: Callable[[list[NoteTuple], int, list[int], int], None]  # add a chord voice's notes of one measure
    chord_track: Callable[[int, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]  # a chord voice, whole


def melodic_line(
    chain: Chain, rng: random.Random, voice: int, pitch_of: list[int], velocity: int, pull: float, tries: int
) -> Generator[list[NoteTuple], tuple[int, list[int]], None]:
    """One melodic voice as a coroutine: send it (measures, chord masks of their beats or []), get the notes.

    The notes and rests it draws fill every measure exactly: a note that crosses a bar line is split and
    its rest sounds at the start of the next measure. Sending one measure at a time (a stream) or all of
    them at once (compose) gives the same notes. This loop runs once per note of every voice, so the
    chain lookups are inlined and the state lives in the coroutine's locals.
    """
    rows2, rows1, unigram, size = chain.rows[2], chain.rows[1], chain.unigram, chain.size
    cums, cols, los, his, totals, random_ = chain.cums, chain.cols, chain.lo, chain.hi, chain.totals, rng.random
    bisect, step_of, tone_of, pcbit_of, rest = bisect_right, EVENT_STEPS, EVENT_TONE, EVENT_PCBIT, ev.REST  # locals
    bar, beat = ev.MEASURE_STEPS, ev.STEPS_PER_QUARTER
    accent = [velocity + (10 if p == 0 else 5 if p == 2 * beat else 0) for p in range(bar)]  # beats 1 and 3
    a = b = MELODY_BOS  # the last two events
    carry_tone, carry = ev.REST, 0  # what a note split at the bar line still owes
    pos = 0
    notes: list[NoteTuple] = []
    while True:
        measures, masks = yield notes
        notes = []
        end, first_beat = pos + measures * bar, pos // beat
        while pos < end:
            if carry:
                steps, tone, carry = carry, carry_tone, 0
            else:
                mask = masks[pos // beat - first_beat] if masks else 0
                r = rows2.get(a * size + b) or rows1.get(b) or unigram
                lo, hi, total = los[r], his[r], totals[r]
                i = bisect(cums, random_() * total, lo, hi)
                event = cols[i if i < hi else hi - 1]
                if mask:
                    # Rejection toward the chord: a tone outside it survives with probability 1/pull,
                    # which re-weighs the row without building it again (a rest fits any chord).
                    for _ in range(tries - 1):
                        if mask & pcbit_of[event] or random_() * pull < 1.0:
                            break
                        i = bisect(cums, random_() * total, lo, hi)
                        event = cols[i if i < hi else hi - 1]
                a, b = b, event
                steps, tone = step_of[event], tone_of[event]
            in_bar = pos % bar
            fit = steps if in_bar + steps <= bar else bar - in_bar
            if tone != rest:
                notes.append((voice, pitch_of[tone], pos, fit, accent[in_bar]))
            if steps > fit:
                carry_tone, carry = tone, steps - fit
            pos += fit


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
        self._patterns: dict[tuple[int, ...], list[tuple[int, int, int]]] = {}
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
        composer = cls(load_counts(path), MarkovConfig(**{k: v for k, v in record.items() if k in known}))
        composer.warm()  # ~40 ms now, so that the first measure of a stream takes about a millisecond
        return composer

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_counts(self.counts, directory / "counts.safetensors")
        write_atomic(directory / "config.json", json.dumps(asdict(self.config), indent=2) + "\n")
        return directory

    def merge(self, other: MarkovComposer) -> MarkovComposer:
        config = MarkovConfig(**asdict(self.config))
        config.pieces = {m: self.config.pieces.get(m, 0) + other.config.pieces.get(m, 0) for m in MODES}
        config.transitions = self.config.transitions + other.config.transitions
        config.sources = self.config.sources + other.config.sources
        return MarkovComposer(merge_counts(self.counts, other.counts), config)

    def chain(self, mode: str, line: str, temperature: float = 1.0) -> Chain:
        """The sampling tables of one chain: rows built once, re-weighed per temperature (a few kept)."""
        if not len(self.counts.get(chain_name(mode, line, 0), ((), ()))[0]):
            mode = MODES[1 - MODES.index(mode)]  # a model that never saw this mode uses the other one
        temperature = round(temperature, 6)
        key = (mode, line, temperature)
        if key not in self._chains:
            base = self._chains.get((mode, line, 1.0)) or Chain(self.counts, mode, line)
            self._chains[(mode, line, 1.0)] = base
            if len(self._chains) >= 16:  # forget the oldest other temperature
                self._chains.pop(next(k for k in self._chains if k[2] != 1.0))
            self._chains[key] = base if temperature == 1.0 else base.at_temperature(temperature)
        return self._chains[key]

    def warm(self) -> None:
        """Build the tables of every chain at temperature 1 now (`load` does), so no request waits for them."""
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
        voices = request.voices if request.voices is not None else [0, 1, 2]
        if not 1 <= len(voices) <= MAX_VOICES:
            raise InvalidRequest("voices", f"give 1 to {MAX_VOICES} voices, not {len(voices)}")
        for kind in voices:
            if kind not in KIND_NAMES:
                raise InvalidRequest(
                    "voices", f"unknown voice kind {kind}: use 0 (high melody), 1 (low melody) or 2 (chords)"
                )
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

    def _mask(self, code: int) -> int:
        if code not in self._masks:
            self._masks[code] = ev.chord_mask(code)
        return self._masks[code]

    # ------------------------------------------------------------------------------- composing

    def voices(self, request: ComposeRequest) -> list[Voice]:
        kinds, programs = request.voices or [0, 1, 2], request.programs or []
        return [
            Voice(program=p, name=f"{KIND_NAMES[k]} {i + 1}", kind=k)
            for i, (k, p) in enumerate(zip(kinds, programs, strict=True))
        ]

    def stream(self, request: ComposeRequest) -> Iterator[Measure]:
        """Yield the piece one 4/4 measure (all voices) at a time."""
        request = self.validate(request)
        voices, tempo = self.voices(request), float(request.tempo)
        for index, raw in enumerate(self.raw_measures(request)):
            notes = [Note(v, p, s / ev.STEPS_PER_QUARTER, d / ev.STEPS_PER_QUARTER, vel) for v, p, s, d, vel in raw]
            yield Measure(index=index, notes=notes, voices=voices, tempo=tempo)

    def raw_measures(self, request: ComposeRequest) -> Iterator[list[NoteTuple]]:
        """The stream's core: per measure, (voice, pitch, start step, steps, velocity) of every note.

        `request` must have been through `validate`. Steps are 1/12 quarter from the piece's start.
        """
        parts = self._parts(request)
        for index in range(parts.bars):
            codes = parts.progression(index)
            masks = [self._mask(c) for c in codes] if request.chord_pull and codes else []
            notes: list[NoteTuple] = []
            for i, kind in enumerate(parts.kinds):
                if kind == 2:
                    parts.chords(notes, i, codes, index)
                else:
                    part = parts.lines[i].send((1, masks))
                    notes += part if index < parts.bars - 1 else _close(part, parts.bars, parts.fallbacks[i])
            yield notes

    def compose(self, request: ComposeRequest) -> Piece:
        """The same piece as `stream`, made voice by voice into arrays (no per-note objects): faster."""
        request = self.validate(request)
        parts = self._parts(request)
        bars = parts.bars
        codes = [parts.progression(index) for index in range(bars)]
        masks = [self._mask(c) for bar in codes for c in bar] if request.chord_pull and 2 in parts.kinds else []
        scale = STREAM_TPQ // ev.STEPS_PER_QUARTER
        tracks = []
        for i, (kind, voice) in enumerate(zip(parts.kinds, self.voices(request), strict=True)):
            if kind == 2:
                pitch, start, steps = parts.chord_track(i, np.asarray(codes, dtype=np.int64))
                velocity = np.full(len(pitch), VELOCITY[2])
            else:
                notes = _close(parts.lines[i].send((bars, masks)), bars, parts.fallbacks[i])
                _, pitch, start, steps, velocity = np.asarray(notes, dtype=np.int64).reshape(-1, 5).T  # (5, N)
            tracks.append({"name": voice.name, "program": voice.program, "pitch": pitch, "start": start * scale,
                           "duration": steps * scale, "velocity": velocity})  # fmt: skip
        score = score_from_notes(tracks, tpq=STREAM_TPQ, tempo_qpm=float(request.tempo))
        return Piece(provenance=self.provenance(request), score=score)

    def trained_on(self) -> list[str]:
        return list(self.config.sources)

    def likelihood(self, held: HeldOut, config: EvalConfig) -> dict:
        return markov_likelihood(self, held.scores)

    def _parts(self, request: ComposeRequest) -> Parts:
        """What both `stream` and `compose` draw from: each voice's line, the progression, chord voicing."""
        key = parse_key(request.key or "C major")
        kinds, bars = list(request.voices or [0, 1, 2]), int(request.bars or 16)
        seed, temperature = request.seed, request.temperature
        shift = key_shift(key.tonic)
        pitch_of = [place(t, shift) for t in range(ev.N_TONES)]
        lines, fallbacks = {}, {}
        for i, k in enumerate(kinds):
            if k != 2:
                chain = self.chain(key.mode, KIND_LINES[k], temperature)
                rng = random.Random(f"markov:{seed}:voice:{i}")
                lines[i] = melodic_line(chain, rng, i, pitch_of, VELOCITY[k], self.config.pull, self.config.pull_tries)
                next(lines[i])
                fallbacks[i] = (i, pitch_of[36 if k == 0 else 12], VELOCITY[k])
        harmony = self.chain(key.mode, "chords", temperature) if 2 in kinds else None
        harmony_rng = random.Random(f"markov:{seed}:chords")
        state = [CHORD_BOS]
        tonic_triad = ev.chord_code([7, 4, 0]) if key.mode == "major" else ev.chord_code([7, 3, 0])

        def progression(index: int) -> list[int]:
            """The shared chords of measure `index` (call in order): one per beat, never ending on silence."""
            if harmony is None:
                return []
            codes = []
            for _ in range(4):
                state[0] = harmony.draw((state[0],), harmony_rng.random())
                codes.append(state[0])
            if index == bars - 1 and codes[-1] == ev.NO_CHORD:
                codes[-1] = tonic_triad
            return codes

        nth_chord_voice = {i: n for n, i in enumerate(i for i, k in enumerate(kinds) if k == 2)}

        def chords(notes: list[NoteTuple], voice: int, codes: list[int], index: int) -> None:
            key = (*codes, nth_chord_voice[voice], shift)  # progressions repeat: keep each measure's notes
            pattern = self._patterns.get(key)
            if pattern is None:
                if len(self._patterns) > 50_000:
                    self._patterns.clear()
                arrays = self._chord_track(np.asarray([codes]), nth_chord_voice[voice], shift)
                pattern = self._patterns[key] = list(zip(*(a.tolist() for a in arrays), strict=True))
            origin, velocity = index * ev.MEASURE_STEPS, VELOCITY[2]
            notes += [(voice, p, origin + s, d, velocity) for p, s, d in pattern]

        def chord_track(voice: int, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return self._chord_track(codes, nth_chord_voice[voice], shift)

        return Parts(kinds, bars, lines, fallbacks, progression, chords, chord_track)

    def _voicing(self, code: int, shift: int, top: int) -> list[int]:
        key = (code, shift, top)
        if key not in self._voicings:
            self._voicings[key] = ev.voice_chord(ev.transpose_chord(code, shift), top, floor=top - 24)
        return self._voicings[key]

    def _chord_track(self, codes: np.ndarray, nth: int, shift: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pitch, start step, steps) of one chord voice over `codes` (measures, 4 beats): a chord is held
        while it repeats within a measure (struck on every beat by every third chord voice), and
        alternate chord voices sit an octave apart."""
        top = 69 if nth % 2 == 0 else 57
        start = np.ones(codes.shape, dtype=bool)  # (bars, 4): where a chord is struck
        if nth % 3 != 2:
            start[:, 1:] = codes[:, 1:] != codes[:, :-1]
        first = np.flatnonzero(start.ravel())  # (R,) beat of each struck chord
        beats = np.diff(np.r_[first, codes.size])  # (R,) how long it is held
        unique, inverse = np.unique(codes.ravel()[first], return_inverse=True)
        table = np.full((len(unique), ev.MAX_CHORD_PCS), -1, dtype=np.int64)  # (U, 4) voicings, -1 padded
        for j, code in enumerate(unique.tolist()):
            pitches = self._voicing(code, shift, top)
            table[j, : len(pitches)] = pitches
        grid = table[inverse]  # (R, 4)
        keep = grid >= 0
        spread = np.ones((1, ev.MAX_CHORD_PCS), dtype=np.int64) * ev.STEPS_PER_QUARTER
        return grid[keep], (first[:, None] * spread)[keep], (beats[:, None] * spread)[keep]


def _close(notes: list[NoteTuple], bars: int, fallback: tuple[int, int, int]) -> list[NoteTuple]:
    """End a line on a note: its last note is held to the final bar line (a whole-bar tonic, given as
    (voice, pitch, velocity), when the last measure is silent), so every track is exactly `bars` long."""
    end = bars * ev.MEASURE_STEPS
    if notes and notes[-1][2] >= end - ev.MEASURE_STEPS:
        voice, pitch, start, _, velocity = notes[-1]
        return notes[:-1] + [(voice, pitch, start, end - start, velocity)]
    voice, pitch, velocity = fallback
    return notes + [(voice, pitch, end - ev.MEASURE_STEPS, ev.MEASURE_STEPS, velocity)]
