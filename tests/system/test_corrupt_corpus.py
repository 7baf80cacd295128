"""A corrupted corpus end to end: `encode mmm`, `train markov` and `corpus export` on the built-in chorales
with broken files mixed in report exactly the broken files and give what the clean files alone give."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrion.core.corpora import corpus_files, export_corpus
from orchestrion.core.folder_export import export_folder
from orchestrion.core.music import load_midi, save_midi, score_from_notes
from orchestrion.errors import BadInput
from orchestrion.mmm.dataset import PipelineConfig, encode_mmm_dataset
from orchestrion.testing.fuzz_inputs import PNG_HEADER, track_ends

CHORALES = 40  # two broken files of each kind are 5% of them
TUNES = """X:1
T:First
M:4/4
L:1/8
K:D
|:A2FA DAFA|BAFA BdcB:|
X:2
T:Second
M:6/8
L:1/8
K:G
GAB cBA|GAB d3:|
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrion", *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def corpus(corpus_cache: Path, fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`clean` and `corrupted` folders (the same chorales and ABC tunes) and the names of the broken files."""
    chorales = corpus_files("bach-chorales", limit=CHORALES, workers=1, cache_dir=corpus_cache)
    root = tmp_path_factory.mktemp("corrupt")
    clean, corrupted = root / "clean", root / "corrupted"
    for folder in (clean, corrupted):
        folder.mkdir()
        for path in chorales:
            shutil.copy(path, folder / path.name)
        (folder / "tunes.abc").write_text(TUNES)
    rng = np.random.default_rng(10)
    first, second = chorales[0].read_bytes(), chorales[1].read_bytes()
    broken_midi = {
        "bwv000.cut-inside-a-track.mid": first[: len(first) // 2],
        "bwv000.cut-between-tracks.mid": second[: track_ends(second)[2]],  # parses: only the header tells
        "empty.mid": b"",
        "zz-empty.midi": b"",
        "noise.mid": rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "noise-with-header.mid": first[:14] + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes(),
        "recording.mid": (fixtures_dir / "short.wav").read_bytes(),
        "cover.mid": PNG_HEADER,
    }
    for name, data in broken_midi.items():
        (corrupted / name).write_bytes(data)
    silent = score_from_notes([{"pitch": [], "start": [], "duration": []}], tpq=480)
    save_midi(silent, corrupted / "silent.mid")
    save_midi(silent, corrupted / "sub" / "silent too.mid")
    (corrupted / "binary.abc").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    (corrupted / "cut.abc").write_text(TUNES[: TUNES.index("K:G")])  # tune 2 ends before its K: line
    # cut.abc's first tune is whole and is exported, so the clean folder holds that tune alone.
    (clean / "cut.abc").write_text(TUNES[: TUNES.index("X:2")])
    midi = {*broken_midi, "silent.mid", "sub/silent too.mid"}
    return {"clean": clean, "corrupted": corrupted, "midi": midi, "abc": {"binary.abc", "cut.abc#2"}}


def kind_of_reason(name: str, reason: str) -> bool:
    """Does the reason given for a broken file say what is wrong with it?"""
    expected = {
        "cut": "truncated",
        "empty": "empty",
        "noise.mid": "not a MIDI",
        "noise-with-header": "corrupt",
        "recording": "not a MIDI",
        "cover": "not a MIDI",
        "silent": "no notes",
    }
    return any(key in name and text in reason for key, text in expected.items())


# ------------------------------------------------------------------------------------------ encode mmm


def deterministic_bytes(root: Path) -> dict[str, bytes]:
    """The dataset's files, less the per-file report (manifest.jsonl) and the file counts of stats.json."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] != ".cache" and rel.name not in ("run.log", "manifest.jsonl", "stats.json"):
            out[str(rel)] = path.read_bytes()
    stats = json.loads((root / "stats.json").read_text())
    out["stats.json"] = json.dumps({k: v for k, v in stats.items() if k not in ("files", "reasons")}).encode()
    return out


def manifest(root: Path, folder: Path) -> dict[str, dict]:
    records = map(json.loads, (root / "manifest.jsonl").read_text().splitlines())
    return {Path(r["path"]).relative_to(folder.resolve()).as_posix(): r for r in records}


def test_encode_mmm_reports_the_broken_files_and_gives_the_clean_dataset(corpus: dict, tmp_path: Path) -> None:
    config = PipelineConfig(workers=1, progress=False)
    encode_mmm_dataset([str(corpus["clean"])], tmp_path / "clean", config)
    run = cli("encode", "mmm", str(corpus["corrupted"]), "--out", str(tmp_path / "corrupted"), "--workers", "1")
    assert run.returncode == 0, run.stderr

    assert deterministic_bytes(tmp_path / "corrupted") == deterministic_bytes(tmp_path / "clean")
    clean = manifest(tmp_path / "clean", corpus["clean"])
    corrupted = manifest(tmp_path / "corrupted", corpus["corrupted"])
    assert set(corrupted) == set(clean) | corpus["midi"]  # every file has its line, the .abc files none
    assert sum(r["status"] == "ok" for r in clean.values()) > CHORALES // 2
    newly_bad = {name for name, r in corrupted.items() if r["status"] != "ok"} - {
        name for name, r in clean.items() if r["status"] != "ok"
    }
    assert newly_bad == corpus["midi"]
    for name in newly_bad:
        assert kind_of_reason(name, corrupted[name]["reason"]), (name, corrupted[name]["reason"])
        assert corrupted[name]["windows"] == corrupted[name]["tokens"] == 0
    stats = json.loads((tmp_path / "corrupted" / "stats.json").read_text())
    assert stats["files"]["total"] == len(corrupted) and stats["files"]["ok"] == sum(
        r["status"] == "ok" for r in clean.values()
    )


# ------------------------------------------------------------------------------------------ train markov


def test_train_markov_reports_the_broken_files_and_learns_the_same_model(corpus: dict, tmp_path: Path) -> None:
    from orchestrion.markov.training import train

    clean = train([str(corpus["clean"])], tmp_path / "clean", workers=1)
    run = cli("train", "markov", str(corpus["corrupted"]), "--out", str(tmp_path / "corrupted"), "--workers", "1")
    assert run.returncode == 0, run.stderr

    clean_dir, corrupted_dir = tmp_path / "clean", tmp_path / "corrupted"
    assert (corrupted_dir / "counts.safetensors").read_bytes() == (clean_dir / "counts.safetensors").read_bytes()
    card, clean_card = (json.loads((d / "config.json").read_text()) for d in (corrupted_dir, clean_dir))
    assert card.pop("sources") == [str(corpus["corrupted"])]
    assert card == {k: v for k, v in clean_card.items() if k != "sources"}
    assert sum(card["pieces"].values()) == CHORALES

    assert clean.problems == [] and json.loads((clean_dir / "report.json").read_text())["skipped"] == []
    report = json.loads((corrupted_dir / "report.json").read_text())
    assert report["files"] == CHORALES + len(corpus["midi"]) and report["pieces"] == CHORALES
    skipped = {Path(s["path"]).relative_to(corpus["corrupted"]).as_posix(): s["reason"] for s in report["skipped"]}
    assert set(skipped) == corpus["midi"]
    for name, reason in skipped.items():
        assert kind_of_reason(name, reason), (name, reason)
        assert Path(name).name in run.stderr
    assert f"{len(corpus['midi'])} file(s) skipped" in run.stderr


# ------------------------------------------------------------------------------------------ corpus export


def test_corpus_export_of_a_folder_writes_the_clean_files_and_reports_the_rest(corpus: dict, tmp_path: Path) -> None:
    clean_report = export_folder(corpus["clean"], tmp_path / "clean")
    run = cli("corpus", "export", str(corpus["corrupted"]), "--out", str(tmp_path / "corrupted"))
    assert run.returncode == 0, run.stderr

    def exported(root: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(root.iterdir()) if p.name != "report.json"}

    files = exported(tmp_path / "corrupted")
    assert files == exported(tmp_path / "clean")
    assert len(files) == CHORALES + 3  # tunes.abc's two tunes and cut.abc's whole one
    assert {"tunes-0001.abc", "tunes-0002.abc", "cut-0001.abc"} <= set(files)
    assert all(load_midi(data) for name, data in files.items() if name.endswith(".mid"))
    assert clean_report["bad"] == [] and clean_report["written"] == len(files)

    report = json.loads((tmp_path / "corrupted" / "report.json").read_text())
    bad = {item["path"]: item["reason"] for item in report["bad"]}
    assert set(bad) == corpus["midi"] | corpus["abc"]
    for name in corpus["midi"]:
        assert kind_of_reason(name, bad[name]), (name, bad[name])
    assert "binary" in bad["binary.abc"] and "K:" in bad["cut.abc#2"]
    assert report["written"] == len(files) and report["ignored"] == []
    assert f"{len(bad)} bad file(s) or tune(s) left out" in run.stderr


def test_export_names_are_flat_portable_and_unique(tmp_path: Path, fixtures_dir: Path) -> None:
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(fixtures_dir / "one_track.mid", folder / "sub" / "My Song.MID")
    shutil.copy(fixtures_dir / "drums.mid", folder / "sub_My_Song.mid")
    (folder / "notes.txt").write_text("not music")
    (folder / ".hidden.mid").write_bytes(b"")
    report = export_folder(folder, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.json",
        "sub_My_Song-2.mid",
        "sub_My_Song.mid",
    ]
    assert (tmp_path / "out" / "sub_My_Song.mid").read_bytes() == (folder / "sub" / "My Song.MID").read_bytes()
    assert report["ignored"] == ["notes.txt"] and report["bad"] == []
    with pytest.raises(BadInput, match="inside"):
        export_folder(folder, folder / "out")


def test_corpus_export_names_what_it_cannot_export(tmp_path: Path) -> None:
    run = cli("corpus", "export", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"))
    assert run.returncode == 1 and "bach-chorales" in run.stderr and "nowhere" in run.stderr


# ------------------------------------------------------------------------------------------ damaged cache


def test_a_damaged_cached_chorale_is_converted_again_not_exported(
    corpus_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    chorales = corpus_files("bach-chorales", limit=3, workers=1, cache_dir=corpus_cache)
    # A private cache whose complete manifest lists three chorales stands in for the whole corpus.
    root = tmp_path / "cache" / "bach-chorales-v1"
    (root / "files").mkdir(parents=True)
    for path in chorales:
        shutil.copy(path, root / "files" / path.name)
    manifest = {"version": 1, "corpus": "bach-chorales", "complete": True, "sources": 3, "failed": {}}
    (root / "manifest.json").write_text(json.dumps({**manifest, "files": [p.name for p in chorales]}))
    whole = {p.name: p.read_bytes() for p in chorales}
    cut = root / "files" / chorales[1].name
    cut.write_bytes(whole[cut.name][: track_ends(whole[cut.name])[1]])  # a full disk cut it between tracks
    (root / "files" / chorales[2].name).write_bytes(b"")

    written = export_corpus("bach-chorales", tmp_path / "out", workers=1, cache_dir=tmp_path / "cache")
    assert {p.name: p.read_bytes() for p in written} == whole
    assert {p.name: p.read_bytes() for p in (root / "files").iterdir()} == whole
    err = capsys.readouterr().err
    assert "2 cached file(s) of bach-chorales were damaged" in err and cut.name in err


def test_a_damaged_cached_tune_is_written_again(tmp_path: Path) -> None:
    root = tmp_path / "folk-abc-v1"
    tunes = [{"id": f"test-{i:04d}", "source": "test", "title": "", "abc": t} for i, t in enumerate(TUNES.split("X:2"))]
    (root / "files").mkdir(parents=True)
    (root / "tunes.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tunes))
    for tune in tunes:
        (root / "files" / f"{tune['id']}.abc").write_text(tune["abc"])
    files = [f"{t['id']}.abc" for t in tunes]
    (root / "manifest.json").write_text(json.dumps({"version": 1, "complete": True, "files": files, "failed": {}}))
    (root / "files" / files[0]).write_text(tunes[0]["abc"][:20])
    written = export_corpus("folk-abc", tmp_path / "out", cache_dir=tmp_path)
    assert [p.read_text() for p in written] == [t["abc"] for t in tunes]


def test_every_cut_between_tracks_is_caught(corpus: dict) -> None:
    data = (corpus["clean"] / sorted(corpus["clean"].glob("*.mid"))[0].name).read_bytes()
    for end in track_ends(data)[:-1]:
        with pytest.raises(BadInput, match="announces 4 tracks"):
            load_midi(data[:end])
    assert load_midi(data + b"\0" * 16).tracks  # padding after the last track is tolerated
