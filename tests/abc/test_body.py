"""The body grammar: full bars, two strains with repeats or endings, the tonic at the end, no dead ends.

Hand-written bodies check each rule; random walks through the grammar (a 'model' that picks any allowed
character) check that it never corners itself and that what it lets through is what abc2midi and the
quality measures call right.
"""

from __future__ import annotations

import random

import pytest

from orchestrion.abc.body import ABC_START, Body, abc_feed, body_grammar, key_tonic
from orchestrion.evaluation import abc_metrics as am

REEL_A = "GABc dBGB|cBAG FGAB|GABc dBGB|cBAG FGAB|GABc dBGB|cBAG FGAB|GABc dBGB|"
REEL_B = "dcBA GABc|dcBA GABc|dcBA GABc|dcBA GABc|dcBA GABc|dcBA GABc|dcBA GABc|"


def walk(body: str, meter: str = "4/4", key: str = "G", form: str = "strains") -> tuple[Body | None, int]:
    """Feed `body` (spaces dropped) one character (one token) at a time: the state, and where it was refused
    (-1: never)."""
    grammar = body_grammar(meter, "1/8", key, form)
    state = grammar.start()
    for i, c in enumerate(body.replace(" ", "")):
        nxt = grammar.feed(state, c)
        if nxt is None:
            return state, i
        state = nxt
    return state, -1


def ends(body: str, **kw: str) -> bool:
    state, refused = walk(body, **kw)
    grammar = body_grammar(kw.get("meter", "4/4"), "1/8", kw.get("key", "G"), kw.get("form", "strains"))
    return refused == -1 and grammar.feed(state, "") is not None and grammar.can_end(state)


@pytest.mark.parametrize(
    "body",
    [
        "|:" + REEL_A + "cBAG G4:||:" + REEL_B + "B2A2 G4:|",
        REEL_A + "cBAG G4:|\n|:" + REEL_B + "B2A2 G4:|",
        REEL_A + "cBAG G4::" + REEL_B + "B2A2 G4:|",
        REEL_A + "1cBAG G4:|2cBAG G2d2|:" + REEL_B + "1B2A2 G4:|2B2A2 G4|]",
        "D|" + REEL_A + "cBAG G3:||:d|" + REEL_B + "B2A2 G3:|",  # an anacrusis, completed by each strain's end
    ],
    ids=["repeats", "newline", "double-repeat", "endings", "anacrusis"],
)
def test_two_strains_may_end(body: str) -> None:
    assert ends(body)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ("GABc dBGBc|", "GABcdBGB"),  # the bar would overflow
        ("GABc dB|", "GABcdB"),  # a bar line before the bar is full
        (REEL_A + "cBAG G4:|dcBA", REEL_A.replace(" ", "") + "cBAGG4:|"),  # strain B opens with |:
        (REEL_A + "cBAG G4:|:dcBA", REEL_A.replace(" ", "") + "cBAGG4:|"),  # `:|:`: abc2midi assumes a repeat
        (REEL_A + "cBAG G4|", REEL_A.replace(" ", "") + "cBAGG4"),  # bar 8 ends the strain with a repeat
        ("GABc dBGB|1", "GABcdBGB|"),  # a first ending only at bar 7
        ("D|:GABc", "D|"),  # no |: after an anacrusis (abc2midi warns)
        ("D2D2 D2|", "D2D2D2"),  # an anacrusis is half a bar at most
        (REEL_A + "1cBAG G4:|2cBAG G2d2||:dc", REEL_A.replace(" ", "") + "1cBAGG4:|2cBAGG2d2||"),  # abc2midi
        ("|:" + REEL_A + "cBAG G4:||:" + REEL_B + "B2A2 A4", None),  # the last note is the tonic (A2 may go on)
        ("GA.^B<c", "GA.^B"),  # abc2midi: no broken rhythm after a decorated note, accidental or not
        ("GA_^B", "GA_"),  # double accidentals are `^^` and `__` only (abc2midi: "Malformed note")
        ("GA{_^a}B", "GA{_"),  # ... in grace notes too
        (".A.B.c", ".A.B"),  # two decorated notes in a bar at most (a weak model loops on `.A.A.A.A`)
        ("GGGG GGGG|", "GGGGGG"),  # six notes of one pitch in a row at most (a weak model drones)
    ],
    ids=[
        "overflow",
        "short-bar",
        "b-opens",
        "colon-bar-colon",
        "bar-8",
        "ending-7",
        "pickup-repeat",
        "pickup",
        "double-bar-repeat",
        "tonic",
        "decorated-accidental-broken",
        "mixed-accidentals",
        "mixed-accidentals-grace",
        "decorations",
        "drone",
    ],
)
def test_broken_rules_are_refused_where_they_break(body: str, where: str | None) -> None:
    state, refused = walk(body)
    assert refused >= 0, body
    if where is not None:
        assert body.replace(" ", "")[:refused] == where


def test_double_accidentals_of_one_sign_are_read_and_decorations_count_per_bar() -> None:
    assert walk("GA^^Bc __dBGB|")[1] == -1
    assert walk("~GABc .dBGB|.c~BAG FGAB|")[1] == -1


def test_the_last_note_must_be_the_tonic() -> None:
    grammar = body_grammar("4/4", "1/8", "D", "strains")
    state, refused = walk(REEL_A + "cBAG G4:||:" + REEL_B + "B2A2", key="D")
    assert refused == -1
    assert grammar.step(state, "G") is not None  # G2 or G may still be followed by more notes...
    assert grammar.feed(state, "G4") is None  # ... but not end the bar
    assert grammar.feed(state, "F2d2") is not None and grammar.feed(state, "F2e2") is None
    assert grammar.feed(state, "^d4") is None  # an accidental that takes the tonic's letter off the tonic


@pytest.mark.parametrize(
    ("key", "tonic"), [("G", ("G", 0)), ("F#m", ("F", 1)), ("Bbmix", ("B", -1)), ("Ador", ("A", 0)), ("none", None)]
)
def test_key_tonic(key: str, tonic: tuple | None) -> None:
    assert key_tonic(key) == tonic


def test_free_form_checks_bars_and_ends_on_the_tonic() -> None:
    assert ends("A2FA DAFA|BAFA BdcB|A2FA DAFA|BAFA d4|]", key="D", form="free")
    assert not ends("A2FA DAFA|BAFA BdcB|", key="D", form="free")  # ends on B
    assert walk("A2FA DAFA|BAFA B|", key="D", form="free")[1] >= 0  # a short bar inside the tune
    assert ends("D|A2FA DAFA|BAFA d3:|", key="D", form="free")  # anacrusis completed before :|


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ("(3GAB c2 d4|", True),
        ("(3G2AB", False),  # no lengths inside a tuplet
        ("G>A B<c d4|", True),
        ("G>A>B", False),  # no chains of broken rhythms
        ("(G)", False),  # a slur over one note
        ("g''", True),
        ("G,,", True),
        ("g,", False),  # abc2midi: a comma lowers capitals only
        ("g'''", False),  # three octave marks
        ("{gag}A", True),
        ("{gagfe}A", False),  # long grace groups take no time: a weak model loops in them
        ("A8\nB", False),  # no newline before a bar line
        ("A/4", False),  # nothing shorter than half a unit
    ],
)
def test_what_a_bar_may_hold(body: str, ok: bool) -> None:
    assert (walk(body, form="free")[1] == -1) == ok


def test_the_syntax_automaton_allows_endings_and_limits_octaves() -> None:
    assert abc_feed(ABC_START, "|:A8|1B8:|2c8|]") is not None
    assert abc_feed(ABC_START, "A'''") is None


ALPHABET = "ABCDEFGabcdefgz123468/|:]<>(){}^_=.~,'\n"


def random_walk(grammar, rng: random.Random, alphabet: str = ALPHABET, limit: int = 3000) -> str:
    """A body written by a 'model' that picks any character the grammar allows (notes likelier)."""
    state, text = grammar.start(), ""
    for _ in range(limit):
        options = [c for c in alphabet if grammar.feed(state, c) is not None]
        if grammar.can_end(state) and (not options or rng.random() < 0.9):
            return text
        assert options, f"dead end after {text!r}"
        weights = [12 if c in "ABCDEFGabcdefg" else 3 if c in "|" else 1 for c in options]
        c = rng.choices(options, weights)[0]
        state, text = grammar.feed(state, c), text + c
    raise AssertionError(f"no end after {limit} characters: {text!r}")


def test_free_form_walks_end_on_the_tonic_with_full_bars() -> None:
    rng = random.Random(1)
    for n, (meter, key) in enumerate([("3/4", "G"), ("6/8", "Dmix"), ("4/4", "Bm"), ("2/4", "A")] * 2):
        grammar = body_grammar(meter, "1/8", key, "free")
        text = random_walk(grammar, rng, ALPHABET.replace("z", ""))
        tune = f"X:1\nT:Walk {n}\nM:{meter}\nL:1/8\nK:{key}\n{text.strip()}\n"
        assert am.bar_length_ok(tune) and am.bar_length_ok(tune, source="abc2midi"), tune
        assert am.final_tonic(tune) == 1.0, tune


def test_no_dead_ends_and_what_ends_is_right() -> None:
    """Random walks: every state the grammar accepts can go on, and every finished walk is a tune that our
    parser and abc2midi find right (no bar-length warning), two strains with repeats, ending on the tonic."""
    rng = random.Random(0)
    finished = 0
    for n, (meter, key) in enumerate([("4/4", "G"), ("6/8", "D"), ("2/4", "Am"), ("9/8", "Edor")] * 6):
        text = random_walk(body_grammar(meter, "1/8", key, "strains"), rng)
        tune = f"X:1\nT:Walk {n}\nM:{meter}\nL:1/8\nK:{key}\n{text.strip()}\n"
        assert am.bar_length_ok(tune), tune
        assert am.bar_length_ok(tune, source="abc2midi"), tune
        assert am.final_tonic(tune) == 1.0, tune
        assert am.repeat_structure(tune) and am.strains(tune) == 2, tune
        finished += 1
    assert finished == 24


def test_hornpipes_are_written_so_that_abc2midi_can_swing_them() -> None:
    """Under R:hornpipe abc2midi plays pairs of notes as broken rhythms itself: written broken rhythms and
    decorations then make it refuse the tune, so the grammar leaves them out."""
    rng = random.Random(5)
    for n, meter in enumerate(["4/4", "2/4"] * 3):
        text = random_walk(body_grammar(meter, "1/8", "D", "strains", swing=True), rng)
        tune = f"X:1\nT:Walk {n}\nR:hornpipe\nM:{meter}\nL:1/8\nK:D\n{text.strip()}\n"
        assert am.bar_length_ok(tune, source="abc2midi"), tune
