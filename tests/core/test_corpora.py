"""core/corpora.py: chorales converted from music21, the folk tunes, the cache, folder scanning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrion.core.corpora import (
    CORPORA,
    cache_dir,
    corpus_files,
    export_corpus,
    folk_tunes,
    resolve_inputs,
)
from orchestrion.core.music import load_midi, time_signatures
from orchestrion.errors import BadInput


def test_chorales_have_four_named_voices(chorale_files: list[Path]) -> None:
    assert [p.name for p in chorale_files] == ["bwv1.6.mid", "bwv10.7.mid", "bwv101.7.mid", "bwv102.7.mid"]
    for path in chorale_files:
        score = load_midi(path)
        assert [t.name for t in score.tracks] == ["soprano", "alto", "tenor", "bass"]
        assert all(0 <= t.program < 128 and not t.is_drum and len(t.notes) > 20 for t in score.tracks)
        # The soprano sings above the bass on average.
        mean = [t.notes.numpy()["pitch"].mean() for t in score.tracks]
        assert mean[0] > mean[1] > mean[3] and mean[2] > mean[3]


def test_pickup_bars_are_padded_to_whole_bars(chorale_files: list[Path]) -> None:
    # bwv1.6 opens with a one-beat pickup in 4/4: the first note starts on beat 4 of bar 1.
    score = load_midi(chorale_files[0])
    assert [(s.numerator, s.denominator) for s in time_signatures(score)] == [(4, 4)]
    assert min(int(t.notes.numpy()["time"].min()) for t in score.tracks) == 3 * score.tpq


def test_cache_is_reused_and_resumable(chorale_files: list[Path], corpus_cache: Path) -> None:
    stamps = {p: p.stat().st_mtime_ns for p in chorale_files}
    again = corpus_files("bach-chorales", limit=4, workers=1, cache_dir=corpus_cache)
    assert again == chorale_files
    assert {p: p.stat().st_mtime_ns for p in again} == stamps  # nothing converted twice
    # A conversion interrupted after three pieces: the missing one is converted, the others kept.
    chorale_files[3].unlink()
    again = corpus_files("bach-chorales", limit=4, workers=1, cache_dir=corpus_cache)
    assert again == chorale_files and chorale_files[3].is_file()
    assert {p: p.stat().st_mtime_ns for p in again[:3]} == {p: stamps[p] for p in chorale_files[:3]}
    manifest = json.loads((corpus_cache / "bach-chorales-v1" / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["sources"] >= 400


def test_palestrina_pieces(corpus_cache: Path) -> None:
    files = corpus_files("palestrina", limit=2, workers=1, cache_dir=corpus_cache)
    assert [p.name for p in files] == ["Agnus.mid", "Agnus_00.mid"]
    for path in files:
        score = load_midi(path)
        assert len(score.tracks) >= 4 and all(len(t.notes) > 20 for t in score.tracks)
        assert all(t.name and not t.name.isdigit() for t in score.tracks)


def test_cache_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCHESTRION_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("ORCHESTRION_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "orchestrion"


def test_folk_tunes(corpus_cache: Path) -> None:
    tunes = folk_tunes(corpus_cache)
    assert len(tunes) >= 10_000
    assert {t["source"] for t in tunes} == {"essenFolksong", "oneills1850", "ryansMammoth"}
    assert len({t["id"] for t in tunes}) == len(tunes)
    for tune in tunes[::500]:
        assert set(tune) >= {"id", "source", "title", "abc"}
        assert tune["abc"].startswith("X:") and tune["abc"].count("\nX:") == 0 and "\nK:" in tune["abc"]
    assert sum(1 for t in tunes if t["title"]) > 0.95 * len(tunes)
    assert (corpus_cache / "folk-abc-v1" / "tunes.jsonl").is_file()
    assert folk_tunes(corpus_cache) == tunes  # served from the JSONL


def test_folk_files_with_a_limit(corpus_cache: Path) -> None:
    files = corpus_files("folk-abc", limit=5, cache_dir=corpus_cache)
    assert len(files) == 5 and all(p.suffix == ".abc" and p.read_text().startswith("X:") for p in files)


def test_export_chorales_copies_the_cache(chorale_files: list[Path], corpus_cache: Path, tmp_path: Path) -> None:
    # A complete manifest over the four converted files stands in for the whole corpus here.
    root = corpus_cache / "bach-chorales-v1"
    manifest_path = root / "manifest.json"
    saved = manifest_path.read_text()
    manifest = {**json.loads(saved), "complete": True, "files": [p.name for p in chorale_files]}
    manifest_path.write_text(json.dumps(manifest))
    try:
        written = export_corpus("bach-chorales", tmp_path / "out", cache_dir=corpus_cache)
        assert [p.name for p in written] == [p.name for p in chorale_files]
        assert all(p.read_bytes() == (root / "files" / p.name).read_bytes() for p in written)
    finally:
        manifest_path.write_text(saved)


def test_unknown_corpus() -> None:
    with pytest.raises(BadInput, match="bach-chorales"):
        corpus_files("nope")
    assert set(CORPORA) == {"bach-chorales", "palestrina", "folk-abc"}


# ------------------------------------------------------------------------------------- resolve_inputs


def test_resolve_inputs_folders_files_and_builtins(
    fixtures_dir: Path, tmp_path: Path, corpus_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ("b/deep/z.mid", "b/a.MID", "b/notes.txt", "c.mid"):
        (tmp_path / name).write_bytes(b"MThd")
    found = resolve_inputs([str(tmp_path / "b"), str(tmp_path / "c.mid")], (".mid", ".midi"))
    assert found == [tmp_path / "b" / "a.MID", tmp_path / "b" / "deep" / "z.mid", tmp_path / "c.mid"]

    monkeypatch.setenv("ORCHESTRION_CACHE", str(corpus_cache))
    corpus_files("folk-abc", cache_dir=corpus_cache)  # the whole corpus, so that builtin: finds it cached
    tunes = resolve_inputs(["builtin:folk-abc"], (".abc",))
    assert len(tunes) >= 10_000 and all(p.suffix == ".abc" for p in tunes)
    with pytest.raises(BadInput, match="ABC"):
        resolve_inputs(["builtin:folk-abc"], (".mid",))


def test_resolve_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as info:
        resolve_inputs([str(tmp_path / "missing.mid")], (".mid",))
    assert "missing.mid" in str(info.value)
    with pytest.raises(BadInput, match="no .mid files"):
        resolve_inputs([str(tmp_path)], (".mid",))
    with pytest.raises(BadInput, match="unknown corpus"):
        resolve_inputs(["builtin:mozart"], (".mid",))


def test_conversion_on_ray_is_byte_identical(
    chorale_files: list[Path], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    import ray

    from orchestrion.core.corpora import _midi_corpus
    from orchestrion.core.engine import Parallel
    from orchestrion.testing.local_ray import offline_ray_env

    # The Ray processes ray.init starts get these. One HOME for every Ray of the session: Ray (2.60) makes its
    # auth token there when it first starts, and keeps token auth on for the rest of this process.
    for key, value in offline_ray_env(tmp_path_factory.getbasetemp() / "ray-home").items():
        monkeypatch.setenv(key, value)
    on_ray = Parallel(engine="ray", chunk=1)
    try:  # the first chorales, converted on Ray into a cache of their own
        files = _midi_corpus("bach-chorales", 0, tmp_path / "cache", len(chorale_files), on_ray)
    finally:
        ray.shutdown()
    assert [p.name for p in files] == [p.name for p in chorale_files]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(files, chorale_files, strict=True))
