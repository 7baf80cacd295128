"""Melodic lines and chord voicing of the Markov composer: rows, top-k and top-p, the hold cap, clashes,
parallels, chord parts."""

from __future__ import annotations

import random

import numpy as np
import pytest

from orchestrion.markov import events as ev
from orchestrion.markov import harmony as h
from orchestrion.markov import lines as L
from orchestrion.markov import voicing as V
from orchestrion.markov.counts import MELODY_BOS, count_pieces


def piece(tones_and_durations: list[tuple[int, int]]) -> ev.PieceEvents:
    events = np.asarray([ev.melody_event(t, d) for t, d in tones_and_durations], dtype=np.int64)
    return ev.PieceEvents(events, events, np.asarray([ev.chord_code([60, 64, 67])]), 0, "major")


@pytest.fixture(scope="module")
def chain() -> L.Chain:
    rng = random.Random(2)
    pieces = [piece([(36 + rng.choice((0, 2, 4, 5, 7, 9, 11, 12)), rng.choice((2, 4, 4, 6))) for _ in range(40)])
              for _ in range(30)]  # fmt: skip
    return L.Chain(count_pieces(pieces), "major", "high")


def row_weights(chain: L.Chain, r: int) -> list[float]:
    cums = chain.cums[chain.lo[r] : chain.hi[r]]
    return [b - a for a, b in zip([0.0, *cums], cums, strict=False)]


def test_rows_list_their_entries_heaviest_first(chain):
    for r in range(1, len(chain.lo)):
        weights = row_weights(chain, r)
        assert all(a >= b for a, b in zip(weights, weights[1:], strict=False))


def test_a_tiny_temperature_neither_overflows_nor_loses_the_likeliest_entry(chain):
    cold = chain.at_temperature(1e-3)
    assert all(np.isfinite(cold.totals)) and min(cold.totals[1:]) >= 1 - 1e-9  # each row's heaviest weighs 1
    r = chain.unigram
    assert cold.draw((MELODY_BOS, MELODY_BOS), 0.5) == chain.cols[chain.lo[chain.rows[2][MELODY_BOS * chain.size
                                                                                      + MELODY_BOS]]]  # fmt: skip
    assert cold.cols[cold.lo[r]] == chain.cols[chain.lo[r]]


def line(chain: L.Chain, rules: L.LineRules, bars: int = 8, seed: int = 1) -> tuple[L.Line, list]:
    beats = L.Beats(bars * 4)
    for b in range(bars * 4):  # C major throughout
        beats.set_chord(b, h.SYMBOL_MASK[h.symbol(0, h.MAJOR)], 0)
    voice = L.Line(chain, random.Random(seed), 0, bass=False, pitch_of=[36 + t for t in range(ev.N_TONES)],
                   velocity=80, beats=beats, rules=rules, bars=bars)  # fmt: skip
    voice.ties = True
    return voice, [n for m in range(bars) for n in voice.measure(m)]


def test_top_k_one_makes_the_line_a_function_of_the_chain_alone(chain):
    greedy = {tuple(line(chain, L.LineRules(cap=10_000, top_k=1, penalty=1.0), seed=s)[1]) for s in range(4)}
    assert len(greedy) == 1  # every proposal is the row's heaviest entry: the seed changes nothing
    free = {tuple(line(chain, L.LineRules(cap=10_000, penalty=1.0), seed=s)[1]) for s in range(4)}
    assert len(free) == 4


def test_top_p_narrows_the_choice(chain):
    def variety(top_p: float) -> int:
        return len({n[1] for s in range(6) for n in line(chain, L.LineRules(cap=10_000, top_p=top_p), seed=s)[1]})

    assert variety(0.05) < variety(1.0)


@pytest.mark.parametrize("cap_bars", [1, 2])
def test_no_pitch_is_held_or_repeated_past_the_cap(chain, cap_bars):
    cap = cap_bars * ev.MEASURE_STEPS
    for seed in range(5):
        _, notes = line(chain, L.LineRules(cap=cap, temperature=0.05, penalty=1.0), bars=16, seed=seed)
        run_pitch, run_start = None, 0
        for _, pitch, start, steps, _ in notes:
            if pitch != run_pitch:
                run_pitch, run_start = pitch, start
            assert start + steps - run_start <= cap


def test_notes_on_beats_never_clash_with_the_chord(chain):
    for seed in range(5):
        voice, notes = line(chain, L.LineRules(cap=96), seed=seed)
        for _, pitch, start, steps, _ in notes:
            for beat in range((start + 11) // 12, (start + steps + 11) // 12):
                assert not L.adjacent(voice.beats.chord[beat]) >> (pitch % 12) & 1


def test_the_parallels_a_line_avoids_are_those_the_evaluation_counts():
    """`evaluation.polyphonic.parallel_rate` takes |a - b| % 12 of the two voices: so do the lines."""
    rng = random.Random(5)
    for _ in range(300):
        beats = L.Beats(8)
        others = []
        for voice in range(3):
            a, b = rng.randrange(40, 84), rng.randrange(40, 84)
            beats.onset(voice, a, 0, 12)
            beats.onset(voice, b, 12, 24)
            others.append((a, b))
        before = rng.randrange(40, 84)
        moves = beats.parallels(before, 12) or []
        for pitch in range(36, 90):
            flagged = pitch != before and any(up == (pitch > before) and abs(pitch - p) % 12 == i for up, p, i in moves)
            assert flagged == beats.parallel(before, pitch, 12)
            counted = any(V._parallel(before, pitch, a, b) for a, b in others)
            assert flagged == counted, (before, pitch, others)


# --------------------------------------------------------------------------------------------- voicing


@pytest.mark.parametrize("parts", [2, 3, 4, 8])
def test_chord_parts_are_distinct_chord_tones_in_order_and_cover_the_chord(parts):
    voicer = V.ChordParts(V.part_homes(parts, 50, 5), cap_steps=96, tops=list(range(parts)))
    rng = random.Random(parts)
    chords = [h.symbol(r, q) for r, q in ((0, 0), (5, 0), (7, 3), (9, 1), (2, 1), (7, 0), (11, 2), (0, 0))]
    for step in range(0, 12 * 64, 12):
        sym = rng.choice(chords)
        pitches = voicer.voice(h.SYMBOL_PCS[sym], step, 12)
        assert pitches == sorted(pitches) and len(set(pitches)) == parts
        assert {p % 12 for p in pitches} <= set(h.SYMBOL_PCS[sym])
        assert {h.SYMBOL_PCS[sym][0], h.SYMBOL_PCS[sym][1]} <= {p % 12 for p in pitches}  # root and third


def test_chord_parts_move_a_pitch_held_past_the_cap():
    voicer = V.ChordParts(V.part_homes(3, 52, 5), cap_steps=48)
    since: dict[int, int] = {}
    for step in range(0, 12 * 32, 12):
        pitches = voicer.voice(h.SYMBOL_PCS[h.symbol(7, h.MAJOR)], step, 12)  # the same chord for 8 bars
        since = {p: since.get(p, step) for p in pitches}
        assert all(step + 12 - s <= 48 for s in since.values())


def test_the_top_part_keeps_out_of_parallels_with_a_melody():
    """A melody doubling the top part an octave higher moves in parallel octaves at every move of the top,
    unless the voicing steers the top part away."""
    chords = [h.symbol(r, q) for r, q in ((0, 0), (5, 0), (7, 0), (9, 1), (2, 1), (4, 1))]
    rng = random.Random(1)
    progression = [chords[rng.randrange(len(chords))] for _ in range(60)]
    plain = V.ChordParts(V.part_homes(2, 56, 7), cap_steps=96, tops=[1])
    tops = [plain.voice(h.SYMBOL_PCS[sym], 12 * t, 12)[-1] for t, sym in enumerate(progression)]
    melody = [p + 12 for p in tops]
    doubled = sum(V._parallel(a, b, c, d) for a, b, c, d in zip(melody, melody[1:], tops, tops[1:], strict=False))

    beats = L.Beats(64)
    steered = V.ChordParts(V.part_homes(2, 56, 7), cap_steps=96, tops=[1])
    found, top = 0, None
    for t, sym in enumerate(progression):
        beats.onset(9, melody[t], 12 * t, 12 * t + 12)
        new = steered.voice(h.SYMBOL_PCS[sym], 12 * t, 12, beats.parallel)[-1]
        found += top is not None and V._parallel(melody[t - 1], melody[t], top, new)
        top = new
    assert doubled >= 20 and found <= doubled // 4
