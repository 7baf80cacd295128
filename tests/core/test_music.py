"""core/music.py: MIDI round trips over every fixture, quantize, meters, key estimation, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import symusic
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.core.music import (
    estimate_key,
    is_four_four,
    load_midi,
    parse_key,
    quantize,
    save_midi,
    score_from_notes,
    time_signatures,
)
from orchestrion.errors import BadInput

GOOD = ["one_track.mid", "multitrack.mid", "drums.mid", "three_four.mid", "type0_running.mid"]
BAD = {
    "empty.mid": "empty",
    "truncated.mid": "truncated",
    "not_midi.mid": "not a MIDI file",
    "no_notes.mid": "no notes",
}


def notes_of(score: symusic.Score) -> list[tuple]:
    """Every note as (track index, track name, program, drum, pitch, start, duration, velocity), sorted."""
    rows = []
    for i, track in enumerate(score.tracks):
        a = track.notes.numpy()
        for p, t, d, v in zip(a["pitch"], a["time"], a["duration"], a["velocity"], strict=True):
            rows.append((i, track.name, track.program, track.is_drum, int(p), int(t), int(d), int(v)))
    return sorted(rows)


# ----------------------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name", GOOD)
def test_round_trip_keeps_every_note(fixtures_dir: Path, tmp_path: Path, name: str) -> None:
    first = load_midi(fixtures_dir / name)
    again = load_midi(save_midi(first, tmp_path / name))
    assert len(notes_of(first)) > 0
    assert notes_of(again) == notes_of(first)
    assert again.tpq == first.tpq
    assert [(t.time, round(t.qpm, 3)) for t in again.tempos] == [(t.time, round(t.qpm, 3)) for t in first.tempos]
    assert time_signatures(again) == time_signatures(first)


def test_round_trip_of_a_chorale(chorale_files: list[Path], tmp_path: Path) -> None:
    first = load_midi(chorale_files[0])
    again = load_midi(save_midi(first, tmp_path / "chorale.mid"))
    assert notes_of(again) == notes_of(first)
    assert [t.name for t in again.tracks] == ["soprano", "alto", "tenor", "bass"]


def test_type0_running_status_is_read(fixtures_dir: Path) -> None:
    score = load_midi(fixtures_dir / "type0_running.mid")
    rows = [(p, t, d, v) for *_, p, t, d, v in notes_of(score)]
    # C4 and E4 together for a quarter (E4 written with running status), then G4 for a half.
    assert rows == [(60, 0, 480, 100), (64, 0, 480, 80), (67, 480, 960, 90)]


def test_riff_wrapped_midi_is_read(fixtures_dir: Path) -> None:
    data = (fixtures_dir / "one_track.mid").read_bytes()
    riff = b"RIFF" + (len(data) + 12).to_bytes(4, "little") + b"RMIDdata" + len(data).to_bytes(4, "little") + data
    assert notes_of(load_midi(riff)) == notes_of(load_midi(data))


def test_drum_track_stays_a_drum_track(fixtures_dir: Path, tmp_path: Path) -> None:
    score = load_midi(save_midi(load_midi(fixtures_dir / "drums.mid"), tmp_path / "d.mid"))
    assert [t.is_drum for t in score.tracks] == [True, False]


def _track_notes(draw: st.DrawFn) -> dict:
    """Notes of one track with no two notes of the same pitch overlapping (MIDI cannot tell those apart)."""
    count = draw(st.integers(1, 24))
    pitch = draw(st.lists(st.integers(0, 127), min_size=count, max_size=count))
    start = draw(st.lists(st.integers(0, 20_000), min_size=count, max_size=count))
    duration = draw(st.lists(st.integers(1, 3_000), min_size=count, max_size=count))
    velocity = draw(st.lists(st.integers(1, 127), min_size=count, max_size=count))
    kept: dict[int, list[tuple[int, int]]] = {}
    rows = []
    for p, s, d, v in zip(pitch, start, duration, velocity, strict=True):
        if all(s >= e0 or s + d <= s0 for s0, e0 in kept.get(p, [])):
            kept.setdefault(p, []).append((s, s + d))
            rows.append((p, s, d, v))
    return {
        "pitch": [r[0] for r in rows],
        "start": [r[1] for r in rows],
        "duration": [r[2] for r in rows],
        "velocity": [r[3] for r in rows],
        "program": draw(st.integers(0, 127)),
        "name": draw(st.sampled_from(["", "lead", "bass", "pad"])),
    }


@settings(max_examples=40, deadline=None)
@given(st.lists(st.composite(_track_notes)(), min_size=1, max_size=4))
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, tracks: list[dict]) -> None:
    score = score_from_notes(tracks, tpq=480)
    path = tmp_path_factory.mktemp("rt") / "piece.mid"
    again = load_midi(save_midi(score, path))
    assert notes_of(again) == notes_of(score)


# ------------------------------------------------------------------------------------------- quantize


def test_quantize_snaps_to_sixteenths() -> None:
    # At 480 ticks per quarter a 16th is 120 ticks.
    score = score_from_notes(
        [{"pitch": [60, 62, 64, 65], "start": [5, 118, 250, 961], "duration": [100, 130, 10, 1000]}]
    )
    q = quantize(score)
    assert q.tpq == 4
    a = q.tracks[0].notes.numpy()
    assert a["time"].tolist() == [0, 1, 2, 8]
    # Ends snap to the nearest step: 105 -> 1, 248 -> 2, 260 -> 2 (kept at one step), 1961 -> 16.
    assert a["duration"].tolist() == [1, 1, 1, 8]
    assert a["pitch"].tolist() == [60, 62, 64, 65]


def test_quantize_other_grid_keeps_meters(fixtures_dir: Path) -> None:
    score = load_midi(fixtures_dir / "multitrack.mid")
    q = quantize(score, steps_per_quarter=12)
    assert q.tpq == 12
    assert [(s.numerator, s.denominator) for s in time_signatures(q)] == [(4, 4), (2, 4), (4, 4)]
    assert [s.start for s in time_signatures(q)] == [0, 48, 72]
    assert sum(len(t.notes) for t in q.tracks) == sum(len(t.notes) for t in score.tracks)


# --------------------------------------------------------------------------------------------- meters


def test_time_signatures_and_non_four_four(fixtures_dir: Path) -> None:
    waltz = load_midi(fixtures_dir / "three_four.mid")
    assert [(s.numerator, s.denominator) for s in time_signatures(waltz)] == [(3, 4)]
    assert not is_four_four(waltz)
    assert is_four_four(load_midi(fixtures_dir / "one_track.mid"))
    mixed = load_midi(fixtures_dir / "multitrack.mid")
    spans = time_signatures(mixed)
    assert [(s.numerator, s.denominator, s.start, s.end) for s in spans] == [
        (4, 4, 0, 1920),
        (2, 4, 1920, 2880),
        (4, 4, 2880, int(mixed.end())),
    ]
    assert not is_four_four(mixed)


def test_no_time_signature_means_four_four() -> None:
    score = score_from_notes([{"pitch": [60], "start": [0], "duration": [480]}])
    score.time_signatures.clear()
    assert [(s.numerator, s.denominator) for s in time_signatures(score)] == [(4, 4)]
    assert is_four_four(score)


# ------------------------------------------------------------------------------------------------ key

MAJOR_STEPS = [0, 2, 4, 5, 7, 9, 11]
HARMONIC_MINOR_STEPS = [0, 2, 3, 5, 7, 8, 11]


def _scale_score(tonic: int, steps: list[int]) -> symusic.Score:
    # Up and down the scale, with the tonic triad held longer, as a melody would dwell on it.
    degrees = [*range(7), 7, *range(6, -1, -1), 0, 2, 4, 0]
    pitches = [60 + tonic + (steps[d % 7] + 12 * (d // 7)) for d in degrees]
    durations = [960 if d % 7 in (0, 2, 4) else 480 for d in degrees]
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]]).tolist()
    return score_from_notes([{"pitch": pitches, "start": starts, "duration": durations}])


@pytest.mark.parametrize("profile", ["aarden-essen", "krumhansl-kessler"])
@pytest.mark.parametrize("tonic", range(12))
def test_key_of_synthetic_scales(tonic: int, profile: str) -> None:
    major = estimate_key(_scale_score(tonic, MAJOR_STEPS), profile)
    assert (major.tonic, major.mode) == (tonic, "major")
    minor = estimate_key(_scale_score(tonic, HARMONIC_MINOR_STEPS), profile)
    assert (minor.tonic, minor.mode) == (tonic, "minor")


def test_unknown_key_profile() -> None:
    with pytest.raises(BadInput, match="aarden-essen"):
        estimate_key(_scale_score(0, MAJOR_STEPS), "temperley")


def test_key_of_known_chorales(chorale_files: list[Path]) -> None:
    by_name = {p.stem: p for p in chorale_files}
    # bwv1.6 "Wie schön leuchtet der Morgenstern" is in F major; bwv10.7 "Meine Seel erhebt den Herren" in G minor.
    assert str(estimate_key(load_midi(by_name["bwv1.6"]))) == "F major"
    assert str(estimate_key(load_midi(by_name["bwv10.7"]))) == "G minor"


def test_parse_key() -> None:
    assert parse_key("D minor").name == "D minor"
    assert parse_key("bb maj").name == "Bb major"
    assert parse_key("F#").name == "F# major"
    with pytest.raises(BadInput, match="not a note name"):
        parse_key("H minor")


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_raise_bad_input_naming_the_file(fixtures_dir: Path, name: str) -> None:
    with pytest.raises(BadInput) as info:
        load_midi(fixtures_dir / name)
    assert name in str(info.value)
    assert BAD[name] in info.value.reason


def test_missing_file_and_bad_bytes(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        load_midi(tmp_path / "nowhere.mid")
    with pytest.raises(BadInput, match="MThd"):
        load_midi(b"RIFF....WAVEfmt ")
    header_only = b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x00\x90"
    with pytest.raises(BadInput, match="truncated"):
        load_midi(header_only)


def test_zero_notes_allowed_when_asked(fixtures_dir: Path) -> None:
    score = load_midi(fixtures_dir / "no_notes.mid", require_notes=False)
    assert sum(len(t.notes) for t in score.tracks) == 0
