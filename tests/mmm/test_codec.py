"""The mmm codec: round trips (chorales, hypothesis pieces), windows, transposition, fill, repairs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrion.core.music import score_from_notes
from orchestrion.errors import BadInput
from orchestrion.mmm import codec as mmm

TPQ = 480
STEP = TPQ // 4


def note_table(notes: mmm.Notes) -> list[tuple]:
    return sorted(
        zip(notes.track.tolist(), notes.start.tolist(), notes.end.tolist(), notes.pitch.tolist(), strict=True)
    )


def assert_round_trip(score) -> None:
    tokens = mmm.encode(score)
    decoded, repairs = mmm.decode(tokens)
    assert repairs == []
    want, got = mmm.canonical_notes(score), mmm.canonical_notes(decoded)
    assert note_table(got) == note_table(want)
    assert got.inst == want.inst
    assert got.is_drum == want.is_drum


def piece(tracks: list[dict], time_signature=(4, 4)):
    return score_from_notes(tracks, tpq=TPQ, time_signature=time_signature)


def chorales(limit: int | None):
    from orchestrion.core.corpora import corpus_files

    return corpus_files("bach-chorales", limit=limit)


def four_four_chorales(paths) -> list:
    import symusic

    out = []
    for path in paths:
        score = symusic.Score(str(path))
        if all((n, d) == (4, 4) for n, d, _, _ in mmm.canonical_notes(score).meters):
            out.append((path.name, score))
    return out


# ------------------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("limit", [12])
def test_round_trip_on_first_chorales(limit: int) -> None:
    pieces = four_four_chorales(chorales(limit))
    assert len(pieces) >= 8
    for _, score in pieces:
        assert_round_trip(score)


@pytest.mark.slow
def test_round_trip_on_every_chorale() -> None:
    pieces = four_four_chorales(chorales(None))
    assert len(pieces) > 300
    for name, score in pieces:
        try:
            assert_round_trip(score)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc


def test_chorale_tracks_are_named_voices() -> None:
    import symusic

    score = symusic.Score(str(chorales(1)[0]))
    tokens = mmm.encode(score)
    assert [t for t in tokens if t.startswith("INST=")] == ["INST=SOPRANO", "INST=ALTO", "INST=TENOR", "INST=BASS"]
    decoded, _ = mmm.decode(tokens)
    assert [t.name for t in decoded.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]


track_strategy = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["program", "drums", "voice"]),
        "program": st.integers(0, 127),
        "voice": st.sampled_from(["soprano", "alto", "tenor", "bass"]),
        "notes": st.lists(
            st.tuples(st.integers(0, 40 * TPQ), st.integers(1, 12 * TPQ), st.integers(0, 127)), min_size=1, max_size=40
        ),
    }
)


def build(spec: list[dict]):
    tracks = []
    for t in spec:
        start, dur, pitch = (list(x) for x in zip(*t["notes"], strict=True))
        tracks.append(
            {
                "pitch": pitch,
                "start": start,
                "duration": dur,
                "program": t["program"],
                "is_drum": t["kind"] == "drums",
                "name": t["voice"] if t["kind"] == "voice" else "",
            }
        )
    return piece(tracks)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(track_strategy, min_size=1, max_size=5))
def test_round_trip_hypothesis(spec: list[dict]) -> None:
    assert_round_trip(build(spec))


@settings(max_examples=30, deadline=None)
@given(st.lists(track_strategy, min_size=1, max_size=4), st.sampled_from([1, 2, 4]), st.integers(1, 3))
def test_windows_match_the_piece(spec: list[dict], bars: int, hop: int) -> None:
    """Every window decodes to the piece's notes clipped to that window."""
    score = build(spec)
    notes = mmm.canonical_notes(score)
    windows = mmm.encode_windows(score, bars=bars, hop=hop)
    length = bars * mmm.STEPS_PER_BAR
    total_bars = -(-int(notes.end.max()) // mmm.STEPS_PER_BAR)
    starts = list(range(0, total_bars - bars + 1, hop))
    if starts and starts[-1] != total_bars - bars:
        starts.append(total_bars - bars)
    live = []
    for t0 in (j * mmm.STEPS_PER_BAR for j in starts):
        inside = (notes.start < t0 + length) & (notes.end > t0)
        if inside.any():
            live.append((t0, inside))
    assert len(windows) == len(live)
    for tokens, (t0, inside) in zip(windows, live, strict=True):
        decoded, repairs = mmm.decode(tokens)
        assert repairs == []
        got = mmm.canonical_notes(decoded)
        present = sorted(set(notes.track[inside].tolist()))
        want = sorted(
            (
                present.index(int(tr)),
                int(max(s - t0, 0)),
                int(min(e - t0, length)),
                int(p),
            )
            for tr, s, e, p in zip(
                notes.track[inside], notes.start[inside], notes.end[inside], notes.pitch[inside], strict=True
            )
        )
        assert note_table(got) == want


# ------------------------------------------------------------------------------------------ details


def test_held_notes_cross_bar_lines_whole() -> None:
    # A whole note from beat 3 of bar 1 into bar 2, and one ending exactly on the bar line of bar 3.
    score = piece([{"pitch": [60, 64], "start": [8 * STEP, 20 * STEP], "duration": [16 * STEP, 12 * STEP]}])
    tokens = mmm.encode(score)
    text = " ".join(tokens)
    assert (
        "BAR_START TIME_DELTA=8 NOTE_ON=60 BAR_END BAR_START TIME_DELTA=4 NOTE_ON=64 TIME_DELTA=4 NOTE_OFF=60" in text
    )
    assert "TIME_DELTA=8 NOTE_OFF=64 BAR_END TRACK_END" in text  # closed at the end of its last bar
    assert text.count("NOTE_ON=60") == 1  # no re-attack
    assert_round_trip(score)


def test_density_bins_and_vocabulary() -> None:
    vocab = mmm.vocabulary()
    assert len(vocab) == len(set(vocab)) and vocab == mmm.vocabulary()
    assert vocab[:4] == ["<pad>", "<unk>", "PIECE_START", "PIECE_END"]
    assert len(mmm.vocabulary(density_bins=4)) == len(vocab) - 6
    score = piece([{"pitch": [60] * 32, "start": [i * STEP for i in range(32)], "duration": [STEP] * 32}])
    tokens = mmm.encode(score)
    assert set(tokens) <= set(vocab)
    assert "DENSITY=9" in tokens  # 16 notes per bar is over the last default edge
    sparse = piece([{"pitch": [60], "start": [0], "duration": [STEP]}])
    assert "DENSITY=1" in mmm.encode(sparse)  # one note per bar sits on the first edge, so in bin 1


def test_transposition_skips_shifts_out_of_range_and_leaves_drums() -> None:
    score = piece(
        [
            {"pitch": [124, 60], "start": [0, STEP], "duration": [STEP, STEP]},
            {"pitch": [36, 38], "start": [0, 4 * STEP], "duration": [STEP, STEP], "is_drum": True},
        ]
    )
    windows = mmm.encode_windows(score, bars=1, transpose=(-2, 6))
    assert len(windows) == 6  # shifts -2..3 keep 124 inside 0..127; 4 and 5 would not
    for shift, tokens in zip(range(-2, 4), windows, strict=True):
        assert f"NOTE_ON={124 + shift}" in tokens
        drums = tokens[tokens.index("INST=DRUMS") :]
        assert "NOTE_ON=36" in drums and "NOTE_ON=38" in drums


def test_fill_moves_one_bar_to_the_end_and_decodes_the_same() -> None:
    import symusic

    score = symusic.Score(str(chorales(1)[0]))
    plain = mmm.encode_windows(score, bars=4, hop=2)
    filled = mmm.encode_windows(score, bars=4, hop=2, fill=True)
    assert len(plain) == len(filled)
    for a, b in zip(plain, filled, strict=True):
        assert b.count("FILL_IN") == 1 and b.count("FILL_START") == 1
        assert b[-1] == "PIECE_END" and b.index("FILL_START") > len(b) - b[::-1].index("TRACK_END") - 1
        da, _ = mmm.decode(a)
        db, repairs = mmm.decode(b)
        assert repairs == []
        assert note_table(mmm.canonical_notes(da)) == note_table(mmm.canonical_notes(db))


def test_track_permutation_is_seeded_and_keeps_the_notes() -> None:
    import symusic

    score = symusic.Score(str(chorales(1)[0]))
    a = mmm.encode_windows(score, bars=4, hop=2, permute_tracks=True, seed=1)
    assert a == mmm.encode_windows(score, bars=4, hop=2, permute_tracks=True, seed=1)
    orders = {tuple(t for t in w if t.startswith("INST=")) for w in a}
    assert len(orders) > 1
    for w in a:
        decoded, repairs = mmm.decode(w)
        assert repairs == [] and len(decoded.tracks) == 4


def test_batch_equals_one_by_one() -> None:
    import symusic

    scores = [symusic.Score(str(p)) for p in chorales(10)]
    options = mmm.MMMOptions(bars=4, hop=2, transpose=(-3, 4), fill=True, permute_tracks=True)
    keys = [str(i) for i in range(len(scores))]
    batch = mmm.encode_batch(scores, options, keys=keys)
    for score, key, result in zip(scores, keys, batch, strict=True):
        try:
            single = mmm.encode_ids(score, options, key=key)
        except BadInput as exc:
            assert isinstance(result, BadInput) and str(result) == str(exc)
            continue
        assert np.array_equal(single.ids, result.ids) and np.array_equal(single.offsets, result.offsets)


def test_meters_and_empty_pieces() -> None:
    waltz = piece([{"pitch": [60], "start": [0], "duration": [STEP]}], time_signature=(3, 4))
    with pytest.raises(BadInput, match="3/4"):
        mmm.encode(waltz)
    assert mmm.encode_windows(waltz, bars=1) == []
    with pytest.raises(BadInput, match="no notes"):
        mmm.encode(piece([{"pitch": [], "start": [], "duration": []}]))


def test_absurdly_long_pieces_are_refused() -> None:
    far = piece([{"pitch": [60, 62], "start": [0, 10_000 * 4 * TPQ], "duration": [TPQ, TPQ]}])
    with pytest.raises(BadInput, match="bars long"):
        mmm.encode_windows(far, bars=4)


def test_cap_per_piece() -> None:
    score = piece([{"pitch": [60] * 64, "start": [i * STEP for i in range(64)], "duration": [STEP] * 64}])
    full = mmm.encode_ids(score, mmm.MMMOptions(bars=1))
    capped = mmm.encode_ids(score, mmm.MMMOptions(bars=1, max_tokens=100))
    assert not full.capped and capped.capped
    assert 0 < len(capped.ids) <= 100 and capped.sequences < full.sequences


# ------------------------------------------------------------------------------------------ repairs


@pytest.mark.parametrize(
    ("tokens", "expect"),
    [
        ("PIECE_START TRACK_START INST=0 BAR_START NOTE_ON=60 TIME_DELTA=4 BAR_END TRACK_END PIECE_END", "closed"),
        ("PIECE_START TRACK_START INST=0 BAR_START NOTE_OFF=60 BAR_END TRACK_END PIECE_END", "without NOTE_ON"),
        (
            "PIECE_START TRACK_START INST=0 BAR_START NOTE_ON=60 TIME_DELTA=12 TIME_DELTA=12 NOTE_OFF=60 BAR_END",
            "past the bar",
        ),
        ("PIECE_START TRACK_START INST=0 BAR_START NOTE_ON=60 TIME_DELTA=4 NOTE_OFF=60 WHAT=3", "unknown token"),
        ("NOTE_ON=60 TIME_DELTA=2 NOTE_OFF=60", "outside a track"),
        ("PIECE_START TRACK_START INST=0 BAR_START FILL_IN BAR_END TRACK_END PIECE_END", "FILL_IN without"),
    ],
)
def test_decode_repairs(tokens: str, expect: str) -> None:
    score, repairs = mmm.decode(tokens)
    assert any(expect in r for r in repairs), repairs
    assert sum(len(t.notes) for t in score.tracks) >= (0 if "FILL" in tokens or "NOTE_OFF=60 BAR" in tokens else 1)


def test_decode_past_the_bar_is_cut_at_the_bar_line() -> None:
    score, _ = mmm.decode(
        "PIECE_START TRACK_START INST=0 BAR_START NOTE_ON=60 TIME_DELTA=12 TIME_DELTA=12 NOTE_OFF=60 BAR_END"
    )
    note = score.tracks[0].notes[0]
    assert (note.time, note.duration) == (0, 16)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([*mmm.vocabulary(), "junk", "NOTE_ON=300", "TIME_DELTA=0", "INST=x", ""]), max_size=120)
)
def test_decode_never_raises_on_model_output(tokens: list[str]) -> None:
    score, repairs = mmm.decode(tokens)
    assert isinstance(repairs, list)
    for track in score.tracks:
        for note in track.notes:
            assert note.duration >= 1 and 0 <= note.pitch <= 127


# ------------------------------------------------------------------------------------ real-world input


def test_a_tracks_program_decides_its_instrument(fixtures_dir) -> None:
    from orchestrion.core.music import load_midi

    pop = load_midi(fixtures_dir / "pop_song.mid")  # "Bass" is an electric bass, "Tenor" a tenor saxophone
    tokens = mmm.encode(pop)
    assert [t for t in tokens if t.startswith("INST=")] == ["INST=73", "INST=0", "INST=48", "INST=33", "INST=66",
                                                            "INST=DRUMS"]  # fmt: skip
    decoded, _ = mmm.decode(tokens)
    assert [(t.program, t.is_drum) for t in decoded.tracks] == [(p.program, p.is_drum) for p in pop.tracks]
    sung = piece([{"pitch": [48], "start": [0], "duration": [STEP], "program": 52, "name": "Tenor"},
                  {"pitch": [60], "start": [0], "duration": [STEP], "program": 0, "name": "Soprano 1"}])  # fmt: skip
    assert [t for t in mmm.encode(sung) if t.startswith("INST=")] == ["INST=TENOR", "INST=0"]
    assert [t for t in mmm.encode(sung, voices=True) if t.startswith("INST=")] == ["INST=TENOR", "INST=SOPRANO"]


@pytest.mark.parametrize("meter", [(2, 4), (2, 2), (4, 2), (8, 4)])
def test_meters_that_tile_four_four_are_regrouped_whole(meter: tuple[int, int]) -> None:
    from orchestrion.testing.real_world import meter_piece

    score = meter_piece(*meter)
    assert_round_trip(score)  # the whole piece, every note, as 4/4 bars
    encoded = mmm.encode_ids(score, mmm.MMMOptions(bars=1, hop=1))
    assert encoded.skipped == [] and encoded.regrouped == [f"{meter[0]}/{meter[1]} from step 0 regrouped into 4/4 bars"]
    notes = mmm.canonical_notes(score)
    assert encoded.sequences == -(-int(notes.end.max()) // mmm.STEPS_PER_BAR)  # a window for every 4/4 bar


def test_other_meters_are_reported_per_segment() -> None:
    import symusic

    # A quarter note on every beat: 4 bars of 4/4 (steps 0-64), 4 bars of 3/4 (64-112), 3 bars of 4/4 (112-).
    score = piece([{"pitch": [60] * 40, "start": [i * 4 * STEP for i in range(40)], "duration": [STEP] * 40}])
    score.time_signatures.append(symusic.TimeSignature(64 * STEP, 3, 4))
    score.time_signatures.append(symusic.TimeSignature(112 * STEP, 4, 4))
    encoded = mmm.encode_ids(score, mmm.MMMOptions(bars=4, hop=4))
    assert encoded.skipped == ["3/4 at step 64 (4 bars of it): its bars do not regroup into 4/4 bars",
                               "4/4 segment at step 112 is 3 bars, under 4"]  # fmt: skip
    assert encoded.sequences == 1


def test_repeats_faster_than_the_grid_and_a_note_at_the_very_end_are_reported() -> None:
    # Four bars; three repeated 32nd notes (the last two round onto one 16th), and a 32nd just before the end.
    half = STEP // 2
    score = piece([{"pitch": [60, 60, 60, 67, 72], "start": [0, half, STEP, 8 * STEP, 64 * STEP - half],
                    "duration": [half, half, half, 56 * STEP, half]}])  # fmt: skip
    notes = mmm.canonical_notes(score)
    assert int(notes.end.max()) == 64  # still four bars: the last 32nd moved back onto the last 16th
    assert (notes.merged, notes.moved_back, notes.off_grid, notes.resized) == (1, 1, 2, 2)
    assert notes.quantised() == [
        "2 notes moved onto the 16th-note grid",
        "2 notes with a length rounded to whole 16ths",
        "1 note merged with a note of the same pitch on the same 16th (repeated notes faster than 16ths)",
        "1 note just before the end moved a 16th earlier (so that no bar is added)",
    ]


def test_a_prompt_is_read_with_its_tempo_programs_and_length_and_says_what_changed(fixtures_dir) -> None:
    """Harmonising a melody (issue 22): the prompt keeps its tempo, its bass guitar is INST=33 (a program, not
    a voice), a 32nd just before its end adds no bar, and what reading it changed is reported."""
    import symusic

    from orchestrion.core.music import load_midi

    song = load_midi(fixtures_dir / "pop_song.mid")  # 8 bars at 175 qpm
    song.tracks = [song.tracks[0], song.tracks[3]]  # the melody (flute) and "Bass" (an electric bass)
    melody = song.tracks[0].notes
    for start in (0, STEP // 2, STEP):  # three repeated 32nds: the last two round onto one 16th
        melody.append(symusic.Note(start, STEP // 2, 84, 90))
    melody.append(symusic.Note(32 * 4 * STEP - STEP // 2, STEP // 2, 79, 90))  # a 32nd just before the end
    melody.sort()
    reading = mmm.read_prompt(song)
    assert reading.bars == 8 and round(reading.tempo) == 175 and reading.notes.inst == ["73", "33"]
    assert reading.report == [
        "2 notes moved onto the 16th-note grid",
        "50 notes with a length rounded to whole 16ths",
        "1 note merged with a note of the same pitch on the same 16th (repeated notes faster than 16ths)",
        "1 note just before the end moved a 16th earlier (so that no bar is added)",
        'track 2 ("Bass") is INST=33, its General MIDI program, not BASS: only sung parts (choir programs) are '
        "read as voices",
    ]
    assert mmm.read_prompt(load_midi(fixtures_dir / "meter_2_4.mid")).report[-2:] == [
        "2/4 regrouped into 4/4 bars",
        'track 2 ("bass") is INST=32, its General MIDI program, not BASS: only sung parts (choir programs) are '
        "read as voices",
    ]
    with pytest.raises(BadInput, match="3/4"):
        mmm.read_prompt(load_midi(fixtures_dir / "three_four.mid"))


@pytest.mark.parametrize(
    ("first", "last", "windows"), [((3, 4), (4, 4), 2), ((4, 4), (3, 4), 0)], ids=["4-4-last", "3-4-last"]
)
def test_signatures_on_one_tick_are_taken_in_file_order(first, last, windows) -> None:
    """Two time signatures on tick 0: the later in the file holds (it was the larger after sorting)."""
    import struct

    import symusic

    def signature(num: int, den: int) -> bytes:
        return b"\x00\xff\x58\x04" + bytes([num, {4: 2}[den], 24, 8])

    notes = b"".join(b"\x00\x90\x3c\x40\x83\x60\x80\x3c\x00" for _ in range(16))  # 16 quarters: 4 bars of 4/4
    body = signature(*first) + signature(*last) + notes + b"\x00\xff\x2f\x00"
    data = b"MThd" + struct.pack(">IHHH", 6, 1, 1, TPQ) + b"MTrk" + struct.pack(">I", len(body)) + body
    score = symusic.Score.from_midi(data)
    assert [(m[0], m[1]) for m in mmm.canonical_notes(score).meters] == [last]
    assert mmm.encode_ids(score, mmm.MMMOptions(bars=2, hop=2)).sequences == windows
