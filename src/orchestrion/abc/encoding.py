"""Spaceless ABC as a GPT encoding: header defaults, streaming, and what config.json learns from the data.

A request's rhythm gives the meter, tempo and form it leaves open (`orchestrion.abc.rhythms`: a reel is in
4/4 at 200 quarter notes a minute, in two repeated 8-bar strains); a meter the rhythm is not written in is
an `InvalidRequest` naming `meter`. The stream yields a TextChunk per bar as its bar line comes, then the
whole checked tune (complete=True, with its tempo as a `Q:` field) and its report; a tune abc2midi rejects
is sampled again and the stream starts over from its X: line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import ClassVar

import numpy as np

from orchestrion.abc import text as abccodec
from orchestrion.abc.meter import meter_length
from orchestrion.abc.rhythms import RHYTHMS, rhythm_named, tempo_field
from orchestrion.composer import Chunk, Piece, PieceReport, TextChunk
from orchestrion.core.abcmidi import abc_to_score, validate
from orchestrion.core.music import parse_key
from orchestrion.errors import BadInput, InvalidRequest, OrchestrionError
from orchestrion.requests import ComposeRequest


class ABCEncoding:
    name: ClassVar[str] = "abc"

    def validate(self, config: object, request: ComposeRequest) -> ComposeRequest:
        """The rhythm's meter, tempo and form where the request leaves them open (a meter that does not fit
        the rhythm is an error naming `meter`); a key left open is drawn from the training data's keys with
        the seed. Without a rhythm the model writes `R:` (a known one) and then a meter of that rhythm."""
        update = _rhythm_defaults(request)
        headers = getattr(config, "default_headers", None)
        if not headers or request.prompt is not None or request.variations_of is not None:
            return request.model_copy(update=update) if update else request
        rng = np.random.default_rng(request.seed)
        choices = headers.get("key") or []
        if request.key is None and choices:
            weights = np.array([c for _, c in choices], dtype=float)
            update["key"] = choices[int(rng.choice(len(choices), p=weights / weights.sum()))][0]
        return request.model_copy(update=update) if update else request

    def chunks(self, model: object, tokenizer: object, request: ComposeRequest) -> Iterator[Chunk]:
        from orchestrion.abc.sampler import sample_abc  # torch: loaded only to compose

        index, pending = 0, ""
        for event in sample_abc(model, tokenizer, request):
            if event.kind == "token":
                pending += event.text
                cut = pending.rfind("|")
                if cut >= 0:
                    yield TextChunk(index, pending[: cut + 1])
                    index += 1
                    pending = pending[cut + 1 :]
            elif event.kind == "tune":
                meter = abccodec.header(event.text)["meter"] or None
                text = abccodec.with_header_lines(event.text, [tempo_field(request.tempo, meter)])
                yield TextChunk(index, text, complete=True)
                yield PieceReport({**event.report, "valid": event.valid})
                index, pending = index + 1, ""

    def finish(self, piece: Piece) -> Piece:
        """Notes for .mid / .wav output; a tune abc2midi cannot compile has none."""
        if piece.abc is not None:
            try:
                piece.score = abc_to_score(piece.abc)
            except OrchestrionError:
                piece.score = None
        return piece

    def check(self, piece: Piece) -> dict:
        """Valid when abc2midi compiles the tune without errors."""
        if piece.abc is None:
            return {"valid": False, "why": "no ABC text"}
        return {"valid": bool(validate(piece.abc).ok and piece.score is not None), "why": ""}

    def text_of(self, line: str, meta: dict) -> str | None:
        """The ABC tune one line of a dataset's text holds."""
        return (
            line.replace("<s>", "").replace("</s>", "").strip().replace(meta.get("newline_mark", "\u00b6"), "\n") + "\n"
        )

    def score_of(self, line: str, meta: dict) -> tuple[object, str]:
        """The score abc2midi makes of one tune of a dataset's text, and its title line."""
        tune = line.replace("<s>", "").replace("</s>", "").strip().replace(meta.get("newline_mark", "\u00b6"), "\n")
        if not tune:
            raise BadInput("an empty line")
        return abc_to_score(tune), tune.split("\n")[1][:40] if "\n" in tune else "tune"

    def token_ids(self, tune: str, tokenizer: object) -> list[int]:
        """A tune as the model reads it, whatever tokenizer made the data: cleaned, spaceless, between <s> and
        </s>, as `orchestrion encode abc` writes it ([] for a tune with no K: line)."""
        text = abccodec.spaceless(abccodec.clean(abccodec.to_readable(tune)).abc)
        if not any(line.startswith("K:") for line in text.splitlines()):
            return []
        bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
        return [bos, *tokenizer.encode(text, add_special_tokens=False).ids, eos]

    def data_defaults(self, dataset: object, tokenizer: object) -> dict:
        return {"default_headers": typical_headers(dataset)}


def _rhythm_defaults(request: ComposeRequest) -> dict:
    """What a request's rhythm says about its meter, tempo and form (an InvalidRequest where they clash)."""
    update: dict = {}
    if request.meter is not None:
        try:
            meter_length(request.meter)
        except BadInput as exc:
            raise InvalidRequest("meter", exc.reason) from exc
    if request.rhythm is None:
        return update
    rhythm = rhythm_named(request.rhythm)
    if rhythm is None:
        raise InvalidRequest("rhythm", f"unknown rhythm {request.rhythm!r}: use one of {', '.join(RHYTHMS)}")
    if request.rhythm != rhythm.name:
        update["rhythm"] = rhythm.name
    meter = request.meter or rhythm.meter
    if request.meter is None:
        update["meter"] = meter
    elif not rhythm.fits(request.meter):
        raise InvalidRequest(
            "meter",
            f"a {rhythm.name} is written in {' or '.join(rhythm.meters)}, not {request.meter}: "
            f"leave the meter out for {rhythm.meter}",
        )
    if "tempo" not in request.model_fields_set:
        update["tempo"] = rhythm.quarter_tempo(meter)
    if request.form is None:
        update["form"] = "strains" if rhythm.dance else "free"
    return update


def typical_headers(dataset, limit: int = 5000, top: int = 8) -> dict[str, list]:
    """The most common meters and keys of an ABC dataset's tunes, with their counts.

    Stored in config.json as `default_headers`: when a request names no meter or key, the composer draws
    them from this distribution with the request's seed (a weak model then never has to invent a header).
    """
    meters: Counter = Counter()
    keys: Counter = Counter()
    split = dataset.split("train")
    files = sorted((dataset.root / "text").glob("train-*.txt"))
    lines = [line for f in files for line in f.read_text().splitlines()][:: max(1, len(split) // limit)]
    for line in lines:
        head = abccodec.header(abccodec.unescape_newlines(line))
        if head["meter"] and head["meter"] != "none":
            meters[head["meter"]] += 1
        key = head["key"]
        tonic, minor = key.removesuffix("m"), key.endswith("m") and not key.endswith("dim")
        if tonic and len(tonic) <= 2 and tonic[0] in "ABCDEFG" and tonic[1:] in ("", "b", "#"):
            name = f"{tonic} {'minor' if minor else 'major'}"
            try:
                if parse_key(name).name.split()[0] == tonic:  # only keys that spell back the same way
                    keys[name] += 1
            except BadInput:
                continue
    return {"meter": [list(x) for x in meters.most_common(top)], "key": [list(x) for x in keys.most_common(top)]}
