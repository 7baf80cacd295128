"""The shipped chorale model (issue 18): what it is, and what it composes with the default settings, measured
as `benchmarks/quality.py` measures it (a fast subset: one seed of each kind of request)."""

from __future__ import annotations

import json
import re

import pytest

from orchestrion.evaluation import polyphonic
from orchestrion.mmm.voices import VOICE_RANGES
from orchestrion.registry import BUILTIN_DIR, load_composer
from orchestrion.requests import ComposeRequest

DIRECTORY = BUILTIN_DIR / "chorales"
RANGES = [VOICE_RANGES[v] for v in ("SOPRANO", "ALTO", "TENOR", "BASS")]


@pytest.fixture(scope="module")
def chorales():
    return load_composer("builtin:chorales")


def meets_the_targets(score, key: str) -> None:
    """The quality targets of issue 18, on one piece."""
    assert polyphonic.clash_rate(score) <= 0.08
    assert polyphonic.parallel_rate(score) <= 0.5
    assert polyphonic.voices_sounding(score) >= 0.9
    assert polyphonic.voice_polyphony(score) == 0
    assert polyphonic.range_ok(score, RANGES) >= 0.98
    assert polyphonic.final_tonic(score, key) == 1.0


def test_the_shipped_model_reads_bar_positions_and_beats_its_baselines():
    config = json.loads((DIRECTORY / "config.json").read_text())
    card = json.loads((DIRECTORY / "model_card.json").read_text())
    assert config["token_types"] == "bar-steps"
    assert config["default_instruments"] == ["SOPRANO", "ALTO", "TENOR", "BASS"]
    assert (DIRECTORY / "model.safetensors").stat().st_size < 25 * 2**20
    # far below the token bigram on the same validation windows
    assert card["likelihood"]["bits_per_token"] < card["baselines"]["bigram"]["bits_per_token"] / 2
    text = (DIRECTORY / "model_card.md").read_text()
    assert "## Learning curve" in text and "--preset chorale" in text and (DIRECTORY / "loss_curve.png").is_file()


def test_four_bars_in_a_key_meet_the_targets_and_cadence(chorales):
    piece = chorales.compose(ComposeRequest(model="builtin:chorales", bars=4, seed=0, key="E minor"))
    assert piece.report["key"] == "E minor" and piece.report["relaxed"] == 0
    assert [t.name for t in piece.score.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    meets_the_targets(piece.score, "E minor")


@pytest.mark.slow  # the random-weights model composes 16, 32 and 64 bars in the default suite (tests/mmm)
def test_sixteen_bars_compose_window_by_window(chorales):
    piece = chorales.compose(ComposeRequest(model="builtin:chorales", bars=16, seed=1))
    assert piece.report["windows"] >= 7 and piece.score.end() <= 16 * 4 * piece.score.tpq
    meets_the_targets(piece.score, piece.report["key"])


def test_a_bach_melody_is_harmonised_around_it(chorales, tmp_path):
    from orchestrion.core.corpora import corpus_files
    from orchestrion.core.music import load_midi, save_midi

    path = next(p for p in corpus_files("bach-chorales") if p.stem == "bwv26.6")
    bach = load_midi(path)
    bach.tracks = [bach.tracks[0]]
    melody = bach.clip(0, 16 * bach.ticks_per_quarter)
    prompt = save_midi(melody, tmp_path / "soprano.mid")
    piece = chorales.compose(ComposeRequest(model="builtin:chorales", prompt=str(prompt), seed=0))
    assert piece.report["mode"] == "harmonise" and len(piece.score.tracks) == 4
    given = melody.tracks[0].notes.numpy()["pitch"].tolist()
    assert piece.score.tracks[0].notes.numpy()["pitch"].tolist() == given  # the melody is kept
    meets_the_targets(piece.score, piece.report["key"])


def test_the_score_has_the_title_key_signature_and_voice_clefs(chorales, tmp_path):
    from orchestrion.core.render import render_svg

    piece = chorales.compose(ComposeRequest(model="builtin:chorales", bars=2, seed=3, key="D major", title="Test"))
    midi = piece.save(tmp_path / "c.mid")[0]
    svg = render_svg(midi, tmp_path / "c.svg").read_text()
    assert "Test" in svg and "Music21 Fragment" not in svg
    assert re.findall(r'xlink:href="#(E05[02]|E062)-', svg) == ["E050", "E050", "E052", "E062"]
    assert [(k.key, k.tonality) for k in piece.score.key_signatures] == [(2, 0)]  # two sharps, major


def test_a_continuation_to_eight_bars_and_a_fill_keep_the_voices_in_range(chorales):
    from orchestrion.mmm import codec as mmm
    from orchestrion.mmm.sampler import sample_mmm

    def piece(prompt=None, **fields):
        request = chorales.validate(ComposeRequest(model="builtin:chorales", **fields))
        events = sample_mmm(chorales.model, chorales.tokenizer, request, prompt, token_events=False)
        return next(e for e in events if e.kind == "piece")

    start = piece(bars=4, seed=5, key="G major")
    longer = piece(start.tokens, bars=8, seed=6)
    assert longer.report["mode"] == "continue" and longer.tokens.count("BAR_START") == 4 * 8
    score, repairs = mmm.decode(longer.tokens)
    assert repairs == [] and polyphonic.range_ok(score, RANGES) == 1.0 and polyphonic.voice_polyphony(score) == 0
    first = mmm.decode(start.tokens)[0]
    for a, b in zip(first.tracks, score.tracks, strict=True):  # the prompt's 4 bars are kept
        kept = b.notes.numpy()
        assert kept["pitch"][kept["time"] < 64].tolist() == a.notes.numpy()["pitch"].tolist()
    filled = piece(start.tokens, fill_bars=[1, 2], seed=7)
    score, repairs = mmm.decode(filled.tokens)
    assert filled.report["mode"] == "fill" and repairs == []
    assert polyphonic.range_ok(score, RANGES) == 1.0 and polyphonic.clash_rate(score) <= 0.08
