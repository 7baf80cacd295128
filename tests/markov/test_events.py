"""The events codec: lines, durations, chords, keys; round trips and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.core.music import load_midi, score_from_notes
from orchestrion.errors import BadInput
from orchestrion.markov import dataset as events_dataset
from orchestrion.markov import events as ev

TPQ = 480
STEP = TPQ // ev.STEPS_PER_QUARTER


def melody(tones_durations: list[tuple[int, int]]) -> np.ndarray:
    return np.asarray([ev.melody_event(t, ev.DURATIONS.index(d)) for t, d in tones_durations], dtype=np.int64)


def score_of(*voices: list[tuple[int, float, float]], program: int = 0) -> object:
    """Voices of (pitch, start, duration) in quarters -> a score, one track per voice."""
    tracks = []
    for notes in voices:
        tracks.append(
            {
                "program": program,
                "pitch": [p for p, _, _ in notes],
                "start": [round(s * TPQ) for _, s, _ in notes],
                "duration": [round(d * TPQ) for _, _, d in notes],
            }
        )
    return score_from_notes(tracks, tpq=TPQ)


# -------------------------------------------------------------------------------------- durations


def test_every_listed_duration_is_one_event():
    for d in ev.DURATIONS:
        assert ev.split_duration(d) == (d,)
    assert ev.DURATION_NAMES[ev.DURATIONS.index(4)] == "triplet 8th"
    assert ev.DURATION_NAMES[ev.DURATIONS.index(9)] == "dotted 8th"


@pytest.mark.parametrize(
    ("steps", "parts"),
    [(11, (12,)), (8, (4, 4)), (60, (48, 12)), (96, (48, 48)), (30, (24, 6)), (1, ())],
    ids=lambda x: str(x),
)
def test_split_duration(steps, parts):
    assert ev.split_duration(steps) == parts


def test_split_duration_is_idempotent():
    for steps in range(1, 500):
        parts = ev.split_duration(steps)
        assert ev.split_duration(sum(parts)) == parts
        assert list(parts) == sorted(parts, reverse=True)
        assert abs(sum(parts) - steps) <= 2


# ----------------------------------------------------------------------------------------- chords


def test_chord_codes_are_a_bijection():
    seen = {}
    for code in range(ev.N_CHORDS):
        pcs = ev.chord_pitch_classes(code)
        if len(set(pcs)) != len(pcs):
            continue  # codes with a repeated digit are never produced
        pitches = ev.voice_chord(code, top=100)
        assert ev.chord_code(pitches) == code
        seen[pcs] = code
    assert len(seen) == 12 + 12 * 11 + 12 * 11 * 10 + 12 * 11 * 10 * 9 + 1


def test_chord_code_highest_pitch_is_most_significant():
    c_major = ev.chord_code([48, 52, 55, 60])  # C3 E3 G3 C4: C on top, then G, then E
    assert ev.chord_pitch_classes(c_major) == (0, 7, 4)
    assert c_major == ev.CHORD_OFFSETS[3] + 0 * 144 + 7 * 12 + 4
    # Plain base 12 would give C-E-G and E-G the same number; the length offset keeps them apart.
    assert ev.chord_code([60, 64, 67]) != ev.chord_code([64, 67])
    assert ev.chord_code([]) == ev.NO_CHORD
    assert ev.chord_pitch_classes(ev.NO_CHORD) == ()
    five = ev.chord_code([60, 62, 64, 65, 67])  # more than four pitch classes: the top four stay
    assert ev.chord_pitch_classes(five) == (7, 5, 4, 2)
    with pytest.raises(ValueError):
        ev.chord_pitch_classes(ev.N_CHORDS)


def test_transpose_chord_and_mask():
    c = ev.chord_code([60, 64, 67])
    d = ev.transpose_chord(c, 2)
    assert ev.chord_pitch_classes(d) == (9, 6, 2)
    assert ev.transpose_chord(d, -2) == c
    assert ev.chord_mask(c) == (1 << 0) | (1 << 4) | (1 << 7)


def test_beat_chords_follow_the_harmony():
    score = score_of([(60, 0, 2)], [(64, 0, 2)], [(67, 0, 1), (69, 1, 1)], [(41, 2, 2), (45, 2, 2), (48, 2, 2)])
    e = ev.encode(score, transpose=False)
    assert [ev.chord_pitch_classes(c) for c in e.chords] == [(7, 4, 0), (9, 4, 0), (0, 9, 5), (0, 9, 5)]


# ------------------------------------------------------------------------------------------- lines


def test_tones_fold_into_range():
    assert ev.fold_tone(np.array([36, 107, 35, 108, 24, 120])).tolist() == [0, 71, 11, 60, 0, 60]


def test_high_and_low_lines_are_the_skyline_and_the_bass():
    soprano = [(72, 0, 1), (74, 1, 1), (76, 2, 2)]
    bass = [(48, 0, 2), (43, 2, 1), (48, 3, 1)]
    e = ev.encode(score_of(soprano, bass), transpose=False)
    assert e.high.tolist() == melody([(36, 12), (38, 12), (40, 24)]).tolist()
    assert e.low.tolist() == melody([(12, 24), (7, 12), (12, 12)]).tolist()


def test_repeated_notes_stay_separate_and_legato_gaps_vanish():
    # Four quarter notes of one pitch played 0.9 long: four quarter events, no rests.
    e = ev.encode(score_of([(67, i, 0.9) for i in range(4)]), transpose=False)
    assert e.high.tolist() == melody([(31, 12)] * 4).tolist()


def test_rests_triplets_and_dotted_values():
    notes = [(60, 0, 1 / 3), (62, 1 / 3, 1 / 3), (64, 2 / 3, 1 / 3), (65, 1, 0.75), (67, 1.75, 0.25), (72, 3, 1)]
    e = ev.encode(score_of(notes), transpose=False)
    assert e.high.tolist() == melody([(24, 4), (26, 4), (28, 4), (29, 9), (31, 3), (ev.REST, 12), (36, 12)]).tolist()


@st.composite
def lines(draw):
    """Melody events without rests (every note sounds), as the codec itself would write them."""
    n = draw(st.integers(1, 40))
    tones = draw(st.lists(st.integers(0, ev.N_TONES - 1), min_size=n, max_size=n))
    durs = draw(st.lists(st.integers(0, ev.N_DURATIONS - 1), min_size=n, max_size=n))
    return np.asarray([ev.melody_event(t, d) for t, d in zip(tones, durs, strict=True)], dtype=np.int64)


@settings(max_examples=60, deadline=None)
@given(lines())
def test_line_round_trip(events):
    start, duration, pitch = ev.line_to_notes(events)
    assert ev.notes_to_line(start, duration, pitch).tolist() == events.tolist()


def test_line_round_trip_with_rests():
    events = melody([(24, 12), (ev.REST, 18), (26, 4), (ev.REST, 48), (ev.REST, 12), (30, 36)])
    start, duration, pitch = ev.line_to_notes(events)
    assert ev.notes_to_line(start, duration, pitch).tolist() == events.tolist()


def test_decode_then_encode_gives_the_lines_back():
    e = ev.encode(load_midi(Path(__file__).parents[1] / "fixtures" / "multitrack.mid"), transpose=False)
    again = ev.encode(ev.decode(ev.PieceEvents(e.high, e.high, e.chords)), transpose=False)
    assert again.high.tolist() == e.high.tolist()


# -------------------------------------------------------------------------------------------- keys


def test_transposition_to_a_common_tonic():
    tune = [(62, 0, 1), (66, 1, 1), (69, 2, 1), (74, 3, 1), (73, 4, 1), (69, 5, 1), (66, 6, 1), (62, 7, 2)]
    bass = [(50, 0, 4), (45, 4, 2), (38, 6, 4)]
    base = ev.encode(score_of(tune, bass))
    assert (base.tonic, base.mode, base.shift) == (2, "major", -2)
    for k in (-1, 1, 2):
        moved = ev.encode(score_of([(p + k, s, d) for p, s, d in tune], [(p + k, s, d) for p, s, d in bass]))
        assert moved.tonic == (2 + k) % 12
        assert moved.high.tolist() == base.high.tolist()
        assert moved.low.tolist() == base.low.tolist()
        assert moved.chords.tolist() == base.chords.tolist()


def test_json_round_trip():
    e = ev.encode(load_midi(Path(__file__).parents[1] / "fixtures" / "three_four.mid"))
    back = ev.PieceEvents.from_json(e.to_json())
    assert back.to_json() == e.to_json()


# -------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["empty.mid", "no_notes.mid", "truncated.mid", "not_midi.mid"])
def test_bad_files_raise_bad_input_naming_the_file(fixtures_dir, name):
    with pytest.raises(BadInput) as info:
        ev.encode_file(fixtures_dir / name)
    assert name in str(info.value)


def test_drums_only_is_not_music_to_learn():
    import symusic

    score = symusic.Score(TPQ)
    drums = symusic.Track("drums", 0, True)
    drums.notes.append(symusic.Note(0, 480, 36, 100))
    score.tracks.append(drums)
    with pytest.raises(BadInput, match="no pitched notes"):
        ev.encode(score)


def test_a_batch_reports_bad_files_and_carries_on(fixtures_dir):
    paths = [fixtures_dir / n for n in ("one_track.mid", "empty.mid", "multitrack.mid", "not_midi.mid")]
    pieces, problems = events_dataset.encode_files(paths, workers=1)
    assert [Path(p.source).name for p in pieces] == ["one_track.mid", "multitrack.mid"]
    assert len(problems) == 2 and "empty.mid" in problems[0] and "not_midi.mid" in problems[1]


def test_encode_to_dir(fixtures_dir, tmp_path):
    out = events_dataset.encode_to_dir([str(fixtures_dir)], tmp_path / "events", workers=1)
    import json

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert {Path(r["source"]).name for r in records} >= {"one_track.mid", "multitrack.mid", "drums.mid"}
    assert "truncated.mid" in (tmp_path / "events" / "problems.txt").read_text()


def test_encode_events_on_ray_is_byte_identical(fixtures_dir, tmp_path, tmp_path_factory, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from orchestrion.testing.local_ray import offline_ray_env

    local = events_dataset.encode_to_dir([str(fixtures_dir)], tmp_path / "local", workers=2)
    # The Ray processes ray.init starts get these. One HOME for every Ray of the session: Ray (2.60) makes its
    # auth token there when it first starts, and keeps token auth on for the rest of this process.
    for key, value in offline_ray_env(tmp_path_factory.getbasetemp() / "ray-home").items():
        monkeypatch.setenv(key, value)
    try:
        on_ray = events_dataset.encode_to_dir([str(fixtures_dir)], tmp_path / "ray", workers=2, engine="ray")
    finally:
        ray.shutdown()
    for name in ("events.jsonl", "problems.txt"):
        assert (on_ray.parent / name).read_bytes() == (local.parent / name).read_bytes()
    assert "truncated.mid" in (on_ray.parent / "problems.txt").read_text()


def test_encode_events_resumes_from_its_cache(fixtures_dir, tmp_path, monkeypatch):
    out = events_dataset.encode_to_dir([str(fixtures_dir)], tmp_path / "events", workers=1)
    first = out.read_bytes()

    def encode_again(*args, **kwargs):
        raise AssertionError("a file was encoded twice")

    monkeypatch.setattr(events_dataset, "_encode_json", encode_again)
    assert events_dataset.encode_to_dir([str(fixtures_dir)], tmp_path / "events", workers=1).read_bytes() == first


# ------------------------------------------------------------------------------------ real-world input


def leaps(line: np.ndarray) -> float:
    """The share of melodic intervals (between sounding notes) wider than an octave."""
    tones = ev.event_tone(line)
    tones = tones[tones != ev.REST].astype(np.int64)
    return float(np.mean(np.abs(np.diff(tones)) > 12)) if len(tones) > 1 else 0.0


def test_the_melody_of_an_arrangement_is_its_melody_part_not_the_top_note(fixtures_dir):
    import symusic

    song = load_midi(fixtures_dir / "pop_song.mid")  # strings an octave above the melody every other bar
    e = ev.encode(song, transpose=False)
    assert leaps(e.high) == 0.0
    melody = song.tracks[0].notes.numpy()
    assert ev.event_tone(e.high[:4]).tolist() == (melody["pitch"][:4] - ev.LOWEST_PITCH).tolist()
    low = song.tracks[3].notes.numpy()  # "Bass", an electric bass
    assert ev.event_tone(e.low[0]) == low["pitch"][0] - ev.LOWEST_PITCH
    # The old reading, the top note across every track, leaps between the melody and the strings.
    merged = symusic.Score(song.tpq)
    track = symusic.Track("all", 0, False)
    for t in song.tracks:
        if not t.is_drum:
            track.notes.extend(t.notes)
    track.notes.sort()
    merged.tracks.append(track)
    assert leaps(ev.encode(merged, transpose=False).high) > 0.1


def test_parts_are_found_by_name_else_by_register():
    lead = [(67, i, 1) for i in range(8)]
    pad = [(p, 0, 8) for p in (76, 79, 84)]  # chords above the lead
    bass = [(40, 0, 4), (43, 4, 4)]
    score = score_of(pad, lead, bass)
    assert ev.event_tone(ev.encode(score, transpose=False).high[0]) == 67 - ev.LOWEST_PITCH  # the single line
    score.tracks[0].name = "Lead vocal"
    assert ev.event_tone(ev.encode(score, transpose=False).high[0]) == 84 - ev.LOWEST_PITCH  # named: taken
