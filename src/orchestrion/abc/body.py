"""The body of a generated ABC tune, one character at a time: syntax, bar lengths, form and the last note.

    grammar = body_grammar(meter="4/4", unit="1/8", key="G", form="strains")
    state = grammar.start()                   # a `Body`: immutable and hashable
    state = grammar.feed(state, "|:GABc")     # None where the text breaks a rule
    grammar.can_end(state)                    # may the tune end here?
    grammar.advance(state, token_id, texts)   # one token, cached per (state, token)

A `Body` carries three automata that read the same characters:

- `syntax`: `abc_step`, the subset of ABC abc2midi reads without complaint (accidentals before notes, lengths
  after them, broken rhythms between notes of equal length and outside tuplets, no nested tuplets or slurs,
  a slur over at least two notes, grace notes closed, repeats `|: ... :|` paired, endings `|1` and `:|2`);
- `meter`: `orchestrion.abc.meter`, the duration of the bar being written under `L:` and `M:`. No token may
  overfill a bar, and a bar line comes only where the bar is full (or is a pickup: see below). Note lengths
  are the usual ones (`LENGTHS`: never shorter than half a unit), and a state from which the bar cannot be
  filled with them is refused at once, so the model is never cornered into `A/4`-style fillers;
- the form. `form="strains"` (dance tunes): an optional anacrusis, strain A of 8 bars, strain B of 8 bars,
  each repeated: `:|` after bar 8, or a first ending `|1` after bar 7 and a second `:|2`. Strain B opens with
  `|:` (or `::`). A tune with an anacrusis of length p repeats it at the start of each strain and ends each
  strain on a bar of the meter's length less p (`D|GABc ...|cBAG G3:||:d|dcBA ...|B2A2 G3:|`): written so,
  abc2midi reports no bar-length warning (it warns about a pickup before `|:`, which is therefore not
  written, and about endings after a pickup, which are then left out). `form="free"`: any number of bars,
  a short bar only as the first (anacrusis), before a section line (completing it) or after one (a strain's
  pickup).

The last note: in the final bar (strains) a note that ends the bar, or that starts where a note of the
default length would fill it, must be the tonic of `key`; in any form the tune may end only on the tonic.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from orchestrion.abc.meter import (
    MeterState,
    duration_of,
    initial_state,
    replaced,
    scaled,
    step,
    ticks,
    tuplet_spec,
)

# ------------------------------------------------------------------------------------- syntax

MAX_SLURRED = 8  # notes under one slur
_LEN = re.compile(r"[1-9]\d?(/[1-9]?)?|/[1-9]?|//")
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
        # a new note or rest begins
        if nxt[3] > 0 and slurred >= MAX_SLURRED:
            return None
        return (*nxt, max(tup - 1, 0), tup > 0, slurred + 1)
    return (*nxt, tup, intup, slurred)


def _abc_step(state: tuple, c: str) -> tuple | None:
    """`abc_step` without the tuplet and slur bookkeeping."""
    kind, length, need, slur, grace, bars, acc, rep = state
    if kind == "note" and need is not None and not (c.isdigit() or c == "/"):
        if length != need:  # a broken rhythm (A>B) needs two notes of the same length
            return None
        need = None
    if c.isdigit() or c == "/":
        if kind in ("note", "rest") and (need is None or need.startswith(length + c)) and _LEN.fullmatch(length + c):
            return (kind, length + c, need, slur, grace, bars, 0, rep)
        if kind == "open" and c in "23456789":  # (3: a tuplet, not a slur
            return ("tuplet", "", need, slur - 1, grace, bars, 0, rep)
        if kind == "bar" and c in "12":  # |1 and :|2: variant endings (the form decides where)
            return ("ending", "", None, slur, grace, bars, 0, rep)
        return None
    if c in "ABCDEFGabcdefg":
        if kind == "colon" or (kind == "broken" and grace):
            return None
        return ("note", "", need if kind == "broken" else None, slur, grace, bars, 0, rep)
    if c in ",'":  # octave marks: at most two (accidentals are counted in `acc` before the letter, so reuse it)
        return (
            (kind, length, need, slur, grace, bars, acc + 1, rep)
            if kind == "note" and length == "" and acc < 2
            else None
        )
    if c in "zxZ":
        if grace or kind in ("acc", "deco", "colon", "tuplet", "broken"):
            return None
        return ("rest", "", need if kind == "broken" else None, slur, grace, bars, 0, rep)
    if c in "^_=":
        if kind == "colon" or acc >= (1 if c == "=" else 2):
            return None
        return ("acc", "", need if kind == "broken" else None, slur, grace, bars, acc + 1, rep)
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
    if c == "{":
        return None if grace else ("start", "", None, slur, True, bars, 0, rep)
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


# ------------------------------------------------------------------------------ lengths and keys

# The note lengths a tune may be written with, as multiples of the unit (L:): nothing shorter than half a unit.
LENGTHS = {"": 1, "2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "7": 7, "8": 8, "12": 12, "16": 16,
           "/": 0.5, "/2": 0.5, "3/2": 1.5, "3/": 1.5}  # fmt: skip
# For each prefix of a length: the shortest length it can still become, as (numerator, denominator).
_SHORTEST = {
    p: min(((int(2 * v), 2) for k, v in LENGTHS.items() if k.startswith(p)), key=lambda x: x[0] / x[1])
    for k in LENGTHS
    for p in (k[:i] for i in range(len(k) + 1))
}
_EXACT = {k: (int(2 * v), 2) for k, v in LENGTHS.items()}
_ALTER = {"": None, "^": 1, "^^": 2, "_": -1, "__": -2, "=": 0}
# abc_metrics-style key names: tonic letter and its accidental ('F#m' -> ('F', 1), 'Bbmix' -> ('B', -1)).
_KEY = re.compile(r"([A-G])([#b]?)")


def key_tonic(key: str | None) -> tuple[str, int] | None:
    """(letter, alteration) of a K: value's tonic: 'G' ('G', 0), 'F#m' ('F', 1), 'Bbmix' ('B', -1); None for
    K:none, bagpipe keys or anything unreadable (then no tonic is asked for)."""
    match = _KEY.match((key or "").strip())
    if match is None or (key or "").strip()[:2] in ("HP", "Hp"):
        return None
    return match.group(1), {"#": 1, "b": -1, "": 0}[match.group(2)]


# ---------------------------------------------------------------------------------------- form

SECTION_LINES = ("|", "||", "|]", "|:", "||:", ":|", "::", ":||:", ":|]", "[|", ":|:")
STRAIN_BARS = 8
MAX_GRACE = 4  # characters in a grace group ({g}, {gag}, {/g}); inside one no time passes, so a weak model loops


class Body(NamedTuple):
    """Where a tune body stands: the syntax and meter states and the form's counters (hashable)."""

    syntax: tuple
    meter: MeterState
    strain: int = 0  # 0: A, 1: B, 2: the form is complete
    bars: int = 0  # bars of this strain done; -1 while strain B's pickup is written
    pickup: int | None = None  # the anacrusis in ticks (None until the first bar closes; 0: none)
    ending: int = 0  # 1 or 2 inside a first or second ending
    pitch: str = ""  # the last note: accidental and letter ("^F", "G")
    off_tonic: bool = False  # an accidental in this bar took the tonic's letter off the tonic
    grace: int = 0  # characters of the grace group being written


class BodyGrammar:
    """The rules of one tune's body (its meter, unit, key and form); see the module docstring."""

    def __init__(self, meter: str, unit: str, key: str | None, form: str):
        self.meter_state = initial_state(meter, unit)
        self.m = self.meter_state.meter  # bar length in ticks (None: free meter, bars not checked)
        self.unit = self.meter_state.unit
        self.half = self.unit // 2 if isinstance(self.unit, int) and self.unit % 2 == 0 else None
        self.form = "free" if self.m is None else form
        self.tonic = key_tonic(key)
        self.cache: dict[Body, dict[int, Body | None]] = {}

    # -------------------------------------------------------------------------------- characters

    def start(self, prefix: str = "") -> Body | None:
        return self.feed(Body(ABC_START, self.meter_state), prefix)

    def feed(self, state: Body | None, text: str) -> Body | None:
        """`step` over `text`; None unless the bar can still be filled where it ends (`viable`)."""
        for c in text:
            if state is None:
                return None
            state = self.step(state, c)
        return state if state is not None and self.viable(state) else None

    def step(self, b: Body, c: str) -> Body | None:
        """One character: the next state, or None where it breaks a rule. Whether the bar can still be filled
        from the new state is `viable`'s question, asked at the end of a token (`feed`, `advance`)."""
        if (c == "\n" and b.syntax[0] != "bar") or c == "\\":
            return None  # lines break after bar lines (a weak model fills a bar it cannot end with newlines)
        if b.strain == 2 and c != "\n":
            return None  # the form is complete: the tune ends
        syntax = abc_step(b.syntax, c)
        if syntax is None:
            return None
        before = b.meter
        met = step(before, c)
        if met is None:
            return None
        mode = met.mode
        if mode in ("note", "rest") and (met.buf not in _SHORTEST or (met.buf and met.tuplet)):
            return None  # an unusual length, or a length inside a tuplet (`(3abc`, not `(3a2b/c`)
        if c in "<>" and before.broken != (1, 1):
            return None  # no chains of broken rhythms (`A>B>c`)
        if mode in ("field", "inline"):
            return None  # no field lines or inline fields (a line starting `e:|` reads as a field in ABC)
        grace = b.grace + 1 if mode == "grace" else 0
        if grace > MAX_GRACE:
            return None
        b = tuple.__new__(Body, (syntax, met, *b[2:-1], grace))
        if self.m is None:
            return b
        if met.closed is not None:
            b = self._closed(b, met)
            if b is None:
                return None
        if (
            mode in ("note", "fieldq")
            and not met.buf[mode == "fieldq" :]
            and c in "ABCDEFGabcdefg"
            and not met.in_chord
        ):
            b = self._note(b, before, c)
            if b is None:
                return None
        if not met.content and met.pos == 0 and mode not in ("bar", "body", "ending", "comment"):
            if not self._begins(b):
                return None
        if mode == "bar":
            if before.mode != "bar" and not self._bar_line_may_start(b):
                return None
            if not self._line_prefix_ok(b):
                return None
        elif before.mode == "bar" and not before.content and before.pos == 0 and self.form == "strains":
            if before.buf != "|:" and not (before.buf == "|" and b.pickup is None and not before.opened):
                return None  # before a strain only `|:` (and a plain `|` before the first bar)
        return b

    # ------------------------------------------------------------------------------------- rules

    def _final_bar(self, b: Body) -> bool:
        return (
            self.form == "strains" and b.strain == 1 and ((b.bars == STRAIN_BARS - 1 and not b.ending) or b.ending == 2)
        )

    def _capacity(self, b: Body) -> int:
        m, p = self.m, b.pickup or 0
        if self.form != "strains":
            return m
        if b.bars == -1:
            return p
        if b.bars == STRAIN_BARS - 1 and not b.ending:
            return m - p
        return m

    def _is_tonic(self, b: Body) -> bool:
        if self.tonic is None:
            return True
        letter, alter = self.tonic
        acc, name = b.pitch[:-1], b.pitch[-1:]
        if name.upper() != letter:
            return False
        return (_ALTER.get(acc) == alter) if acc else not b.off_tonic

    def _note(self, b: Body, before: MeterState, c: str) -> Body | None:
        """A note's letter: remember its pitch; in the final bar, a note that must end the bar is the tonic."""
        acc = before.buf if before.mode == "acc" else ""
        b = replaced(b, pitch=acc + c)
        if self.tonic is not None and acc and c.upper() == self.tonic[0]:
            off = _ALTER.get(acc) != self.tonic[1]
            if off and self._final_bar(b):
                return None
            b = replaced(b, off_tonic=off)
        if self._final_bar(b) and not self._is_tonic(b):
            room = self._capacity(b) - b.meter.pos
            if room <= duration_of(b.meter, self.unit):
                return None  # a note of the default length would end the tune: it has to be the tonic
        return b

    def _begins(self, b: Body) -> bool:
        """The first character of a bar's music: is a bar allowed here, after the bar lines before it?"""
        opened = b.meter.opened
        if self.form != "strains":
            return True
        if b.strain == 2:
            return False  # the form is complete: only the end of the tune may come
        if b.pickup is None:
            return opened in ("", "|", "|:")
        if b.strain == 1 and (b.bars == -1 or (b.bars == 0 and not b.pickup)):
            return opened.endswith(":") and opened != ":|:"  # strain B opens with a repeat
        return True

    def _bar_line_may_start(self, b: Body) -> bool:
        """A bar line starts: the bar's music is over, so its length is final."""
        met = b.meter
        if not met.content and met.pos == 0:  # bar lines with nothing between them
            if self.form != "strains":
                return True
            if b.pickup is None and b.strain == 0:  # `|:` before the first bar
                return met.opened == ""
            opening_b = b.strain == 1 and (b.bars == -1 or (b.bars == 0 and not b.pickup))
            return opening_b and not met.opened.endswith(":")
        if self._final_bar(b) and not self._is_tonic(b):
            return False
        return any(self._close_ok(b, met.pos, line, met.opened) for line in SECTION_LINES)

    def _line_prefix_ok(self, b: Body) -> bool:
        met = b.meter
        if not met.content and met.pos == 0:
            return self.form != "strains" or "|:".startswith(met.buf)
        return any(line.startswith(met.buf) and self._close_ok(b, met.pos, line, met.opened) for line in SECTION_LINES)

    def _close_ok(self, b: Body, length: int, line: str, opened: str) -> bool:
        """May a bar of `length` ticks, opened by the bar lines `opened`, close with `line`?"""
        if line != "|" and b.syntax[3]:
            return False  # a slur ends before a section ends
        m, p = self.m, b.pickup
        full = length == m
        if self.form != "strains":
            if p is None:
                return full or 0 < length <= m // 2
            completes = line != "|" and length == m - p  # before a section line, completing the anacrusis
            lead = opened not in ("|", "") and length == p  # a strain's own anacrusis
            return full or (bool(p) and (completes or lead))
        if b.strain == 2:
            return False
        if b.bars == -1:
            return length == p and line == "|"
        if p is None:
            return line == "|" and (full or 0 < length <= m // 2)
        if b.ending == 1:
            return full and line == ":|"
        if b.ending == 2:
            lines = ("|", "||", "|:", "||:", "|]") if b.strain == 0 else ("|]", "||", "|")
            return full and line in lines
        n = b.bars + 1
        if n < STRAIN_BARS:
            return full and line == "|"
        lines = (":|", "::", ":||:") if b.strain == 0 else (":|", ":|]")
        return length == m - p and line in lines

    def _closed(self, b: Body, met: MeterState) -> Body | None:
        """A bar line has ended: check the bar it closed and count it."""
        bar = met.closed
        length, line = ticks(bar.length), bar.closes
        ending_next = met.mode == "ending"
        if not self._close_ok(b, length, line, bar.opened):
            return None
        if self.form != "strains":
            pickup = b.pickup if b.pickup is not None else (0 if length == self.m else length)
            return replaced(b, pickup=pickup, off_tonic=False)
        n = b.bars + 1
        if b.ending == 1:
            if not (ending_next and met.buf == "2"):
                return None
            return replaced(b, ending=2, off_tonic=False)
        if ending_next:
            if not (b.pickup == 0 and b.ending == 0 and n == STRAIN_BARS - 1 and met.buf == "1"):
                return None
            return replaced(b, bars=n, ending=1, off_tonic=False)
        if b.pickup is None:
            full = length == self.m
            return replaced(b, pickup=0 if full else length, bars=1 if full else 0, off_tonic=False)
        if b.bars == -1:
            return replaced(b, bars=0, off_tonic=False)
        if b.ending == 2 or n == STRAIN_BARS:
            strain = b.strain + 1
            return replaced(b, strain=strain, bars=-1 if strain == 1 and b.pickup else 0, ending=0, off_tonic=False)
        return replaced(b, bars=n, off_tonic=False)

    def viable(self, b: Body) -> bool:
        """Can the bar still be filled, with the usual lengths, without overflowing? What is begun is owed:
        the note being written, the rest of a tuplet, the note after an accidental, a decoration, grace notes
        or a broken rhythm, the two notes of a slur."""
        met = b.meter
        room = self._capacity(b) - met.pos
        if room < 0:
            return False
        mode, kind, need, half = met.mode, b.syntax[0], b.syntax[2], scaled(self.unit, 1, 2)
        if mode == "broken":  # `A>`: the note before grows (or shrinks) and the next, as long, takes the rest
            den = 2 ** len(met.buf)
            grow = scaled(met.prev, den - 1, den)
            after = (1, den) if met.buf[0] == ">" else (2 * den - 1, den)
            nxt = scaled(scaled(self.unit, *_EXACT[need or ""]), *after)
            return room >= (grow if met.buf[0] == ">" else -grow) + nxt and self._has_next(b)
        pending = mode in ("note", "rest", "acc", "fieldq")  # fieldq: a note at the start of a line
        if pending:
            if need is not None:  # the second note of a broken rhythm is as long as the first
                owed = duration_of(met, scaled(self.unit, *_EXACT[need]))
            else:
                owed = duration_of(met, scaled(self.unit, *_SHORTEST[met.buf if mode in ("note", "rest") else ""]))
        elif kind == "tuplet":  # `(3`: the tuplet's notes
            spec = tuplet_spec(str(b.syntax[8]), met.compound)
            owed = scaled(half, spec[1][0], 1) if spec else half  # p notes at q/p of a half unit: q half units
        elif kind == "open":
            owed = 2 * duration_of(met, half)
        elif kind in ("acc", "deco", "grace_done", "ending", "broken") or b.syntax[4]:
            owed = duration_of(met, half)
        else:
            owed = 0
        more = met.tuplet - 1 if pending and met.tuplet else met.tuplet  # tuplet notes after this one
        if more > 0:
            owed += more * scaled(half, *met.ratio)
        if b.syntax[3] and kind != "open" and b.syntax[10] < 2:  # a slur holds two notes at least
            owed += (2 - b.syntax[10]) * half
        left = room - owed
        if left < 0:
            return False
        if mode == "note" and left == 0 and self._final_bar(b) and not self._is_tonic(b):
            return False  # this note would end the tune off the tonic
        exact = met.tuplet or met.broken != (1, 1) or kind == "tuplet" or self.half is None
        if not exact and not (isinstance(left, int) and left % self.half == 0):
            return False
        return self._has_next(b) if kind in _NEEDS_NEXT or b.syntax[4] else True

    def _has_next(self, b: Body) -> bool:
        """Something can follow a state that needs a note (or a bar line) next: a look one character ahead."""
        return any(self.step(b, c) is not None for c in _LOOKAHEAD)

    # ----------------------------------------------------------------------------------- the end

    def can_end(self, b: Body | None, relaxed: bool = False) -> bool:
        """May the tune end here? `relaxed` (the token budget is spent): wherever the syntax may end."""
        if b is None or not abc_can_end(b.syntax):
            return False
        if relaxed or self.m is None:
            return True
        done = b if b.syntax[0] == "start" else self.step(b, "\n")
        if done is None:
            return False
        if self.form == "strains":
            return done.strain == 2
        return not done.meter.content and done.meter.pos == 0 and done.meter.opened != "" and self._is_tonic(b)

    # -------------------------------------------------------------------------------------- tokens

    def advance(self, b: Body, token: int, texts: list[str]) -> Body | None:
        """`feed` one token, cached per state: by token, and by the text of each prefix (many tokens share
        their first characters, so a first character that cannot follow rules out all of them at once)."""
        row = self.cache.get(b)
        if row is None:
            if len(self.cache) > 20_000:
                self.cache.clear()
            row = self.cache[b] = {}
        done = row.get(token, _MISSING)
        if done is not _MISSING:
            return done
        text, state = texts[token], b
        for k in range(1, len(text) + 1):
            prefix = text[:k]
            nxt = row.get(prefix, _MISSING)
            if nxt is _MISSING:
                nxt = row[prefix] = self.step(state, text[k - 1])
            state = nxt
            if state is None:
                break
        done = row[token] = state if state is not None and self.viable(state) else None
        return done


_MISSING = object()
_NEEDS_NEXT = frozenset(("acc", "deco", "broken", "tuplet", "open", "ending", "grace_done", "colon"))
_LOOKAHEAD = "CDEFGABcdefgabz)|:}"


@functools.lru_cache(maxsize=64)
def body_grammar(meter: str, unit: str, key: str | None, form: str) -> BodyGrammar:
    """One shared grammar (and its cache of token steps) per meter, unit, key and form."""
    return BodyGrammar(meter, unit, key, form)
