"""The events codec of the Markov composer: a score <-> two melodic lines and a chord progression.

A piece becomes

* a **high** and a **low** melodic line: the top note of the melody's track and the bottom note of the
  bass's track over time (`melody_and_bass` picks them: by name, a melody, vocal or lead part, a bass by
  name or program; else the highest and the lowest mostly single-note parts), as events
  `tone * N_DURATIONS + duration`, where tone 0-71 is MIDI 36-107 (notes outside are folded by octaves),
  tone 72 is a rest, and the duration is one of `DURATIONS` (16th to whole, dotted values and the triplet
  8th). A one-track piece (a piano piece) gives both lines from its one track. The top note across all
  the tracks of an arrangement would jump between the voice, the strings and the guitar;
* a **chord** progression sampled on every beat: the pitch classes sounding at the beat, the highest
  pitch the most significant base-12 digit. Codes are offset by the number of pitch classes so that no
  two chords share a code (plain base 12 would read C-E-G and E-G alike), and at most `MAX_CHORD_PCS`
  pitch classes are kept (the highest ones). Code 0 is "nothing sounds".

Time runs on a grid of `STEPS_PER_QUARTER` = 12 steps per quarter note, the smallest grid that holds
16ths and triplet 8ths. `encode`/`decode` and the helpers are pure functions over numpy arrays;
`encode_files` and `encode_to_dir` read files (in parallel) and report bad ones without stopping.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.core.music import (
    DEFAULT_KEY_PROFILE,
    KEY_PROFILES,
    Key,
    estimate_key,
    load_midi,
    pitch_class_histogram,
    score_from_notes,
)
from orchestrion.errors import BadInput

if TYPE_CHECKING:
    import symusic


STEPS_PER_QUARTER = 12
MEASURE_STEPS = 4 * STEPS_PER_QUARTER  # 4/4
LOWEST_PITCH = 36  # tone 0 = C2
N_TONES = 72  # tones 0-71 = MIDI 36-107
REST = 72
N_PITCH_SYMBOLS = 73
DURATION_NAMES = (
    "16th", "triplet 8th", "8th", "dotted 8th", "quarter", "dotted quarter", "half", "dotted half", "whole",
)  # fmt: skip
DURATIONS = (3, 4, 6, 9, 12, 18, 24, 36, 48)  # in steps (1/12 quarter)
N_DURATIONS = len(DURATIONS)
N_MELODY_EVENTS = N_PITCH_SYMBOLS * N_DURATIONS  # 657
MAX_CHORD_PCS = 4
# Chords with k pitch classes take codes CHORD_OFFSETS[k] ... CHORD_OFFSETS[k] + 12**k - 1.
CHORD_OFFSETS = tuple(1 + sum(12**j for j in range(1, k)) for k in range(MAX_CHORD_PCS + 2))
NO_CHORD = 0
N_CHORDS = CHORD_OFFSETS[MAX_CHORD_PCS + 1]  # 22621

_DURATION_INDEX = {d: i for i, d in enumerate(DURATIONS)}


def _split_table() -> list[tuple[int, ...]]:
    """For each length 0-47 steps, the list durations (at most 3, longest first) that fit it best.

    A sum off by one step costs as much as one part more (x 0.9): 11 steps (a legato quarter)
    -> (12,), but 8 steps (a triplet quarter) -> (4, 4). Lengths under a 16th may become nothing.
    """
    from itertools import combinations_with_replacement

    combos = [()] + [c for k in (1, 2, 3) for c in combinations_with_replacement(DURATIONS[::-1], k)]
    table = []
    for length in range(MEASURE_STEPS):
        table.append(
            min(combos, key=lambda c: (abs(sum(c) - length) + 0.9 * max(len(c) - 1, 0), len(c), [-d for d in c]))
        )
    return table


_SPLITS = _split_table()


def split_duration(steps: int) -> tuple[int, ...]:
    """A length in steps as list durations, longest first: 60 -> (48, 12); 8 -> (4, 4); 11 -> (12,)."""
    wholes, rest = divmod(int(steps), MEASURE_STEPS)
    return (MEASURE_STEPS,) * wholes + _SPLITS[rest]


# --------------------------------------------------------------------------------------- event ids


def melody_event(tone: int | np.ndarray, duration_index: int | np.ndarray) -> int | np.ndarray:
    return tone * N_DURATIONS + duration_index


def event_tone(event: int | np.ndarray) -> int | np.ndarray:
    return event // N_DURATIONS


def event_steps(event: int | np.ndarray) -> int | np.ndarray:
    return np.asarray(DURATIONS)[np.asarray(event) % N_DURATIONS]


def fold_tone(pitch: np.ndarray) -> np.ndarray:
    """MIDI pitches -> tones 0-71, moving notes outside MIDI 36-107 by whole octaves into range."""
    tone = np.asarray(pitch, dtype=np.int64) - LOWEST_PITCH
    tone = np.where(tone < 0, tone % 12, tone)
    return np.where(tone >= N_TONES, N_TONES - 12 + (tone % 12), tone)


def chord_code(pitches: list[int] | np.ndarray) -> int:
    """Sounding MIDI pitches -> chord code (distinct pitch classes, highest first, the top 4 kept)."""
    pitches = np.asarray(pitches, dtype=np.int64)
    if pitches.size == 0:
        return NO_CHORD
    order = np.sort(pitches)[::-1]
    pcs: list[int] = []
    for pc in (order % 12).tolist():
        if pc not in pcs:
            pcs.append(pc)
    pcs = pcs[:MAX_CHORD_PCS]
    value = 0
    for pc in pcs:
        value = value * 12 + pc
    return CHORD_OFFSETS[len(pcs)] + value


def chord_pitch_classes(code: int) -> tuple[int, ...]:
    """Chord code -> its pitch classes, highest first; NO_CHORD -> ()."""
    code = int(code)
    if not 0 <= code < N_CHORDS:
        raise ValueError(f"chord code {code} is outside 0-{N_CHORDS - 1}")
    if code == NO_CHORD:
        return ()
    k = max(i for i in range(1, MAX_CHORD_PCS + 1) if CHORD_OFFSETS[i] <= code)
    value = code - CHORD_OFFSETS[k]
    digits = []
    for _ in range(k):
        value, pc = divmod(value, 12)
        digits.append(pc)
    return tuple(reversed(digits))


def chord_mask(code: int) -> int:
    """Bit mask of a chord's pitch classes (bit pc set), for cheap membership tests while sampling."""
    mask = 0
    for pc in chord_pitch_classes(code):
        mask |= 1 << pc
    return mask


def voice_chord(code: int, top: int = 72, floor: int | None = None) -> list[int]:
    """MIDI pitches of a chord: its highest pitch class at or below `top`, each next one just below.

    With `floor`, a pitch that would fall under it moves up by octaves (a wide cluster stays playable).
    """
    pitches: list[int] = []
    ceiling = top
    for pc in chord_pitch_classes(code):
        pitch = ceiling - ((ceiling - pc) % 12)
        ceiling = pitch - 1
        while floor is not None and pitch < floor:
            pitch += 12
        pitches.append(pitch)
    return pitches


def transpose_chord(code: int, semitones: int) -> int:
    if code == NO_CHORD:
        return code
    pcs = [(pc + semitones) % 12 for pc in chord_pitch_classes(code)]
    value = 0
    for pc in pcs:
        value = value * 12 + pc
    return CHORD_OFFSETS[len(pcs)] + value


# ------------------------------------------------------------------------------------------ encode


@dataclass(frozen=True)
class PieceEvents:
    """One piece as events: `high`, `low` (melody event ids) and `chords` (codes, one per beat).

    `tonic` and `mode` are the estimated key of the source; `shift` the semitones the events were moved
    by (to tonic C when encoded with `transpose=True`, else 0); `source` names the file.
    """

    high: np.ndarray
    low: np.ndarray
    chords: np.ndarray
    tonic: int = 0
    mode: str = "major"
    shift: int = 0
    source: str = ""

    @property
    def is_empty(self) -> bool:
        return not (np.any(event_tone(self.high) != REST) or np.any(self.chords != NO_CHORD))

    def to_json(self) -> dict:
        return {
            "high": self.high.tolist(),
            "low": self.low.tolist(),
            "chords": self.chords.tolist(),
            "tonic": self.tonic,
            "mode": self.mode,
            "shift": self.shift,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, record: dict) -> PieceEvents:
        return cls(
            np.asarray(record["high"], dtype=np.uint16),
            np.asarray(record["low"], dtype=np.uint16),
            np.asarray(record["chords"], dtype=np.uint16),
            int(record.get("tonic", 0)),
            str(record.get("mode", "major")),
            int(record.get("shift", 0)),
            str(record.get("source", "")),
        )


def _grid_notes(score: symusic.Score) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
    """(start, end, pitch, track) of every pitched note on the 12-per-quarter grid, empty notes dropped, and the
    pitched tracks with notes (`track` indexes them)."""
    factor = STEPS_PER_QUARTER / score.tpq
    starts, ends, pitches, owners, tracks = [], [], [], [], []
    for track in score.tracks:
        if track.is_drum or len(track.notes) == 0:
            continue
        a = track.notes.numpy()
        start = np.rint(a["time"] * factor).astype(np.int64)
        starts.append(start)
        ends.append(np.maximum(np.rint((a["time"] + a["duration"]) * factor).astype(np.int64), start + 1))
        pitches.append(a["pitch"].astype(np.int64))
        owners.append(np.full(len(start), len(tracks), dtype=np.int64))
        tracks.append(track)
    if not starts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty, []
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(pitches), np.concatenate(owners), tracks


MELODY_NAMES = (("melody", "melodie", "mel"), ("vocal", "vocals", "voice", "vox", "lead", "sing", "singer"),
                ("soprano", "high", "top"))  # fmt: skip
BASS_NAMES = ("bass", "basso", "bassus", "low")
BASS_PROGRAMS = range(32, 40)  # General MIDI acoustic to synth bass
MOSTLY_SINGLE = 0.25  # a part with two notes or more at once for at most this share of its time is a line


def melody_and_bass(
    frames: tuple[np.ndarray, np.ndarray], pitch: np.ndarray, owner: np.ndarray, tracks: list
) -> tuple[int, int]:
    """The track whose top notes make the high line and the one whose bottom notes make the low line.

    By name first (a melody, vocal or lead part; a bass by name or General MIDI program); else among the
    parts that mostly play one note at a time, the highest and the lowest by mean pitch; else the highest
    and lowest parts. One track gives both lines.
    """
    n = len(tracks)
    if n == 1:
        return 0, 0
    step, note = frames
    length = int(step.max()) + 1 if len(step) else 1
    cells, count = np.unique(owner[note] * length + step, return_counts=True)  # (track, step) -> notes sounding
    sounding = np.maximum(np.bincount(cells // length, minlength=n), 1)
    single = np.bincount(cells // length, weights=count > 1, minlength=n) / sounding <= MOSTLY_SINGLE  # (tracks,)
    mean = np.bincount(owner, weights=pitch, minlength=n) / np.maximum(np.bincount(owner, minlength=n), 1)
    words = [set(str(t.name).lower().replace("_", " ").replace("-", " ").split()) for t in tracks]

    def pick(candidates: list[int], highest: bool) -> int | None:
        if not candidates:
            return None
        return (max if highest else min)(candidates, key=lambda k: mean[k])

    melody = None
    for names in MELODY_NAMES:
        melody = pick([k for k in range(n) if words[k] & set(names)], True)
        if melody is not None:
            break
    for candidates in ([k for k in range(n) if single[k]], list(range(n))):
        melody = melody if melody is not None else pick(candidates, True)
    others = [k for k in range(n) if k != melody]
    bass = pick([k for k in others if words[k] & set(BASS_NAMES) or tracks[k].program in BASS_PROGRAMS], False)
    for candidates in ([k for k in others if single[k]], others):
        bass = bass if bass is not None else pick(candidates, False)
    return int(melody), int(bass)


def _frames(start: np.ndarray, end: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(step, note index) for every grid step each note sounds."""
    lengths = end - start
    note = np.repeat(np.arange(len(start)), lengths)  # (F,)
    first = np.repeat(np.cumsum(lengths) - lengths, lengths)
    step = np.repeat(start, lengths) + (np.arange(lengths.sum()) - first)
    keep = step < length
    return step[keep], note[keep]


def _line(
    start: np.ndarray,
    end: np.ndarray,
    pitch: np.ndarray,
    *,
    top: bool,
    length: int,
    frames: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The skyline (top=True) or bottom line of the notes, as melody event ids."""
    if len(pitch) == 0:
        return np.zeros(0, dtype=np.int64)
    step, note = frames if frames is not None else _frames(start, end, length)
    # Rank the notes so that the per-step maximum picks a note, not just a pitch: the highest (or lowest)
    # pitch and, among notes of one pitch, the one that started last (a repeated note is a new event).
    order = np.lexsort((start, pitch if top else -pitch))  # order[rank] = note
    rank = np.empty(len(pitch), dtype=np.int64)
    rank[order] = np.arange(len(pitch))
    best = np.full(length, -1, dtype=np.int64)
    np.maximum.at(best, step, rank[note])
    winner = np.where(best >= 0, order[best.clip(0)], -1)  # (length,) note index or -1
    tone = np.where(winner >= 0, fold_tone(pitch[winner.clip(0)]), REST)
    # A segment is a run of steps with the same winning note (or rest).
    change = np.flatnonzero(np.diff(winner)) + 1
    seg_start = np.concatenate(([0], change))
    seg_len = np.diff(np.concatenate((seg_start, [length])))
    seg_tone = tone[seg_start]
    # A gap shorter than a 16th after a note is articulation, not a rest: the note keeps it.
    gap = np.flatnonzero((seg_tone == REST) & (seg_len < DURATIONS[0]))
    gap = gap[gap > 0]
    np.add.at(seg_len, gap - 1, seg_len[gap])
    keep = np.ones(len(seg_len), dtype=bool)
    keep[gap] = False
    return _segments_to_events(seg_tone[keep], seg_len[keep])


def _segments_to_events(tones: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Segments of (tone, steps) -> events, each length split into list durations (tied parts repeat)."""
    out: list[int] = []
    index = _DURATION_INDEX
    for tone, steps in zip(tones.tolist(), lengths.tolist(), strict=True):
        for d in split_duration(steps):
            out.append(tone * N_DURATIONS + index[d])
    return np.asarray(out, dtype=np.int64)


def _trim_rests(events: np.ndarray) -> np.ndarray:
    """Drop leading and trailing rests: silence before the first and after the last note says nothing."""
    sounding = np.flatnonzero(event_tone(events) != REST)
    if sounding.size == 0:
        return events[:0]
    return events[sounding[0] : sounding[-1] + 1]


def beat_chords(step: np.ndarray, note: np.ndarray, pitch: np.ndarray, length: int) -> np.ndarray:
    """The chord code sounding at every beat (quarter note) of the piece, from the notes' frames."""
    codes = np.zeros((length + STEPS_PER_QUARTER - 1) // STEPS_PER_QUARTER, dtype=np.int64)
    on_beat = step % STEPS_PER_QUARTER == 0
    beat, sounding = step[on_beat] // STEPS_PER_QUARTER, pitch[note[on_beat]]
    order = np.argsort(beat, kind="stable")
    beat, sounding = beat[order], sounding[order]
    cuts = np.flatnonzero(np.diff(beat)) + 1
    for b, group in zip(beat[np.r_[0, cuts]].tolist() if len(beat) else [], np.split(sounding, cuts), strict=True):
        codes[b] = chord_code(group)
    return codes


FINAL_BASS_MARGIN = 0.15  # how much worse a key on the final bass note may correlate and still be taken


def piece_key(score: symusic.Score, end: np.ndarray, pitch: np.ndarray) -> Key:
    """`orchestrion.core.music.estimate_key`, checked against the lowest note of the final sonority.

    Krumhansl-Schmuckler alone often names the key a fifth away in modal music (a Mixolydian piece on G
    comes out as C major), and Palestrina is half the built-in corpus; tonal and modal pieces alike end
    on their final, so a key on the final bass note wins when it correlates nearly as well.
    """
    key = estimate_key(score)
    final = int(pitch[end == end.max()].min()) % 12
    if final == key.tonic:
        return key
    hist = pitch_class_histogram(score)
    if hist.std() == 0:
        return key
    major, minor = KEY_PROFILES[DEFAULT_KEY_PROFILE]  # the profiles estimate_key used
    best = max((float(np.corrcoef(np.roll(profile, final), hist)[0, 1]), mode)
               for profile, mode in ((major, "major"), (minor, "minor")))  # fmt: skip
    return Key(final, best[1], best[0]) if best[0] >= key.correlation - FINAL_BASS_MARGIN else key


def encode(score: symusic.Score, *, transpose: bool = True, name: str | Path = "<score>") -> PieceEvents:
    """A score -> its high and low lines and beat chords; with `transpose`, moved to tonic C.

    The key comes from `piece_key`; the shift is the one of -6..+5 semitones that
    brings the tonic to C with the least movement. Raises BadInput for a score with no pitched notes.
    """
    start, end, pitch, owner, tracks = _grid_notes(score)
    if len(pitch) == 0:
        raise BadInput("no pitched notes to learn from", name)
    key = piece_key(score, end, pitch)
    shift = 0
    if transpose:
        shift = -key.tonic if key.tonic < 6 else 12 - key.tonic
        pitch = pitch + shift
    length = int(end.max())
    frames = _frames(start, end, length)
    lines = []
    for k, top in zip(melody_and_bass(frames, pitch, owner, tracks), (True, False), strict=True):
        mine = owner == k
        lines.append(_trim_rests(_line(start[mine], end[mine], pitch[mine], top=top, length=length)))
    high, low = lines
    chords = beat_chords(*frames, pitch, length)
    sounding = np.flatnonzero(chords != NO_CHORD)
    chords = chords[sounding[0] : sounding[-1] + 1] if sounding.size else chords[:0]
    small = np.uint16  # every event id and chord code fits; a quarter of the memory when counting a corpus
    return PieceEvents(
        high.astype(small), low.astype(small), chords.astype(small), key.tonic, key.mode, shift, str(name)
    )


def encode_file(path: str | Path, *, transpose: bool = True) -> PieceEvents:
    """Load a MIDI file and encode it; BadInput names the file for unreadable or empty input."""
    return encode(load_midi(path), transpose=transpose, name=path)


# ------------------------------------------------------------------------------------------ decode


def line_to_notes(events: np.ndarray, *, start_step: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Melody events -> (start, duration, pitch) of its notes in steps; rests leave gaps."""
    events = np.asarray(events, dtype=np.int64)
    steps = event_steps(events).astype(np.int64)
    onsets = start_step + np.cumsum(steps) - steps
    tone = event_tone(events)
    keep = tone != REST
    return onsets[keep], steps[keep], tone[keep] + LOWEST_PITCH


def notes_to_line(start: np.ndarray, duration: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """One monophonic line's notes (in steps) -> melody events; the inverse of `line_to_notes`."""
    start = np.asarray(start, dtype=np.int64)
    end = start + np.asarray(duration, dtype=np.int64)
    pitch = np.asarray(pitch, dtype=np.int64)
    length = int(end.max()) if len(end) else 0
    return _line(start, end, pitch, top=True, length=length)


def decode(events: PieceEvents, *, tpq: int = 480, tempo_qpm: float = 100.0) -> symusic.Score:
    """PieceEvents -> a three-track score (high line, low line, chords held while they repeat)."""
    scale = tpq // STEPS_PER_QUARTER
    tracks = []
    for name, line, program in (("high", events.high, 73), ("low", events.low, 42)):
        s, d, p = line_to_notes(line)
        tracks.append({"name": name, "program": program, "pitch": p, "start": s * scale, "duration": d * scale})
    chord_notes: dict[str, list[int]] = {"pitch": [], "start": [], "duration": []}
    codes = events.chords.tolist()
    b = 0
    while b < len(codes):
        run = b + 1
        while run < len(codes) and codes[run] == codes[b]:
            run += 1
        for p in voice_chord(codes[b], top=71):
            chord_notes["pitch"].append(p)
            chord_notes["start"].append(b * tpq)
            chord_notes["duration"].append((run - b) * tpq)
        b = run
    tracks.append({"name": "chords", "program": 48, **chord_notes})
    return score_from_notes(tracks, tpq=tpq, tempo_qpm=tempo_qpm)
