"""The Markov composer: sparse transition counts, phrases and cadences, 1-16 voices streamed measure by measure.

Training (`orchestrion.markov.training`) reads each piece as events (`orchestrion.markov.events`), moved to
tonic C, and counts (`orchestrion.markov.counts`), for major and minor pieces apart, three chains:

    high, low   2nd order: (previous event, current event) -> next event; backs off to 1st order, then
                to the unigram distribution when a state was never seen
    chords      1st order, one chord per beat: previous chord -> next chord

Counts are sparse: sorted flattened keys and their counts (only observed transitions), saved as
`counts.safetensors` plus `config.json`; two models merge by adding counts.

Composing (`orchestrion.markov.arrange`): the chord counts, read as chord symbols (`harmony`), make a
progression planned in 4-bar phrases with half and authentic cadences and a V-I ending; melodic voices are
drawn from the high and low chains (`lines`), kept off clashes on the beats, under a cap on held notes,
with temperature, top-k, top-p and a repetition penalty; chord voices are voice-led over distinct chord
tones in their own registers (`voicing`). A style (`arrange.STYLES`: chorale or lively) sets the harmonic
rhythm and the textures; a model names its default style in config.json.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.composer import STREAM_TPQ, Composer, Measure, Note, Piece, Voice
from orchestrion.core.files import write_atomic
from orchestrion.core.music import parse_key, score_from_notes
from orchestrion.errors import BadInput, InvalidRequest, ModelNotFound
from orchestrion.markov import events as ev
from orchestrion.markov import harmony
from orchestrion.markov.arrange import STYLES, Arrangement
from orchestrion.markov.counts import (
    CHORD_BOS,
    KIND_LINES,
    KIND_NAMES,
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
from orchestrion.markov.lines import BAR, Chain, LineRules, NoteTuple
from orchestrion.requests import MAX_BARS, MAX_VOICES, ComposeRequest

if TYPE_CHECKING:
    from orchestrion.evaluation.heldout import EvalConfig, HeldOut

__all__ = ["MELODY_BOS", "ORDERS", "VOCAB", "Chain", "Counts", "MarkovComposer", "MarkovConfig", "merge_counts"]

# The request fields the markov composer reads; any other field set to something but its default is refused
# by name (an option that shaped nothing is never recorded in a piece's provenance).
MARKOV_FIELDS = ("model", "bars", "seconds", "voices", "programs", "key", "tempo", "chord_pull", "style",
                 "max_hold_bars", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "num_samples",
                 "prompt")  # fmt: skip


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
    pull: float = 8.0  # on a beat, a melodic tone outside the chord is kept with probability 1/pull
    pull_tries: int = 6  # proposals at most before the row is weighed exactly
    style: str = "chorale"  # the style of a request that names none (arrange.STYLES)
    repetition_penalty: float = 1.3  # of a request that sets none
    penalty_window: int = 4  # the last notes (or chords) the repetition penalty looks at
    max_hold_bars: float = 2.0  # of a request that sets none


class MarkovComposer(Composer):
    """Markov chains for melodies and chords, major and minor, composing in any of the 24 keys."""

    kind = "markov"

    def __init__(self, counts: Counts, config: MarkovConfig | None = None):
        super().__init__()
        self.counts = counts
        self.config = config or MarkovConfig()
        self._chains: dict[tuple[str, str, float], Chain] = {}
        self._harmony: dict[tuple, np.ndarray] = {}
        self.problems: list[str] = []  # files a training run could not use, with the reason
        if not any(len(self.counts.get(chain_name(m, "high", 0), ((), ()))[0]) for m in MODES):
            raise BadInput("the model has no melody events: it was trained on a corpus with no usable notes")
        if self.config.style not in STYLES:
            raise BadInput(f"config.json names an unknown style {self.config.style!r}; known: {', '.join(STYLES)}")

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
        composer.warm()  # now, so that the first measure of a stream takes a millisecond or two
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

    def _mode_with(self, mode: str, line: str) -> str:
        if not len(self.counts.get(chain_name(mode, line, 0), ((), ()))[0]):
            return MODES[1 - MODES.index(mode)]  # a model that never saw this mode uses the other one
        return mode

    def chain(self, mode: str, line: str, temperature: float = 1.0) -> Chain:
        """The sampling tables of one chain: rows built once, re-weighed per temperature (a few kept)."""
        mode = self._mode_with(mode, line)
        temperature = round(temperature, 6)
        key = (mode, line, temperature)
        if key not in self._chains:
            base = self._chains.get((mode, line, 1.0)) or Chain(self.counts, mode, line)
            self._chains[(mode, line, 1.0)] = base
            if len(self._chains) >= 16:  # forget the oldest other temperature
                self._chains.pop(next(k for k in self._chains if k[2] != 1.0))
            self._chains[key] = base if temperature == 1.0 else base.at_temperature(temperature)
        return self._chains[key]

    def harmony(self, mode: str, slots: int, temperature: float = 1.0) -> np.ndarray:
        """The chord-symbol transitions from one slot (4 // `slots` beats) to the next, at `temperature`."""
        beats = ("beats", mode)
        if beats not in self._harmony:
            keys, values = self.counts.get(chain_name(mode, "chords", 1), (np.zeros(0, np.uint32), np.zeros(0)))
            self._harmony[beats] = harmony.harmony_counts(keys, values, VOCAB["chords"], CHORD_BOS)
        key = (mode, slots, round(temperature, 6))
        if key not in self._harmony:
            if len(self._harmony) >= 24:
                self._harmony.pop(next(k for k in self._harmony if k[0] != "beats"))
            self._harmony[key] = harmony.slot_matrix(self._harmony[beats], mode, 4 // slots, temperature)
        return self._harmony[key]

    def warm(self) -> None:
        """Build every chain's tables and the harmony of the default style now (`load` does)."""
        for mode in MODES:
            for line in ("high", "low"):
                if len(self.counts.get(chain_name(mode, line, 0), ((), ()))[0]):
                    self.chain(mode, line)
            self.harmony(mode, STYLES[self.config.style].slots)

    # -------------------------------------------------------------------------------- requests

    def options(self) -> dict:
        return {
            **super().options(),
            "voice_kinds": KIND_NAMES,
            "max_voices": MAX_VOICES,
            "max_bars": MAX_BARS,
            "styles": {name: style.description for name, style in STYLES.items()},
            "default_programs": {k: list(v) for k, v in STYLES[self.config.style].programs.items()},
            "defaults": {"voices": [0, 1, 2], "bars": 16, "key": "C major", "tempo": 120.0, "chord_pull": True,
                         "style": self.config.style, "max_hold_bars": self.config.max_hold_bars,
                         "repetition_penalty": self.config.repetition_penalty, "top_k": 0, "top_p": 1.0},
            "fields": ["voices", "programs", "key", "tempo", "bars", "style", "temperature", "top_p", "top_k",
                       "repetition_penalty", "max_hold_bars", "chord_pull", "seed"],
            "trained_on": self.config.pieces,
        }  # fmt: skip

    def validate(self, request: ComposeRequest) -> ComposeRequest:
        for name, info in type(request).model_fields.items():
            if name not in MARKOV_FIELDS and getattr(request, name) != info.default:
                raise InvalidRequest(name, f"the markov composer has no {name} option; leave it out")
        style = request.style or self.config.style
        if style not in STYLES:
            raise InvalidRequest("style", f"unknown style {style!r}: use {' or '.join(STYLES)}")
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
                options = STYLES[style].programs[kind]
                programs.append(options[seen[kind] % len(options)])
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
        if not 0 < request.top_p <= 1 or request.top_k < 0:
            raise InvalidRequest("top_p" if not 0 < request.top_p <= 1 else "top_k",
                                 "top_p must lie in (0, 1] and top_k be 0 (off) or more")  # fmt: skip
        if not 0 < request.repetition_penalty <= 10:
            raise InvalidRequest("repetition_penalty", "use a penalty above 0 and at most 10 (1 = off)")
        hold = request.max_hold_bars if request.max_hold_bars is not None else self.config.max_hold_bars
        if not 1 <= hold <= 64:
            raise InvalidRequest("max_hold_bars", f"give 1 to 64 bars (the last chord alone lasts a bar), not {hold}")
        update = {"voices": list(voices), "bars": bars, "programs": list(programs), "key": key, "style": style,
                  "max_hold_bars": hold}  # fmt: skip
        if "repetition_penalty" not in request.model_fields_set:
            update["repetition_penalty"] = self.config.repetition_penalty
        return request.model_copy(update=update).with_seed()

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
        """The stream's core: per measure, (voice, pitch, start step, steps, velocity) of every note that
        starts in it (a note may last past the bar line). `request` must have been through `validate`;
        steps are 1/12 quarter from the piece's start."""
        arrangement = self.arrangement(request)
        for index in range(arrangement.bars):
            yield arrangement.measure(index)

    def arrangement(self, request: ComposeRequest) -> Arrangement:
        """Everything one piece is made from (see `orchestrion.markov.arrange`)."""
        key = parse_key(request.key or "C major")
        style = STYLES[request.style or self.config.style]
        temperature = request.temperature
        cap = int(round((request.max_hold_bars or self.config.max_hold_bars) * BAR))
        rules = LineRules(cap=cap, pull=self.config.pull, tries=self.config.pull_tries, chord_pull=request.chord_pull,
                          penalty=request.repetition_penalty, temperature=temperature,
                          window=self.config.penalty_window, top_k=request.top_k, top_p=request.top_p)  # fmt: skip
        kinds = list(request.voices or [0, 1, 2])
        chains = {k: self.chain(key.mode, KIND_LINES[k], temperature) for k in (0, 1) if k in kinds}
        mode = self._mode_with(key.mode, "chords")
        return Arrangement(
            kinds=kinds, bars=int(request.bars or 16), tonic=key.tonic, mode=key.mode, seed=request.seed,
            style=style, chains=chains, harmony_matrix=self.harmony(mode, style.slots, temperature),
            plan_matrix=self.harmony(mode, style.slots), rules=rules, temperature=temperature,
            penalty=request.repetition_penalty, top_k=request.top_k, top_p=request.top_p,
        )  # fmt: skip

    def compose(self, request: ComposeRequest) -> Piece:
        """The same piece as `stream`, gathered into arrays per voice (no per-note objects)."""
        request = self.validate(request)
        notes = [n for raw in self.raw_measures(request) for n in raw]
        table = np.asarray(notes, dtype=np.int64).reshape(-1, 5)  # (N, 5) voice, pitch, start, steps, velocity
        scale = STREAM_TPQ // ev.STEPS_PER_QUARTER
        tracks = []
        for i, voice in enumerate(self.voices(request)):
            _, pitch, start, steps, velocity = table[table[:, 0] == i].T
            tracks.append({"name": voice.name, "program": voice.program, "pitch": pitch, "start": start * scale,
                           "duration": steps * scale, "velocity": velocity})  # fmt: skip
        score = score_from_notes(tracks, tpq=STREAM_TPQ, tempo_qpm=float(request.tempo))
        return Piece(provenance=self.provenance(request), score=score)

    def trained_on(self) -> list[str]:
        return list(self.config.sources)

    def likelihood(self, held: HeldOut, config: EvalConfig) -> dict:
        return markov_likelihood(self, held.scores)
