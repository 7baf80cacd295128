"""ABC tune checks on hand-made tunes whose answers are known."""

from __future__ import annotations

import math
import shutil

import pytest

from orchestrion.errors import BadInput
from orchestrion.evaluation import abc_metrics as am

needs_abc2midi = pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abcmidi is not installed")


def tune(body: str, meter: str = "6/8", key: str = "G", title: str = "Test") -> str:
    return f"X:1\nT:{title}\nR:jig\nM:{meter}\nL:1/8\nK:{key}\n{body}\n"


GOOD = tune("D|:GAB c2d|e3 d2B|1 ABc d2:|2 ABc d3||\n|:g2g f2f|e>fg (3aga d|1 g3 g2:|2 g3 g3|]")
TOO_LONG = tune("GAB c2d|e3 d2Bc|ABc d3|g3 g3|]")  # the second bar has seven eighths
SPLIT_BARS = tune("GAB c2d|e3 d2B|ABc d2||d|gfg a2g|fed d3|]")  # 5 + 1 across `||`
BAD_SPLIT = tune("GAB c2d|e3 d2B|ABc d||d|gfg a2g|fed d3|]")  # 4 + 1: no full bar
TRUNCATED = tune("GAB c2d|e3 d2B|ABc d2B|G2")  # stops mid-bar, no anacrusis to complete
PICKUP_REPEAT = tune("D|:GAB c2d|e3 d2B|ABc d2:|")  # the last bar completes the anacrusis


@pytest.mark.parametrize(
    ("text", "ok", "wrong"),
    [
        (GOOD, True, 0.0),
        (TOO_LONG, False, 1 / 4),
        (SPLIT_BARS, True, 0.0),
        (BAD_SPLIT, False, 2 / 6),
        (TRUNCATED, False, 1 / 4),
        (PICKUP_REPEAT, True, 0.0),
    ],
    ids=["good", "too-long", "split-bars", "bad-split", "truncated", "pickup-repeat"],
)
def test_bar_lengths_as_abc_means_them(text: str, ok: bool, wrong: float) -> None:
    assert am.bar_length_ok(text) is ok
    assert am.wrong_bar_share(text) == pytest.approx(wrong)


def test_full_bar_share_is_the_raw_figure() -> None:
    # Inner bars of SPLIT_BARS: 6, 5 | 1, 6 eighths: 2 of 4 are full, though nothing is wrong.
    assert am.full_bar_share(SPLIT_BARS) == pytest.approx(2 / 4)
    assert am.full_bar_share(GOOD) < 1.0 and am.wrong_bar_share(GOOD) == 0.0


def test_unreadable_and_free_meter_tunes() -> None:
    broken = tune("GAB c2d|e3 & d2B|")
    assert not am.parses(broken) and am.parses(GOOD)
    assert am.bar_length_ok(broken) is False
    assert math.isnan(am.wrong_bar_share(broken))
    free = tune("GABc2d|e3|", meter="none")
    assert am.bar_length_ok(free) is True and math.isnan(am.wrong_bar_share(free))


def test_bar_verdicts_know_multi_measure_rests() -> None:
    assert am.bar_length_ok(tune("GAB c2d|Z4|e3 d3|]"))


@needs_abc2midi
def test_abc2midi_reports_a_bar_of_the_wrong_length() -> None:
    warnings = am.abc2midi_bar_warnings(TOO_LONG)
    # In units of the meter's denominator (eighths in 6/8); abc2midi counts bars from 0.
    assert len(warnings) == 1 and "Bar 1 has 7 time units while the time signature has 6" in warnings[0]
    assert am.bar_length_ok(TOO_LONG, source="abc2midi") is False
    assert am.bar_length_ok(SPLIT_BARS.replace("||d|gfg a2g|fed d3|]", "|]"), source="abc2midi") is True


@needs_abc2midi
def test_abc2midi_counts_a_short_bar_before_a_repeat_with_the_bar_after() -> None:
    # ABC means the short last bar to complete the anacrusis; abc2midi adds it to the first bar of the repeat.
    warnings = am.abc2midi_bar_warnings(PICKUP_REPEAT)
    assert warnings and "in repeat" in warnings[0]
    assert am.bar_length_ok(PICKUP_REPEAT) and not am.bar_length_ok(PICKUP_REPEAT, source="abc2midi")


def test_bar_length_source_is_checked() -> None:
    with pytest.raises(BadInput, match="unknown bar-length source"):
        am.bar_length_ok(GOOD, source="guess")


@pytest.mark.parametrize(
    ("value", "tonic", "signature"),
    [
        ("G", 7, {"F": 1}),
        ("Dmix", 2, {"F": 1}),
        ("D mixolydian", 2, {"F": 1}),
        ("Gm", 7, {"B": -1, "E": -1}),
        ("Bb", 10, {"B": -1, "E": -1}),
        ("F#m", 6, {"F": 1, "C": 1, "G": 1}),
        ("Ador", 9, {"F": 1}),
        ("E minor", 4, {"F": 1}),
        ("C", 0, {}),
        ("G clef=bass", 7, {"F": 1}),
        ("HP", 9, {}),
    ],
)
def test_parse_abc_key(value: str, tonic: int, signature: dict[str, int]) -> None:
    assert am.parse_abc_key(value) == (tonic, signature)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (tune("GAB c2d|e3 d2B|G3 G3|]"), 1.0),
        (tune("GAB c2d|e3 d2B|d3 d3|]"), 0.0),  # ends on the dominant
        (tune("GAB c2d|e3 d2B|[G,B,D]6|]"), 1.0),  # the lowest note of a final chord
        (tune("ABc d2e|f3 e2d|d3 D3|]", key="Dmix"), 1.0),
        (tune("GAB c2d|e3 d2B|F3 F3 z|]", key="D"), 0.0),  # F is F# in D, and a rest after it is skipped
        (tune("GAB c2d|^F3 F3|]", key="F#m"), 1.0),
        (tune("GAB c2d|e3 =F3 F|]", key="F#"), 0.0),  # the natural holds to the end of the bar: F, not F#
        (tune("GAB c2d|e3 F3|]", key="F#"), 1.0),
        (tune('GAB c2d|[K:A]e3 "A"a3 !fermata!A|]'), 1.0),  # the key in force at the end
        (tune("GAB c2d|e3 d2B|G3 G3|]", key="none"), math.nan),
    ],
    ids=[
        "tonic",
        "dominant",
        "chord",
        "mixolydian",
        "signature",
        "sharp-key",
        "carried-natural",
        "signature-sharp",
        "key-change",
        "none",
    ],
)
def test_final_tonic(text: str, expected: float) -> None:
    result = am.final_tonic(text)
    assert (math.isnan(result) and math.isnan(expected)) or result == expected


@pytest.mark.parametrize(
    ("body", "repeats", "strains"),
    [
        ("|:GAB c2d|e3 d3:|:g3 f3|e3 d3:|", True, 2),
        ("|:GAB c2d|1 e3 d3:|2 e3 g3||", True, 1),
        ("GAB c2d|[1 e3 d3|[2 e3 g3||", True, 0),
        ("|:GAB c2d::g3 f3:|", True, 2),
        ("GAB c2d|(3:2:3efg d3||g3 f3|]", False, 0),  # a tuplet's colons are not repeats
        ('GAB c2d|"D:|"e3 d3|]', False, 0),  # nor are an annotation's
    ],
    ids=["two-strains", "endings", "endings-only", "double-colon", "tuplet", "annotation"],
)
def test_repeat_structure_and_strains(body: str, repeats: bool, strains: int) -> None:
    text = tune(body)
    assert am.repeat_structure(text) is repeats
    assert am.strains(text) == strains


def test_title_ok_with_a_given_vocabulary() -> None:
    words = {"the", "kesh", "jig", "boys", "of", "wexford"}
    assert am.title_ok("The Kesh Jig", words)
    assert am.title_ok("THE BOYS OF WEXFORD", words)  # case is ignored
    assert am.title_ok("The Boys of Blorp", words)  # one unknown word (a name) in three or more
    assert not am.title_ok("Kesh Blorp", words)
    assert not am.title_ok("Xqzt Blorpf Wexxa", words)
    assert not am.title_ok("", words) and not am.title_ok("123", words)
    assert am.title_ok("The Boys' Jig's", words) is True  # possessive 's and apostrophes


def test_title_ok_with_the_corpus_vocabulary() -> None:
    assert am.title_ok("The Enchanted Valley")
    assert am.title_ok("Miss McLeod's Reel")
    assert not am.title_ok("Thkq Ssdfg")
    assert len(am.title_words()) > 5000


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("reel", True),
        ("Reel", True),
        ("Slip Jig", True),
        ("slipjig", True),
        ("slip-jig", True),
        ("Double Jig", True),
        ("reels", True),
        ("jig, reel", True),
        ("Hornpipe", True),
        ("Strathspey", True),
        ("Liebes - Lied", False),
        ("c:o'carolan", False),
        ("", False),
        ("blorp", False),
    ],
)
def test_rhythm_ok(value: str, ok: bool) -> None:
    assert am.rhythm_ok(value) is ok


def test_melody_applies_key_signature_bar_accidentals_and_octaves() -> None:
    # K:D sharpens F and C; the ^G holds to the bar line only; a chord gives its top note; {grace} and
    # "chord symbols" are not notes; z is a rest.
    text = tune('"D"dfa {g}^gg|g z [DFA] C,c\'', key="D")
    assert am.melody(text) == [14, 18, 21, 20, 20, 19, 9, -12 + 1, 24 + 1]


def test_melodic_motion_shares() -> None:
    steps = tune("CDEF GABc|", key="C")  # every move a step
    assert am.stepwise_share(steps) == 1.0 and am.leap_share(steps) == 0.0 and am.repeated_note_share(steps) == 0.0
    assert am.pitch_range(steps) == 12.0
    leaps = tune("CcCc CCcc|", key="C")  # 7 moves: 5 octave leaps, 2 repeats
    assert am.leap_share(leaps) == 1.0 and am.stepwise_share(leaps) == 0.0
    assert am.repeated_note_share(leaps) == pytest.approx(2 / 7)
    assert math.isnan(am.stepwise_share(tune("z4|"))) and math.isnan(am.pitch_range(tune("z4|")))
