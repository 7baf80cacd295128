"""The evaluation suite: likelihoods that tell real music from noise, and a report whose links all resolve."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from orchestrion.errors import BadInput
from orchestrion.evaluation.evaluate import evaluate
from orchestrion.evaluation.heldout import EvalConfig, load_held_out
from orchestrion.gpt.likelihood import gpt_likelihood
from orchestrion.markov.likelihood import markov_likelihood


@pytest.fixture(scope="module")
def chorale_dir(chorale_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chorales")
    for path in chorale_files:
        shutil.copy(path, root / path.name)
    return root


def test_markov_report_has_every_figure_and_its_page_links_existing_files(chorale_dir: Path, tmp_path: Path) -> None:
    config = EvalConfig(samples=2, real_pieces=2, bars=4, rendered=1)
    report = evaluate("builtin:markov", str(chorale_dir), tmp_path / "r", config=config, command="test")
    on_disk = json.loads((tmp_path / "r" / "report.json").read_text())
    assert on_disk["validity_rate"] == report["validity_rate"]
    for name in (
        "pitch_class_entropy",
        "scale_consistency",
        "polyphony",
        "groove_consistency",
        "note_density",
        "empty_beat_rate",
        "pitch_range",
        "duration_histogram",
    ):
        assert set(on_disk[name]) >= {"distance"}, name
        assert 0.0 <= on_disk[name]["distance"] <= 1.0
    assert on_disk["pitch_class_entropy"]["generated_mean"] > 0
    assert 0 <= on_disk["validity_rate"] <= 1 and 0 <= on_disk["repetition_trap_rate"] <= 1
    assert on_disk["novelty"]["checked"] == 2 and on_disk["novelty"]["copied_share"] in (0.0, 0.5, 1.0)
    assert on_disk["likelihood"]["bits_per_event"] > 0 and on_disk["real_pieces"] == 2
    assert [s["seed"] for s in on_disk["samples"]] == [0, 1]
    page = (tmp_path / "r" / "index.html").read_text()
    links = re.findall(r"src='([^']+)'", page)
    assert any(x.endswith(".wav") for x in links) and any(x.startswith("hist-") for x in links)
    for link in links:
        assert (tmp_path / "r" / link).is_file(), link
    assert "pitch_class_entropy" in page and "<audio" in page


def test_markov_likelihood_prefers_real_chorales_to_shuffled_ones(chorale_dir: Path) -> None:
    from orchestrion.core.music import load_midi
    from orchestrion.registry import load_composer

    composer = load_composer("builtin:markov")
    real = [load_midi(p) for p in sorted(chorale_dir.glob("*.mid"))[:2]]
    shuffled = []
    rng = np.random.default_rng(0)
    for score in real:
        score = score.copy()
        for track in score.tracks:
            pitches = [n.pitch for n in track.notes]
            for note, pitch in zip(track.notes, rng.permutation(pitches), strict=True):
                note.pitch = int(pitch)
        shuffled.append(score)
    good, bad = markov_likelihood(composer, real), markov_likelihood(composer, shuffled)
    assert good["events"] > 50
    assert good["log_likelihood_per_event"] > bad["log_likelihood_per_event"] + 0.3
    assert math.isclose(good["perplexity"], math.exp(-good["log_likelihood_per_event"]))


def _mmm_dataset(root: Path, sequences: list[list[int]], vocab_size: int, tokenizer: Path) -> Path:
    from orchestrion.core.shards import ShardWriter, write_dataset_json

    splits = {}
    for split in ("train", "validation"):
        writer = ShardWriter(root, split, 0)
        for ids in sequences:
            writer.add(ids, "x")
        info = writer.close()
        splits[split] = {"sequences": info["sequences"], "tokens": info["tokens"], "shards": [info["name"]]}
    shutil.copy(tokenizer, root / "tokenizer.json")
    write_dataset_json(root, {"encoding": "mmm", "vocab_size": vocab_size, "splits": splits})
    return root


def test_gpt_likelihood_on_a_tiny_dataset_separates_music_from_noise(chorale_files: list[Path], tmp_path: Path) -> None:
    from orchestrion.core.music import load_midi
    from orchestrion.mmm import codec as mmm
    from orchestrion.registry import load_composer, resolve_model_dir

    composer = load_composer("builtin:chorales")
    tokens = mmm.encode(load_midi(chorale_files[0]))
    ids = [composer.tokenizer.token_to_id(t) for t in tokens]
    assert None not in ids
    vocab = composer.tokenizer.get_vocab_size()
    tokenizer = resolve_model_dir("builtin:chorales") / "tokenizer.json"
    real = _mmm_dataset(tmp_path / "real", [ids], vocab, tokenizer)
    noise = np.random.default_rng(0).integers(0, vocab, size=len(ids)).tolist()
    fake = _mmm_dataset(tmp_path / "noise", [noise], vocab, tokenizer)
    good = gpt_likelihood(composer, real, windows=2, context=64)
    bad = gpt_likelihood(composer, fake, windows=2, context=64)
    assert good["tokens"] == 2 * 64
    assert good["loss"] < bad["loss"] - 1.0
    assert good["accuracy@1"] > bad["accuracy@1"]
    assert good["accuracy@1"] <= good["accuracy@3"] <= good["accuracy@5"] <= good["accuracy@10"] <= 1.0
    assert math.isclose(good["bits_per_token"], good["loss"] / math.log(2))
    assert math.isclose(good["perplexity"], math.exp(good["loss"]))
    assert 0 < good["bits_per_character"] < good["bits_per_token"]


def test_missing_data_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        load_held_out(str(tmp_path / "nowhere"), EvalConfig())


def test_a_bad_file_in_the_data_is_reported_and_the_rest_is_used(
    chorale_dir: Path, fixtures_dir: Path, tmp_path: Path
) -> None:
    for path in sorted(chorale_dir.glob("*.mid"))[:2]:
        shutil.copy(path, tmp_path / path.name)
    shutil.copy(fixtures_dir / "not_midi.mid", tmp_path / "zz-not-midi.mid")  # sorts last: a held-out piece
    held = load_held_out(str(tmp_path), EvalConfig(real_pieces=2))
    assert len(held.scores) == 1 and len(held.index_scores) == 1
    assert len(held.problems) == 1 and "zz-not-midi.mid" in held.problems[0]
