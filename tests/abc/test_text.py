"""abc/text.py: splitting into tunes, the named cleaning steps, spaceless text and the newline escaping."""

from __future__ import annotations

import pytest

from orchestrion.abc import text as abc

COLLECTION = """%%abc-charset utf-8
% a file header, not a tune

X: 1
T: First <b>Tune</b>
N: a note about it
Z: transcribed by somebody
M: 6/8
L: 1/8
R: jig
K: G
%%MIDI program 1
GAB c2d | e3 d2B % a comment
</p>"Am"c<A)(A>B "4"e2 |]

X: 2
T: Second
M: 4/4
K:maj
ABcd efga|]
"""


def test_split_keeps_header_fields() -> None:
    tunes = abc.split_tunes(COLLECTION)
    assert [t.title for t in tunes] == ["First <b>Tune</b>", "Second"]
    first = tunes[0]
    assert (first.meter, first.unit, first.key, first.rhythm) == ("6/8", "1/8", "G", "jig")
    assert tunes[1].key == "maj"


def test_split_without_x_uses_blank_lines() -> None:
    tunes = abc.split_tunes("T:a\nK:G\nabc|\n\nT:b\nK:D\ndef|\n\njust text\n")
    assert [t.title for t in tunes] == ["a", "b"]


def test_default_clean_runs_each_named_step() -> None:
    first, second = abc.split_tunes(COLLECTION)
    result = abc.clean(first.abc)
    assert {"strip_markup", "drop_commentary", "fix_annotations"} <= set(result.changed)
    text = result.abc
    assert "<b>" not in text and "</p>" not in text
    assert "c<A)(A>B" in text  # broken rhythms look like tags but are music
    assert "N:" not in text and "Z:" not in text and "a comment" not in text
    assert "%%MIDI program 1" in text  # directives stay
    assert '"Am"c' in text and '"^4"e2' in text
    assert abc.clean(second.abc).abc.splitlines()[3] == "K:Cmaj"


@pytest.mark.parametrize(
    ("step", "before", "after"),
    [
        ("add_x", "T:a\nK:G\nabc\n", "X:1\nT:a\nK:G\nabc\n"),
        ("add_x", "X:\nT:a\nK:G\nabc\n", "X:1\nT:a\nK:G\nabc\n"),
        ("fix_mode_keys", "X:1\nK: dor\nabc\n", "X:1\nK:Cdor\nabc\n"),
        ("fix_mode_keys", "X:1\nK:min\nabc\n", "X:1\nK:Cmin\nabc\n"),
        ("fix_mode_keys", "X:1\nK:Gmin\nabc\n", "X:1\nK:Gmin\nabc\n"),
        ("drop_bowing", 'X:1\nK:G\nuA vB "uv"c\n', 'X:1\nK:G\nA B "uv"c\n'),
        ("fix_stray_fermata", "X:1\nK:G\nABcH:|dH|]\n", "X:1\nK:G\nABc:|d|]\n"),
        ("fix_decorated_slurs", "X:1\nK:G\n~(dcd) (3abc B.(E\n", "X:1\nK:G\n(~dcd) (3abc B.(E\n"),
        ("normalize_text", "X:1\r\nK:G\r\n\r\nabc\t \n", "X:1\nK:G\nabc\n"),
    ],
    ids=lambda v: v if isinstance(v, str) and "\n" not in v else None,
)
def test_single_step(step: str, before: str, after: str) -> None:
    assert abc.clean(before, [step]).abc == after


def test_steps_switch_off_and_unknown_step_is_refused() -> None:
    text = "X:1\nN:keep me\nK:G\nabc\n"
    assert "N:keep me" in abc.clean(text, ["add_x"]).abc
    with pytest.raises(ValueError, match="unknown cleaning steps"):
        abc.clean(text, ["no_such_step"])


def test_hornpipe_meter() -> None:
    cut = "X:1\nR:hornpipe\nM:C|\nK:G\nabc\n"
    assert "R:" not in abc.clean(cut, ["fix_hornpipe_meter"]).abc
    common = "X:1\nR:hornpipe\nM:4/4\nK:G\nabc\n"
    assert abc.clean(common, ["fix_hornpipe_meter"]).abc == common


def test_spaceless_body_only() -> None:
    tune = 'X:1\nT:A Long Title\nM:4/4\nK:G\n%%MIDI program 1\n"Am 7"A B c d | [K: D major] e f !trill! g |\n| g2 a | |1 b :|\n'
    dense = abc.spaceless(tune)
    lines = dense.splitlines()
    assert lines[1] == "T:A Long Title" and lines[4] == "%%MIDI program 1"
    assert lines[5] == '"Am 7"ABcd|[K: D major]ef!trill!g|'
    assert lines[6] == "|g2a| |1b:|"  # a bar line then an ending keeps its space


def test_newline_escaping_round_trip() -> None:
    tune = abc.clean(abc.split_tunes(COLLECTION)[0].abc).abc
    line = abc.escape_newlines(abc.spaceless(tune))
    assert "\n" not in line
    assert abc.unescape_newlines(line) == abc.spaceless(tune)


def test_to_readable_restores_a_generated_tune() -> None:
    generated = "<s>T:New¶M:4/4¶K:G¶GABc|d4|]</s>"
    assert abc.to_readable(generated) == "X:1\nT:New\nM:4/4\nK:G\nGABc|d4|]\n"
    assert abc.to_readable("X:5\nK:G\nabc\n") == "X:5\nK:G\nabc\n"


def test_binary_detection() -> None:
    assert abc.is_binary(bytes(range(256)).decode("latin-1"))
    assert not abc.is_binary(COLLECTION)


def test_a_tune_without_a_unit_length_gets_the_standards_default():
    polka, jig = abc.split_tunes("X:1\nT:p\nM:2/4\nK:G\nABcd|\n\nX:2\nT:j\nM:6/8\nK:D\nABc def|\n")
    assert (polka.unit, jig.unit) == ("1/16", "1/8")
