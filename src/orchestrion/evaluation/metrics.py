"""Musical statistics of symbolic pieces, the established set from the literature (as in MusPy).

Each metric is a pure function of a symusic Score (drums ignored unless said), vectorised over the
note arrays. `piece_statistics` gathers them under their usual names; `distribution_distance`
compares a metric's values over generated pieces with those over real ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import symusic

# Duration histogram bins in quarter notes: 16th, 8th triplet, 8th, dotted 8th, quarter, dotted quarter,
# half, dotted half, whole and longer.
DURATION_BINS = np.array([0.0, 0.3, 0.4, 0.6, 0.9, 1.1, 1.6, 2.1, 3.1, 4.1, np.inf])
DURATION_LABELS = (
    "<=16th",
    "8th-trip",
    "8th",
    "dot-8th",
    "quarter",
    "dot-quarter",
    "half",
    "dot-half",
    "whole",
    ">whole",
)


def _pitched(score: symusic.Score) -> dict[str, np.ndarray]:
    """All pitched notes of a score, concatenated, in quarter notes."""
    arrays = [t.notes.numpy() for t in score.tracks if not t.is_drum and len(t.notes)]
    if not arrays:
        return {k: np.zeros(0) for k in ("time", "duration", "pitch", "velocity")}
    tpq = float(score.tpq)
    return {
        "time": np.concatenate([a["time"] for a in arrays]).astype(np.float64) / tpq,
        "duration": np.concatenate([a["duration"] for a in arrays]).astype(np.float64) / tpq,
        "pitch": np.concatenate([a["pitch"] for a in arrays]).astype(np.int64),
        "velocity": np.concatenate([a["velocity"] for a in arrays]).astype(np.int64),
    }


def pitch_range(score: symusic.Score) -> float:
    notes = _pitched(score)
    return float(notes["pitch"].max() - notes["pitch"].min()) if len(notes["pitch"]) else 0.0


def n_pitch_classes_used(score: symusic.Score) -> float:
    notes = _pitched(score)
    return float(len(np.unique(notes["pitch"] % 12)))


def n_pitches_used(score: symusic.Score) -> float:
    return float(len(np.unique(_pitched(score)["pitch"])))


def pitch_class_entropy(score: symusic.Score) -> float:
    """Entropy (bits) of the note-count pitch-class histogram: 0 for one pitch class, log2(12) at most."""
    pitch = _pitched(score)["pitch"]
    if len(pitch) == 0:
        return 0.0
    counts = np.bincount(pitch % 12, minlength=12).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


_MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
_MINOR_SCALE = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)


def scale_consistency(score: symusic.Score) -> float:
    """Largest share of notes that fall in one major or natural-minor scale (1.0 = fully diatonic)."""
    pitch = _pitched(score)["pitch"]
    if len(pitch) == 0:
        return 0.0
    counts = np.bincount(pitch % 12, minlength=12)
    scales = np.stack([np.roll(_MAJOR_SCALE, k) for k in range(12)] + [np.roll(_MINOR_SCALE, k) for k in range(12)])
    return float((scales @ counts).max() / counts.sum())


def polyphony(score: symusic.Score, steps_per_quarter: int = 4) -> float:
    """Mean number of pitches sounding at time steps where at least one pitch sounds."""
    active = _active_counts(score, steps_per_quarter)
    sounding = active[active > 0]
    return float(sounding.mean()) if len(sounding) else 0.0


def polyphony_rate(score: symusic.Score, steps_per_quarter: int = 4) -> float:
    """Share of sounding time steps where more than one pitch sounds."""
    active = _active_counts(score, steps_per_quarter)
    sounding = active[active > 0]
    return float((sounding > 1).mean()) if len(sounding) else 0.0


def _active_counts(score: symusic.Score, steps_per_quarter: int) -> np.ndarray:
    notes = _pitched(score)
    if len(notes["pitch"]) == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.floor(notes["time"] * steps_per_quarter).astype(np.int64)
    end = np.maximum(np.ceil((notes["time"] + notes["duration"]) * steps_per_quarter).astype(np.int64), start + 1)
    length = int(end.max()) + 1
    delta = np.bincount(start, minlength=length) - np.bincount(end, minlength=length)
    return np.cumsum(delta)[:-1]


def empty_beat_rate(score: symusic.Score) -> float:
    """Share of beats (quarter notes) in which no note sounds, up to the end of the piece."""
    notes = _pitched(score)
    if len(notes["pitch"]) == 0:
        return 1.0
    n_beats = max(int(np.ceil((notes["time"] + notes["duration"]).max())), 1)
    covered = np.zeros(n_beats + 1, dtype=np.int64)
    first = np.floor(notes["time"]).astype(np.int64)
    last = np.ceil(notes["time"] + notes["duration"]).astype(np.int64)
    np.add.at(covered, first, 1)
    np.add.at(covered, np.minimum(last, n_beats), -1)
    return float((np.cumsum(covered)[:n_beats] == 0).mean())


def groove_consistency(score: symusic.Score, steps_per_bar: int = 16) -> float:
    """1 - mean Hamming distance between onset patterns of consecutive 4/4 bars (1.0 = same rhythm)."""
    notes = _pitched(score)
    if len(notes["pitch"]) == 0:
        return 0.0
    step = np.floor(notes["time"] * steps_per_bar / 4).astype(np.int64)
    n_bars = int(step.max()) // steps_per_bar + 1
    if n_bars < 2:
        return 1.0
    grid = np.zeros((n_bars, steps_per_bar), dtype=bool)
    grid[step // steps_per_bar, step % steps_per_bar] = True
    return float(1.0 - (grid[1:] != grid[:-1]).mean())


def note_density(score: symusic.Score) -> float:
    """Notes per beat (quarter note)."""
    notes = _pitched(score)
    if len(notes["pitch"]) == 0:
        return 0.0
    length = float((notes["time"] + notes["duration"]).max())
    return float(len(notes["pitch"]) / max(length, 1e-9))


def duration_histogram(score: symusic.Score) -> np.ndarray:
    """Share of notes per duration bin (DURATION_LABELS)."""
    duration = _pitched(score)["duration"]
    counts, _ = np.histogram(duration, bins=DURATION_BINS)
    return counts / max(counts.sum(), 1)


SCALAR_METRICS = {
    "pitch_range": pitch_range,
    "n_pitches_used": n_pitches_used,
    "n_pitch_classes_used": n_pitch_classes_used,
    "pitch_class_entropy": pitch_class_entropy,
    "scale_consistency": scale_consistency,
    "polyphony": polyphony,
    "polyphony_rate": polyphony_rate,
    "empty_beat_rate": empty_beat_rate,
    "groove_consistency": groove_consistency,
    "note_density": note_density,
}


def piece_statistics(score: symusic.Score) -> dict:
    """Every scalar metric of one piece, plus its duration histogram."""
    stats: dict = {name: fn(score) for name, fn in SCALAR_METRICS.items()}
    stats["duration_histogram"] = duration_histogram(score).tolist()
    return stats


def distribution_distance(generated: list[float], real: list[float], bins: int = 20) -> float:
    """Overlapping-area distance between two samples of a metric: 0 = same distribution, 1 = disjoint.

    Histograms share bins over the pooled range; this is 1 - the overlapping area of the two
    normalised histograms (the overlap measure used in symbolic-music evaluation, e.g. Yang & Lerch).
    """
    a = np.asarray(generated, dtype=np.float64)
    b = np.asarray(real, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    if hi <= lo:
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    pa, _ = np.histogram(a, bins=edges)
    pb, _ = np.histogram(b, bins=edges)
    return float(1.0 - np.minimum(pa / pa.sum(), pb / pb.sum()).sum())


def compare_sets(generated: list[symusic.Score], real: list[symusic.Score]) -> dict:
    """Per metric: mean and std over generated and real pieces, and the distance between them."""
    out: dict = {}
    for name, fn in SCALAR_METRICS.items():
        g = [fn(s) for s in generated]
        r = [fn(s) for s in real]
        out[name] = {
            "generated_mean": float(np.mean(g)) if g else float("nan"),
            "generated_std": float(np.std(g)) if g else float("nan"),
            "real_mean": float(np.mean(r)) if r else float("nan"),
            "real_std": float(np.std(r)) if r else float("nan"),
            "distance": distribution_distance(g, r),
        }
    g_hist = np.mean([duration_histogram(s) for s in generated], axis=0) if generated else np.zeros(10)
    r_hist = np.mean([duration_histogram(s) for s in real], axis=0) if real else np.zeros(10)
    out["duration_histogram"] = {
        "labels": list(DURATION_LABELS),
        "generated": g_hist.tolist(),
        "real": r_hist.tolist(),
        "distance": float(0.5 * np.abs(g_hist - r_hist).sum()),
    }
    return out
