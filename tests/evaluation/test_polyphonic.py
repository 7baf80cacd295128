"""Polyphonic music-quality metrics on hand-made pieces whose answers are known."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from orchestrion.core.music import score_from_notes
from orchestrion.evaluation import polyphonic as poly

Q = 4  # ticks per quarter: a beat in 4/4


def voice(pitches: list[int], durations: list[float] | float = 1.0, start: float = 0.0, rests: dict | None = None):
    """A voice from pitches and durations in beats; `rests` maps a note index to the beats of rest before it."""
    durations = [durations] * len(pitches) if isinstance(durations, int | float) else durations
    starts, t = [], start
    for i, d in enumerate(durations):
        t += (rests or {}).get(i, 0)
        starts.append(t)
        t += d
    return {
        "pitch": pitches,
        "start": [round(s * Q) for s in starts],
        "duration": [round(d * Q) for d in durations],
    }


def piece(*voices: dict, meter: tuple[int, int] = (4, 4)):
    return score_from_notes(list(voices), tpq=Q, time_signature=meter)


def chords(*pcsets: list[int]):
    """Block chords, one per beat: voice i sings the i-th pitch of each chord."""
    width = max(len(c) for c in pcsets)
    return piece(*[voice([c[min(i, len(c) - 1)] for c in pcsets]) for i in range(width)])


EMPTY = score_from_notes([{"pitch": [], "start": [], "duration": []}], tpq=Q)


# -------------------------------------------------------------------------------------------- harmony


def test_clash_rate_counts_seconds_sevenths_and_ninths_with_their_compounds() -> None:
    # Against a held C4: m2, M3, M7, m9, M9, compound m2 (25 semitones), tritone, octave.
    upper = [61, 64, 71, 73, 74, 85, 66, 72]
    score = piece(voice([60] * 8), voice(upper))
    clashes = [True, False, True, True, False, True, False, False]
    assert poly.clash_rate(score) == pytest.approx(np.mean(clashes))


def test_clash_rate_samples_beats_not_passing_notes() -> None:
    # A C major chord on every beat; an off-beat passing D against the E in between never counts.
    upper = voice([64, 62, 64, 64], [0.5, 0.5, 1, 1], start=0)
    score = piece(voice([48, 48, 48]), voice([55, 55, 55]), upper, meter=(3, 4))
    assert poly.clash_rate(score) == 0.0


def test_chord_likeness() -> None:
    score = chords(
        [48, 52, 55],  # C major: yes
        [43, 47, 50, 53],  # G7: yes
        [48, 50, 52],  # C D E: no
        [48, 55],  # a bare fifth (two classes): no
        [47, 50, 53, 56],  # B diminished seventh: yes
        [48, 52, 56],  # augmented: yes
        [45, 48, 52, 55],  # A minor seventh: yes
        [47, 50, 53, 57],  # B half-diminished seventh: yes
    )
    assert poly.chord_likeness(score) == pytest.approx(6 / 8)


def test_final_tonic_wants_the_tonic_triad_with_the_root_in_the_bass() -> None:
    cadence = [[43, 59, 62, 67], [48, 60, 64, 67]]  # V - I in C
    assert poly.final_tonic(chords(*cadence), "C major") == 1.0
    assert poly.final_tonic(chords(cadence[0], [52, 60, 64, 67]), "C major") == 0.0  # first inversion
    assert poly.final_tonic(chords(cadence[0], [48, 58, 64, 67]), "C major") == 0.0  # C7: a foreign Bb
    assert poly.final_tonic(chords(cadence[0], [43, 59, 62, 67]), "C major") == 0.0  # ends on the dominant
    assert poly.final_tonic(chords(cadence[0], [36, 48, 60, 72]), "C major") == 1.0  # a bare tonic
    # In minor the Picardy third is still the tonic chord.
    assert poly.final_tonic(chords([40, 56, 59, 64], [45, 57, 61, 64]), "A minor") == 1.0
    assert poly.final_tonic(chords([40, 56, 59, 64], [45, 57, 60, 64]), "A minor") == 1.0


def test_final_tonic_reads_the_chord_sounding_at_the_last_onset() -> None:
    # The bass holds C under a soprano that moves last, to E: the last chord is C E G.
    score = piece(voice([48], 4), voice([55], 4), voice([67, 64], [3, 1]))
    assert poly.final_tonic(score, "C major") == 1.0


def test_final_tonic_estimates_the_key() -> None:
    scale = voice([60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60], [1] * 10 + [2])
    bass = voice([48, 43, 48], [4, 4, 4])
    assert poly.final_tonic(piece(scale, bass)) == 1.0


def test_in_key() -> None:
    assert poly.in_key(piece(voice([60, 62, 64, 66, 67, 69, 71, 72])), "C major") == pytest.approx(7 / 8)
    # Harmonic and melodic minor notes are in A minor; a D# is not.
    assert poly.in_key(piece(voice([57, 59, 60, 62, 64, 66, 68, 69])), "A minor") == 1.0
    assert poly.in_key(piece(voice([57, 59, 60, 63])), "A minor") == pytest.approx(3 / 4)


# --------------------------------------------------------------------------------------------- voices


def test_parallel_fifths_and_octaves() -> None:
    lower = voice([48, 50, 48, 48, 50])
    upper = voice([55, 57, 60, 62, 62])
    score = piece(lower, upper)
    # 48/55 -> 50/57: fifths, both up: parallel. 50/57 -> 48/60: contrary. 48/60 -> 48/62: oblique.
    # 48/62 -> 50/62: oblique. So 1 parallel in 4 motions.
    assert poly.parallel_rate(score) == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("lower", "upper", "parallel"),
    [
        ([48, 50], [55, 57], True),  # fifths
        ([48, 50], [60, 62], True),  # octaves
        ([60, 62], [60, 62], True),  # unisons
        ([48, 50], [67, 69], True),  # twelfths (compound fifths, 19 semitones)
        ([36, 38], [67, 69], True),  # compound fifths (31 semitones)
        ([48, 50], [55, 62], False),  # fifth to octave
        ([48, 50], [55, 53], False),  # contrary motion
        ([48, 46], [55, 57], False),  # fifths, but contrary
        ([48, 50], [52, 54], False),  # parallel thirds
    ],
)
def test_parallel_cases(lower: list[int], upper: list[int], parallel: bool) -> None:
    assert poly.parallel_rate(piece(voice(lower), voice(upper))) == (100.0 if parallel else 0.0)


def test_parallels_need_two_voices_that_move() -> None:
    assert math.isnan(poly.parallel_rate(piece(voice([60, 62, 64]))))
    assert math.isnan(poly.parallel_rate(piece(voice([60, 60]), voice([67, 67]))))


def test_parallels_between_rests_do_not_count() -> None:
    # The upper voice rests on beat 2: the fifths on beats 1 and 3 are not consecutive moments of both.
    lower = voice([48, 50, 52])
    upper = voice([55, 59], rests={1: 1})
    assert math.isnan(poly.parallel_rate(piece(lower, upper)))


def test_voices_sounding() -> None:
    # Two voices over four beats; the upper rests on the second beat.
    score = piece(voice([48, 50, 52, 53]), voice([60, 64, 65], rests={1: 1}))
    assert poly.voices_sounding(score) == pytest.approx(3 / 4)


def test_voice_polyphony_counts_steps_where_one_voice_sounds_a_chord() -> None:
    # One voice: a two-note chord for a beat, then three single notes: 4 of 16 sounding 16th steps.
    chordal = {"pitch": [60, 64, 62, 64, 65], "start": [0, 0, 4, 8, 12], "duration": [4, 4, 4, 4, 4]}
    assert poly.voice_polyphony(piece(chordal)) == pytest.approx(4 / 16)
    assert poly.voice_polyphony(piece(voice([60, 62]), voice([64, 65]))) == 0.0


def test_range_ok_and_ranges_from() -> None:
    soprano = voice([60, 72, 81, 84])  # 84 (C6) is above the soprano's A5
    alto, tenor = voice([60, 62, 64, 65]), voice([55, 57, 59, 60])
    bass = voice([36, 40, 43, 48])  # Bach's chorales go down to C2
    score = piece(soprano, alto, tenor, bass)
    assert poly.range_ok(score) == pytest.approx(15 / 16)
    assert poly.range_ok(score, [(60, 84)]) == 1.0  # only the first track is judged
    assert poly.ranges_from([score], low=0, high=100) == [(60, 84), (60, 65), (55, 60), (36, 48)]
    assert math.isnan(poly.range_ok(EMPTY))


def test_satb_ranges_are_the_textbook_ranges_widened() -> None:
    textbook = ((60, 81), (55, 74), (48, 69), (40, 62))
    for (low, high), (tb_low, tb_high) in zip(poly.SATB_RANGES, textbook, strict=True):
        assert low <= tb_low and high >= tb_high


# --------------------------------------------------------------------------------------------- melody


def test_longest_held() -> None:
    # C repeated over four beats, then a rest, C again, then D held for three beats.
    melody = voice([60, 60, 60, 60, 62, 64], [1, 1, 1, 1, 3, 1])
    assert poly.longest_held(piece(melody)) == 4.0
    repeated_with_rest = voice([60, 60, 62], [1, 1, 1], rests={1: 2})
    assert poly.longest_held(piece(repeated_with_rest)) == 4.0  # a rest does not break the run
    held = voice([60, 62], [6, 1])
    assert poly.longest_held(piece(held, voice([48, 50, 52, 53, 55, 57, 59]))) == 6.0


def test_longest_held_counts_dotted_beats_in_compound_meters() -> None:
    held = voice([60, 62], [3, 1.5])  # in quarters: a C of two dotted-quarter beats, then a D of one
    assert poly.longest_held(piece(held, meter=(6, 8))) == pytest.approx(2.0)


def test_duration_entropy() -> None:
    assert poly.duration_entropy(piece(voice([60, 62, 64, 65]))) == 0.0
    assert poly.duration_entropy(piece(voice([60, 62, 64, 65], [1, 0.5, 1, 0.5]))) == pytest.approx(1.0)


def test_stepwise_and_leap_shares() -> None:
    # Intervals 2, 0 (a repeat, left out), 2, 3: two steps of three.
    assert poly.stepwise_share(piece(voice([60, 62, 62, 64, 67]))) == pytest.approx(2 / 3)
    # Intervals 14, -14, 2: two leaps wider than an octave of three; an octave itself is no such leap.
    assert poly.leap_share(piece(voice([60, 74, 60, 62]))) == pytest.approx(2 / 3)
    assert poly.leap_share(piece(voice([60, 72, 60]))) == 0.0
    assert poly.leap_share(piece(voice([60, 67, 60])), semitones=5) == 1.0
    assert math.isnan(poly.stepwise_share(piece(voice([60, 60, 60]))))


def test_empty_pieces_give_nan() -> None:
    for name, fn in poly.POLYPHONIC_METRICS.items():
        assert math.isnan(fn(EMPTY)), name


def test_drums_are_not_voices() -> None:
    drums = {"pitch": [36, 37, 38, 39], "start": [0, 4, 8, 12], "duration": [4] * 4, "is_drum": True}
    score = piece(voice([60, 64, 67, 72]), drums)
    assert poly.clash_rate(score) == 0.0 and poly.voices_sounding(score) == 1.0


def test_metrics_are_fast_on_a_long_piece() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    voices = [
        voice(list(rng.integers(40 + 8 * v, 60 + 8 * v, n)), list(rng.choice([0.5, 1.0, 2.0], n))) for v in range(4)
    ]
    score = piece(*voices)
    start = time.perf_counter()
    stats = poly.polyphonic_statistics(score)
    assert time.perf_counter() - start < 2.0
    assert all(isinstance(v, float) for v in stats.values())
