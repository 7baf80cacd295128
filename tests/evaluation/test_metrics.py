"""Musical statistics on pieces whose values are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrion.core.music import score_from_notes
from orchestrion.evaluation import metrics

TPQ = 4


def scale_piece(pitches: list[int], step: int = 4, voices: int = 1):
    """One note per beat (step ticks at tpq 4 = a quarter), optionally stacked in parallel voices."""
    tracks = []
    for v in range(voices):
        n = len(pitches)
        tracks.append(
            {
                "pitch": [p + 12 * v for p in pitches],
                "start": [i * step for i in range(n)],
                "duration": [step] * n,
                "program": 0,
            }
        )
    return score_from_notes(tracks, tpq=TPQ)


def test_c_major_scale_is_diatonic_with_known_entropy():
    score = scale_piece([60, 62, 64, 65, 67, 69, 71, 72])
    assert metrics.scale_consistency(score) == 1.0
    assert metrics.n_pitch_classes_used(score) == 7
    assert metrics.pitch_range(score) == 12
    # 8 notes over 7 pitch classes: C twice, the others once.
    p = np.array([2, 1, 1, 1, 1, 1, 1]) / 8
    assert metrics.pitch_class_entropy(score) == pytest.approx(float(-(p * np.log2(p)).sum()))


def test_chromatic_scale_is_not_diatonic():
    score = scale_piece(list(range(60, 72)))
    assert metrics.scale_consistency(score) == pytest.approx(7 / 12)
    assert metrics.pitch_class_entropy(score) == pytest.approx(np.log2(12))


def test_polyphony_counts_parallel_voices():
    mono = scale_piece([60, 62, 64, 65])
    trio = scale_piece([60, 62, 64, 65], voices=3)
    assert metrics.polyphony(mono) == 1.0
    assert metrics.polyphony(trio) == 3.0
    assert metrics.polyphony_rate(trio) == 1.0


def test_empty_beats_and_density():
    # Notes on beats 0 and 3 only, each a quarter long: beats 1 and 2 are empty.
    score = score_from_notes([{"pitch": [60, 62], "start": [0, 12], "duration": [4, 4]}], tpq=TPQ)
    assert metrics.empty_beat_rate(score) == pytest.approx(0.5)
    assert metrics.note_density(score) == pytest.approx(2 / 4)


def test_groove_consistency_is_one_for_repeated_rhythm():
    bars = 4
    starts = [b * 16 + s for b in range(bars) for s in (0, 4, 8, 12)]
    same = score_from_notes([{"pitch": [60] * len(starts), "start": starts, "duration": [2] * len(starts)}], tpq=TPQ)
    assert metrics.groove_consistency(same) == 1.0
    starts2 = [b * 16 + (s if b % 2 else s + 2) for b in range(bars) for s in (0, 4, 8, 12)]
    off = score_from_notes([{"pitch": [60] * len(starts2), "start": starts2, "duration": [2] * len(starts2)}], tpq=TPQ)
    assert metrics.groove_consistency(off) < 1.0


def test_duration_histogram_and_distances():
    score = scale_piece([60, 62, 64, 65])
    hist = metrics.duration_histogram(score)
    assert hist[metrics.DURATION_LABELS.index("quarter")] == 1.0
    assert metrics.distribution_distance([1, 2, 3], [1, 2, 3]) == 0.0
    assert metrics.distribution_distance([0, 0, 0.1], [10, 10, 9.9]) == 1.0
    table = metrics.compare_sets([score], [scale_piece(list(range(60, 72)))])
    assert table["scale_consistency"]["generated_mean"] == 1.0
    assert table["scale_consistency"]["distance"] > 0


def test_empty_piece_is_safe():
    empty = score_from_notes([{"pitch": [], "start": [], "duration": []}], tpq=TPQ)
    stats = metrics.piece_statistics(empty)
    assert stats["pitch_range"] == 0.0 and stats["empty_beat_rate"] == 1.0
