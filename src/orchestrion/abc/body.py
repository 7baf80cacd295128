"""The body of a generated ABC tune, one character at a time: syntax, bar lengths, form and the last note.

    grammar = body_grammar(meter="4/4", unit="1/8", key="G", form="strains")
    state = grammar.start()                   # a `Body`: immutable and hashable
    state = grammar.feed(state, "|:GABc")     # None where the text breaks a rule
    grammar.can_end(state)                    # may the tune end here?
    grammar.advance(state, token_id, texts)   # one token, cached per (state, token)

A `Body` carries three automata that read the same characters:

- `syntax`: `orchestrion.abc.syntax.abc_step`, the subset of ABC abc2midi reads without complaint, plus
  what this module adds from abc2midi's behaviour: octave marks `'` on small letters and `,` on capitals, no
  broken rhythm in a chain or after a decorated note, none at all (nor decorations) under R:hornpipe, whose
  pairs abc2midi swings itself; tuplets without lengths inside; grace groups of up to `MAX_GRACE`
  characters, without lengths, before a note of a unit at least; `MAX_DECORATIONS` decorated notes in a
  bar, `MAX_SAME` notes of one pitch in a row; a decoration holds through its note's accidentals; double
  accidentals `^^` and `__` only; line breaks only after bar lines;
- `meter`: `orchestrion.abc.meter`, the duration of the bar being written under `L:` and `M:`. No token may
  overfill a bar, and a bar line comes only where the bar is full (or is a pickup: see below). Note lengths
  are the usual ones (`LENGTHS`: never shorter than half a unit), and a state from which the bar cannot be
  filled with them is refused at once (`viable`), so the model is never cornered into `A/4`-style fillers;
- the form. `form="strains"` (dance tunes): an optional anacrusis, strain A of 8 bars, strain B of 8 bars,
  each repeated: `:|` after bar 8, or a first ending `|1` after bar 7 and a second `:|2`. Strain B opens with
  `|:` (or `::`). A tune with an anacrusis of length p repeats it at the start of each strain and ends each
  strain on a bar of the meter's length less p (`D|GABc ...|cBAG G3:||:d|dcBA ...|B2A2 G3:|`): written so,
  abc2midi reports no bar-length warning (it warns about `|:` right after the anacrusis, `|` before it, and
  endings in a tune with one, so none of them is written). `form="free"`: any number of bars (steered to an end after
  `FREE_BARS`), a short bar only as the first (anacrusis), before a section line (completing it) or after
  one (a strain's pickup); `|]` ends the tune.

The last note: in the final bar (strains) a note that ends the bar, or that starts where a note of the
default length would fill it, must be the tonic of `key`; in any form the tune may end only on the tonic.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import NamedTuple

from orchestrion.abc.meter import MeterState, duration_of, initial_state, step, tuplet_spec
from orchestrion.abc.syntax import ABC_START, abc_can_end, abc_feed, abc_step
from orchestrion.abc.ticks import replaced, scaled, ticks

__all__ = ["ABC_START", "Body", "BodyGrammar", "abc_can_end", "abc_feed", "abc_step", "body_grammar", "key_tonic"]

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
FREE_BARS = 32  # a free-form tune is steered to an end once it has this many full bars
MAX_GRACE = 4  # characters in a grace group ({g}, {gag}, {/g}); inside one no time passes, so a weak model loops
MAX_DECORATIONS = 2  # decorated notes in a bar (`~A`, `.B`): at temperature 0.6 a weak model loops on `.A.A.A.A`
MAX_SAME = 6  # notes of one pitch in a row (O'Neill's 1850: 99% of tunes have 5 at most); a weak model drones


class Body(NamedTuple):
    """Where a tune body stands: the syntax and meter states and the form's counters (hashable)."""

    syntax: tuple
    meter: MeterState
    strain: int = 0  # 0: A, 1: B, 2: the form is complete
    bars: int = 0  # bars of this strain done (free form: full bars); -1 while strain B's pickup is written
    pickup: int | None = None  # the anacrusis in ticks (None until the first bar closes; 0: none)
    ending: int = 0  # 1 or 2 inside a first or second ending
    pitch: str = ""  # the last note: accidental and letter ("^F", "G")
    off_tonic: bool = False  # an accidental in this bar took the tonic's letter off the tonic
    repeated: bool = False  # free form: a repeat has closed (a later `:|` needs its own `|:`)
    repeat_open: bool = False  # free form: a `|:` (or `::`) is waiting for its `:|`
    decorations: int = 0  # decorated notes in this bar (at most `MAX_DECORATIONS`; bars of a free meter: any)
    same: int = 0  # notes of the last note's pitch in a row (at most `MAX_SAME`)
    decorated: bool = False  # the last note has a decoration (`.E`): abc2midi refuses a broken rhythm after it
    host: int = 0  # 1: grace notes were written, their note comes next; 2: it is being written
    grace: int = 0  # characters of the grace group being written


class BodyGrammar:
    """The rules of one tune's body (its meter, unit, key and form); see the module docstring."""

    def __init__(self, meter: str, unit: str, key: str | None, form: str, swing: bool = False):
        self.swing = swing  # R:hornpipe: abc2midi swings the pairs itself, and refuses written broken rhythms
        self.meter_state = initial_state(meter, unit)
        self.m = self.meter_state.meter  # bar length in ticks (None: free meter, bars not checked)
        self.unit = self.meter_state.unit
        self.half = self.unit // 2 if isinstance(self.unit, int) and self.unit % 2 == 0 else None
        self.form = "free" if self.m is None else form
        self.tonic = key_tonic(key)
        self.caches: dict[int, tuple[object, dict[Body, dict]]] = {}  # per vocabulary: state -> token -> state
        self._next: dict[Body, bool] = {}

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
        if c in ",'" and (b.meter.mode == "grace" or b.pitch[-1:].islower() == (c == ",")):
            return None  # abc2midi: `,` lowers capitals and `'` raises small letters, nothing else
        old_syntax = b.syntax
        syntax = abc_step(old_syntax, c)
        if syntax is None:
            return None
        before = b.meter
        met = step(before, c)
        if met is None:
            return None
        mode = met.mode
        if mode in ("note", "rest") and (met.buf not in _SHORTEST or (met.buf and met.tuplet)):
            return None  # an unusual length, or a length inside a tuplet (`(3abc`, not `(3a2b/c`)
        if c in "<>" and (before.broken != (1, 1) or b.decorated or self.swing):
            return None  # no chains of broken rhythms (`A>B>c`), none after a decorated note or in a hornpipe
        if self.swing and c in ".~T":
            return None  # abc2midi swings a hornpipe's pairs as broken rhythms, which a decorated note refuses
        if mode == "grace" and c in "0123456789/":
            return None  # grace notes have no lengths
        if mode in ("field", "inline"):
            return None  # no field lines or inline fields (a line starting `e:|` reads as a field in ABC)
        grace = b.grace + 1 if mode == "grace" else 0
        if grace > MAX_GRACE:
            return None
        letter = c in "ABCDEFGabcdefg" and mode in ("note", "fieldq")
        if syntax[0] == "deco":
            decorated = True
        elif letter or syntax[0] == "acc":  # a decoration holds through the note's accidentals (`.^g`)
            decorated = b.decorated and old_syntax[0] in ("deco", "acc")
        else:
            decorated = b.decorated
        host = 1 if c == "}" else (2 if b.host == 1 else 0) if letter else b.host
        if host and (c == "(" or (host == 2 and mode == "note" and met.buf.startswith("/"))):
            return None  # after grace notes a note of a unit at least (abc2midi: "grace sequence exceeds host")
        b = tuple.__new__(Body, (syntax, met, *b[2:-3], decorated, host, grace))
        if self.m is None:
            return b
        if met.closed is not None:
            b = self._closed(replaced(b, decorations=0), met, old_syntax)
            if b is None:
                return None
        elif mode == "ending" and before.mode != "ending":
            return None  # an ending starts after a bar (`|1`, `:|2`), never before the first
        if syntax[0] == "deco" and old_syntax[0] != "deco":
            if b.decorations >= MAX_DECORATIONS:
                return None
            b = replaced(b, decorations=b.decorations + 1)
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
        elif before.mode == "bar" and not before.content and before.pos == 0:
            if before.buf != "|:":
                return None  # before a strain only `|:` (a plain `|` before an anacrusis upsets abc2midi)
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
        same = b.same + 1 if acc + c == b.pitch else 1
        b = replaced(b, pitch=acc + c, same=same)
        if self.tonic is not None and acc and c.upper() == self.tonic[0]:
            off = _ALTER.get(acc) != self.tonic[1]
            if off and self._final_bar(b):
                return None
            b = replaced(b, off_tonic=off)
        last = self._final_bar(b) and self._capacity(b) - b.meter.pos <= duration_of(b.meter, self.unit)
        if last and not self._is_tonic(b):
            return None  # a note of the default length would end the tune: it has to be the tonic
        if same > MAX_SAME + last:  # (one more where the tune's last note has to be the tonic: no dead end)
            return None
        return b

    def _begins(self, b: Body) -> bool:
        """The first character of a bar's music: is a bar allowed here, after the bar lines before it?"""
        opened = b.meter.opened
        if b.strain == 2:
            return False  # the form is complete (or `|]` came): only the end of the tune may
        if b.pickup is None:
            return opened in ("", "|", "|:")
        if self.form != "strains":
            return True
        if b.strain == 1 and (b.bars == -1 or (b.bars == 0 and not b.pickup)):
            return opened.endswith(":") and opened != ":|:"  # strain B opens with a repeat
        return True

    def _bar_line_may_start(self, b: Body) -> bool:
        """A bar line starts: the bar's music is over, so its length is final."""
        met = b.meter
        if not met.content and met.pos == 0:  # bar lines with nothing between them: only a repeat's start
            if b.pickup is None and b.strain == 0:  # `|:` before the first bar
                return met.opened == ""
            if self.form != "strains":
                return met.opened not in ("", "|") and not met.opened.endswith(":")  # `:|` `|:`, `||` `|:`
            opening_b = b.strain == 1 and (b.bars == -1 or (b.bars == 0 and not b.pickup))
            return opening_b and not met.opened.endswith(":")
        if self._final_bar(b) and not self._is_tonic(b):
            return False
        return any(self._close_ok(b, met.pos, line, met.opened) for line in SECTION_LINES)

    def _line_prefix_ok(self, b: Body) -> bool:
        met = b.meter
        if not met.content and met.pos == 0:
            return "|:".startswith(met.buf)
        return any(line.startswith(met.buf) and self._close_ok(b, met.pos, line, met.opened) for line in SECTION_LINES)

    def _close_ok(self, b: Body, length: int, line: str, opened: str, syntax: tuple | None = None) -> bool:
        """May a bar of `length` ticks, opened by the bar lines `opened`, close with `line`? (`syntax`: the
        syntax state at the bar line, where `b` has read past it.)"""
        syntax = b.syntax if syntax is None else syntax
        if line != "|" and syntax[3]:
            return False  # a slur ends before a section ends
        m, p = self.m, b.pickup
        full = length == m
        if self.form != "strains":
            open_ = b.repeat_open or opened.endswith(":")
            if line.endswith("]") and ((open_ and not line.startswith(":")) or not self._is_tonic(b)):
                return False  # `|]` ends the tune: on the tonic, no repeat left open
            if line.startswith(":") and b.repeated and not open_:
                return False  # only the first repeat may go back to the start without its `|:`
            if (b.ending == 1 and line != ":|") or (b.ending == 2 and line not in ("||", "|]", "|:")):
                return False  # endings of one bar: `|1 ... :|2 ... ||` (not `||:`, which abc2midi misreads there)
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
            # (not `||:`: after a second ending abc2midi does not read it as a repeat's start)
            lines = ("|", "||", "|:", "|]") if b.strain == 0 else ("|]", "||", "|")
            return full and line in lines
        n = b.bars + 1
        if n < STRAIN_BARS:
            return full and line == "|"
        lines = (":|", "::", ":||:") if b.strain == 0 else (":|", ":|]")
        return length == m - p and line in lines

    def _closed(self, b: Body, met: MeterState, syntax: tuple) -> Body | None:
        """A bar line has ended (`b` has read the character after it): check the bar it closed and count it."""
        bar = met.closed
        length, line = ticks(bar.length), bar.closes
        ending_next = met.mode == "ending"
        if not self._close_ok(b, length, line, bar.opened, syntax):
            return None
        if self.form != "strains":
            open_ = b.repeat_open or bar.opened.endswith(":")
            first = line == "|" and met.buf == "1" and open_ and not b.ending
            if ending_next and not (first or (line == ":|" and met.buf == "2" and b.ending == 1)):
                return None  # a first ending inside a repeat (`|1`), the second after it (`:|2`)
            if b.ending == 1 and line != "|" and not ending_next:
                return None  # `:|` ending a first ending is `:|2`
            ending = int(met.buf) if ending_next else 0
            pickup = b.pickup if b.pickup is not None else (0 if length == self.m else length)
            done = 2 if line.endswith("|]") else b.strain  # `|]` ends the tune
            closes, opens = line.startswith(":"), line.endswith(":")
            return replaced(b, pickup=pickup, bars=b.bars + (length == self.m), strain=done, ending=ending,
                            repeated=b.repeated or closes, repeat_open=(open_ and not closes) or opens,
                            off_tonic=False)  # fmt: skip
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
            elif met.tuplet or (b.host and not met.buf):  # a unit inside a tuplet, or after grace notes
                owed = duration_of(met, self.unit)
            else:
                owed = duration_of(met, scaled(self.unit, *_SHORTEST[met.buf if mode in ("note", "rest") else ""]))
        elif kind == "tuplet":  # `(3`: the tuplet's notes, a unit each (no lengths inside), q units in all
            spec = tuplet_spec(str(b.syntax[8]), met.compound)
            owed = scaled(self.unit, spec[1][0], 1) if spec else self.unit
        elif kind == "open":
            owed = 2 * duration_of(met, half)
        elif kind in ("acc", "deco", "grace_done", "ending", "broken") or b.syntax[4]:
            owed = duration_of(met, self.unit if b.syntax[4] or kind == "grace_done" or b.host else half)
        else:
            owed = 0
        more = met.tuplet - 1 if pending and met.tuplet else met.tuplet  # tuplet notes after this one
        if more > 0:
            owed += more * scaled(self.unit, *met.ratio)
        if b.syntax[3] and kind != "open" and b.syntax[10] < 2:  # a slur holds two notes at least
            owed += (2 - b.syntax[10]) * half
        left = room - owed
        if left < 0:
            return False
        if left == 0 and mode != "acc" and self._final_bar(b) and not self._is_tonic(b):
            return False  # the tune would end off the tonic
        exact = met.tuplet or met.broken != (1, 1) or kind == "tuplet" or self.half is None
        if not exact and not (isinstance(left, int) and left % self.half == 0):
            return False
        return self._has_next(b) if kind in _NEEDS_NEXT or b.syntax[4] else True

    def _has_next(self, b: Body) -> bool:
        """Something can follow a state that needs a note (or a bar line) next: a look one character ahead."""
        found = self._next.get(b)
        if found is None:
            if len(self._next) > 50_000:
                self._next.clear()
            found = self._next[b] = any(self.step(b, c) is not None for c in _LOOKAHEAD)
        return found

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
        meter = done.meter
        return not meter.content and meter.pos == 0 and meter.opened != "" and not done.ending and self._is_tonic(b)

    def long_enough(self, b: Body) -> bool:
        """A free-form tune of `FREE_BARS` bars or more: time to steer it to an end."""
        return self.form == "free" and b.bars >= FREE_BARS

    def to_end(self, b: Body | None) -> int:
        """How far a state is from an end, roughly (0: it may end): what a decoder near its token budget
        lowers first. Counts a bar not yet closed, an open repeat or slur, a last note off the tonic and, in
        the strains form, the bars still to write."""
        if b is None:
            return 1_000
        if self.can_end(b):
            return 0
        syntax, met = b.syntax, b.meter
        far = int(met.content or met.pos > 0) + int(syntax[7]) + int(bool(syntax[3])) + int(not self._is_tonic(b))
        far += b.ending if self.form != "strains" else 0
        if self.form == "strains" and b.strain < 2:
            far += 2 * ((1 - b.strain) * STRAIN_BARS + STRAIN_BARS - max(b.bars, 0))
        return far

    # -------------------------------------------------------------------------------------- tokens

    def cache(self, texts: tuple[str, ...]) -> dict[Body, dict]:
        """The token steps taken so far over the vocabulary `texts` (the same object for one tokenizer)."""
        entry = self.caches.get(id(texts))
        if entry is None or entry[0] is not texts:
            entry = self.caches[id(texts)] = (texts, {})
        if len(entry[1]) > 20_000:
            entry[1].clear()
        return entry[1]

    def advance(self, b: Body, token: int, texts: tuple[str, ...]) -> Body | None:
        """`feed` one token of the vocabulary `texts`, cached per state (see `successors`)."""
        return self.successors(b, texts)(token)

    def successors(self, b: Body, texts: tuple[str, ...]) -> Callable[[int], Body | None]:
        """token -> the state after it from `b` (None where it breaks a rule), cached per state: by token, and
        by the text of each prefix (many tokens share their first characters, so a first character that
        cannot follow rules out all of them at once)."""
        cache = self.cache(texts)
        row = cache.get(b)
        if row is None:
            row = cache[b] = {}
        step, viable = self.step, self.viable

        def after(token: int) -> Body | None:
            done = row.get(token, _MISSING)
            if done is not _MISSING:
                return done
            text, state = texts[token], b
            for k in range(1, len(text) + 1):
                prefix = text[:k]
                nxt = row.get(prefix, _MISSING)
                if nxt is _MISSING:
                    nxt = row[prefix] = step(state, text[k - 1])
                state = nxt
                if state is None:
                    break
            done = row[token] = state if state is not None and viable(state) else None
            return done

        return after


_MISSING = object()
_NEEDS_NEXT = frozenset(("acc", "deco", "broken", "tuplet", "open", "ending", "grace_done", "colon"))
_LOOKAHEAD = "CDEFGABcdefgabz)|:}"


@functools.lru_cache(maxsize=64)
def body_grammar(meter: str, unit: str, key: str | None, form: str, swing: bool = False) -> BodyGrammar:
    """One shared grammar (and its cache of token steps) per meter, unit, key, form and swing."""
    return BodyGrammar(meter, unit, key, form, swing)
