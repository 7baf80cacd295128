"""The GPT composer's training side: tiny datasets, export, kill -9 + resume, fine-tuning, DDP (torchrun)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

from orchestrion.core.shards import TokenDataset
from orchestrion.testing.datasets import make_abc_dataset, make_token_dataset

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset, trained tiny model directory), trained once for the module."""
    from orchestrion.gpt.training import train_gpt

    root = tmp_path_factory.mktemp("gpt")
    data = make_token_dataset(root / "data")
    train_gpt(data, root / "model", preset_name="tiny", steps=30, command="pytest tiny", quiet=True)
    return data, root / "model"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrion", *args]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_task_windows_are_deterministic_in_split_step_and_index(tmp_path) -> None:
    from orchestrion.gpt.training import GPTTask

    task = GPTTask(TokenDataset(make_token_dataset(tmp_path)), context=32, batch_size=4, seed=3)
    a, b = task.batch("train", 5, 1)["input_ids"], task.batch("train", 5, 1)["input_ids"]
    assert a.shape == (4, 33) and (a == b).all()
    assert not (task.batch("train", 6, 1)["input_ids"] == a).all()
    assert not (task.batch("train", 5, 0)["input_ids"] == a).all()
    assert task.tokens(task.batch("validation", 0, 0)) == 4 * 32


def test_export_loads_with_plain_transformers(tiny) -> None:
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    data, model_dir = tiny
    config = json.loads((model_dir / "config.json").read_text())
    assert config["composer"] == "gpt" and config["encoding"] == "mmm" and config["model_type"] == "gpt2"
    model = GPT2LMHeadModel.from_pretrained(model_dir)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    ids = tok("PIECE_START TRACK_START INST=0").input_ids
    assert ids == tok.convert_tokens_to_ids(["PIECE_START", "TRACK_START", "INST=0"]) and len(set(ids)) == 3
    assert model(input_ids=__import__("torch").tensor([ids])).logits.shape == (1, 3, model.config.vocab_size)
    card = json.loads((model_dir / "model_card.json").read_text())
    assert card["command"] == "pytest tiny" and card["steps"] == 30 and card["data"] == str(data.resolve())
    # The tiny model learns the toy grammar: far below the uniform loss ln(V).
    assert card["val_loss"] < 0.6 * math.log(model.config.vocab_size)
    assert "validation loss" in (model_dir / "model_card.md").read_text()
    assert (model_dir / "loss_curve.png").is_file() and (model_dir / "checkpoint" / "optimizer.pt").is_file()


def test_load_composer_routes_to_gpt(tiny) -> None:
    from orchestrion.registry import load_composer

    composer = load_composer(tiny[1])
    assert composer.kind == "gpt" and composer.encoding.name == "mmm" and composer.options()["context"] == 256
    assert len(composer.checkpoint_hash) == 16


def test_fine_tune_adds_new_tokens_and_resizes_embeddings(tiny, tmp_path) -> None:
    from tokenizers import Tokenizer
    from transformers import GPT2LMHeadModel

    from orchestrion.gpt.training import train_gpt

    _, base = tiny
    mine = make_token_dataset(tmp_path / "mine", sequences=12, seed=5, extra=("CHORD=I", "CHORD=V"))
    result = train_gpt(mine, tmp_path / "tuned", preset_name="tiny", init=str(base), steps=10, quiet=True)
    assert math.isfinite(result.val_loss)
    before = GPT2LMHeadModel.from_pretrained(base)
    after = GPT2LMHeadModel.from_pretrained(tmp_path / "tuned")
    assert after.config.vocab_size == before.config.vocab_size + 2
    tok = Tokenizer.from_file(str(tmp_path / "tuned" / "tokenizer.json"))
    new = before.config.vocab_size
    assert tok.token_to_id("CHORD=I") == new
    assert tok.encode("BAR_START CHORD=I CHORD=V").ids == [tok.token_to_id("BAR_START"), new, new + 1]
    card = json.loads((tmp_path / "tuned" / "model_card.json").read_text())
    assert card["init"] == str(base) and card["added_tokens"] == 2


def test_resume_refuses_a_re_encoded_dataset(tmp_path) -> None:
    from orchestrion.errors import BadInput
    from orchestrion.gpt.training import train_gpt

    data = make_token_dataset(tmp_path / "data")
    train_gpt(data, tmp_path / "m", preset_name="tiny", steps=2, quiet=True)
    make_token_dataset(tmp_path / "data", seed=9)  # the same path, encoded again: other tokens
    with pytest.raises(BadInput, match="the dataset changed since this run started"):
        train_gpt(data, tmp_path / "m", preset_name="tiny", steps=4, resume=True, quiet=True)


def test_fine_tune_refuses_another_encoding(tiny, tmp_path) -> None:
    from orchestrion.errors import BadInput
    from orchestrion.gpt.training import train_gpt

    data = make_token_dataset(tmp_path / "abc")
    meta = json.loads((data / "dataset.json").read_text())
    (data / "dataset.json").write_text(json.dumps({**meta, "encoding": "abc"}))
    with pytest.raises(BadInput, match="cannot fine-tune a mmm model on a abc dataset"):
        train_gpt(data, tmp_path / "out", preset_name="tiny", init=str(tiny[1]), steps=2, quiet=True)


def test_mmm_stream_yields_bars_as_they_close_then_measures(tiny) -> None:
    from orchestrion.composer import Measure, TextChunk
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest

    composer = load_composer(tiny[1])
    request = ComposeRequest(model=str(tiny[1]), bars=2, seed=11)
    chunks = list(composer.stream(request))
    kinds = [type(c).__name__ for c in chunks]
    # bar 0 of the 4 tracks, its measure, then bar 1 of the 4 tracks and its measure, then the reports
    assert kinds == ["TextChunk"] * 4 + ["Measure"] + ["TextChunk"] * 4 + ["Measure", "PieceReport"]
    assert chunks[-1].report["decode_repairs"] == [] and chunks[-1].report["bars"] == 2
    assert all(c.text.count("BAR_START") == 1 for c in chunks if isinstance(c, TextChunk))
    assert [c.index for c in chunks if isinstance(c, Measure)] == [0, 1]
    piece = composer.compose(request)
    assert len(piece.score.tracks) == 4 and piece.score.end() <= 2 * 4 * piece.score.ticks_per_quarter
    # No instruments asked for: the training data's usual line-up, recorded in the request for replays.
    assert composer.model.config.default_instruments == ["SOPRANO", "ALTO", "TENOR", "BASS"]
    assert [t.name.upper() for t in piece.score.tracks] == ["SOPRANO", "ALTO", "TENOR", "BASS"]
    assert piece.provenance["request"]["instruments"] == ["SOPRANO", "ALTO", "TENOR", "BASS"]
    assert piece.report["bars"] == 2 and piece.report["tracks"] == 4 and "repetition_traps" in piece.report
    again = composer.compose(request)
    assert again.report["tokens_text"] == piece.report["tokens_text"]  # same seed, same piece
    other = composer.compose(request.model_copy(update={"seed": 12}))
    assert other.report["tokens_text"] != piece.report["tokens_text"]


def test_abc_model_streams_bars_and_a_complete_tune_with_its_header(tmp_path) -> None:
    from orchestrion.composer import PieceReport, TextChunk
    from orchestrion.gpt.training import train_gpt
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest

    data = make_abc_dataset(tmp_path / "abc")
    train_gpt(data, tmp_path / "model", preset_name="tiny", steps=60, quiet=True)
    composer = load_composer(tmp_path / "model")
    assert composer.encoding.name == "abc"
    request = ComposeRequest(model=str(tmp_path / "model"), title="Test Jig", meter="6/8", seed=2)
    chunks = list(composer.stream(request))
    assert isinstance(chunks[-1], PieceReport) and "retries" in chunks[-1].report
    chunks = chunks[:-1]
    assert all(isinstance(c, TextChunk) for c in chunks)
    assert chunks[-1].complete and not any(c.complete for c in chunks[:-1])
    assert any("|" in c.text for c in chunks[:-1])  # bars came before the whole tune
    tune = chunks[-1].text
    lines = tune.splitlines()
    assert (
        lines[0] == "X:1" and lines[1] == "T:Test Jig" and "M:6/8" in lines and any(x.startswith("K:") for x in lines)
    )
    piece = composer.compose(request)
    assert piece.abc == tune and "retries" in piece.report
    # No key asked for: one of the training data's keys, drawn with the seed and recorded for replays.
    assert composer.model.config.default_headers["key"][0][0] in ("G major", "D major", "C major")
    assert piece.provenance["request"]["key"] in ("G major", "D major", "C major")
    assert f"K:{piece.provenance['request']['key'].split()[0]}" in lines
    if piece.report["valid"]:  # abc2midi compiled it: the piece also has notes for .mid / .wav
        assert piece.score is not None and sum(len(t.notes) for t in piece.score.tracks) > 0
