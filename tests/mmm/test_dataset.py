"""The mmm pipeline: dataset layout, bad files in the manifest, determinism across workers, kill -9 resume."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrion.core.music import load_midi, save_midi, score_from_notes
from orchestrion.core.shards import TokenDataset
from orchestrion.mmm import codec as mmm
from orchestrion.mmm.dataset import Limits, PipelineConfig, encode_mmm_dataset

DATASET_FILES = ("dataset.json", "tokenizer.json", "stats.json", "manifest.jsonl")


def dataset_bytes(root: Path) -> dict[str, bytes]:
    """Every file of the dataset that must be deterministic (not the cache, not run.log)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] != ".cache" and rel.name != "run.log":
            out[str(rel)] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight chorales plus synthetic and broken files."""
    from orchestrion.core.corpora import corpus_files

    root = tmp_path_factory.mktemp("corpus")
    for path in corpus_files("bach-chorales", limit=8):
        shutil.copy(path, root / path.name)
    beats = np.arange(32) * 480  # eight 4/4 bars
    band = [
        {"pitch": 60 + (np.arange(32) % 8), "start": beats, "duration": np.full(32, 600), "program": 0},
        {"pitch": np.full(8, 36), "start": beats[::4], "duration": np.full(8, 1920), "program": 32},
        {"pitch": np.tile([36, 38], 16), "start": beats, "duration": np.full(32, 120), "is_drum": True},
    ]
    save_midi(score_from_notes(band, tpq=480), root / "sub" / "band.mid")
    save_midi(score_from_notes([band[0]], tpq=480, time_signature=(3, 4)), root / "waltz.mid")
    save_midi(score_from_notes([{"pitch": [], "start": [], "duration": []}], tpq=480), root / "silent.mid")
    (root / "empty.mid").write_bytes(b"")
    (root / "text.mid").write_text("this is not MIDI")
    good = (root / "sub" / "band.mid").read_bytes()
    (root / "truncated.mid").write_bytes(good[: len(good) // 2])
    (root / "garbage.mid").write_bytes(b"MThd\x00\x00\x00\x06" + bytes(range(256)) * 4)
    return root


def config(workers: int, **kw) -> PipelineConfig:
    options = mmm.MMMOptions(bars=4, hop=2, transpose=(-2, 3))
    return PipelineConfig(options=options, workers=workers, progress=False, chunk=3, **kw)


@pytest.fixture(scope="module")
def dataset_w1(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("w1")
    encode_mmm_dataset([str(corpus)], out, config(1))
    return out


def test_dataset_layout_and_contract(dataset_w1: Path) -> None:
    for name in DATASET_FILES:
        assert (dataset_w1 / name).is_file()
    data = TokenDataset(dataset_w1)
    assert data.encoding == "mmm"
    assert data.meta["special_tokens"]["bos"] == "PIECE_START"
    train = data.split("train")
    assert len(train) > 10 and train.tokens == len(train.concatenated())
    first = train[0]
    assert first.dtype == np.uint16
    vocab = mmm.vocabulary()
    assert data.meta["vocab_size"] == len(vocab)
    assert vocab[first[0]] == "PIECE_START" and vocab[first[-1]] == "PIECE_END"
    text = (dataset_w1 / "text" / "train-00000.txt").read_text().splitlines()
    assert len(text) == len(np.load(dataset_w1 / "shards" / "train-00000.idx.npy")) - 1
    assert text[0].split() == [vocab[i] for i in first]
    decoded, repairs = mmm.decode(text[0])
    assert repairs == [] and len(decoded.tracks) >= 1


def test_tokenizer_json_matches_the_shards(dataset_w1: Path) -> None:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(dataset_w1 / "tokenizer.json"))
    data = TokenDataset(dataset_w1).split("train")
    line = (dataset_w1 / "text" / "train-00000.txt").read_text().splitlines()[3]
    assert tok.encode(line).ids == data[3].tolist()


def test_manifest_reports_every_bad_file(dataset_w1: Path, corpus: Path) -> None:
    records = {
        Path(r["path"]).name: r for r in map(json.loads, (dataset_w1 / "manifest.jsonl").read_text().splitlines())
    }
    assert len(records) == len(list(corpus.rglob("*.mid")))
    assert records["band.mid"]["status"] == "ok" and records["band.mid"]["windows"] > 0
    assert records["waltz.mid"]["status"] == "skipped" and "3/4" in records["waltz.mid"]["reason"]
    assert records["silent.mid"]["status"] == "skipped" and "no notes" in records["silent.mid"]["reason"]
    assert records["empty.mid"]["status"] == "skipped" and "empty" in records["empty.mid"]["reason"]
    assert "not a MIDI" in records["text.mid"]["reason"]
    for name in ("truncated.mid", "garbage.mid"):
        assert records[name]["status"] in ("skipped", "failed") and records[name]["reason"]
    stats = json.loads((dataset_w1 / "stats.json").read_text())
    assert stats["files"]["total"] == len(records)
    assert stats["files"]["ok"] == sum(r["status"] == "ok" for r in records.values())
    assert stats["tokens"] == sum(r["tokens"] for r in records.values())
    assert len(stats["density_edges"]) == 9


def test_split_is_by_file(dataset_w1: Path) -> None:
    data = TokenDataset(dataset_w1)
    if "validation" not in data.meta["splits"]:
        pytest.skip("no file hashed into validation in this small corpus")
    train = {data.split("train")[i].tobytes() for i in range(len(data.split("train")))}
    val = data.split("validation")
    assert not any(val[i].tobytes() in train for i in range(len(val)))


def test_workers_1_and_2_are_byte_identical(dataset_w1: Path, corpus: Path, tmp_path: Path) -> None:
    encode_mmm_dataset([str(corpus)], tmp_path, config(2))
    assert dataset_bytes(tmp_path) == dataset_bytes(dataset_w1)


def test_cap_and_limits_are_reported(corpus: Path, tmp_path: Path) -> None:
    from orchestrion.mmm.dataset import Limits

    cfg = PipelineConfig(
        options=mmm.MMMOptions(bars=4, hop=2, max_tokens=300), limits=Limits(max_notes=150), workers=1, progress=False
    )
    encode_mmm_dataset([str(corpus)], tmp_path, cfg)
    records = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert any("over the cap" in (r["reason"] or "") for r in records)  # chorales have more than 150 notes
    assert any("capped at 300 tokens" in (r["reason"] or "") for r in records)
    assert all(r["tokens"] <= 300 for r in records)


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "orchestrion", "encode", "mmm", *args]


def test_decode_cli_writes_playable_midi(dataset_w1: Path, tmp_path: Path) -> None:
    import symusic

    text_file = dataset_w1 / "text" / "train-00000.txt"
    out = tmp_path / "x.mid"
    subprocess.run(
        [sys.executable, "-m", "orchestrion", "decode", "mmm", str(text_file), "--out", str(out)],
        check=True,
        timeout=120,
    )
    score = symusic.Score(str(out))
    assert sum(len(t.notes) for t in score.tracks) > 0
    line = "PIECE_START TRACK_START INST=0 BAR_START NOTE_ON=60 TIME_DELTA=4"  # truncated model output
    run = subprocess.run(
        [sys.executable, "-m", "orchestrion", "decode", "mmm", line, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "repaired" in run.stderr
    assert symusic.Score(str(out)).tracks[0].notes[0].pitch == 60


def test_ray_engine_is_byte_identical(
    dataset_w1: Path,
    corpus: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("ray")
    import ray

    from orchestrion.testing.local_ray import offline_ray_env

    # The Ray processes ray.init starts get these. One HOME for every Ray of the session: Ray (2.60) makes its
    # auth token there when it first starts, and keeps token auth on for the rest of this process.
    for key, value in offline_ray_env(tmp_path_factory.getbasetemp() / "ray-home").items():
        monkeypatch.setenv(key, value)
    try:
        encode_mmm_dataset([str(corpus)], tmp_path / "out", config(2, engine="ray"))
    finally:
        ray.shutdown()
    assert dataset_bytes(tmp_path / "out") == dataset_bytes(dataset_w1)


def test_time_limit_fails_the_file_not_the_run(corpus: Path, tmp_path: Path) -> None:
    from orchestrion.mmm.dataset import Limits

    cfg = PipelineConfig(options=mmm.MMMOptions(bars=4), limits=Limits(seconds=1e-6), workers=1, progress=False)
    stats = encode_mmm_dataset([str(corpus)], tmp_path, cfg)
    records = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    timed_out = [r for r in records if "took over" in (r["reason"] or "")]
    assert timed_out and all(r["status"] == "failed" for r in timed_out)
    assert stats["files"]["failed"] == len(timed_out)


# ------------------------------------------------------------------------------------ real-world input


def test_pop_songs_other_meters_and_damaged_files_all_give_windows(fixtures_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    names = ("pop_song.mid", "pop_damaged_cc.mid", "meter_2_2.mid", "meter_2_4.mid", "meter_4_2.mid")
    for name in names:
        shutil.copy(fixtures_dir / name, folder / name)
    stats = encode_mmm_dataset([str(folder)], tmp_path / "out", config(1))
    records = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").open())}
    assert {n: r["status"] for n, r in records.items()} == dict.fromkeys(names, "ok")
    assert all(records[n]["windows"] > 0 for n in names)
    assert records["pop_damaged_cc.mid"]["reason"].startswith("damaged file, dropped: control change with a value")
    assert records["pop_damaged_cc.mid"]["windows"] == records["pop_song.mid"]["windows"]
    assert "4/2 from step 0 regrouped into 4/4 bars" in records["meter_4_2.mid"]["reason"]
    # The instruments kept are the tracks' programs: the electric bass and the tenor sax, never BASS or TENOR.
    assert {"INST=33", "INST=66", "INST=73", "INST=48", "INST=DRUMS"} <= set(stats["instruments"])
    assert not {"INST=BASS", "INST=TENOR"} & set(stats["instruments"])
    strict = encode_mmm_dataset([str(folder)], tmp_path / "strict", config(1, limits=Limits(strict=True)))
    assert strict["files"]["skipped"] == 1 and "corrupt" in json.dumps(strict["reasons"])


def test_palestrina_in_four_two_gives_windows(tmp_path: Path) -> None:
    from orchestrion.core.corpora import corpus_files
    from orchestrion.core.music import time_signatures

    files = corpus_files("palestrina", limit=3, workers=1)
    assert any((s.numerator, s.denominator) == (4, 2) for f in files for s in time_signatures(load_midi(f)))
    stats = encode_mmm_dataset([str(f) for f in files], tmp_path / "out", config(1))
    assert stats["files"]["ok"] == 3 and stats["windows"] > 0
    assert {"INST=SOPRANO", "INST=BASS"} <= set(stats["instruments"])


def test_a_run_that_encodes_nothing_fails_and_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "waltzes"
    notes = {"pitch": [60] * 24, "start": np.arange(24) * 480, "duration": np.full(24, 400)}
    save_midi(score_from_notes([notes], tpq=480, time_signature=(3, 4)), folder / "waltz.mid")
    run = subprocess.run(
        [sys.executable, "-m", "orchestrion", "encode", "mmm", str(folder), "--out", str(tmp_path / "out"), "-j", "1"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    said = " ".join(run.stderr.split())  # the console wraps long lines
    assert run.returncode == 1
    assert "no window to train on" in said and "waltz.mid: no 4/4 window to encode (3/4 at step 0" in said
