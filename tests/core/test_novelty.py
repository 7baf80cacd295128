"""core/novelty.py: the plagiarism index flags copies (exact and transposed) and passes a fresh tune."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from orchestrion.abc import text as abc
from orchestrion.core import abcmidi
from orchestrion.core.novelty import N, NoveltyIndex, events_from_abc, ngram_hashes

pytestmark = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abcmidi is not installed")

# Written for this test: leaps and rhythms no folk tune uses.
FRESH = """X:1
T:Written fresh for the test
M:5/4
L:1/8
K:C
c2^F3B,2_e3|a/2^c/2G3_B,2f4|D3^g2C3=b2|e/2_A/2d3^F2c'4|
_E2a3^C2g3|B,/2f/2_d3A2^G4|c'3F2_b3D2|^c/2e/2G3_a2C4|]
"""


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str], NoveltyIndex]:
    from orchestrion.core.corpora import music21_corpus_dir

    tunes, ids = [], []
    for source in ("essenFolksong", "oneills1850"):
        path = sorted((music21_corpus_dir() / source).glob("*.abc"))[0]
        for k, tune in enumerate(abc.split_tunes(path.read_text(encoding="utf-8", errors="replace"))[:40]):
            text = abc.spaceless(abc.clean(tune.abc).abc)
            if abcmidi.validate(text).ok:
                tunes.append(text)
                ids.append(f"{source}-{k}")
    index = NoveltyIndex.build([events_from_abc(t) for t in tunes], ids)
    return tunes, ids, index


def test_exact_copy_is_flagged(corpus) -> None:
    tunes, ids, index = corpus
    report = index.check_abc(tunes[3])
    assert report.copied
    assert report.ngram_share == 1.0
    assert report.longest_run == report.notes
    assert report.nearest == ids[3]


def test_transposed_copy_is_flagged(corpus) -> None:
    tunes, ids, index = corpus
    original = tunes[len(tunes) // 2]
    transposed = abcmidi.abc2abc(original, transpose=5)
    assert events_from_abc(transposed).size == events_from_abc(original).size
    report = index.check_abc(transposed)
    assert report.copied and report.ngram_share == 1.0
    assert report.nearest == ids[len(tunes) // 2]


def test_partial_copy_reports_the_shared_run(corpus) -> None:
    tunes, _, index = corpus
    events = events_from_abc(tunes[5])
    fresh = events_from_abc(FRESH)
    mixed = np.concatenate([fresh, events[:20], fresh])
    report = index.check(mixed)
    assert report.longest_run >= 20


def test_fresh_tune_passes(corpus) -> None:
    _, _, index = corpus
    report = index.check_abc(FRESH)
    assert report.notes > 30
    assert not report.copied
    assert report.ngram_share < 0.1 and report.longest_run < 12


def test_exclude_skips_the_tune_itself(corpus) -> None:
    tunes, ids, index = corpus
    report = index.check(events_from_abc(tunes[0]), exclude=ids[0])
    assert report.nearest != ids[0]


def test_index_round_trip(corpus, tmp_path: Path) -> None:
    tunes, _, index = corpus
    index.save(tmp_path / "novelty.npz")
    loaded = NoveltyIndex.load(tmp_path / "novelty.npz")
    assert loaded.check_abc(tunes[1]).to_json() == index.check_abc(tunes[1]).to_json()


def test_short_input() -> None:
    assert len(ngram_hashes(np.arange(N - 1))) == 0
    index = NoveltyIndex.build([np.arange(20)], ["a"])
    assert not index.check(np.arange(3)).copied
