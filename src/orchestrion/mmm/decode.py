"""Decoding mmm tokens back into a score, repairing whatever a model got wrong (`orchestrion.mmm.codec.decode`).

A state machine over the tokens: a cursor (track, bar, step) and the pitches sounding. Every deviation
from the grammar in `orchestrion.mmm.vocabulary` is repaired in the least surprising way and described in the repairs
list; nothing here raises on any list of strings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrion.core.music import score_from_notes
from orchestrion.mmm.vocabulary import STEPS_PER_BAR, STEPS_PER_QUARTER, VOICES

if TYPE_CHECKING:
    import symusic


def _number(value: str) -> int | None:
    """The value of a plain ASCII decimal, else None.

    `str.isdigit` also accepts '²' and '١٢', which `int` refuses or reads as numbers no model wrote, and `int`
    refuses strings of over 4,300 digits; every valid value here is under 1,000, so longer runs are out of range.
    """
    if not (value.isascii() and value.isdigit()):
        return None
    return int(value) if len(value) <= 9 else 10**9


def _splice_fills(tokens: list[str], repairs: list[str]) -> list[str]:
    """Put each FILL_START ... FILL_END body back where its FILL_IN stands, in order."""
    bodies: list[list[str]] = []
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "FILL_START":
            j = i + 1
            while j < len(tokens) and tokens[j] not in ("FILL_END", "PIECE_END", "FILL_START"):
                j += 1
            bodies.append(tokens[i + 1 : j])
            if j >= len(tokens) or tokens[j] != "FILL_END":
                repairs.append("FILL_START without FILL_END: the fill ends at the next structure token")
                i = j
            else:
                i = j + 1
            continue
        if tokens[i] == "FILL_END":
            repairs.append("FILL_END without FILL_START dropped")
        else:
            rest.append(tokens[i])
        i += 1
    out: list[str] = []
    for token in rest:
        if token == "FILL_IN":
            if bodies:
                out.extend(bodies.pop(0))
            else:
                repairs.append("FILL_IN without a FILL_START ... FILL_END body: the bar is left empty")
        else:
            out.append(token)
    if bodies:
        repairs.append(f"{len(bodies)} fill bodies without a FILL_IN dropped")
    return out


def decode_tokens(
    tokens: str | list[str],
    *,
    tempo: float = 120.0,
    voice_program: int = 52,  # General MIDI choir aahs, as the built-in chorales carry
    velocity: int = 80,
) -> tuple[symusic.Score, list[str]]:
    """Decode tokens (a string or a list) into a score on the step grid (tpq 4), and the repairs made.

    Never raises on model output: unknown tokens, unclosed notes, NOTE_OFF without NOTE_ON, TIME_DELTA
    past the bar, missing BAR_END/TRACK_END/PIECE_END are repaired and listed.
    """
    words = tokens.split() if isinstance(tokens, str) else [str(t) for t in tokens]
    repairs: list[str] = []
    words = _splice_fills(words, repairs)
    tracks: list[dict] = []
    track: dict | None = None
    bar, t, bar_open = -1, 0, False
    sounding: dict[int, int] = {}

    def close_notes(at: int, why: str) -> None:
        for p, s in sorted(sounding.items()):
            track["pitch"].append(p)
            track["start"].append(s)
            track["duration"].append(max(at - s, 1))
        if sounding:
            repairs.append(f"{len(sounding)} {why}")
        sounding.clear()

    def end_track(why: str | None) -> None:
        nonlocal track, bar_open
        if track is None:
            return
        if bar_open:
            repairs.append("BAR_END missing")
            bar_open = False
        close_notes((bar + 1) * STEPS_PER_BAR, "notes left sounding at the end of the track were closed")
        if why:
            repairs.append(why)
        tracks.append(track)
        track = None

    def start_track() -> None:
        nonlocal track, bar, t
        track = {"pitch": [], "start": [], "duration": [], "program": 0, "is_drum": False, "name": "", "notes": 0}
        bar, t = -1, 0

    def ensure_bar(token: str) -> bool:
        nonlocal bar, t, bar_open
        if track is None:
            repairs.append(f"{token} outside a track: a track was opened")
            start_track()
        if not bar_open:
            repairs.append(f"{token} outside a bar: a bar was opened")
            bar, t, bar_open = bar + 1, 0, True
        return True

    ended = False
    for token in words:
        name, _, value = token.partition("=")
        if name == "PIECE_START" or name == "DENSITY" or name == "<pad>":
            continue
        if name == "PIECE_END":
            ended = True
            break
        if name == "TRACK_START":
            end_track("TRACK_END missing" if track is not None else None)
            start_track()
        elif name == "TRACK_END":
            if track is None:
                repairs.append("TRACK_END without TRACK_START dropped")
            end_track(None)
        elif name == "INST" and track is not None and bar < 0:
            if value == "DRUMS":
                track["is_drum"] = True
            elif value in VOICES:
                track["name"], track["program"] = value.capitalize(), voice_program
            elif (program := _number(value)) is not None and program < 128:
                track["program"] = program
            else:
                repairs.append(f"unknown instrument {token!r} dropped")
        elif name == "INST":
            repairs.append(f"{token} outside a track header dropped")
        elif name == "BAR_START":
            if track is None:
                repairs.append("BAR_START outside a track: a track was opened")
                start_track()
            if bar_open:
                repairs.append("BAR_END missing")
            bar, t, bar_open = bar + 1, 0, True
        elif name == "BAR_END":
            if not bar_open:
                repairs.append("BAR_END without BAR_START dropped")
            bar_open = False
        elif name in ("NOTE_ON", "NOTE_OFF", "TIME_DELTA") and (n := _number(value)) is not None:
            if name == "TIME_DELTA":
                if not 1 <= n <= STEPS_PER_BAR:
                    repairs.append(f"{token} out of range dropped")
                    continue
                ensure_bar(token)
                if t + n > STEPS_PER_BAR:
                    repairs.append(f"{token} past the bar line was cut at the bar line")
                t = min(t + n, STEPS_PER_BAR)
                continue
            if n > 127:
                repairs.append(f"{token} out of range dropped")
                continue
            ensure_bar(token)
            now = bar * STEPS_PER_BAR + t
            if name == "NOTE_ON":
                if n in sounding:
                    repairs.append(f"{token} while the pitch was sounding: the earlier note was closed")
                    s = sounding.pop(n)
                    track["pitch"].append(n)
                    track["start"].append(s)
                    track["duration"].append(max(now - s, 1))
                sounding[n] = now
            elif n not in sounding:
                repairs.append(f"{token} without NOTE_ON dropped")
            else:
                s = sounding.pop(n)
                if now == s:
                    repairs.append(f"{token} at its NOTE_ON's step: the note was given one step")
                track["pitch"].append(n)
                track["start"].append(s)
                track["duration"].append(max(now - s, 1))
        else:
            repairs.append(f"unknown token {token!r} dropped")
    end_track("TRACK_END missing" if track is not None else None)
    if not ended:
        repairs.append("PIECE_END missing")
    for spec in tracks:
        spec["velocity"] = [velocity] * len(spec["pitch"])
    score = score_from_notes(tracks, tpq=STEPS_PER_QUARTER, tempo_qpm=tempo)
    return score, repairs
