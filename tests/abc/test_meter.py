"""The ABC bar-length parser on hand-made tunes whose bar lengths are known, one construct at a time."""

from __future__ import annotations

import time
from fractions import Fraction as F

import pytest

from orchestrion.abc.meter import (
    AbcSyntaxError,
    MeterState,
    bar_lengths,
    bars,
    feed,
    finish,
    initial_state,
    meter_length,
    step,
)
from orchestrion.abc.ticks import TICKS
from orchestrion.errors import BadInput


def tune(body: str, meter: str = "4/4", unit: str | None = "1/8") -> str:
    header = f"X:1\nT:Test\nM:{meter}\n" + (f"L:{unit}\n" if unit else "") + "K:G\n"
    return header + body + "\n"


E = F(1, 8)  # an eighth: the unit of most tunes below

CASES = {
    # name: (body, expected bar lengths in whole notes), under M:4/4 L:1/8
    "plain": ("ABcd efga|", [F(1)]),
    "lengths": ("A2 A/2 A/ A3/2 A// A|", [E * (2 + F(1, 2) + F(1, 2) + F(3, 2) + F(1, 4) + 1)]),
    "octaves": ("A,2 B,,2 c'2 d''/2e/2 f|", [F(1)]),
    "accidentals": ("^A2 _B2 =c2 ^^d _e|", [F(1)]),
    "broken": ("A>B c<d A>>B c<<d|", [F(1)]),
    "broken lengths": ("A2>B2 c4|", [F(1)]),  # 3 + 1 + 4 eighths
    "triplet": ("(3abc d (3def g A2|", [F(1)]),
    "tuplet p:q:r": ("(3:2:3abc d (3:2:2ef g A4|", [E * (2 + 1 + F(4, 3) + 1 + 4)]),
    "quintuplet": ("(5abcde A2 B4|", [E * (2 + 2 + 4)]),  # 5 in the time of 2 in simple meter
    "chords": ("[CEG]2 [C2E2G2] [CE]/2[DF]/2 [^FA]|", [E * (2 + 2 + 1 + 1)]),
    "chord length from first note": ("[C4E2] A4|", [F(1)]),
    "ties": ("A2-A2 B4-|B8|", [F(1), F(1)]),
    "grace notes": ("{ga}A2 {/g}B2 {AB}c4|", [F(1)]),
    "rests": ("z2 x2 A4|", [F(1)]),
    "decorations": ("!trill!A2 ~B2 .c2 Td2|uA vB !>!c d +fermata+e4|", [F(1), F(1)]),
    "annotations": ('"G"A2 "^text | with bar"B2 "Am7"c4|', [F(1)]),
    "slurs and spacers": ("(AB) (cd) y e`f g a|", [F(1)]),
    "comments": ("A8| % a comment | with bars\nB4 % more\nB4|", [F(1), F(1)]),
    "continuation": ("A4 \\\nB4|", [F(1)]),
    "newline mark": ("A8|\u00b6B8|", [F(1), F(1)]),
    "inline meter": ("ABcd efga|[M:3/4]ABc def|", [F(1), F(3, 4)]),
    "inline unit": ("ABcd efga|[L:1/16]A4 B4 c4 d4|", [F(1), F(1)]),
    "inline key": ("ABcd [K:D]efga|", [F(1)]),
    "field lines": ("ABcd efga|\nM:3/4\nL:1/4\nA B C|\nw: some lyrics\nK:D\nD E F|", [F(1), F(3, 4), F(3, 4)]),
    "spaceless": ("ABcdefga|A2B2c2d2|", [F(1), F(1)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bar_lengths_of_each_construct(name: str) -> None:
    body, expected = CASES[name]
    assert bar_lengths(tune(body)) == expected


def test_multi_measure_rest_fills_that_many_bars() -> None:
    found = bars(tune("A8|Z4|B8|"))
    assert [b.length for b in found] == [F(1), F(4), F(1)]
    assert found[1].rests == 4 and found[1].full


@pytest.mark.parametrize(
    ("body", "opened", "closes"),
    [
        ("|:A8:|:B8::c8||d8|]", ["|:", ":|:", "::", "||"], [":|:", "::", "||", "|]"]),
        ("[|A8:||:B8|]", ["[|", ":||:"], [":||:", "|]"]),
        ("A8 :| |: B8|]", ["", ":||:"], [":|", "|]"]),  # bar lines with nothing between end one bar
    ],
    ids=["repeats", "thick-thin", "merged"],
)
def test_bar_lines(body: str, opened: list[str], closes: list[str]) -> None:
    found = bars(tune(body))
    assert [b.opened for b in found] == opened
    assert [b.closes for b in found] == closes
    assert all(b.length == 1 for b in found)


def test_repeat_flags() -> None:
    found = bars(tune("|:A8::B8:|C8|]"))
    assert [b.repeat_start for b in found] == [True, True, False]
    assert [b.repeat_end for b in found] == [True, True, False]
    assert [b.starts_section for b in found] == [True, True, True]
    assert [b.ends_section for b in found] == [True, True, True]


@pytest.mark.parametrize(
    "body",
    ["|:A8|1B8:|2c8|]", "|:A8|[1B8:|[2c8|]", "|:A8| [1 B8 :| [2 c8 |]", "|:A8|[1,3 B8:|[2 c8|]"],
    ids=["|1", "[1", "spaced", "list"],
)
def test_variant_endings(body: str) -> None:
    found = bars(tune(body))
    assert [b.length for b in found] == [F(1)] * 3
    assert [b.ending for b in found][0] == ""
    assert found[1].ending in ("1", "1,3") and found[2].ending == "2"


def test_an_ending_lasts_until_a_repeat_or_section_mark() -> None:
    found = bars(tune("|:A8|1B8|c8:|2d8|e8||f8|]"))
    assert [b.ending for b in found] == ["", "1", "1", "2", "2", ""]


def test_anacrusis_and_the_short_bars_of_endings() -> None:
    found = bars(tune("D|:GAB c2d|e3 d2B|1 ABc d2:|2 ABc d3|]", meter="6/8"))
    assert [b.length for b in found] == [E, F(3, 4), F(3, 4), E * 5, F(3, 4)]
    assert found[0].first and found[0].anacrusis
    assert found[-1].last and not found[-1].anacrusis
    assert found[3].short and found[3].repeat_end and found[3].ending == "1"


@pytest.mark.parametrize(
    ("meter", "length"),
    [
        ("4/4", F(1)),
        ("C", F(1)),
        ("C|", F(1)),
        ("2/2", F(1)),
        ("6/8", F(3, 4)),
        ("9/8", F(9, 8)),
        ("12/8", F(3, 2)),
        ("2/4", F(1, 2)),
        ("3/4", F(3, 4)),
        ("2+3/8", F(5, 8)),
        ("(2+2+3)/8", F(7, 8)),
        ("none", None),
        ("", None),
    ],
)
def test_meter_length(meter: str, length: F | None) -> None:
    assert meter_length(meter) == length


def test_meter_length_refuses_nonsense() -> None:
    with pytest.raises(BadInput, match="cannot read the meter"):
        meter_length("x/4")


def test_default_unit_follows_the_meter() -> None:
    # ABC 2.1: without L:, the unit is a 16th under meters below 3/4, else an eighth.
    assert bar_lengths(tune("ABcd efga|", meter="2/4", unit=None)) == [F(1, 2)]
    assert bar_lengths(tune("ABc def|", meter="3/4", unit=None)) == [F(3, 4)]
    assert initial_state("C|").unit == TICKS // 8


def test_compound_meter_tuplets_default_to_three() -> None:
    # (5 in 6/8 is 5 notes in the time of 3; in 3/4 in the time of 2.
    assert bar_lengths(tune("(5abcde def|", meter="6/8")) == [F(3, 4)]
    assert bar_lengths(tune("(5abcde A4|", meter="3/4")) == [F(3, 4)]


def test_free_meter_bars_have_no_expected_length() -> None:
    found = bars(tune("ABC|DEFGAB|", meter="none"))
    assert [b.length for b in found] == [E * 3, E * 6]
    assert all(b.expected is None and not b.full and not b.short for b in found)


def test_last_bar_without_a_bar_line_counts() -> None:
    assert bar_lengths(tune("A8|B4")) == [F(1), F(1, 2)]


@pytest.mark.parametrize(
    "text",
    ["A>|B", "A&B", "]", "A3/0", "A//4", "(3(3abc", "Bc[1d", "AB:C", "A2,", "^&", "[K:D", "\u20ac"],
    ids=repr,
)
def test_invalid_body_syntax_is_refused(text: str) -> None:
    assert feed(initial_state(), text + "|") is None or finish(feed(initial_state(), text + "|")) is None


@pytest.mark.parametrize("text", ['"open quote', "!trill", "{ab", "[CEG"], ids=repr)
def test_a_text_cannot_end_inside_a_token(text: str) -> None:
    state = feed(initial_state(), "A2" + text)
    assert state is not None and finish(state) is None


def test_bars_names_the_place_of_a_syntax_error() -> None:
    with pytest.raises(AbcSyntaxError, match="line 2, column 3"):
        bars(tune("A8|\nB2&c6|"))


def test_state_is_hashable_and_steps_are_pure() -> None:
    s = initial_state("6/8", "1/8")
    a, b = feed(s, "ABc d"), feed(s, "ABc d")
    assert isinstance(a, MeterState) and a == b and hash(a) == hash(b)
    assert len({a, b, feed(s, "ABc")}) == 2
    assert feed(s, "ABc def|").closed is None  # the bar line might go on (`||`, `|]`, `|:`)
    assert feed(s, "ABc def|G").closed.length == F(3, 4)  # reported by the step that ends the bar line
    assert feed(s, "ABc def|GA").closed is None  # ... and only by that step


def test_closed_bar_is_reported_when_the_bar_line_ends() -> None:
    s = feed(initial_state("4/4", "1/8"), "ABcd efga|")
    assert s.closed is None and s.mode == "bar"  # `|` might still become `||` or `|]`
    s = step(s, "]")
    assert s.closed is None
    s = step(s, "\n")
    assert s.closed is not None and s.closed.length == 1 and s.closed.closes == "|]"


def test_remaining_tells_a_decoder_what_the_bar_lacks() -> None:
    s = feed(initial_state("3/4", "1/8"), "AB")
    s = step(s, "c")  # the pending note counts once its token ends
    assert s.remaining == F(3, 4) - 2 * E
    assert initial_state("none").remaining is None


def test_parser_is_fast() -> None:
    body = "|:" + "GAB c2d|e3 d2B|ABc {g}d2e|(3fga g>f e2:|" * 200
    start = time.perf_counter()
    found = bars(tune(body, meter="6/8"))
    assert len(found) == 800
    assert time.perf_counter() - start < 2.0
