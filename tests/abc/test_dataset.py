"""`orchestrion encode abc` end to end on a small real sample plus hostile files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrion.abc import dataset as abc_dataset
from orchestrion.abc import text as abc
from orchestrion.core.shards import TokenDataset
from orchestrion.errors import InvalidRequest

pytestmark = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abcmidi is not installed")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from orchestrion.core.corpora import music21_corpus_dir

    folder = tmp_path_factory.mktemp("abc-inputs")
    for source in ("essenFolksong", "oneills1850"):
        path = sorted((music21_corpus_dir() / source).glob("*.abc"))[0]
        tunes = abc.split_tunes(path.read_text(encoding="utf-8", errors="replace"))[:30]
        (folder / f"{source}.abc").write_text("\n".join(t.abc for t in tunes))
    shutil.copy(Path(__file__).parents[1] / "fixtures" / "multitrack.mid", folder / "midi-only.mid")
    (folder / "junk.abc").write_bytes(bytes(range(256)) * 64)
    with open(folder / "one-line.abc", "w") as f:  # a 50 MB single line
        f.write("X:1\nT:huge\nK:G\n")
        f.write("abcd" * 12_500_000)
    (folder / "broken.abc").write_text(
        'X:1\nT:unterminated "chord\nM:4/4\nK:G\n"abc [K: d|e f [ (3 ab\n\n'
        "X:2\nT:unknown key\nK:Hypermixolydian\nabc|\n\n"
        "X:3\nT:no key at all\nabc def\n"
    )
    return folder


@pytest.fixture(scope="module")
def dataset(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("abc-dataset")
    report = abc_dataset.encode_abc([str(inputs)], out, workers=2)
    return out, report


def test_dataset_is_readable_by_the_trainer(dataset) -> None:
    from tokenizers import Tokenizer

    out, report = dataset
    data = TokenDataset(out)
    assert data.encoding == "abc"
    assert data.meta["special_tokens"] == {"bos": "<s>", "eos": "</s>", "pad": "<pad>"}
    train = data.split("train")
    assert (
        len(train) + data.meta["splits"]["validation"]["sequences"]
        == report["validity"]["clean"] + report["validity"]["warnings"] - report["dropped"]["duplicates"]
    )
    tok = Tokenizer.from_file(str(data.tokenizer_path))
    lines = (out / "text" / "train-00000.txt").read_text(encoding="utf-8").splitlines()
    ids = train[0].tolist()
    assert ids[0] == tok.token_to_id("<s>") and ids[-1] == tok.token_to_id("</s>")
    assert tok.decode(ids, skip_special_tokens=True) == abc.unescape_newlines(lines[0])


def test_report_lists_each_bad_file_and_tune(dataset) -> None:
    out, report = dataset
    errors = " | ".join(e["error"] for e in report["errors"])
    assert "binary data" in errors
    assert "50,000,016 characters" in errors or "not a tune" in errors
    assert "no K: field" in errors
    assert "First K: field must specify key signature" in errors or "Hypermixolydian" in errors
    assert set(report["cleaning_steps"]) == set(abc.STEP_NAMES)
    ids = [line.split('"')[3] for line in (out / "validity.jsonl").read_text().splitlines()]
    assert "midi-only" in ids  # a MIDI-only piece comes in through midi2abc
    assert report["cleaning_steps"]["drop_commentary"] > 0
    assert sum(report["validity"].values()) >= 60
    assert json.loads((out / "report.json").read_text())["validity"] == report["validity"]
    assert (out / "novelty.npz").is_file() and (out / "stats.json").is_file()


def test_tokenizer_report_and_spaceless_check(dataset) -> None:
    _, report = dataset
    sizes = report["tokenizer"]["sizes"]
    assert set(sizes) == {"characters", *map(str, abc_dataset.VOCAB_SIZES)}
    assert sizes["2048"]["tokens_per_tune"] < sizes["characters"]["tokens_per_tune"]
    eq = report["spaceless_equivalence"]
    assert eq["checked"] > 0 and eq["share"] >= 0.99


def _cache(out: Path) -> dict[str, bytes]:
    """The engine's store of abc2midi results: one file per chunk of compiled tunes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "cache").rglob("*")) if p.is_file()}


def test_rerun_is_resumed_from_the_cache(inputs: Path, dataset) -> None:
    out, report = dataset
    before = _cache(out)
    assert before
    shard = (out / "shards" / "train-00000.bin").read_bytes()
    again = abc_dataset.encode_abc([str(inputs)], out, workers=1)
    assert _cache(out) == before  # nothing compiled twice
    assert again["validity"] == report["validity"]
    assert (out / "shards" / "train-00000.bin").read_bytes() == shard  # deterministic, whatever the workers


def test_keep_is_checked(inputs: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="keep"):
        abc_dataset.encode_abc([str(inputs)], tmp_path, keep="most")


def test_split_is_stable() -> None:
    texts = [f"X:1\nT:{i}\nK:G\nabc\n" for i in range(400)]
    splits = [abc_dataset.split_of(t) for t in texts]
    assert splits == [abc_dataset.split_of(t) for t in texts]
    assert 5 <= splits.count("validation") <= 40


def test_decode_abc_command(tmp_path: Path, fixtures_dir: Path) -> None:
    import symusic

    line = abc.escape_newlines(abc.spaceless((fixtures_dir / "tune.abc").read_text()).replace("X:1\n", ""))
    (tmp_path / "generated.abc").write_text(line + "\n")  # one line, no X: (as a model writes it)
    result = _decode_abc(tmp_path / "generated.abc", tmp_path / "g.mid")
    assert result.returncode == 0, result.stderr
    assert len(symusic.Score(str(tmp_path / "g.mid")).tracks[0].notes) >= 60
    (tmp_path / "bad.abc").write_text("X:1\nT:x\nK:G\n-GAB|]\n")
    result = _decode_abc(tmp_path / "bad.abc", tmp_path / "b.mid")
    message = " ".join(result.stderr.split())
    assert result.returncode == 1 and "bad.abc: abc2midi could not compile" in message and "tie" in message


@pytest.mark.slow
def test_full_corpus_spaceless_equivalence(tmp_path: Path) -> None:
    """The issue's bar on all ~11,600 built-in tunes: >= 99% of clean tunes keep their notes without spaces."""
    report = abc_dataset.encode_abc(["builtin:folk-abc"], tmp_path)
    assert sum(report["validity"].values()) >= 11_500
    assert report["spaceless_equivalence"]["share"] >= 0.99
    assert report["validity"]["errors"] / sum(report["validity"].values()) < 0.05
    assert report["tokenizer"]["sizes"][str(abc_dataset.DEFAULT_VOCAB)]["ratio"] >= 2.5


def _decode_abc(source: Path, out: Path):
    """Run `orchestrion decode abc SOURCE --out OUT` in a subprocess, as a user would."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "orchestrion", "decode", "abc", str(source), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _dataset_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a dataset but the engine's cache."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != "cache"
    }


def test_ray_engine_is_byte_identical(
    inputs: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    import ray

    from orchestrion.testing.local_ray import offline_ray_env

    small = tmp_path / "in"  # a short run: one collection of 30 tunes
    small.mkdir()
    shutil.copy(inputs / "oneills1850.abc", small)
    local = abc_dataset.encode_abc([str(small)], tmp_path / "local", workers=2)
    # The Ray processes ray.init starts get these. One HOME for every Ray of the session: Ray (2.60) makes its
    # auth token there when it first starts, and keeps token auth on for the rest of this process.
    for key, value in offline_ray_env(tmp_path_factory.getbasetemp() / "ray-home").items():
        monkeypatch.setenv(key, value)
    try:
        on_ray = abc_dataset.encode_abc([str(small)], tmp_path / "ray", workers=2, engine="ray")
    finally:
        ray.shutdown()
    assert on_ray == local
    assert _dataset_bytes(tmp_path / "ray") == _dataset_bytes(tmp_path / "local")


def test_folk_vocabulary_dataset(inputs: Path, dataset, tmp_path: Path) -> None:
    from tokenizers import Tokenizer

    out, _ = dataset
    shutil.copytree(out / "cache", tmp_path / "cache")  # the abc2midi results: nothing to compile again
    report = abc_dataset.encode_abc([str(inputs)], tmp_path, workers=1, vocab="folk")
    data = TokenDataset(tmp_path)
    assert data.meta["vocab"] == "folk" and report["tokenizer"]["default"] == "folk"
    assert (
        report["tokenizer"]["sizes"]["folk"]["tokens_per_tune"]
        > report["tokenizer"]["sizes"]["2048"]["tokens_per_tune"]
    )
    tok = Tokenizer.from_file(str(data.tokenizer_path))
    assert tok.get_vocab_size() == data.meta["vocab_size"]
    lines = (tmp_path / "text" / "train-00000.txt").read_text(encoding="utf-8").splitlines()
    train = data.split("train")
    for i in range(len(train)):
        assert tok.decode(train[i].tolist(), skip_special_tokens=True) == abc.unescape_newlines(lines[i])


def test_vocab_is_checked(inputs: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="vocab"):
        abc_dataset.encode_abc([str(inputs)], tmp_path, vocab="bpe-300")
