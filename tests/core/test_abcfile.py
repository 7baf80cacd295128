"""core/abcfile.py: the one ABC splitter, header fields, titles, binary junk."""

from __future__ import annotations

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
