"""core/abcfile.py: the one ABC splitter, header fields, titles, binary junk."""

from __future__ import annotations

import pytest

from orchestrion.core import abcfile


def test_split_at_x_lines_keeps_the_file_header() -> None:
    found = abcfile.split("%abc\nM:6/8\nX:1\nT:One\nK:G\nGAB|\n\nX:2\nT:Two\nK:D\nDEF|\n")
    assert found.header == "%abc\nM:6/8\n"
    assert found.fields == ["M:6/8"]
    assert found.tunes == ["X:1\nT:One\nK:G\nGAB|\n", "X:2\nT:Two\nK:D\nDEF|\n"]


def test_split_normalises_newlines_and_trims_each_tune() -> None:
    found = abcfile.split("X:1\r\nK:G\r\nGAB|  \r\n\r\n\rX:2\rK:D\rDEF|\t\n\n")
    assert found.header == ""
    assert found.tunes == ["X:1\nK:G\nGAB|\n", "X:2\nK:D\nDEF|\n"]


def test_without_x_the_blocks_with_a_key_are_tunes() -> None:
    found = abcfile.split("T:a\nK:G\nabc|\n\nT:b\nK:D\ndef|\n\njust text\n")
    assert found.header == "" and found.tunes == ["T:a\nK:G\nabc|\n", "T:b\nK:D\ndef|\n"]
    assert abcfile.split("no tune here\n").tunes == []


def test_header_fields_go_after_the_x_line() -> None:
    assert abcfile.with_fields("X:1\nK:G\nG|\n", ["M:6/8", "R:jig"]) == "X:1\nM:6/8\nR:jig\nK:G\nG|\n"
    assert abcfile.with_fields("X:1\nK:G\nG|\n", []) == "X:1\nK:G\nG|\n"


def test_title_and_binary() -> None:
    assert abcfile.title("X:1\nT:  The Kesh \nT:second\nK:G\n") == "The Kesh"
    assert abcfile.title("X:1\nK:G\n") == ""
    assert abcfile.is_binary(bytes(range(256)).decode("latin-1"))
    assert not abcfile.is_binary("X:1\nK:G\nGAB|\n") and not abcfile.is_binary("")


def test_decode_falls_back_to_latin1() -> None:
    assert abcfile.decode("T:Café".encode()) == "T:Café"
    assert abcfile.decode("T:Café".encode("latin-1")) == "T:Café"


def test_tunes_of_a_file_as_found() -> None:
    from orchestrion.testing.real_world import abc_collection

    tunes = abcfile.tunes_of(abc_collection())
    assert [(t.number, t.title) for t in tunes] == [(1, "Spaced Polka"), (2, "Spaced Jig"), (3, "Nested Chords")]
    assert all(t.text.startswith(f"X:{t.number}\nR:polka\n") for t in tunes)  # the file header's field, given
    assert "%abc-2.1" not in tunes[0].text and "collected for the tests" not in tunes[0].text
    assert tunes[2].label == 'tune 3 ("Nested Chords")'


@pytest.mark.parametrize(
    ("meter", "unit"),
    [("2/4", "1/16"), ("3/8", "1/16"), ("2+2/8", "1/16"), ("3/4", "1/8"), ("6/8", "1/8"), ("4/4", "1/8"),
     ("C", "1/8"), ("C|", "1/8"), ("none", "1/8"), ("", "1/8")],
)  # fmt: skip
def test_a_missing_unit_length_is_resolved_as_the_standard_says(meter: str, unit: str) -> None:
    assert abcfile.default_unit(meter) == unit
    tune = f"X:1\nM:{meter}\nK:G\nG A B c |\n"
    assert abcfile.with_unit(tune) == f"X:1\nM:{meter}\nL:{unit}\nK:G\nG A B c |\n"
    assert abcfile.with_unit("X:1\nL:1/4\nM:2/4\nK:G\nG|\n") == "X:1\nL:1/4\nM:2/4\nK:G\nG|\n"


def test_an_empty_x_field_gets_the_tune_number() -> None:
    (tune,) = abcfile.tunes_of("%abc-2.1\nX:\nT:t\nL:1/8\nK:C\nC|\n")
    assert tune.text == "X:1\nT:t\nL:1/8\nK:C\nC|\n"
