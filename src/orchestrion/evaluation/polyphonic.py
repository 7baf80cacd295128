"""Music-quality metrics of polyphonic pieces: the tests a musician applies to a chorale or any multi-voice MIDI.

Each function is pure, takes a symusic Score and returns a float (NaN where the measure is undefined, as
each docstring says). A *voice* is a non-drum track with notes; where a voice must be one line (motion,
melodic intervals, held notes), a track that sounds several notes at once is read as its top line (the
highest pitch of each onset). Everything is vectorised over the note arrays (`track.notes.numpy()`).

Beats follow the score's meters: a beat is the meter's denominator (a quarter in 4/4 and 3/4, a half in
3/2), or three of them in compound meters (a dotted quarter in 6/8, 9/8, 12/8). A beat grid runs from the
beat of the first onset to the end of the last note, and "what sounds on a beat" is what sounds at the
beat's first instant (start <= t < end): on-beat harmony, not the passing notes between beats, which a
musician does not hear as the chord.

Reference figures on the 409 Bach chorales of the built-in corpus (mean, std over chorales): see
`BACH_REFERENCE`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import symusic

    from orchestrion.core.music import Key

# Measured with this module over the 409 built-in Bach chorales (mean, std over chorales; keys estimated).
# Sampling clashes on a 16th grid instead of on beats gives 6.3% (passing notes); final_tonic without the
# Picardy third gives 52%; 3% of Bach's beats hold fewer than three pitch classes (not chord-like).
BACH_REFERENCE: dict[str, tuple[float, float]] = {
    "clash_rate": (0.033, 0.027),
    "parallel_rate": (0.054, 0.148),
    "voices_sounding": (0.984, 0.056),
    "voice_polyphony": (0.0001, 0.0019),
    "range_ok": (1.000, 0.0002),
    "final_tonic": (0.853, 0.354),
    "in_key": (0.966, 0.022),
    "chord_likeness": (0.875, 0.066),
    "longest_held": (5.57, 2.49),
    "duration_entropy": (1.46, 0.27),
    "stepwise_share": (0.744, 0.058),
    "leap_share": (0.0005, 0.0018),
}

# Voice ranges (MIDI pitch, inclusive) of the four chorale voices, soprano, alto, tenor, bass. Harmony
# textbooks give soprano C4-A5 (60-81), alto G3-D5 (55-74), tenor C3-A4 (48-69), bass E2-D4 (40-62); Bach's
# 409 chorales keep to them but for the alto, which goes down to F3 (53, 5 notes), and the bass, which goes
# down to C2 (36; 164 notes under E2, 0.7% of the bass) and up to E4 (64, 14 notes). The ranges below are
# the textbook's widened to those notes; only one soprano A3 (57) of Bach's 21,000 soprano notes is outside.
SATB_RANGES: tuple[tuple[int, int], ...] = ((60, 81), (53, 74), (48, 69), (36, 64))

# Chord templates as pitch-class sets from the root: triads and seventh chords.
CHORD_TEMPLATES = {
    "major": (0, 4, 7),
    "minor": (0, 3, 7),
    "diminished": (0, 3, 6),
    "augmented": (0, 4, 8),
    "dominant seventh": (0, 4, 7, 10),
    "minor seventh": (0, 3, 7, 10),
    "half-diminished seventh": (0, 3, 6, 10),
    "diminished seventh": (0, 3, 6, 9),
}
_MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
_MINOR_SCALE = (0, 2, 3, 5, 7, 8, 9, 10, 11)  # natural minor with the raised 6th and 7th (melodic, harmonic)
STEPS_PER_QUARTER = 4  # the step grid of voice_polyphony: a 16th note
DURATION_STEPS_PER_QUARTER = 12  # duration_entropy rounds durations to 48ths of a whole note (16ths, triplets)


def _mask(pcs: Sequence[int]) -> int:
    return sum(1 << (p % 12) for p in set(pcs))


def _rotations(pcs: Sequence[int]) -> list[int]:
    return [_mask([p + k for p in pcs]) for k in range(12)]


def _chord_table() -> np.ndarray:
    """(4096,) bool: a pitch-class set (12-bit mask) of 3+ classes that lies inside some chord template."""
    templates = np.array([m for pcs in CHORD_TEMPLATES.values() for m in _rotations(pcs)], dtype=np.int64)
    masks = np.arange(4096, dtype=np.int64)
    inside = ((masks[:, None] & ~templates[None, :]) == 0).any(axis=1)
    return inside & (_popcount(masks) >= 3)


def _popcount(masks: np.ndarray) -> np.ndarray:
    bits = (masks[..., None] >> np.arange(12)) & 1
    return bits.sum(axis=-1)


_CHORD_LIKE = _chord_table()

# ------------------------------------------------------------------------------------------- notes


def _voices(score: symusic.Score) -> list[dict[str, np.ndarray]]:
    """The notes of each voice (non-drum track with notes), sorted by onset then pitch, in ticks."""
    voices = []
    for track in score.tracks:
        if track.is_drum or len(track.notes) == 0:
            continue
        a = track.notes.numpy()
        start = a["time"].astype(np.int64)
        pitch = a["pitch"].astype(np.int64)
        order = np.lexsort((pitch, start))
        voices.append(
            {"start": start[order], "end": start[order] + a["duration"].astype(np.int64)[order], "pitch": pitch[order]}
        )
    return voices


def _top_line(voice: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One note per onset: the highest (the notes are sorted by onset, then pitch)."""
    start = voice["start"]
    last = np.r_[start[1:] != start[:-1], True]
    return {k: v[last] for k, v in voice.items()}


def _all_notes(voices: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([v[k] for v in voices]) for k in ("start", "end", "pitch")}


def _beat_ticks(numerator: int, denominator: int, tpq: int) -> int:
    beat = tpq * 4 / denominator
    if numerator >= 6 and numerator % 3 == 0 and denominator >= 8:
        beat *= 3  # compound meter: a dotted beat
    return max(1, round(beat))


def _beats(score: symusic.Score, notes: dict[str, np.ndarray]) -> np.ndarray:
    """Beat onsets (ticks), following the meters, from the beat of the first onset to the last note's end."""
    from orchestrion.core.music import time_signatures

    first, last = int(notes["start"].min()), int(notes["end"].max())
    spans = time_signatures(score)
    grids = []
    for i, span in enumerate(spans):
        beat = _beat_ticks(span.numerator, span.denominator, int(score.tpq))
        stop = max(span.end, last) if i == len(spans) - 1 else span.end
        grids.append(np.arange(span.start, stop, beat, dtype=np.int64))
    times = np.concatenate(grids) if grids else np.zeros(0, dtype=np.int64)
    keep = (times < last) & (np.r_[times[1:], np.iinfo(np.int64).max] > first)
    return times[keep]


def _sounding_at(notes: dict[str, np.ndarray], times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (time index, note index) pair with the note sounding at that time (start <= t < end)."""
    lo = np.searchsorted(times, notes["start"], side="left")
    hi = np.searchsorted(times, notes["end"], side="left")
    counts = np.maximum(hi - lo, 0)
    note_index = np.repeat(np.arange(len(counts)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return lo[note_index] + offsets, note_index


def _pc_masks(notes: dict[str, np.ndarray], times: np.ndarray) -> np.ndarray:
    """(T,) 12-bit pitch-class set sounding at each time."""
    time_index, note_index = _sounding_at(notes, times)
    masks = np.zeros(len(times), dtype=np.int64)
    np.bitwise_or.at(masks, time_index, np.left_shift(1, notes["pitch"][note_index] % 12))
    return masks


def _pitch_at(line: dict[str, np.ndarray], times: np.ndarray) -> np.ndarray:
    """Pitch a one-note-per-onset line sounds at each time (-1 where it rests)."""
    index = np.searchsorted(line["start"], times, side="right") - 1
    safe = np.maximum(index, 0)
    sounding = (index >= 0) & (line["end"][safe] > times)
    return np.where(sounding, line["pitch"][safe], -1)


# ------------------------------------------------------------------------------------------ harmony


def clash_rate(score: symusic.Score) -> float:
    """Share of sounding beats whose pitches include a minor second, a major seventh or a minor ninth.

    Two sounding pitches clash when their difference mod 12 is 1 or 11: the minor 2nd (1), major 7th (11),
    minor 9th (13) and every octave-compound of them (23, 25, ...), since they sound as the same harsh
    pitch-class dissonance; unisons, octaves, tritones and major 2nds do not. Equivalently, the beat's
    pitch-class set holds two neighbouring classes. Sampled at the beat (suspensions count, passing notes
    between beats do not). NaN when no beat sounds.
    """
    voices = _voices(score)
    if not voices:
        return math.nan
    notes = _all_notes(voices)
    masks = _pc_masks(notes, _beats(score, notes))
    masks = masks[masks > 0]
    if len(masks) == 0:
        return math.nan
    rotated = ((masks << 1) | (masks >> 11)) & 0xFFF
    return float(((masks & rotated) != 0).mean())


def chord_likeness(score: symusic.Score) -> float:
    """Share of sounding beats whose pitch-class set has three or more classes and lies inside a major,
    minor, diminished or augmented triad or a dominant, minor, half-diminished or diminished seventh chord.

    Beats with one or two pitch classes (unisons, bare intervals, a triad without its fifth) are not
    chord-like. NaN when no beat sounds.
    """
    voices = _voices(score)
    if not voices:
        return math.nan
    notes = _all_notes(voices)
    masks = _pc_masks(notes, _beats(score, notes))
    masks = masks[masks > 0]
    return float(_CHORD_LIKE[masks].mean()) if len(masks) else math.nan


def _key(score: symusic.Score, key: Key | str | None) -> Key:
    from orchestrion.core.music import Key, estimate_key, parse_key

    if key is None:
        return estimate_key(score)
    return key if isinstance(key, Key) else parse_key(key)


def final_tonic(score: symusic.Score, key: Key | str | None = None) -> float:
    """1.0 when the last sounding chord is the tonic triad of the key with its root in the bass, else 0.0.

    The last sounding chord is every note sounding at the last onset of the piece (start <= t < end), so
    notes held into it count. It is the tonic triad when its lowest note is the tonic and it holds no pitch
    class outside the triad; in minor the major third (a Picardy third) belongs to it too. A bare tonic
    (unisons, octaves) or a chord without its fifth passes. `key` is a Key or a name ('D minor'), estimated
    with `orchestrion.core.music.estimate_key` when not given. NaN when there are no notes.
    """
    voices = _voices(score)
    if not voices:
        return math.nan
    notes = _all_notes(voices)
    k = _key(score, key)
    t = notes["start"].max()
    sounding = (notes["start"] <= t) & (notes["end"] > t)
    pitches = notes["pitch"][sounding]
    triad = {0, 3, 4, 7} if k.mode == "minor" else {0, 4, 7}
    degrees = set(((pitches - k.tonic) % 12).tolist())
    return float(int(pitches.min() - k.tonic) % 12 == 0 and degrees <= triad)


def in_key(score: symusic.Score, key: Key | str | None = None) -> float:
    """Share of notes in the key's scale (estimated when not given); in minor the raised 6th and 7th of the
    melodic and harmonic minor count as in the key. NaN when there are no notes."""
    voices = _voices(score)
    if not voices:
        return math.nan
    k = _key(score, key)
    scale = np.zeros(12, dtype=bool)
    scale[list(_MINOR_SCALE if k.mode == "minor" else _MAJOR_SCALE)] = True
    degrees = (_all_notes(voices)["pitch"] - k.tonic) % 12
    return float(scale[degrees].mean())


# ------------------------------------------------------------------------------------------- voices


def parallel_rate(score: symusic.Score) -> float:
    """Parallel fifths and octaves per 100 voice-pair motions.

    For each pair of voices (their top lines), the moments are the onsets of either voice where both sound.
    Between two consecutive such moments the pair *moves* when at least one voice changes pitch; the motion
    is a parallel when both voices change pitch in the same direction and the interval between them is a
    perfect fifth both times or an octave both times, up to octave compounds (7, 19, 31 ... semitones; 0, 12,
    24 ...: unisons count as octaves). A fifth that becomes a twelfth counts; a fifth that becomes an octave
    does not. NaN when no pair moves (fewer than two voices).
    """
    lines = [_top_line(v) for v in _voices(score)]
    parallels = motions = 0
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            times = np.union1d(lines[i]["start"], lines[j]["start"])
            a, b = _pitch_at(lines[i], times), _pitch_at(lines[j], times)
            both = (a >= 0) & (b >= 0)
            ok = both[:-1] & both[1:]
            da, db = np.diff(a)[ok], np.diff(b)[ok]
            before = np.abs(a[:-1] - b[:-1])[ok] % 12
            after = np.abs(a[1:] - b[1:])[ok] % 12
            moving = (da != 0) | (db != 0)
            parallel = (da != 0) & (np.sign(da) == np.sign(db)) & (before == after) & ((before == 0) | (before == 7))
            motions += int(moving.sum())
            parallels += int(parallel.sum())
    return 100.0 * parallels / motions if motions else math.nan


def voices_sounding(score: symusic.Score) -> float:
    """Share of beats on which every voice sounds (a beat is sampled at its first instant). NaN when there
    are no notes."""
    voices = _voices(score)
    if not voices:
        return math.nan
    times = _beats(score, _all_notes(voices))
    if len(times) == 0:
        return math.nan
    every = np.ones(len(times), dtype=bool)
    for voice in voices:
        covered = np.zeros(len(times), dtype=bool)
        covered[_sounding_at(voice, times)[0]] = True
        every &= covered
    return float(every.mean())


def _step_counts(voice: dict[str, np.ndarray], step: int, length: int) -> np.ndarray:
    """(length,) notes of the voice sounding at each grid point k * step."""
    first = -(-voice["start"] // step)  # ceil: the first grid point at or after the onset
    stop = -(-voice["end"] // step)
    keep = stop > first
    delta = np.bincount(first[keep], minlength=length + 1) - np.bincount(stop[keep], minlength=length + 1)
    return np.cumsum(delta)[:length]


def voice_polyphony(score: symusic.Score, steps_per_quarter: int = STEPS_PER_QUARTER) -> float:
    """Share of sounding steps (a 16th-note grid, sampled at each step's first instant) on which one voice
    sounds two or more notes at once (0.0 for a true part-writing texture). NaN when no step sounds."""
    voices = _voices(score)
    if not voices:
        return math.nan
    step = max(1, round(score.tpq / steps_per_quarter))
    length = int(-(-max(int(v["end"].max()) for v in voices) // step)) + 1
    counts = np.stack([_step_counts(v, step, length) for v in voices])  # (V, steps)
    sounding = counts.sum(axis=0) > 0
    if not sounding.any():
        return math.nan
    return float((counts.max(axis=0) >= 2)[sounding].mean())


def range_ok(score: symusic.Score, ranges: Sequence[tuple[int, int]] = SATB_RANGES) -> float:
    """Share of notes inside their voice's range: `ranges[i]` is the (lowest, highest) MIDI pitch of track i
    (inclusive); tracks beyond the list and drum tracks are not counted. NaN when no note is counted."""
    inside = total = 0
    for track, (low, high) in zip(score.tracks, ranges, strict=False):
        if track.is_drum or len(track.notes) == 0:
            continue
        pitch = track.notes.numpy()["pitch"]
        inside += int(((pitch >= low) & (pitch <= high)).sum())
        total += len(pitch)
    return inside / total if total else math.nan


def ranges_from(scores: Sequence[symusic.Score], low: float = 1.0, high: float = 99.0) -> list[tuple[int, int]]:
    """Per track index, the (low, high) percentiles of the pitches of that track over `scores` (1st and 99th
    by default, rounded outwards): the ranges a corpus actually uses, for `range_ok`."""
    per_track: list[list[np.ndarray]] = []
    for score in scores:
        for i, track in enumerate(score.tracks):
            while len(per_track) <= i:
                per_track.append([])
            if len(track.notes) and not track.is_drum:
                per_track[i].append(track.notes.numpy()["pitch"].astype(np.int64))
    ranges = []
    for arrays in per_track:
        if not arrays:
            ranges.append((0, 127))
            continue
        pitches = np.concatenate(arrays)
        ranges.append((int(math.floor(np.percentile(pitches, low))), int(math.ceil(np.percentile(pitches, high)))))
    return ranges


# ------------------------------------------------------------------------------------------- melody


def longest_held(score: symusic.Score) -> float:
    """Longest run, in beats, of one voice holding or repeating one pitch: the time from the onset of the
    first to the end of the last of consecutive notes of the voice's top line that share a pitch (rests
    between them do not break the run; a note of another pitch does). Beats follow the first meter.
    A melody that collapses onto one note shows as a long run. NaN when there are no notes."""
    voices = _voices(score)
    if not voices:
        return math.nan
    from orchestrion.core.music import time_signatures

    first = time_signatures(score)[0]
    beat = _beat_ticks(first.numerator, first.denominator, int(score.tpq))
    best = 0
    for voice in voices:
        line = _top_line(voice)
        new_run = np.r_[True, line["pitch"][1:] != line["pitch"][:-1]]
        run_id = np.cumsum(new_run) - 1
        run_start = line["start"][new_run]
        run_end = np.zeros(len(run_start), dtype=np.int64)
        np.maximum.at(run_end, run_id, line["end"])
        best = max(best, int((run_end - run_start).max()))
    return best / beat


def duration_entropy(score: symusic.Score) -> float:
    """Entropy (bits) of the note durations, rounded to 48ths of a whole note (16ths and triplets), over all
    voices: 0 for one duration, higher for more varied rhythm. NaN when there are no notes."""
    voices = _voices(score)
    if not voices:
        return math.nan
    notes = _all_notes(voices)
    steps = np.maximum(np.rint((notes["end"] - notes["start"]) * DURATION_STEPS_PER_QUARTER / score.tpq), 1)
    _, counts = np.unique(steps.astype(np.int64), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def _intervals(score: symusic.Score) -> np.ndarray:
    """Melodic intervals (semitones) between consecutive notes of each voice's top line, repeated notes left
    out, all voices together."""
    parts = [np.diff(_top_line(v)["pitch"]) for v in _voices(score)]
    steps = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return steps[steps != 0]


def stepwise_share(score: symusic.Score) -> float:
    """Share of melodic intervals of at most 2 semitones (a step), within each voice, over all voices.
    Repeated notes (unisons) are not intervals here: they are left out of both counts. NaN when no voice
    moves."""
    steps = _intervals(score)
    return float((np.abs(steps) <= 2).mean()) if len(steps) else math.nan


def leap_share(score: symusic.Score, semitones: int = 12) -> float:
    """Share of melodic intervals (as in `stepwise_share`: repeated notes left out) larger than `semitones`
    (default: wider than an octave). NaN when no voice moves."""
    steps = _intervals(score)
    return float((np.abs(steps) > semitones).mean()) if len(steps) else math.nan


POLYPHONIC_METRICS = {
    "clash_rate": clash_rate,
    "parallel_rate": parallel_rate,
    "voices_sounding": voices_sounding,
    "voice_polyphony": voice_polyphony,
    "range_ok": range_ok,
    "final_tonic": final_tonic,
    "in_key": in_key,
    "chord_likeness": chord_likeness,
    "longest_held": longest_held,
    "duration_entropy": duration_entropy,
    "stepwise_share": stepwise_share,
    "leap_share": leap_share,
}


def polyphonic_statistics(score: symusic.Score) -> dict[str, float]:
    """Every metric above of one piece, by name (range_ok with SATB_RANGES)."""
    return {name: fn(score) for name, fn in POLYPHONIC_METRICS.items()}
