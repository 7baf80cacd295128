"""A piece of any length as windows the model knows: the plan, the window schedule, notes <-> bar tokens.

    PieceTrack, PiecePlan   a piece being composed: per track its instrument and the notes known so far,
                            and `todo`, the (track, bar) cells still to compose
    next_window(todo)       the next window of `window` bars: it starts `context` bars before the first
                            cell to compose, so each window is conditioned on the bars before it
    bar_tokens(notes, a, n) the bar bodies of a track's notes in bars a .. a + n - 1, as mmm encodes a
                            window (notes clipped to it, a note held over a bar line written once)
    track_notes(tokens, a)  the notes of one track's tokens whose first bar is bar a
    piece_tokens(plan)      the whole piece as one mmm sequence (what `decode` turns into a score)

Notes are (start, end, pitch) rows of int64 steps on the 16th grid, start < end. Windows are the length
the model was trained on (4 bars): the first composes bars 0-3, the next bars 4-5 after bars 2-3, and so
on (hop 2, like the training windows), so 16, 32 or 64 bars cost the same per bar and never starve. A
harmonisation composes the free voices around the given ones the same way; a fill composes the listed
bars between the given bars around them; a continuation starts after the prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from orchestrion.core.music import Key
from orchestrion.mmm.vocabulary import STEPS_PER_BAR

WINDOW_BARS = 4  # the window the chorale model was trained on
CONTEXT_BARS = 2  # bars of a window given from before (the training windows' hop is 2)


def no_notes() -> np.ndarray:
    return np.zeros((0, 3), np.int64)


@dataclass
class PieceTrack:
    """One track: its instrument ("SOPRANO", "0".."127", "DRUMS") and the notes known so far."""

    instrument: str
    notes: np.ndarray = field(default_factory=no_notes)  # (n, 3): start, end, pitch
    kept: bool = False  # given whole (a melody to harmonise): its notes come back untouched
    density: str | None = None  # "DENSITY=k" once fixed: every window of the track uses it
    low: int = 0  # the range a composed bar keeps when the instrument is no chorale voice
    high: int = 127


@dataclass
class PiecePlan:
    """A piece being composed: `todo[k, b]` is True while bar b of track k is still to compose."""

    bars: int
    tracks: list[PieceTrack]
    todo: np.ndarray  # (tracks, bars) bool
    key: Key
    mode: str = "compose"  # compose | continue | harmonise | fill
    shift: int = 0  # semitones the prompt was moved to suit the voices; the piece moves back at the end
    tempo: float = 120.0
    warnings: list[str] = field(default_factory=list)
    key_free: bool = False  # no key was asked for: the cadence may follow the key the music has come to

    def done_bars(self) -> int:
        """Bars from the start whose every track is final."""
        open_ = np.flatnonzero(self.todo.any(axis=0))
        return int(open_[0]) if len(open_) else self.bars


def next_window(
    todo: np.ndarray, window: int = WINDOW_BARS, context: int = CONTEXT_BARS, first: int | None = None
) -> tuple[int, int] | None:
    """(first bar, end bar) of the next window, or None when nothing is left to compose. With `first`, a piece
    composed from nothing starts with a window of `first` bars (a stream's first bar comes sooner)."""
    bars = todo.shape[1]
    open_ = np.flatnonzero(todo.any(axis=0))
    if not len(open_):
        return None
    if first is not None and todo.all():
        return 0, min(first, bars)
    start = max(0, min(int(open_[0]) - context, bars - window))
    return start, min(start + window, bars)


def cut_notes(notes: np.ndarray, a: int, b: int) -> np.ndarray:
    """The notes with steps [a, b) taken out: notes over the gap keep the parts before and after it."""
    if not len(notes):
        return notes
    start, end, pitch = notes.T
    before = notes[start < a].copy()
    before[:, 1] = np.minimum(before[:, 1], a)
    after = notes[end > b].copy()
    after[:, 0] = np.maximum(after[:, 0], b)
    out = np.concatenate([before, after])
    out = out[out[:, 1] > out[:, 0]]
    return np.unique(out, axis=0) if len(out) else no_notes()


def bar_tokens(notes: np.ndarray, first: int, bars: int) -> list[list[str]]:
    """The body tokens (between BAR_START and BAR_END) of each bar of a window of `bars` bars at bar `first`.

    Notes are clipped to the window; within a step NOTE_OFFs come before NOTE_ONs, each in rising pitch;
    a note ending on a bar line is closed at step 16 of the bar before (the mmm grammar)."""
    a, b = first * STEPS_PER_BAR, (first + bars) * STEPS_PER_BAR
    events: list[tuple[int, int, int]] = []  # (time, 0 off / 1 on, pitch)
    for start, end, pitch in notes.tolist():
        s, e = max(start, a), min(end, b)
        if e > s:
            events += [(s - a, 1, pitch), (e - a, 0, pitch)]
    events.sort()
    bodies: list[list[str]] = [[] for _ in range(bars)]
    t = [0] * bars
    for time, kind, pitch in events:
        bar = (time - 1) // STEPS_PER_BAR if kind == 0 else time // STEPS_PER_BAR  # an off on the line: before
        step = time - bar * STEPS_PER_BAR
        if step > t[bar]:
            bodies[bar].append(f"TIME_DELTA={step - t[bar]}")
            t[bar] = step
        bodies[bar].append(f"NOTE_{'ON' if kind else 'OFF'}={pitch}")
    return bodies


def track_notes(tokens: list[str], first: int) -> np.ndarray:
    """The notes of one track's tokens (grammar-valid mmm), bars numbered from `first`; notes still
    sounding at the end close at the last bar line."""
    rows, sounding = [], {}
    bar, t = first - 1, 0
    for token in tokens:
        name, _, value = token.partition("=")
        if name == "BAR_START":
            bar, t = bar + 1, 0
        elif name == "TIME_DELTA":
            t += int(value)
        elif name == "NOTE_ON":
            sounding[int(value)] = bar * STEPS_PER_BAR + t
        elif name == "NOTE_OFF" and int(value) in sounding:
            now = bar * STEPS_PER_BAR + t
            rows.append((sounding.pop(int(value)), now, int(value)))
    end = (bar + 1) * STEPS_PER_BAR
    rows += [(s, end, p) for p, s in sounding.items()]
    return np.array(sorted(rows), np.int64).reshape(-1, 3)


def density_token(notes: np.ndarray, first: int, bars: int, edges: tuple[float, ...]) -> str:
    """The DENSITY token of a track's notes in a window, as the dataset pipeline bins it."""
    a, b = first * STEPS_PER_BAR, (first + bars) * STEPS_PER_BAR
    count = int(((notes[:, 0] < b) & (notes[:, 1] > a)).sum()) if len(notes) else 0
    return f"DENSITY={int(np.searchsorted(np.asarray(edges, float), count / max(bars, 1), side='right'))}"


def known_key(plan: PiecePlan, bars: int) -> Key | None:
    """The key (estimated) of the first `bars` bars of the piece's notes, or None when they hold none."""
    from orchestrion.core.music import estimate_key, score_from_notes

    end = bars * STEPS_PER_BAR
    tracks = [t.notes[t.notes[:, 0] < end] for t in plan.tracks if t.instrument != "DRUMS" and len(t.notes)]
    tracks = [n for n in tracks if len(n)]
    if not tracks:
        return None
    specs = [{"pitch": n[:, 2], "start": n[:, 0], "duration": np.minimum(n[:, 1], end) - n[:, 0]} for n in tracks]
    return estimate_key(score_from_notes(specs, tpq=4))


def piece_tokens(plan: PiecePlan, bars: int | None = None) -> list[str]:
    """The first `bars` bars (default: all) of the piece as one mmm sequence, notes shifted back by `plan.shift`."""
    bars = plan.bars if bars is None else bars
    out = ["PIECE_START"]
    for track in plan.tracks:
        notes = track.notes
        if plan.shift and len(notes):
            notes = notes.copy()
            notes[:, 2] = np.clip(notes[:, 2] - plan.shift, 0, 127)
        out += ["TRACK_START", f"INST={track.instrument}", track.density or "DENSITY=0"]
        for body in bar_tokens(notes, 0, bars):
            out += ["BAR_START", *body, "BAR_END"]
        out.append("TRACK_END")
    out.append("PIECE_END")
    return out
