"""Harmonising a MIDI prompt with the shipped builtin:chorales: the prompt's tempo, its notes as read, each kept
track's voice, what reading changed reported, and a replay that gives the same bytes (issue 22, item 7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import symusic

from orchestrion.core.music import load_midi, save_midi, score_from_notes
from orchestrion.errors import InvalidRequest
from orchestrion.mmm.plan import Prompt, plan_piece
from orchestrion.requests import ComposeRequest

FIXTURES = Path(__file__).parents[1] / "fixtures"
MODEL = "builtin:chorales"
TPQ = 480
MELODY = [72, 74, 76, 77, 79, 79, 79, 74, 72]  # the 79s: a 32nd note and repeats of it (one pair shares a 16th)
BASS = [48, 43, 45, 41]


def band_prompt() -> symusic.Score:
    """Two bars at 175 bpm: a melody with repeated 32nd notes and a short note just before the end, and an
    electric bass (General MIDI 33)."""
    score = symusic.Score(TPQ)
    score.tempos.append(symusic.Tempo(0, 175.0))
    score.time_signatures.append(symusic.TimeSignature(0, 4, 4))
    melody = symusic.Track("Melody", 0)
    times = [0, 480, 960, 1440, 1920, 1980, 2040, 3360, 3815]  # 1980, 2040: both onto the 16th after 1920
    durations = [480, 480, 480, 480, 60, 60, 1200, 450, 20]
    for time, duration, pitch in zip(times, durations, MELODY, strict=True):
        melody.notes.append(symusic.Note(time, duration, pitch, 80))
    bass = symusic.Track("Bass", 33)
    for i, pitch in enumerate(BASS):
        bass.notes.append(symusic.Note(960 * i, 960, pitch, 80))
    score.tracks.extend([melody, bass])
    return score


@pytest.fixture(scope="module")
def harmonised(tmp_path_factory) -> Path:
    """The prompt harmonised by the real chorale model, written with its sidecar as `orchestrion generate` does."""
    from orchestrion.generate import generate_to_files

    folder = tmp_path_factory.mktemp("harmonise")
    prompt = save_midi(band_prompt(), folder / "band.mid")
    request = ComposeRequest(model=MODEL, prompt=str(prompt), seed=5, candidates=2)
    (piece, sidecar) = generate_to_files(request, folder / "harmonised.mid")
    assert sidecar.name == "harmonised.mid.json"
    return piece


def test_a_band_prompt_is_harmonised_at_its_tempo_with_the_bass_guitar_as_the_bass(harmonised):
    score = load_midi(harmonised)
    assert [round(t.qpm, 3) for t in score.tempos] == [175.0]
    names = [t.name for t in score.tracks]
    assert sorted(names) == ["Alto", "Bass", "Soprano", "Tenor"]
    bass = score.tracks[names.index("Bass")].notes.numpy()
    assert bass["pitch"].tolist() == BASS and bass["time"].tolist() == [960 * i for i in range(4)]
    melody = score.tracks[names.index("Soprano")].notes.numpy()
    assert melody["pitch"].tolist() == [p for i, p in enumerate(MELODY) if i != 6]  # a repeat merged
    assert score.end() <= 8 * TPQ  # the short last note adds no bar
    report = json.loads(harmonised.with_name(harmonised.name + ".json").read_text())["report"]
    assert report["mode"] == "harmonise" and report["bars"] == 2 and report["tempo"] == pytest.approx(175)
    warnings = report["warnings"]
    assert "1 note merged with a note of the same pitch on the same 16th (repeated notes faster than 16ths)" in warnings
    assert "1 note just before the end moved a 16th earlier (so that no bar is added)" in warnings
    assert "prompt track 2 (INST=33) is kept as the BASS (General MIDI 33, a bass program)" in warnings
    assert "prompt track 1 (INST=0) is kept as the SOPRANO (median MIDI 75, the highest part)" in warnings
    assert not any("stay outside" in w for w in warnings)  # the bass is no longer checked as an alto


def test_a_harmonisation_replays_from_its_sidecar_to_the_same_bytes(harmonised, tmp_path):
    from typer.testing import CliRunner

    from orchestrion import cli

    sidecar = harmonised.with_name(harmonised.name + ".json")
    assert json.loads(sidecar.read_text())["request"]["tempo"] == pytest.approx(175)
    out = tmp_path / "again.mid"
    result = CliRunner().invoke(cli.app, ["generate", "--replay", str(sidecar), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == harmonised.read_bytes()


def test_a_requested_tempo_is_kept_and_a_request_without_a_prompt_is_unchanged(tmp_path):
    from orchestrion.registry import load_composer

    composer = load_composer(MODEL)
    prompt = str(save_midi(band_prompt(), tmp_path / "band.mid"))
    assert composer.validate(ComposeRequest(model=MODEL, prompt=prompt, tempo=90, seed=1)).tempo == 90
    plain = composer.validate(ComposeRequest(model=MODEL, bars=2, seed=11))
    assert plain.tempo == 120 and "tempo" not in plain.model_fields_set


def _plan(score: symusic.Score, **fields):
    request = ComposeRequest(model="x", **fields)
    return plan_piece(request, Prompt.from_score(score), seed=1)


def test_kept_tracks_are_voiced_by_program_and_register():
    low = score_from_notes([{"pitch": [43, 45, 47, 48], "start": [0, 4, 8, 12], "duration": [4] * 4}], tpq=4)
    plan = _plan(low)
    assert [t.instrument for t in plan.tracks] == ["BASS", "SOPRANO", "ALTO", "TENOR"]
    assert plan.tracks[0].kept and plan.todo[1:].all() and not plan.todo[0].any()
    assert any("kept as the BASS (median MIDI 46, below the tenor's range)" in w for w in plan.warnings)
    tune = score_from_notes([{"pitch": [67, 69, 71, 72], "start": [0, 4, 8, 12], "duration": [4] * 4}], tpq=4)
    assert [t.instrument for t in _plan(tune).tracks] == ["SOPRANO", "ALTO", "TENOR", "BASS"]
    three = score_from_notes(
        [
            {"pitch": [72, 74], "start": [0, 8], "duration": [8, 8]},
            {"pitch": [60, 62], "start": [0, 8], "duration": [8, 8]},
            {"pitch": [36, 38], "start": [0, 8], "duration": [8, 8]},
        ],
        tpq=4,
    )
    assert [t.instrument for t in _plan(three).tracks] == ["SOPRANO", "TENOR", "BASS", "ALTO"]
    named = _plan(band_prompt(), instruments=["SOPRANO", "ALTO", "TENOR", "BASS"])  # asked for: as asked
    assert [t.instrument for t in named.tracks] == ["SOPRANO", "ALTO", "TENOR", "BASS"]


def test_a_two_four_prompt_is_read_and_an_unregroupable_meter_named():
    prompt = Prompt.from_score(load_midi(FIXTURES / "meter_2_4.mid"))
    assert prompt.bars >= 1 and any("2/4" in line for line in prompt.warnings), prompt.warnings
    with pytest.raises(InvalidRequest) as err:
        Prompt.from_score(load_midi(FIXTURES / "three_four.mid"))
    assert err.value.field == "prompt" and "3/4" in err.value.message
    assert np.concatenate(prompt.notes).shape[1] == 3
