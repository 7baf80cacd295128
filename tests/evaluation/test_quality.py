"""The quality table and the baselines of a report, on pieces and data whose answers are known."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from orchestrion.core.music import score_from_notes
from orchestrion.evaluation.baselines import token_baselines
from orchestrion.evaluation.evaluate import evaluate, overlap_warnings
from orchestrion.evaluation.heldout import EvalConfig, HeldOut
from orchestrion.evaluation.quality import compare, last_bars, quality_table, summary
from orchestrion.registry import load_composer
from orchestrion.testing.datasets import make_token_dataset

TPQ = 4


def chorale(soprano: list[int], clash: bool = False):
    """Four voices in quarter notes on a C major triad; `clash` puts the alto a semitone under the soprano."""
    beats = len(soprano)
    lower = {72: 67, 76: 72, 79: 76}  # the next chord tone down
    alto = [p - 1 if clash else lower[p] for p in soprano]
    voices = [soprano, alto, [55] * beats, [48] * beats]
    return score_from_notes(
        [{"pitch": v, "start": [i * TPQ for i in range(beats)], "duration": [TPQ] * beats} for v in voices], tpq=TPQ
    )


def test_rows_say_within_above_or_below_the_real_spread() -> None:
    assert compare("x", [0.5, 0.5], [0.4, 0.6]).verdict == "within"  # 0.5 in 0.5 +- 2 x 0.1 / sqrt(2)
    # A mean of 16 pieces must come closer to the real mean than a single piece: 0.6 is 1 std, 4 errors off.
    assert compare("x", [0.6] * 16, [0.4, 0.6]).verdict == "above"
    assert compare("x", [0.9], [0.4, 0.6]).verdict == "above"
    assert compare("x", [0.1], [0.4, 0.6]).verdict == "below"
    assert compare("x", [math.nan], [0.5]).verdict == "n/a"
    row = compare("x", [1.0, 3.0], [2.0, 2.0, 2.0]).to_json()
    assert row == {"generated": 2.0, "real": {"mean": 2.0, "std": 0.0}, "verdict": "within", "samples": 2,
                   "real_pieces": 3}  # fmt: skip


def test_clashing_pieces_are_caught_against_consonant_real_ones() -> None:
    real = [chorale([72, 76, 79, 72]) for _ in range(3)]
    table = quality_table(scores=[chorale([72, 76, 79, 72], clash=True)], real_scores=real)
    assert table["clash_rate"].generated == 1.0 and table["clash_rate"].real_mean == 0.0
    assert table["clash_rate"].verdict == "above"
    assert table["voices_sounding"].verdict == "within"
    verdict = summary(table)
    assert verdict["measures"] >= 8 and verdict["within"] < verdict["measures"]
    assert "like the data on" in verdict["text"]


def test_one_voice_gets_no_part_writing_measures() -> None:
    line = score_from_notes([{"pitch": [60, 62, 64, 65], "start": [0, 4, 8, 12], "duration": [4] * 4}], tpq=TPQ)
    table = quality_table(scores=[line], real_scores=[line])
    assert "clash_rate" not in table and "stepwise_share" in table
    assert all(row.verdict in ("within", "n/a") for row in table.values())


def test_abc_tunes_are_measured_as_text() -> None:
    good = "X:1\nT:The Kid on the Mountain\nR:reel\nM:4/4\nL:1/8\nK:G\n|:GABc dedB|dBAG A2G2:|\n"
    bad = "X:1\nT:Qzxv Wrrp\nR:reel\nM:4/4\nL:1/8\nK:G\nGABc dedB d|dBAG A2:|\n"
    table = quality_table(tunes=[bad], real_tunes=[good])
    assert table["bar_length_ok"].generated == 0.0 and table["bar_length_ok"].real_mean == 1.0
    assert table["final_tonic"].real_mean == 1.0
    assert table["repeat_structure"].generated == 1.0


def test_audio_noise_against_tonal_real_audio() -> None:
    sr = 16000
    t = np.arange(2 * sr) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * np.exp(-((t % 0.5) * 4))
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, len(t))
    table = quality_table(audio=[noise], real_audio=[tone], sample_rate=sr)
    assert table["tonal"].generated == 0.0 and table["tonal"].real_mean == 1.0
    assert table["spectral_flatness"].verdict == "above"


def test_last_bars_keeps_the_ending() -> None:
    score = score_from_notes([{"pitch": list(range(60, 68)), "start": [i * 4 * TPQ for i in range(8)],
                               "duration": [4 * TPQ] * 8}], tpq=TPQ)  # fmt: skip
    tail = last_bars(score, 2)
    assert [n.pitch for n in tail.tracks[0].notes] == [66, 67]
    assert tail.tracks[0].notes[0].time == 0


def test_token_baselines_know_a_deterministic_sequence(tmp_path: Path) -> None:
    data = make_token_dataset(tmp_path / "d", sequences=40)
    starts, length = [0, 50], 40
    base = token_baselines(data, starts, length)
    assert base["tokens"] == 80
    # The tiny dataset is highly regular: the bigram must beat the unigram by a wide margin.
    assert base["bigram"]["bits_per_token"] < 0.7 * base["unigram"]["bits_per_token"]
    assert base["bigram"]["bits_per_character"] < base["bigram"]["bits_per_token"]


def test_the_report_carries_quality_verdicts_baselines_and_the_overlap_warning(
    chorale_files: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "chorales"
    folder.mkdir()
    for path in chorale_files:
        shutil.copy(path, folder / path.name)
    markov = load_composer("builtin:markov")  # trained on builtin:bach-chorales and builtin:palestrina
    seen = overlap_warnings(markov, HeldOut("builtin:bach-chorales", "midi"))
    assert seen and "overlaps the model's training data (builtin:bach-chorales)" in seen[0]
    config = EvalConfig(samples=2, real_pieces=2, bars=4, rendered=1)
    evaluate("builtin:markov", str(folder), tmp_path / "r", config=config, command="test")
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["warnings"] == []
    quality = report["quality"]
    assert {"clash_rate", "final_tonic", "voices_sounding", "range_ok"} <= set(quality)
    for row in quality.values():
        assert row["verdict"] in ("within", "above", "below", "n/a")
        assert set(row["real"]) == {"mean", "std"}
    assert report["verdict"]["text"].startswith("like the data on")
    assert report["sample_length"] == {"bars": 4}
    assert report["likelihood"]["baseline"]["unigram"]["bits_per_event"] > report["likelihood"]["bits_per_event"]
    page = (tmp_path / "r" / "index.html").read_text()
    assert "like the data on" in page and "real (mean ± std)" in page and "clash_rate" in page


@pytest.mark.browser
def test_the_report_page_shows_verdicts_and_the_real_reference_in_chromium(
    chorale_files: list[Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    folder = tmp_path / "chorales"
    folder.mkdir()
    for path in chorale_files:
        shutil.copy(path, folder / path.name)
    evaluate("builtin:markov", str(folder), tmp_path / "r",
             config=EvalConfig(samples=2, real_pieces=2, bars=4, rendered=1), command="test")  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])  # fmt: skip
        page = browser.new_page()
        page.goto((tmp_path / "r" / "index.html").as_uri())
        assert "like the data on" in page.locator(".verdict").first.inner_text()
        rows = page.locator("table").first.locator("tr")
        assert rows.count() > 8
        clash = page.locator("tr", has_text="clash_rate").first.inner_text()
        assert "±" in clash and any(v in clash for v in ("within", "above", "below"))
        browser.close()
