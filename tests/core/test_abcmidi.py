"""core/abcmidi.py against the real abc2midi / midi2abc / abc2abc from Debian's abcmidi."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from orchestrion.abc import text as abc
from orchestrion.core import abcmidi
from orchestrion.errors import BadInput

pytestmark = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abcmidi is not installed")

CLEAN = "X:1\nT:Clean\nM:6/8\nL:1/8\nK:G\nGAB c2d|e3 d2B|]\n"
WARNS = "X:1\nT:Short bar\nM:4/4\nL:1/8\nK:G\nGABc d4|c8|GAB|c8|]\n"
ERRORS = "X:1\nT:Tie to nothing\nM:4/4\nL:1/8\nK:G\n-GABc d4|]\n"


def test_abc_to_midi_writes_the_notes(tmp_path: Path, fixtures_dir: Path) -> None:
    import symusic

    out = abcmidi.abc_to_midi((fixtures_dir / "tune.abc").read_text(), tmp_path / "tune.mid")
    score = symusic.Score(str(out))
    notes = [n for t in score.tracks for n in t.notes]
    assert len(notes) >= 60  # 32 eighths per part, each part repeated
    assert {n.pitch for n in notes} >= {62, 66, 69}  # D, F#, A of D major


def test_abc_to_midi_raises_with_abc2midis_message(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="No tune processed"):
        abcmidi.abc_to_midi("T:no reference number\nK:G\nabc\n", tmp_path / "x.mid")
    assert not (tmp_path / "x.mid").exists()


def test_validity_classes() -> None:
    assert abcmidi.validate(CLEAN).status == "clean"
    warns = abcmidi.validate(WARNS)
    assert warns.status == "warnings" and any("Bar 2" in m for m in warns.messages)
    errors = abcmidi.validate(ERRORS)
    assert errors.status == "errors" and not errors.ok
    assert any(m.startswith("Error") for m in errors.messages)


@pytest.mark.parametrize(
    "junk",
    [
        bytes(range(256)).decode("latin-1") * 4,  # binary junk
        'X:1\nT:unterminated "chord\nK:G\n"abc [K: d|e f [ (3 ab\n',  # unterminated fields
        "X:1\nT:unknown key\nK:Hypermixolydian\nabc|\n",
        "X:1\nT:" + "x" * 200_000 + "\nK:G\nabc\n",  # an absurd header line
    ],
    ids=["binary", "unterminated", "unknown-key", "long-line"],
)
def test_bad_input_is_classified_never_raised(junk: str) -> None:
    validity = abcmidi.validate(junk)
    assert validity.status in ("warnings", "errors")
    assert validity.messages


def test_every_call_has_a_time_limit() -> None:
    long_tune = "X:1\nT:long\nM:4/4\nL:1/8\nK:G\n" + "GABc dedc|" * 20_000 + "]\n"
    validity = abcmidi.validate(long_tune, timeout=0.001)
    assert validity.status == "errors"
    assert "did not finish" in validity.messages[0]


def test_spaceless_compiles_to_the_same_notes(fixtures_dir: Path) -> None:
    """A sample of real tunes (O'Neill's, Essen): with and without spaces, abc2midi plays the same notes."""
    from orchestrion.core.corpora import music21_corpus_dir

    tunes = []
    for source in ("oneills1850", "essenFolksong"):
        path = sorted((music21_corpus_dir() / source).glob("*.abc"))[0]
        tunes += abc.split_tunes(path.read_text(encoding="utf-8", errors="replace"))[:15]
    tunes.append(abc.Tune((fixtures_dir / "tune.abc").read_text()))
    compared = 0
    for tune in tunes:
        cleaned = abc.clean(tune.abc).abc
        spaced, spaced_notes = abcmidi.compile_notes(cleaned)
        if spaced.status != "clean":
            continue
        dense, dense_notes = abcmidi.compile_notes(abc.spaceless(cleaned))
        assert dense.status == "clean", dense.messages
        assert dense_notes == spaced_notes
        compared += 1
    assert compared >= 10


def test_midi_to_abc_round_trip(tmp_path: Path, fixtures_dir: Path) -> None:
    midi = abcmidi.abc_to_midi((fixtures_dir / "tune.abc").read_text(), tmp_path / "tune.mid")
    text = abcmidi.midi_to_abc(midi)
    assert "K:" in text and "|" in text
    assert abcmidi.validate(text).status in ("clean", "warnings")
    with pytest.raises(BadInput):
        abcmidi.midi_to_abc(tmp_path / "missing.mid")


def test_abc2abc_normalises() -> None:
    out = abcmidi.abc2abc(CLEAN)
    assert "K:G" in out and "GAB" in out
