"""The Composer seam: every model can be loaded, saved and asked to compose, as a stream.

`composer.stream(request)` yields chunks as they are made: a `Measure` of notes for all voices,
an `AudioBlock` of samples, or a `TextChunk` of ABC. `compose(request)` collects the stream into a
`Piece` (`Composer.piece` is the one builder, which the server and the evaluation use too), and
`Piece.save` writes it by suffix with its provenance sidecar. The CLI, the server and the evaluation
code talk only to this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from orchestrion.core.files import write_atomic
from orchestrion.core.music import save_midi, score_from_notes
from orchestrion.core.render import render_wav, write_wav
from orchestrion.errors import BadInput
from orchestrion.provenance import make_provenance, write_sidecar
from orchestrion.requests import ComposeRequest

if TYPE_CHECKING:
    import symusic

    from orchestrion.evaluation.heldout import EvalConfig, HeldOut

STREAM_TPQ = 480  # ticks per quarter of scores assembled from streamed measures


# ------------------------------------------------------------------------------------------- chunks


@dataclass(frozen=True)
class Note:
    """A note in a stream; times are in quarter notes from the start of the piece."""

    voice: int
    pitch: int
    start: float
    duration: float
    velocity: int = 80


@dataclass(frozen=True)
class Voice:
    """What a streamed voice is: its kind (for markov: 0 high, 1 low, 2 chords), program and name."""

    program: int = 0
    is_drum: bool = False
    name: str = ""
    kind: int | None = None


@dataclass
class Measure:
    """One 4/4 measure of every voice (`index` from 0); `notes` start inside the measure."""

    index: int
    notes: list[Note]
    voices: list[Voice]
    tempo: float = 120.0
    beats: float = 4.0
    type: ClassVar[str] = "measure"

    def to_json(self) -> dict:
        return {
            "type": self.type,
            "index": self.index,
            "beats": self.beats,
            "tempo": self.tempo,
            "voices": [v.__dict__ for v in self.voices],
            "notes": [
                {"voice": n.voice, "pitch": n.pitch, "start": n.start, "duration": n.duration, "velocity": n.velocity}
                for n in self.notes
            ],
        }


@dataclass
class AudioBlock:
    """A block of mono float32 samples in [-1, 1]; `sample` is the block's first sample index."""

    index: int
    sample: int
    samples: np.ndarray
    sample_rate: int
    type: ClassVar[str] = "audio"

    def to_json(self) -> dict:
        pcm = np.clip(self.samples, -1, 1)
        return {
            "type": self.type,
            "index": self.index,
            "sample": self.sample,
            "sample_rate": self.sample_rate,
            "samples": np.round(pcm * 32767).astype(np.int16).tolist(),
        }


@dataclass
class TextChunk:
    """A piece of text output (an ABC bar or a whole tune when `complete`)."""

    index: int
    text: str
    complete: bool = False
    type: ClassVar[str] = "text"

    def to_json(self) -> dict:
        return {"type": self.type, "index": self.index, "text": self.text, "complete": self.complete}


@dataclass
class PieceReport:
    """What the composer noticed while making a piece (repairs, retries, checks): the last chunk of a stream
    that has something to report, so that every path that builds the piece (compose, the server) keeps it."""

    report: dict
    type: ClassVar[str] = "report"

    def to_json(self) -> dict:
        return {"type": self.type, "report": self.report}


Chunk = Measure | AudioBlock | TextChunk | PieceReport


# -------------------------------------------------------------------------------------------- piece


@dataclass
class Piece:
    """A finished piece: a score, audio or ABC text (one or more), its provenance and a report."""

    provenance: dict
    score: symusic.Score | None = None
    audio: np.ndarray | None = None
    sample_rate: int = 16000
    abc: str | None = None
    report: dict = field(default_factory=dict)

    def save(self, path: str | Path, *, sidecar: bool = True) -> list[Path]:
        """Write the piece by the file's suffix (.mid, .wav, .abc, .json) plus its provenance sidecar."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        written = [path]
        if suffix in (".mid", ".midi"):
            if self.score is None:
                raise BadInput("this piece has no notes to write as MIDI (try .wav or .abc)", path)
            save_midi(self.score, path)
        elif suffix == ".wav":
            if self.audio is not None:
                write_wav(path, self.audio, self.sample_rate)
            elif self.score is not None:
                render_wav(self.score, path)
            else:
                raise BadInput("this piece has nothing to render as audio", path)
        elif suffix == ".abc":
            if self.abc is None:
                raise BadInput("this piece has no ABC text (try .mid)", path)
            write_atomic(path, self.abc)
        else:
            raise BadInput(f"unknown output format {suffix!r}: use .mid, .wav or .abc", path)
        if sidecar:
            record = dict(self.provenance)
            if self.report:
                record["report"] = self.report
            written.append(write_sidecar(path, record))
        return written


def score_from_measures(measures: list[Measure], tpq: int = STREAM_TPQ) -> symusic.Score:
    """Assemble streamed measures into a Score, one track per voice (in voice order)."""
    voices = measures[0].voices if measures else []
    tempo = measures[0].tempo if measures else 120.0
    per_voice: list[dict] = [
        {
            "name": v.name,
            "program": v.program,
            "is_drum": v.is_drum,
            "pitch": [],
            "start": [],
            "duration": [],
            "velocity": [],
        }
        for v in voices
    ]
    for m in measures:
        for n in m.notes:
            t = per_voice[n.voice]
            t["pitch"].append(n.pitch)
            t["start"].append(round(n.start * tpq))
            t["duration"].append(max(1, round(n.duration * tpq)))
            t["velocity"].append(n.velocity)
    return score_from_notes(per_voice, tpq=tpq, tempo_qpm=tempo)


# ----------------------------------------------------------------------------------------- composer


class Composer(ABC):
    """A trained model that composes. Subclasses live one per system package, listed in `orchestrion.registry`."""

    kind: ClassVar[str]  # the registry name: "markov", "gpt", "sashimi"
    output: ClassVar[str] = "score"  # what a piece holds: "score" (notes, maybe ABC text) or "audio"

    def __init__(self) -> None:
        self.name = self.kind  # "builtin:markov" or the model directory, set by load_composer
        self.checkpoint_hash = ""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Composer:
        """Load a saved model from `directory` (config.json + safetensors/npz)."""

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Save the model to `directory`; `config.json` names the composer kind."""

    @abstractmethod
    def stream(self, request: ComposeRequest) -> Iterator[Chunk]:
        """Yield the piece chunk by chunk, as soon as each is made. `request.seed` is set."""

    def validate(self, request: ComposeRequest) -> ComposeRequest:
        """Check the request against this model's limits (raise InvalidRequest) and fill in defaults."""
        return request.with_seed()

    def options(self) -> dict:
        """This model's options and limits, for `GET /api/models` and the web client."""
        return {"name": self.name, "kind": self.kind}

    def share_steps(self) -> Callable[[], dict] | None:
        """Let the concurrent streams of this model compute together (a server asks once, at start).

        Returns a function that reports how the work was shared, or None when this model cannot (the
        default): its streams then each run on their own. Each stream's piece stays what it is alone.
        """
        return None

    def provenance(self, request: ComposeRequest, **extra: object) -> dict:
        return make_provenance(self.name, self.checkpoint_hash, request.model_dump(exclude_none=True), dict(extra))

    def compose(self, request: ComposeRequest) -> Piece:
        """Collect `stream(request)` into a Piece."""
        request = self.validate(request)
        return self.piece(request, self.stream(request))

    def piece(self, request: ComposeRequest, chunks: Iterable[Chunk], **provenance: object) -> Piece:
        """The one way streamed chunks become a Piece (compose, the server, evaluation all come here).

        Measures make the score, audio blocks the audio, complete text chunks the ABC text, and report
        chunks the report; `finish` then adds what only the composer knows (a score compiled from ABC, an
        audio check). `provenance` adds fields to the provenance record (e.g. `batch_index`).
        """
        measures: list[Measure] = []
        audio: list[np.ndarray] = []
        text: list[str] = []
        report: dict = {}
        sample_rate = 16000
        for chunk in chunks:
            if isinstance(chunk, Measure):
                measures.append(chunk)
            elif isinstance(chunk, AudioBlock):
                audio.append(chunk.samples)
                sample_rate = chunk.sample_rate
            elif isinstance(chunk, TextChunk) and chunk.complete:
                text.append(chunk.text)
            elif isinstance(chunk, PieceReport):
                report.update(chunk.report)
        piece = Piece(
            provenance=self.provenance(request, **provenance),
            score=score_from_measures(measures) if measures else None,
            audio=np.concatenate(audio) if audio else None,
            sample_rate=sample_rate,
            abc="\n\n".join(text) if text else None,
            report=report,
        )
        return _with_programs(self.finish(piece, request), request.programs)

    def finish(self, piece: Piece, request: ComposeRequest) -> Piece:
        """Complete a piece built from chunks with what only this composer knows (default: nothing)."""
        return piece

    def check(self, piece: Piece) -> dict:
        """Is the piece what this model promises? {"valid": bool, "why": str} (default: notes, no repairs)."""
        return check_score(piece)

    def likelihood(self, held: HeldOut, config: EvalConfig) -> dict:
        """How well the model predicts held-out data (`orchestrion eval`); {"skipped": why} when it cannot."""
        return {"skipped": f"no likelihood for {self.kind!r} models"}

    def trained_on(self) -> list[str]:
        """What the model was trained on (corpus names, folders, dataset directories), as recorded."""
        return []


def _with_programs(piece: Piece, programs: list[int] | None) -> Piece:
    """A request's `programs` (General MIDI, one per voice, or one for all) as the instruments of the piece's
    pitched tracks, for a composer that did not set them itself (an ABC tune: abc2midi plays a piano)."""
    if not programs or piece.score is None:
        return piece
    tracks = [t for t in piece.score.tracks if not t.is_drum and len(t.notes)]
    for i, track in enumerate(tracks):
        if len(programs) == 1 or i < len(programs):
            track.program = programs[0] if len(programs) == 1 else programs[i]
    return piece


def check_score(piece: Piece) -> dict:
    """A symbolic piece is valid when it holds notes and its decoding needed no repair."""
    repairs = piece.report.get("decode_repairs") or []
    has_notes = piece.score is not None and any(len(t.notes) for t in piece.score.tracks)
    why = "; ".join(repairs[:3]) if repairs else ("" if has_notes else "no notes")
    return {"valid": bool(has_notes and not repairs), "why": why}
