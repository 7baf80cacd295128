"""The lively style and the folk-trained model: eighth-note melodies, broken and off-beat chords, bass
patterns; training on ABC tunes through abc2midi."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from orchestrion.evaluation import polyphonic as P
from orchestrion.markov import dataset as events_dataset
from orchestrion.markov import training as mt
from orchestrion.markov.arrange import STYLES
from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest

needs_abc2midi = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abcmidi is not installed")
TUNES = """X:1
T:First
M:4/4
L:1/8
K:D
|:A2FA DAFA|BAFA BdcB|A2FA DAFA|BEEF E2DE:|
X:2
T:Second
M:2/4
L:1/8
K:G
GABc|dBGB|cAFA|G4|
X:3
T:Broken
K:C
|:CD&&&EF|
"""


@pytest.fixture(scope="module")
def folk():
    return load_composer("builtin:markov-folk")


def test_the_folk_model_is_lively_by_default_and_the_chorale_one_is_not(folk):
    assert folk.config.style == "lively" and load_composer("builtin:markov").config.style == "chorale"
    assert folk.validate(ComposeRequest()).style == "lively"
    assert folk.validate(ComposeRequest()).programs == list(p[0] for p in (STYLES["lively"].programs[k]
                                                                           for k in (0, 1, 2)))  # fmt: skip


def test_lively_pieces_move_in_eighths_and_end_home(folk):
    durations: dict[int, int] = {}
    for seed in range(6):
        request = folk.validate(ComposeRequest(bars=16, seed=seed, key="G major"))
        score = folk.compose(request).score
        assert P.final_tonic(score, "G major") == 1.0 and P.clash_rate(score) <= 0.08
        for notes in folk.raw_measures(request):
            for voice, _, _, steps, _ in notes:
                if voice == 0:
                    durations[steps] = durations.get(steps, 0) + 1
    total = sum(durations.values())
    assert durations.get(6, 0) / total > 0.3  # eighth notes lead
    assert sum(durations.get(d, 0) for d in (24, 36, 48)) / total < 0.2  # cadences hold a half note


def test_lively_accompaniment_textures_sound_the_chords(folk):
    request = folk.validate(ComposeRequest(voices=[0, 1, 2, 2, 1], bars=12, seed=3, style="lively"))
    arrangement = folk.arrangement(request)
    notes = [n for index in range(12) for n in arrangement.measure(index)]
    assert set(arrangement.textures.values()) <= {"arpeggio", "arpeggio down", "pah", "offbeat", "pad"}
    assert len({pattern for pattern, _, _ in arrangement.patterns.values()}) == 2  # two bass voices, two patterns
    for voice, pitch, start, _, _ in notes:
        if request.voices[voice] != 0:  # bass patterns and chords: tones of the chord that sounds
            assert arrangement.beats.chord[start // 12] >> (pitch % 12) & 1
    arpeggio = [v for v, t in arrangement.textures.items() if t.startswith("arpeggio")]
    for v in arpeggio:  # a broken chord is one note at a time, in 8ths
        mine = sorted((s, d) for voice, _, s, d, _ in notes if voice == v and s < 11 * 48)
        assert all(d == 6 for _, d in mine) and len({s for s, _ in mine}) == len(mine)


def test_either_model_composes_in_either_style(folk):
    chorale = load_composer("builtin:markov")
    for model in (folk, chorale):
        for style in STYLES:
            score = model.compose(ComposeRequest(bars=8, seed=1, style=style, voices=[0, 1, 2, 2])).score
            assert P.final_tonic(score, "C major") == 1.0 and len(score.tracks) == 4


@needs_abc2midi
def test_training_reads_abc_tunes_through_abc2midi(tmp_path):
    (tmp_path / "tunes.abc").write_text(TUNES)
    (tmp_path / "empty.abc").write_text("no tunes here\n")
    model = mt.train([str(tmp_path / "tunes.abc"), str(tmp_path / "empty.abc")], tmp_path / "m", workers=1,
                     style="lively")  # fmt: skip
    assert sum(model.config.pieces.values()) == 2  # the broken third tune is left out
    assert model.config.style == "lively"
    assert len(model.problems) == 1 and "empty.abc" in model.problems[0]
    score = load_composer(tmp_path / "m").compose(ComposeRequest(bars=4, seed=1)).score
    assert sum(len(t.notes) for t in score.tracks) > 8


@needs_abc2midi
def test_encode_events_writes_one_line_per_tune(tmp_path):
    (tmp_path / "tunes.abc").write_text(TUNES)
    out = events_dataset.encode_to_dir([str(tmp_path / "tunes.abc")], tmp_path / "events", workers=1)
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and all('"source"' in line for line in lines)


def test_a_folder_gives_its_midi_only(tmp_path, fixtures_dir):
    shutil.copy(fixtures_dir / "one_track.mid", tmp_path / "a.mid")
    (tmp_path / "tunes.abc").write_text(TUNES)
    assert [p.name for p in events_dataset.input_files([str(tmp_path)])] == ["a.mid"]
    assert {p.name for p in events_dataset.input_files([str(tmp_path), str(tmp_path / "tunes.abc")])} == {
        "a.mid",
        "tunes.abc",
    }


def test_an_unknown_style_is_refused_when_training(tmp_path, fixtures_dir):
    from orchestrion.errors import BadInput

    with pytest.raises(BadInput, match="style"):
        mt.train([str(fixtures_dir / "one_track.mid")], tmp_path / "m", workers=1, style="baroque")


def test_lively_voices_keep_to_their_registers(folk):
    score = folk.compose(ComposeRequest(voices=[0, 1, 2], bars=16, seed=5)).score
    means = [float(np.mean(t.notes.numpy()["pitch"])) for t in score.tracks]
    assert means[1] < means[2] < means[0]  # bass below the chords below the melody
