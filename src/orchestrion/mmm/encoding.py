"""mmm tokens as a GPT encoding: request defaults, streaming, and what config.json learns from the data.

mmm is generated track by track (the order the model was trained on), window by window: the stream yields
a TextChunk of tokens for every bar of every track as it is chosen, and the Measures (all voices, bar by
bar) as soon as a window makes them final, so a long piece streams while it is composed. `finish` gives
the piece its key signature and its title (a MIDI marker `Title: ...` that `core.render.render_svg` shows).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from orchestrion.composer import Chunk, Measure, Note, Piece, PieceReport, TextChunk, Voice, check_score
from orchestrion.mmm.codec import decode
from orchestrion.requests import ComposeRequest

MIN_TEMPO, MAX_TEMPO = 20.0, 400.0  # ComposeRequest.tempo's limits


class MMMEncoding:
    name: ClassVar[str] = "mmm"
    token_types_kind: ClassVar[str] = "bar-steps"  # the feature `orchestrion.mmm.timing` gives every token

    def type_tokens(self) -> list[str]:
        from orchestrion.mmm.timing import TYPE_TOKENS

        return list(TYPE_TOKENS)

    def token_types(self, ids: np.ndarray, vocab: dict[str, int]) -> np.ndarray:
        """The bar-position token id of every token of `ids` (mmm sequences end to end)."""
        from orchestrion.mmm.timing import token_types

        return token_types(ids, vocab)

    def validate(self, config: object, request: ComposeRequest) -> ComposeRequest:
        default = getattr(config, "default_instruments", None)
        if (
            default
            and request.instruments is None
            and request.prompt is None
            and (request.density is None or len(request.density) == len(default))
        ):
            request = request.model_copy(update={"instruments": list(default)})  # recorded, so replays match
        if request.prompt is not None and "tempo" not in request.model_fields_set:
            tempo = prompt_tempo(request.prompt)
            if tempo is not None:  # the prompt's tempo, recorded so that a replay plays at it too
                request = request.model_copy(update={"tempo": min(max(tempo, MIN_TEMPO), MAX_TEMPO)})
        return request

    def chunks(self, model: object, tokenizer: object, request: ComposeRequest) -> Iterator[Chunk]:
        from orchestrion.mmm.sampler import sample_mmm  # torch: loaded only to compose

        index = 0
        for event in sample_mmm(model, tokenizer, request, token_events=False):
            if event.kind == "bar":
                yield TextChunk(index, f"{event.instrument} bar {event.bar}: {' '.join(event.tokens)}")
                index += 1
            elif event.kind == "measures":
                tempo = float(event.report.get("tempo") or request.tempo)
                score, _ = decode(event.tokens, tempo=tempo)
                yield from measures_from_score(score, bars=event.bars, tempo=tempo)[event.bar :]
            elif event.kind == "piece":
                _, repairs = decode(event.tokens)
                yield PieceReport({**event.report, "decode_repairs": repairs, "tokens_text": " ".join(event.tokens)})

    def finish(self, piece: Piece) -> Piece:
        """The key signature of the key the piece was written in, and its title (the request's, or
        'Chorale in G major' for a chorale), as MIDI meta events."""
        if piece.score is None:
            return piece
        import symusic

        from orchestrion.core.music import parse_key

        key = piece.report.get("key")
        if key and not len(piece.score.key_signatures):
            k = parse_key(key)
            major = (k.tonic + 3) % 12 if k.mode == "minor" else k.tonic
            sharps = (major * 7) % 12
            piece.score.key_signatures.append(
                symusic.KeySignature(0, sharps - 12 if sharps > 6 else sharps, int(k.mode == "minor"))
            )
        title = (piece.provenance.get("request") or {}).get("title")
        voices = {t.name.upper() for t in piece.score.tracks}
        if not title and key and voices and voices <= {"SOPRANO", "ALTO", "TENOR", "BASS"}:
            title = f"Chorale in {key}"
        if title:
            piece.score.markers.append(symusic.TextMeta(0, f"Title: {title}"))
        return piece

    def check(self, piece: Piece) -> dict:
        """Valid when the tokens decoded without a repair and hold notes."""
        return check_score(piece)

    def score_of(self, line: str, meta: dict) -> tuple[object, str]:
        """The score one line of a dataset's text holds (and no name: windows have none)."""
        return decode(line)[0], ""

    def text_of(self, line: str, meta: dict) -> str | None:
        """mmm lines are tokens, not a text form a musician reads: no text measures."""
        return None

    def data_defaults(self, dataset: object, tokenizer: object) -> dict:
        """The usual line-up, and the DENSITY bin edges (a window's given tracks are binned with them)."""
        edges = (getattr(dataset, "meta", None) or {}).get("density_edges")
        return {
            "default_instruments": typical_layout(dataset, tokenizer),
            **({"density_edges": edges} if edges else {}),
        }


def prompt_tempo(prompt: str) -> float | None:
    """The first tempo of a MIDI prompt (what `orchestrion.mmm.codec.read_prompt` keeps); None when it has
    none or cannot be read (composing it then says why)."""
    from orchestrion.core.music import load_midi
    from orchestrion.errors import BadInput

    try:
        score = load_midi(prompt)
    except (BadInput, OSError):
        return None
    return float(score.tempos[0].qpm) if len(score.tempos) else None


def measures_from_score(score, *, bars: int, tempo: float = 120.0) -> list[Measure]:
    """Cut a 4/4 score into `bars` Measures of all its tracks (notes belong to the bar they start in)."""
    tpq = score.ticks_per_quarter
    voices = [Voice(program=int(t.program), is_drum=bool(t.is_drum), name=t.name) for t in score.tracks]
    per_bar: list[list[Note]] = [[] for _ in range(bars)]
    for v, track in enumerate(score.tracks):
        arr = track.notes.numpy()
        for start, duration, pitch, velocity in zip(
            arr["time"], arr["duration"], arr["pitch"], arr["velocity"], strict=True
        ):
            quarter = float(start) / tpq
            bar = int(quarter // 4)
            if 0 <= bar < bars:
                per_bar[bar].append(Note(v, int(pitch), quarter, float(duration) / tpq, int(velocity) or 80))
    return [Measure(i, notes, voices, tempo=tempo) for i, notes in enumerate(per_bar)]


def typical_layout(dataset, tokenizer, limit: int = 5000) -> list[str]:
    """The most common instrument line-up of the training data (e.g. SOPRANO ALTO TENOR BASS).

    Stored in config.json as `default_instruments`: what the composer asks for when a request names none.
    """
    vocab = tokenizer.get_vocab()
    inst = np.zeros(max(vocab.values()) + 1, dtype=bool)
    names = {i: t.removeprefix("INST=") for t, i in vocab.items() if t.startswith("INST=")}
    inst[list(names)] = True
    split = dataset.split("train")
    step = max(1, len(split) // limit)
    layouts = Counter()
    for i in range(0, len(split), step):
        ids = split[i].astype(np.int64)
        layouts[tuple(names[int(t)] for t in ids[inst[ids]])] += 1
    return list(layouts.most_common(1)[0][0]) if layouts else []
