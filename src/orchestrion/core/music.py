"""Score helpers over symusic: load and save any MIDI, quantize, check meters, estimate the key.

symusic's `Score` is orchestrion's in-memory score. Everything here works on its numpy views
(`track.notes.numpy()`), never on Python loops over note objects, so it stays fast on large corpora.
Times are ticks unless a name says otherwise; `tpq` is ticks per quarter note.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.core.files import write_atomic
from orchestrion.errors import BadInput

if TYPE_CHECKING:
    import symusic

MIDI_SUFFIXES = (".mid", ".midi", ".kar", ".smf")
MAX_MIDI_BYTES = 64 * 1024 * 1024
DEFAULT_STEPS_PER_QUARTER = 4  # a 16th-note grid
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Key profiles (major, minor), from C, for the Krumhansl-Schmuckler correlation. Aarden-Essen (2003) is the
# default, as in music21: on the 407 built-in chorales whose score names a mode it finds the written key
# 323 times, against 283 for the original Krumhansl & Kessler (1982) profiles (benchmarks/music_io.py).
KEY_PROFILES = {
    "aarden-essen": (
        np.array(
            [
                17.7661,
                0.145624,
                14.9265,
                0.160186,
                19.8049,
                11.3587,
                0.291248,
                22.062,
                0.145624,
                8.15494,
                0.232998,
                4.95122,
            ]
        ),
        np.array(
            [
                18.2648,
                0.737619,
                14.0499,
                16.8599,
                0.702494,
                14.4362,
                0.702494,
                18.6161,
                4.56621,
                1.93186,
                7.37619,
                1.75623,
            ]
        ),
    ),
    "krumhansl-kessler": (
        np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88]),
        np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]),
    ),
}
DEFAULT_KEY_PROFILE = "aarden-essen"
_MAJOR_PROFILE, _MINOR_PROFILE = KEY_PROFILES[DEFAULT_KEY_PROFILE]  # the profiles estimate_key uses by default


# ---------------------------------------------------------------------------------------------- I/O


def load_midi(source: str | Path | bytes, *, require_notes: bool = True, strict: bool = False) -> symusic.Score:
    """Load a MIDI file (type 0 or 1, running status, any number of tempos and meters) in ticks.

    A damaged file is read leniently (`read_midi`): the events symusic refuses are dropped, the rest kept.
    Raises `BadInput` naming the file and the reason for empty, truncated, non-MIDI or zero-note input, and
    with `strict` for any damage at all.
    """
    return read_midi(source, require_notes=require_notes, strict=strict)[0]


def read_midi(
    source: str | Path | bytes, *, require_notes: bool = True, strict: bool = False, name: str | Path | None = None
) -> tuple[symusic.Score, list[str]]:
    """`load_midi`, and what was dropped from a damaged file (a line per kind of damage; [] for a sound file).

    symusic reads the file first; when it refuses one whose chunks are whole (a controller value of 168, an
    undefined status byte, a meta event running past its track), `orchestrion.core.midifile.repair` drops the
    events it cannot read and keeps every other track and event. A file cut short is refused as truncated,
    and so is any damage with `strict`. `name` is the file to name in errors (for bytes read from a file).
    """
    import symusic

    name = str(name) if name is not None else "<bytes>" if isinstance(source, bytes | bytearray) else str(source)
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise BadInput("no such file", path)
        size = path.stat().st_size
        if size == 0:
            raise BadInput("the file is empty (0 bytes)", path)
        if size > MAX_MIDI_BYTES:
            raise BadInput(f"the file is {size / 2**20:.0f} MiB, over the {MAX_MIDI_BYTES // 2**20} MiB limit", path)
        data = path.read_bytes()
    if len(data) == 0:
        raise BadInput("the data is empty (0 bytes)", name)
    if len(data) > MAX_MIDI_BYTES:  # the same limit as for files: bytes come from uploads and archives too
        raise BadInput(f"the data is {len(data) / 2**20:.0f} MiB, over the {MAX_MIDI_BYTES // 2**20} MiB limit", name)
    if not data.startswith(b"MThd") and b"MThd" not in data[:512]:  # RIFF-wrapped MIDI puts MThd later
        raise BadInput("not a MIDI file (no 'MThd' header)", name)
    data = data[data.find(b"MThd") :]  # RIFF (RMID) files wrap a standard MIDI file in a header
    dropped: list[str] = []
    try:
        score = symusic.Score.from_midi(data)
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError for corrupt data
        missing = missing_tracks(data)
        if strict or missing:
            raise BadInput(f"corrupt or truncated MIDI: {missing or exc}", name) from exc
        score, dropped = _repaired(data, exc, name)
    if score.tpq <= 0 or score.tpq > 32767:
        raise BadInput(f"absurd tick resolution ({score.tpq} ticks per quarter)", name)
    missing = missing_tracks(data)
    if missing:
        raise BadInput(f"corrupt or truncated MIDI: {missing}", name)
    if require_notes and note_count(score) == 0:
        why = f" (damaged: {'; '.join(dropped)})" if dropped else ""
        raise BadInput(f"the file has no notes{why}", name)
    return score, dropped


def _repaired(data: bytes, error: Exception, name: str) -> tuple[symusic.Score, list[str]]:
    """The score of a damaged file with the events symusic refused dropped, and what was dropped."""
    import symusic

    from orchestrion.core.midifile import repair

    fixed, dropped = repair(data)
    if not dropped:
        raise BadInput(f"corrupt MIDI: {error}", name) from error
    try:
        return symusic.Score.from_midi(fixed), dropped
    except Exception as exc:  # the damage was of a kind repair does not mend
        raise BadInput(f"corrupt MIDI: {error}", name) from exc


def missing_tracks(data: bytes) -> str | None:
    """Why a MIDI file that parses is still cut short (None when every announced track is there).

    symusic rejects a file cut inside a track, but one cut exactly between two tracks parses as a
    shorter piece; the header's track count is what tells. Bytes after the last announced track are
    ignored (many files in the wild carry such padding).
    """
    if len(data) < 14 or data[:4] != b"MThd":
        return None  # symusic has judged the header already
    announced = int.from_bytes(data[10:12], "big")
    pos, found = 8 + int.from_bytes(data[4:8], "big"), 0
    while found < announced and pos + 8 <= len(data):
        length = int.from_bytes(data[pos + 4 : pos + 8], "big")
        if pos + 8 + length > len(data):
            return f"track {found + 1} is cut short ({len(data) - pos - 8} of its {length} bytes)"
        found += data[pos : pos + 4] == b"MTrk"
        pos += 8 + length
    if found < announced:
        return f"the header announces {announced} tracks but the file holds {found}"
    return None


def save_midi(score: symusic.Score, path: str | Path) -> Path:
    """Write `score` as a type-1 MIDI file, atomically (a partial file is never left under `path`).

    Channels are given out properly (`midi_bytes`): drums on 10, no two programs sharing a channel.
    """
    write_atomic(path, midi_bytes(score)[0])
    return Path(path)


def midi_bytes(score: symusic.Score) -> tuple[bytes, list[str]]:
    """`score` as the bytes of a MIDI file with proper channels, and a line for each compromise on them.

    symusic writes track *i* on channel *i* (drums on 10), so a 16-track piece put two programs on channel 1;
    `orchestrion.core.midifile.fit_channels` moves tracks where that happens (and only then).
    """
    from orchestrion.core.midifile import TrackUse, fit_channels

    uses = []
    for track in score.tracks:
        if len(track.notes):
            a = track.notes.numpy()
            start, end = int(a["time"].min()), int((a["time"] + a["duration"]).max())
        else:
            start = end = 0
        uses.append(TrackUse(int(track.program), bool(track.is_drum), start, end, len(track.notes) > 0))
    return fit_channels(bytes(score.dumps_midi()), uses)


def note_count(score: symusic.Score) -> int:
    return int(sum(len(track.notes) for track in score.tracks))


def score_from_notes(
    tracks: list[dict],
    *,
    tpq: int = 480,
    tempo_qpm: float = 120.0,
    time_signature: tuple[int, int] = (4, 4),
) -> symusic.Score:
    """Build a Score from plain arrays.

    Each track dict holds `pitch`, `start`, `duration` (ticks at `tpq`) and optionally `velocity`,
    `program` (0-127), `is_drum` and `name`.
    """
    import symusic

    score = symusic.Score(tpq)
    score.tempos.append(symusic.Tempo(0, tempo_qpm))
    score.time_signatures.append(symusic.TimeSignature(0, *time_signature))
    for spec in tracks:
        track = symusic.Track(spec.get("name", ""), int(spec.get("program", 0)), bool(spec.get("is_drum", False)))
        pitch = np.asarray(spec["pitch"], dtype=np.int8)
        start = np.asarray(spec["start"], dtype=np.int32)
        duration = np.asarray(spec["duration"], dtype=np.int32)
        velocity = np.asarray(spec.get("velocity", np.full(len(pitch), 80)), dtype=np.int8)
        if len(pitch):
            order = np.lexsort((pitch, start))
            track.notes = symusic.Note.from_numpy(start[order], duration[order], pitch[order], velocity[order])
        score.tracks.append(track)
    return score


# ----------------------------------------------------------------------------------------- quantize


def quantize(score: symusic.Score, steps_per_quarter: int = DEFAULT_STEPS_PER_QUARTER) -> symusic.Score:
    """Snap every note to a grid of `steps_per_quarter` steps per quarter note.

    The result has `tpq == steps_per_quarter`, so one tick is one grid step. Starts and ends are rounded
    to the nearest step; a note that would shrink to nothing keeps one step. Tempos, meters and key
    signatures are resampled with it.
    """
    import symusic

    out = score.resample(steps_per_quarter, min_dur=1)
    # symusic rounds starts and durations separately; recompute durations from rounded ends so that a
    # note's end lands on the grid point nearest its real end.
    factor = steps_per_quarter / score.tpq
    for src, dst in zip(score.tracks, out.tracks, strict=True):
        if len(src.notes) == 0:
            continue
        a = src.notes.numpy()
        start = np.rint(a["time"] * factor).astype(np.int64)
        end = np.rint((a["time"] + a["duration"]) * factor).astype(np.int64)
        duration = np.maximum(end - start, 1)
        order = np.lexsort((a["pitch"], start))
        dst.notes = symusic.Note.from_numpy(
            start[order].astype(np.int32),
            duration[order].astype(np.int32),
            a["pitch"][order],
            a["velocity"][order],
        )
    return out


# ------------------------------------------------------------------------------------------- meters


@dataclass(frozen=True)
class MeterSpan:
    """One time signature and the ticks it covers (`end` is exclusive; the last span ends at the score's end)."""

    numerator: int
    denominator: int
    start: int
    end: int

    @property
    def is_four_four(self) -> bool:
        return (self.numerator, self.denominator) == (4, 4)


def time_signatures(score: symusic.Score) -> list[MeterSpan]:
    """The score's meters in order; a score with none is 4/4 throughout (the MIDI default)."""
    end = max(int(score.end()), 1)
    # Sorted by time only: of several changes at one tick the last in the file wins (symusic keeps file order).
    changes = sorted(
        ((int(ts.time), int(ts.numerator), int(ts.denominator)) for ts in score.time_signatures), key=lambda c: c[0]
    )
    # Keep the last of several changes at the same tick and drop repeats of the meter in force.
    dedup: list[tuple[int, int, int]] = []
    for change in changes:
        if dedup and dedup[-1][0] == change[0]:
            dedup[-1] = change
        elif not dedup or dedup[-1][1:] != change[1:]:
            dedup.append(change)
    if not dedup or dedup[0][0] > 0:
        dedup.insert(0, (0, 4, 4))
    spans = []
    for i, (time, num, den) in enumerate(dedup):
        span_end = dedup[i + 1][0] if i + 1 < len(dedup) else max(end, time)
        if span_end > time or i + 1 == len(dedup):
            spans.append(MeterSpan(num, den, time, span_end))
    return spans


def tiles_four_four(numerator: int, denominator: int) -> bool:
    """True when bars of this meter regroup into 4/4 bars: a bar is a whole number of 4/4 bars (4/2, 8/4) or
    a whole number of its bars make one (2/4, 2/2, 1/4). 3/4, 6/8 and 3/2 do not."""
    if numerator <= 0 or denominator <= 0:
        return False
    quarters = Fraction(4 * numerator, denominator)
    return quarters % 4 == 0 or (4 / quarters).denominator == 1


def is_four_four(score: symusic.Score) -> bool:
    """True when the piece is in 4/4 throughout."""
    return all(span.is_four_four for span in time_signatures(score))


# ---------------------------------------------------------------------------------------------- key


@dataclass(frozen=True)
class Key:
    """A key: `tonic` is a pitch class (0 = C), `mode` is 'major' or 'minor'."""

    tonic: int
    mode: str
    correlation: float = 1.0

    @property
    def name(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {self.mode}"

    def __str__(self) -> str:
        return self.name


def parse_key(text: str) -> Key:
    """Parse 'D minor', 'Bb major', 'f# min', 'C' (major) into a Key; raise BadInput otherwise."""
    parts = text.strip().replace("-", " ").split()
    if not parts or len(parts) > 2:
        raise BadInput(f"cannot read the key {text!r}: write it like 'D minor' or 'Bb major'")
    letter = parts[0]
    names = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
    if letter[0].upper() not in names:
        raise BadInput(f"cannot read the key {text!r}: {letter!r} is not a note name (A-G)")
    tonic = names[letter[0].upper()]
    for accidental in letter[1:]:
        if accidental in "#♯":
            tonic += 1
        elif accidental in "b♭":
            tonic -= 1
        else:
            raise BadInput(f"cannot read the key {text!r}: unknown accidental {accidental!r}")
    mode = parts[1].lower() if len(parts) == 2 else "major"
    modes = {"major": "major", "maj": "major", "minor": "minor", "min": "minor", "m": "minor"}
    if mode not in modes:
        raise BadInput(f"cannot read the key {text!r}: the mode must be 'major' or 'minor'")
    return Key(tonic % 12, modes[mode])


def pitch_class_histogram(score: symusic.Score, *, include_drums: bool = False) -> np.ndarray:
    """Duration-weighted pitch-class histogram, shape (12,), in ticks."""
    hist = np.zeros(12, dtype=np.float64)
    for track in score.tracks:
        if (track.is_drum and not include_drums) or len(track.notes) == 0:
            continue
        a = track.notes.numpy()
        hist += np.bincount(a["pitch"].astype(np.int64) % 12, weights=a["duration"].astype(np.float64), minlength=12)
    return hist


def estimate_key_from_histogram(hist: np.ndarray, profile: str = DEFAULT_KEY_PROFILE) -> Key:
    """Krumhansl-Schmuckler: the key whose rotated profile correlates best with `hist`.

    `profile` names a pair of KEY_PROFILES ("aarden-essen" or "krumhansl-kessler").
    """
    if profile not in KEY_PROFILES:
        raise BadInput(f"unknown key profile {profile!r}; use one of {', '.join(KEY_PROFILES)}")
    major, minor = KEY_PROFILES[profile]
    hist = np.asarray(hist, dtype=np.float64)
    if hist.sum() <= 0:
        return Key(0, "major", 0.0)
    # (24, 12): row k < 12 is the major profile moved to tonic k, row 12 + k the minor one.
    profiles = np.stack([np.roll(major, k) for k in range(12)] + [np.roll(minor, k) for k in range(12)])
    h = hist - hist.mean()
    p = profiles - profiles.mean(axis=1, keepdims=True)
    denom = np.linalg.norm(p, axis=1) * max(np.linalg.norm(h), 1e-12)
    corr = (p @ h) / denom
    best = int(np.argmax(corr))
    return Key(best % 12, "major" if best < 12 else "minor", float(corr[best]))


def estimate_key(score: symusic.Score, profile: str = DEFAULT_KEY_PROFILE) -> Key:
    """Estimate the key and mode of a piece (Krumhansl-Schmuckler, duration-weighted, drums ignored)."""
    return estimate_key_from_histogram(pitch_class_histogram(score), profile)


# ------------------------------------------------------------------------------------------ summary


def describe(score: symusic.Score) -> dict:
    """A short JSON-friendly summary of a score (for CLI output and provenance)."""
    return {
        "tpq": int(score.tpq),
        "tracks": len(score.tracks),
        "notes": note_count(score),
        "end_ticks": int(score.end()),
        "time_signatures": [f"{s.numerator}/{s.denominator}@{s.start}" for s in time_signatures(score)],
        "four_four": is_four_four(score),
        "key": estimate_key(score).name,
    }
