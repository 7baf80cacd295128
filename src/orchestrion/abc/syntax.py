"""The syntax of a generated ABC body, one character at a time: the subset abc2midi reads without complaint.

    abc_step(state, c) -> state | None      ABC_START: the state at the start of a body
    abc_feed(state, text), abc_can_end(state)

States are plain tuples (see `abc_step`). `orchestrion.abc.body.BodyGrammar` runs this automaton together with
the bar-length one (`orchestrion.abc.meter`) and the form.
"""

from __future__ import annotations

import re

MAX_SLURRED = 8  # notes under one slur
_LEN = re.compile(r"[1-9]\d?(/[1-9]?)?|/[1-9]?|//")  # a note length abc2midi reads, as a set below (faster)
_LENGTHS = frozenset(
    f"{n}{d}" for n in ["", *map(str, range(1, 100))] for d in ["", "/", *(f"/{k}" for k in range(1, 10))]
) | {"//"}
_LENGTHS = frozenset(x for x in _LENGTHS if x and _LEN.fullmatch(x))
_NOTE_LIKE = ("note", "rest", "closed")


def abc_step(state: tuple, c: str) -> tuple | None:
    """One character of a spaceless ABC body through a small syntax automaton; None where abc2midi would
    stumble. state = (kind, length, need, slur, grace, bars, accidentals, repeat_open, tuplet_left,
    in_tuplet, slurred): tuplet_left counts the notes a tuplet still takes (abc2midi refuses nested tuplets
    and broken rhythms (A>B) that touch one), slurred the notes under the open slur."""
    tup, intup, slurred = state[8], state[9], state[10]
    if c in "23456789" and state[0] == "open" and tup:
        return None
    if c in "<>" and intup:
        return None
    if c == ")" and slurred < 2:
        return None  # a slur over one note is a weak model's loop, not music
    if state[3] and slurred >= MAX_SLURRED and not state[4] and c not in ")0123456789/,'":
        return None  # a slur over MAX_SLURRED notes: it closes now
    nxt = _abc_step(state[:8], c)
    if nxt is None:
        return None
    if nxt[0] == "tuplet" and state[0] == "open":
        return (*nxt, int(c), False, 0)
    if nxt[0] == "open":
        slurred = 0
    if (
        nxt[0] in ("note", "rest")
        and state[0] not in ("note", "rest")
        or (nxt[0] in ("note", "rest") and nxt[1] == "" and c not in ",'")
    ):
        # a new note or rest begins (grace notes are not counted under a slur)
        return (*nxt, max(tup - 1, 0), tup > 0, slurred + (not nxt[4]))
    return (*nxt, tup, intup, slurred)


def _abc_step(state: tuple, c: str) -> tuple | None:
    """`abc_step` without the tuplet and slur bookkeeping."""
    kind, length, need, slur, grace, bars, acc, rep = state
    if kind == "note" and need is not None and not (c.isdigit() or c in "/,'"):
        if length != need:  # a broken rhythm (A>B) needs two notes of the same length
            return None
        need = None
    if c.isdigit() or c == "/":
        if kind in ("note", "rest") and (need is None or need.startswith(length + c)) and length + c in _LENGTHS:
            return (kind, length + c, need, slur, grace, bars, 0, rep)
        if kind == "open" and c in "23456789":  # (3: a tuplet, not a slur
            return ("tuplet", "", need, slur - 1, grace, bars, 0, rep)
        if kind == "bar" and c in "12":  # |1 and :|2: variant endings (the form decides where)
            return ("ending", "", None, slur, grace, bars, 0, rep)
        return None
    if c in "ABCDEFGabcdefg":
        if kind == "colon" or (kind == "broken" and grace):
            return None
        return ("note", "", need if kind in ("broken", "acc") else None, slur, grace, bars, 0, rep)
    if c in ",'":  # octave marks: at most two (accidentals are counted in `acc` before the letter, so reuse it)
        return (
            (kind, length, need, slur, grace, bars, acc + 1, rep)
            if kind == "note" and length == "" and acc < 2
            else None
        )
    if c in "zxZ":
        if grace or kind in ("acc", "deco", "colon", "tuplet", "broken", "grace_done"):
            return None
        return ("rest", "", need if kind == "broken" else None, slur, grace, bars, 0, rep)
    if c in "^_=":  # (an accidental keeps its sign in `length`: only `^^` and `__` are double)
        if kind == "colon" or acc >= (1 if c == "=" else 2) or (kind == "acc" and length != c):
            return None
        return ("acc", c, need if kind in ("broken", "acc") else None, slur, grace, bars, acc + 1, rep)
    if c in "<>":
        if kind != "note" or grace or length not in ("", "2"):
            return None
        return ("broken", "", length, slur, grace, bars, 0, rep)
    if c == "(" and kind == "tuplet":
        return None if slur else ("open", "", None, slur + 1, grace, bars, 0, rep)  # (3(AB): a slurred triplet
    if kind in ("acc", "deco", "broken", "tuplet", "ending") or (kind == "colon" and c not in "|:"):
        return None  # these need a note (or a bar line) next
    if c == "(":  # slurs do not nest here (a weak model opens more than it closes)
        return None if grace or slur else ("open", "", None, slur + 1, grace, bars, 0, rep)
    if c == ")":
        return ("closed", "", None, slur - 1, grace, bars, 0, rep) if slur > 0 and kind in _NOTE_LIKE else None
    if c == "{":  # (abc2midi wants a note between two grace groups)
        return None if grace or kind == "grace_done" else ("start", "", None, slur, True, bars, 0, rep)
    if c == "}":
        return ("grace_done", "", None, slur, False, bars, 0, rep) if grace and kind == "note" else None
    if c in ".~T" and not grace and kind != "grace_done":
        return ("deco", "", None, slur, grace, bars, 0, rep)
    if grace or kind in ("open", "grace_done"):
        return None
    if c == "|":
        return ("bar", "", None, slur, grace, bars + 1, 0, rep)
    if c == "]":
        return ("bar", "", None, slur, grace, bars, 0, rep) if kind == "bar" else None  # |]
    if c == ":":
        if kind == "bar":  # |: a repeat starts (abc2midi refuses a second one before its :|)
            return None if rep else ("bar", "", None, slur, grace, bars, 0, True)
        if kind == "colon":  # :: ends a repeat and starts the next
            return ("bar", "", None, slur, grace, bars + 1, 0, True)
        return ("colon", "", None, slur, grace, bars, 0, False) if kind in _NOTE_LIKE else None
    if c == "\\":
        return ("cont", "", None, slur, grace, bars, 0, rep)
    if c == "\n":
        return ("start", "", None, slur, grace, bars, 0, rep)
    return None


ABC_START = ("start", "", None, 0, False, 0, 0, False, 0, False, 0)


def abc_can_end(state: tuple) -> bool:
    kind, length, need, slur, grace, bars, acc, rep = state[:8]
    if kind == "note" and need is not None and length != need:
        return False
    return bars > 0 and slur == 0 and not grace and not rep and kind in ("note", "rest", "closed", "bar", "start")


def abc_feed(state: tuple | None, text: str) -> tuple | None:
    for c in text:
        if state is None:
            return None
        state = abc_step(state, c)
    return state
