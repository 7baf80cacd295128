"""Harmony of the Markov composer: chord symbols, the symbol chain, the phrase plan, the progression sampler."""

from __future__ import annotations

import random

import numpy as np
import pytest

from orchestrion.markov import events as ev
from orchestrion.markov import harmony as h
from orchestrion.markov.counts import CHORD_BOS, VOCAB, chain_name, count_pieces


def name(sym: int) -> tuple[int, str]:
    return h.SYMBOL_PCS[sym][0], h.QUALITIES[(sym - 1) % h.N_QUALITIES][0]


@pytest.mark.parametrize(
    ("pitches", "root", "quality"),
    [([60, 64, 67], 0, "major"), ([64, 67, 72], 0, "major"), ([57, 60, 64], 9, "minor"),
     ([67, 71, 74, 77], 7, "dominant 7th"), ([71, 74, 77], 11, "diminished"), ([48, 64], 0, "major"),
     ([59, 62, 65, 68], 11, "diminished 7th"), ([62, 65, 69, 72], 2, "minor 7th"), ([60, 62, 64, 67], 0, "major")],
    ids=lambda x: str(x),
)  # fmt: skip
def test_codes_read_as_the_chord_a_musician_names(pitches, root, quality):
    assert name(int(h.symbols_of_codes(np.asarray([ev.chord_code(pitches)]))[0])) == (root, quality)


def test_single_notes_and_clusters_have_no_symbol():
    codes = [ev.NO_CHORD, ev.chord_code([60]), ev.chord_code([60, 61, 62])]
    assert h.symbols_of_codes(np.asarray(codes)).tolist() == [0, 0, 0]


def test_no_chord_holds_a_semitone():
    """The clash-free promise of the composer: two tones of a chord are never a semitone apart."""
    for pcs in h.SYMBOL_PCS[1:]:
        for a in pcs:
            for b in pcs:
                assert (a - b) % 12 not in (1, 11)


def test_symbol_counts_add_up_to_the_chord_counts():
    chords = [ev.chord_code(c) for c in ([60, 64, 67], [67, 71, 74], [60, 64, 67], [65, 69, 72], [60], [60, 64, 67])]
    piece = ev.PieceEvents(np.asarray([1]), np.asarray([1]), np.asarray(chords), 0, "major")
    keys, counts = count_pieces([piece])[chain_name("major", "chords", 1)]
    matrix = h.harmony_counts(keys, counts, VOCAB["chords"], CHORD_BOS)
    c, g, f = h.symbol(0, h.MAJOR), h.symbol(7, h.MAJOR), h.symbol(5, h.MAJOR)
    assert matrix[h.BOS, c] == 1 and matrix[c, g] == 1 and matrix[g, c] == 1 and matrix[c, f] == 1
    assert matrix.sum() == 4  # the two moves through the single note have no symbol


@pytest.mark.parametrize("beats", [1, 2, 4])
@pytest.mark.parametrize("temperature", [0.05, 1.0, 3.0])
def test_slot_matrices_are_stochastic_and_keep_the_harmonic_rhythm(beats, temperature):
    counts = np.random.default_rng(1).integers(0, 5, (h.N_SYMBOLS + 1, h.N_SYMBOLS + 1)).astype(float)
    matrix = h.slot_matrix(counts, "major", beats, temperature)
    sums = matrix.sum(axis=1)
    assert np.allclose(sums[sums > 0], 1.0) and np.all(matrix[:, h.BOS] == 0)
    base = h.slot_matrix(counts, "major", beats, 1.0)
    assert np.allclose(np.diag(matrix), np.diag(base))  # temperature changes which chord comes, not when


@pytest.mark.parametrize("bars", [1, 2, 3, 4, 5, 6, 8, 9, 16, 17, 32])
def test_the_plan_opens_on_the_tonic_and_closes_with_v_i(bars):
    slots = 4
    plan = [[h.slot_target(b, s, slots, bars) for s in range(slots)] for b in range(bars)]
    assert plan[0][0] == "I" and plan[-1][-1] == "I"
    if bars > 1:
        assert plan[-1] == ["I"] * 4 and plan[-2][2:] == ["V", "V"]
    kinds = [h.phrase_end(b, bars) for b in range(bars)]
    assert kinds[-1] == "final" and kinds.count("final") == 1
    for b, kind in enumerate(kinds[:-1]):
        if kind == "half":
            assert plan[b][2:] == ["V", "V"]
        elif kind == "authentic":
            assert plan[b] == ["V", "V", "I", "I"]
    if bars == 16:  # 8-bar periods: a half cadence mid-way through each, an authentic cadence at its end
        assert [b for b, k in enumerate(kinds) if k] == [3, 7, 11, 15]
        assert [kinds[b] for b in (3, 7, 11)] == ["half", "authentic", "half"]


@pytest.mark.parametrize("mode", ["major", "minor"])
@pytest.mark.parametrize("temperature", [0.2, 1.0, 2.0])
def test_progressions_meet_every_target_of_the_plan(mode, temperature):
    counts = np.random.default_rng(3).integers(0, 3, (h.N_SYMBOLS + 1, h.N_SYMBOLS + 1)).astype(float)
    for slots in (2, 4):
        matrix = h.slot_matrix(counts, mode, 4 // slots, temperature)
        plan = h.slot_matrix(counts, mode, 4 // slots, 1.0)
        for seed in range(4):
            bars = 16
            prog = h.Progression(matrix, plan, mode, bars, slots, random.Random(seed), penalty=1.3,
                                 temperature=temperature)  # fmt: skip
            chords = [prog.next() for _ in range(bars * slots)]
            for t, sym in enumerate(chords):
                target = h.slot_target(t // slots, t % slots, slots, bars)
                if target == "I":
                    assert sym in h.TONIC[mode]
                elif target == "V":
                    assert sym in h.DOMINANT


def test_top_k_one_takes_the_likeliest_chord_and_fit_steers_away_from_clashes():
    counts = np.zeros((h.N_SYMBOLS + 1, h.N_SYMBOLS + 1))
    c, f, g, a = h.symbol(0, h.MAJOR), h.symbol(5, h.MAJOR), h.symbol(7, h.MAJOR), h.symbol(9, h.MINOR)
    counts[h.BOS, c] = 10
    counts[c, f], counts[c, g], counts[c, a] = 2, 5, 3
    counts[f, c] = counts[g, c] = counts[a, c] = 5
    matrix = h.slot_matrix(counts, "major", 1, 1.0)
    prog = h.Progression(matrix, matrix, "major", 64, 4, random.Random(0), top_k=1)
    prog.next()  # I, the plan's first chord
    assert prog.next() == g  # from C, G is likeliest
    # A B sounding on the beat clashes with C and F major (B-C, B-C) and fits G: only G can come.
    clash = h.fit([1 << 11], 0)
    for seed in range(20):
        prog = h.Progression(matrix, matrix, "major", 64, 4, random.Random(seed))
        prog.next()
        assert prog.next(clash) not in (f,)
