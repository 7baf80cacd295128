"""Bar lengths of ABC tunes: an incremental, character-level state machine over the tune body.

`step(state, char)` reads one character of an ABC body and returns the next state, or None where the
character cannot follow in ABC body syntax. The state is an immutable, hashable `MeterState`, so a decoder
can cache it per state and per token (`feed` runs a whole token). It tracks the duration of the bar being
read under the `L:` and `M:` in force; when a bar line ends a bar, the state that reads past the bar line
carries that bar in `closed` (for one step). `finish` ends the text and gives the bars that completes.

Inside the state durations are ticks (`orchestrion.abc.ticks`: integers, so a step is cheap and a state
hashes fast); `Bar` gives its lengths as `Fraction`s of a whole note. What counts:

- notes `A`, `^c'`, `_B,,` and rests `z` `x`: the unit length (`L:`) times their length, `A2` `A/2` `A/`
  `A//` `A3/2` `A3/`;
- broken rhythms `A>B` (3/2 and 1/2), `A>>B` (7/4, 1/4), `A>>>B` (15/8, 1/8) and `<` the other way round;
- tuplets `(p`, `(p:q`, `(p:q:r`, `(p::r`: the next r notes (default p) take q/p of their length; q defaults
  to 3 for p = 2, 4, 8, to 2 for p = 3, 6, and for p = 5, 7, 9 to 3 in compound meters, else 2;
- chords `[CEG]2`: the first note's length times the length after the bracket;
- multi-measure rests `Z4` `X4`: that many bars of the meter (one bar holds them);
- grace notes `{...}`, decorations `!trill!` `+trill+` `~` `.` `H`-`W` `h`-`w`, chord symbols and annotations
  `"..."`, slurs `( )`, ties `-`, spacers `y`, beam breaks and spaces, line continuations `\\` take no time;
- inline fields `[M:3/4]` `[L:1/16]` `[K:D]` and field lines in the body (`M:`, `L:`, `w:` ...) change the
  meter and unit from there on; comments `%` run to the end of the line;
- bar lines `|` `||` `|]` `[|` `|:` `:|` `::` `:|:` `:||:`, variant endings `[1` `|1` `:|2` `[1,3` `[1-2`.
  Several bar lines with nothing between them end one bar (`:| |:`); an ending lasts until the next bar line
  with a repeat or section mark.

As ABC 2.1 says, a line that starts with a letter and a colon is a field line (`A:|` there is a field). Not
modelled: voice overlay `&` (refused) and several voices (`V:` fields are read, their bars listed one after
another). `¶` (the spaceless codec's newline mark) reads as a newline.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import NamedTuple

from orchestrion.abc.ticks import TICKS, replaced, scaled, ticks, whole_notes
from orchestrion.errors import BadInput

NEWLINE_MARK = "\u00b6"  # orchestrion.abc.text.NEWLINE_MARK (not imported: this module stays dependency-free)
NOTE_LETTERS = frozenset("ABCDEFGabcdefg")
ACCIDENTALS = frozenset("^_=")
# Decoration shorthands and user-definable symbols (ABC 2.1 section 4.14): no time.
DECORATION_LETTERS = frozenset("~.HIJKLMNOPQRSTUVWhijklmnopqrstuvw")
NO_TIME = frozenset(" \t\r`$y)-\\") | DECORATION_LETTERS
GRACE_CHARS = frozenset("ABCDEFGabcdefg^_=,'0123456789/ ")
_BAR_LINE = re.compile(r"(:*)(\[?\|[|:]{0,2}\]?)?(:*)")
_LENGTH = re.compile(r"(\d*)(/*)(\d*)")
_METER = re.compile(r"\(?(\d+(?:\+\d+)*)\)?/(\d+)")
_FIELD_TEXT = re.compile(r"([A-Za-z+]):(.*)")


class AbcSyntaxError(BadInput):
    """A tune the bar-length parser cannot read: says where and which character."""


# --------------------------------------------------------------------------------------- meters


def meter_length(meter: str) -> Fraction | None:
    """The length of one bar of an `M:` value in whole notes: '4/4', 'C' and 'C|' -> 1, '6/8' -> 3/4,
    '2+3/8' -> 5/8; 'none' (or an empty value) -> None, a free meter with no bar length.

    Raises BadInput for anything else.
    """
    text = meter.strip()
    if text.lower() in ("", "none"):
        return None
    if text in ("C", "C|"):
        return Fraction(1)
    match = _METER.fullmatch(text.replace(" ", ""))
    if not match:
        raise BadInput(f"cannot read the meter {meter!r}: write it like 6/8, C, C| or none")
    numerator = sum(int(n) for n in match.group(1).split("+"))
    denominator = int(match.group(2))
    if numerator == 0 or denominator == 0:
        raise BadInput(f"cannot read the meter {meter!r}: it has a zero in it")
    return Fraction(numerator, denominator)


def is_compound(meter: str) -> bool:
    """True for compound meters (6/8, 9/8, 12/8, 6/4 ...): a numerator of 6 or more divisible by 3."""
    match = _METER.fullmatch(meter.strip().replace(" ", ""))
    if not match:
        return False
    numerator = sum(int(n) for n in match.group(1).split("+"))
    return numerator >= 6 and numerator % 3 == 0


def default_unit(meter: Fraction | None) -> Fraction:
    """The unit note length when a tune gives no `L:`: 1/16 for meters under 3/4, else 1/8 (ABC 2.1, 3.1.7)."""
    return Fraction(1, 16) if meter is not None and meter < Fraction(3, 4) else Fraction(1, 8)


def _unit_length(text: str) -> Fraction | None:
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or int(match.group(1)) == 0 or int(match.group(2)) == 0:
        return None
    return Fraction(int(match.group(1)), int(match.group(2)))


@functools.lru_cache(maxsize=512)
def _note_length(text: str) -> tuple[int, int] | None:
    """The multiplier a length suffix gives, as (numerator, denominator): '' 1, '2' 2, '/2' and '/' 1/2,
    '//' 1/4, '3/2' 3/2; None if malformed."""
    match = _LENGTH.fullmatch(text)
    if not match:
        return None
    num, slashes, den = match.group(1), len(match.group(2)), match.group(3)
    numerator = int(num) if num else 1
    if slashes == 0:
        return (numerator, 1) if not den and numerator > 0 else None
    if den:
        if slashes > 1 or int(den) == 0 or numerator == 0:
            return None
        return numerator, int(den)
    return (numerator, 2**slashes) if numerator > 0 else None


def tuplet_spec(spec: str, compound: bool) -> tuple[int, tuple[int, int]] | None:
    """(notes it takes, time factor q/p as (q, p)) of a tuplet spec '3', '3:2', '3:2:3', '3::2'; None if
    malformed."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0].isdigit() or any(p and not p.isdigit() for p in parts[1:]):
        return None
    p = int(parts[0])
    if not 2 <= p <= 9:
        return None
    default_q = {2: 3, 3: 2, 4: 3, 6: 2, 8: 3}.get(p, 3 if compound else 2)
    q = int(parts[1]) if len(parts) > 1 and parts[1] else default_q
    r = int(parts[2]) if len(parts) > 2 and parts[2] else p
    if q == 0 or r == 0:
        return None
    return r, (q, p)


# ----------------------------------------------------------------------------------------- bars


@dataclass(frozen=True)
class Bar:
    """One bar: its `length` and the `meter`'s bar length when it closed (None: free meter), in whole notes.

    `opened` and `closes` are the bar lines before and after it ('' at the start and at an end without a bar
    line), `ending` the variant ending it belongs to ('1', '2', '1,3'; '' none), `rests` the bars of
    multi-measure rest it holds. `first` and `last` are set by `bars()`.
    """

    length: Fraction
    meter: Fraction | None
    opened: str = ""
    closes: str = "|"
    ending: str = ""
    rests: int = 0
    first: bool = False
    last: bool = False

    @property
    def expected(self) -> Fraction | None:
        """The length the meter asks for (several bars for a multi-measure rest); None in a free meter."""
        return None if self.meter is None else self.meter * max(self.rests, 1)

    @property
    def full(self) -> bool:
        return self.expected is not None and self.length == self.expected

    @property
    def short(self) -> bool:
        return self.expected is not None and 0 < self.length < self.expected

    @property
    def repeat_start(self) -> bool:
        return self.opened.endswith(":")

    @property
    def repeat_end(self) -> bool:
        return self.closes.startswith(":")

    @property
    def starts_section(self) -> bool:
        """First bar, or one after a bar line other than a plain `|`."""
        return self.first or self.opened != "|"

    @property
    def ends_section(self) -> bool:
        """Last bar, or one before a bar line other than a plain `|`."""
        return self.last or self.closes not in ("|",)

    @property
    def anacrusis(self) -> bool:
        """A short first bar: a pickup."""
        return self.first and self.short


# ---------------------------------------------------------------------------------------- state


class MeterState(NamedTuple):
    """Where the reader is: an immutable, hashable tuple (see the module docstring)."""

    mode: str = "body"  # what is being read: body, note, rest, chordlen, mrest, acc, chord, bar, ending, ...
    buf: str = ""  # the text of the token being read
    unit: int | Fraction = TICKS // 8  # L:, in ticks (as are all the durations below)
    meter: int | Fraction | None = TICKS  # M: as a bar length (None: free meter)
    compound: bool = False
    pos: int | Fraction = 0  # duration of the current bar so far
    content: bool = False  # the current bar holds a note or rest
    opened: str = ""  # bar line(s) before the current bar
    ending: str = ""  # variant ending in force
    rests: int = 0  # multi-measure rest bars in the current bar
    in_chord: bool = False
    chord: int | Fraction | None = None  # length of a chord's first note (None before it)
    prev: int | Fraction = 0  # duration of the last note or chord (0: a broken rhythm cannot follow)
    broken: tuple[int, int] = (1, 1)  # what a broken rhythm does to the next note, as (num, den)
    tuplet: int = 0  # notes the tuplet in force still takes
    ratio: tuple[int, int] = (1, 1)  # its time factor (q, p)
    line_start: bool = True
    closed: Bar | None = None  # the bar this step completed

    @property
    def remaining(self) -> Fraction | None:
        """What the current bar still lacks of the meter's length in whole notes (None in a free meter;
        negative when over)."""
        return None if self.meter is None else whole_notes(self.meter - self.pos)


def initial_state(meter: str = "4/4", unit: str | None = None) -> MeterState:
    """The state at the start of a body under `M:meter` and `L:unit` (default from the meter, as ABC says)."""
    length = meter_length(meter)
    if unit is None:
        note_unit = default_unit(length)
    else:
        parsed = _unit_length(unit)
        if parsed is None:
            raise BadInput(f"cannot read the unit note length {unit!r}: write it like 1/8")
        note_unit = parsed
    return MeterState(unit=ticks(note_unit), meter=_bar_ticks(length), compound=is_compound(meter))


def _bar_ticks(length: Fraction | None) -> int | Fraction | None:
    return None if length is None else ticks(length)


def _apply_field(s: MeterState, text: str) -> MeterState | None:
    """A field (`M:3/4`, `L:1/16`, `K:D` ...) met in the body; None when its value cannot be read."""
    match = _FIELD_TEXT.fullmatch(text.strip())
    if not match:
        return None
    letter, value = match.group(1), match.group(2).split("%")[0].strip()
    if letter == "M":
        try:
            length = meter_length(value)
        except BadInput:
            return None
        return replaced(s, meter=_bar_ticks(length), compound=is_compound(value))
    if letter == "L":
        unit = _unit_length(value)
        return None if unit is None else replaced(s, unit=ticks(unit))
    return s


# ------------------------------------------------------------------------------------ the steps


def _mode(s: MeterState, mode: str, buf: str) -> MeterState:
    """`s` with a new mode and token text (the commonest step, so the cheapest)."""
    return tuple.__new__(MeterState, (mode, buf, *s[2:]))


def duration_of(s: MeterState, length: int | Fraction) -> int | Fraction:
    """The time a note of written `length` (ticks) takes where `s` stands: shaped by broken rhythm and tuplet."""
    num, den = s.broken
    if s.tuplet:
        num, den = num * s.ratio[0], den * s.ratio[1]
    return length if num == den else scaled(length, num, den)


def _add(s: MeterState, length: int | Fraction) -> MeterState:
    """A note, rest or chord of written `length` (ticks) ends: it takes its time."""
    duration = duration_of(s, length)
    return replaced(
        s,
        mode="body",
        buf="",
        pos=s.pos + duration,
        content=True,
        prev=duration,
        broken=(1, 1),
        tuplet=s.tuplet - 1 if s.tuplet else 0,
    )


def _close(s: MeterState, bar_line: str) -> MeterState | None:
    """A bar line ends: the bar before it is complete (unless empty: then the bar lines merge)."""
    if s.broken != (1, 1) or s.in_chord:
        return None  # `A>|B` or a chord left open
    section = bar_line != "|"
    if not s.content and s.pos == 0:
        return replaced(s, mode="body", buf="", opened=s.opened + bar_line, ending="" if section else s.ending)
    meter = None if s.meter is None else whole_notes(s.meter)
    bar = Bar(whole_notes(s.pos), meter, s.opened, bar_line, s.ending, s.rests)
    return replaced(
        s,
        mode="body",
        buf="",
        pos=0,
        content=False,
        opened=bar_line,
        ending="" if section else s.ending,
        rests=0,
        prev=0,
        closed=bar,
    )


def _end_token(s: MeterState) -> MeterState | None:
    """The token being read ends (the next character does not continue it)."""
    mode = s.mode
    if mode == "note":
        length = _note_length(s.buf)
        if length is None:
            return None
        if s.in_chord:
            first = s.chord if s.chord is not None else scaled(s.unit, *length)
            return replaced(s, mode="chord", buf="", chord=first)
        return _add(s, scaled(s.unit, *length))
    if mode == "rest":
        length = _note_length(s.buf)
        return None if length is None else _add(s, scaled(s.unit, *length))
    if mode == "chordlen":
        length = _note_length(s.buf)
        if length is None or s.chord is None:
            return None
        return _add(replaced(s, in_chord=False, chord=None), scaled(s.chord, *length))
    if mode == "mrest":
        count = int(s.buf) if s.buf else 1
        if count == 0 or s.meter is None:
            return None
        return replaced(
            s, mode="body", buf="", pos=s.pos + s.meter * count, content=True, rests=s.rests + count, prev=0
        )
    if mode == "bar":
        if not _BAR_LINE.fullmatch(s.buf) or (s.buf.count(":") == len(s.buf) and len(s.buf) < 2):
            return None
        return _close(s, s.buf)
    if mode == "ending":
        if s.content or s.pos != 0:
            return None  # an ending starts a bar
        return replaced(s, mode="body", buf="", ending=s.buf)
    if mode == "tuplet":
        spec = tuplet_spec(s.buf, s.compound)
        if spec is None or s.tuplet:
            return None  # malformed, or nested in another tuplet
        return replaced(s, mode="body", buf="", tuplet=spec[0], ratio=spec[1])
    if mode == "broken":
        den = 2 ** len(s.buf)  # > makes the note before 2 - 1/den of its length and the next 1/den; < the reverse
        short, long_ = (1, den), (2 * den - 1, den)
        before, after = (long_, short) if s.buf[0] == ">" else (short, long_)
        extra = scaled(s.prev, before[0] - before[1], before[1])
        return replaced(s, mode="body", buf="", pos=s.pos + extra, prev=0, broken=after)
    if mode == "paren":
        return _mode(s, "body", "")  # a slur
    if mode == "fieldq":  # a letter at the start of a line that is not a field: read it as music
        return _body(replaced(s, mode="body", buf="", line_start=False), s.buf)
    return None  # acc, bracket, bracketletter: the token is incomplete


def _body(s: MeterState, c: str) -> MeterState | None:
    """Read `c` between tokens (mode body, or chord inside `[...]`)."""
    if s.in_chord:
        if c in NOTE_LETTERS:
            return _mode(s, "note", "")
        if c in ACCIDENTALS:
            return _mode(s, "acc", c)
        if c == "]":
            return _mode(s, "chordlen", "")
        return s if c in "-." else None
    if c == "\n":
        return replaced(s, line_start=True)
    at_line_start = s.line_start
    if at_line_start:
        s = replaced(s, line_start=False)
        if c.isascii() and c.isalpha():
            return _mode(s, "fieldq", c)
    if c in NOTE_LETTERS:
        return _mode(s, "note", "")
    if c in "zx":
        return _mode(s, "rest", "")
    if c in "ZX":
        return _mode(s, "mrest", "")
    if c in NO_TIME:
        return s
    if c in ACCIDENTALS:
        return _mode(s, "acc", c)
    if c in "|:":
        return _mode(s, "bar", c)
    if c == "[":
        return _mode(s, "bracket", "")
    if c == "(":
        return _mode(s, "paren", "")
    if c in "<>":
        return _mode(s, "broken", c) if s.prev > 0 and s.broken == (1, 1) else None
    if c == '"':
        return _mode(s, "quote", "")
    if c in "!+":
        return _mode(s, "deco", c)
    if c == "{":
        return _mode(s, "grace", "")
    if c == "%":
        return _mode(s, "comment", "")
    return None


def _continue(s: MeterState, c: str) -> MeterState | None:
    """`c` continues the token being read (a new state), or None when it does not."""
    mode, buf = s.mode, s.buf
    if mode == "note":
        if c in ",'":
            return s if not buf else None
        return _mode(s, s.mode, buf + c) if c.isdigit() or c == "/" else None
    if mode in ("rest", "chordlen"):
        return _mode(s, s.mode, buf + c) if c.isdigit() or c == "/" else None
    if mode == "mrest":
        return _mode(s, s.mode, buf + c) if c.isdigit() else None
    if mode == "bar":
        if (c in "|:" or (c == "]" and buf.endswith("|"))) and len(buf) < 5:
            return _mode(s, s.mode, buf + c)
        return None
    if mode == "ending":
        return _mode(s, s.mode, buf + c) if c.isdigit() or (c in ",-" and buf[-1].isdigit()) else None
    if mode == "tuplet":
        return _mode(s, s.mode, buf + c) if c.isdigit() or (c == ":" and buf.count(":") < 2) else None
    if mode == "broken":
        return _mode(s, s.mode, buf + c) if c == buf[0] and len(buf) < 3 else None
    return None


def step(state: MeterState, c: str) -> MeterState | None:
    """Read one character of an ABC body: the next state, or None where `c` cannot follow in ABC syntax."""
    s = replaced(state, closed=None) if state.closed is not None else state
    if c == NEWLINE_MARK:
        c = "\n"
    mode = s.mode
    if mode == "body" or mode == "chord":
        return _body(s, c)
    if mode == "comment":
        return replaced(s, mode="body", line_start=True) if c == "\n" else s
    if mode == "quote":
        return None if c == "\n" else (replaced(s, mode="body") if c == '"' else s)
    if mode == "deco":
        if c == s.buf[0]:
            return _mode(s, "body", "")
        return _mode(s, s.mode, s.buf + c) if c != "\n" and len(s.buf) < 40 else None
    if mode == "grace":
        if c == "}":
            return replaced(s, mode="body")
        return s if c in GRACE_CHARS else None
    if mode in ("field", "inline"):
        if (mode == "field" and c == "\n") or (mode == "inline" and c == "]"):
            done = _apply_field(s, s.buf)
            return None if done is None else replaced(done, mode="body", buf="", line_start=c == "\n")
        return _mode(s, s.mode, s.buf + c) if c != "\n" and len(s.buf) < 200 else None
    if mode == "acc":
        if c in NOTE_LETTERS:
            return _mode(s, "note", "")
        if c == s.buf[-1] and c != "=" and len(s.buf) < 2:
            return _mode(s, s.mode, s.buf + c)
        return None
    if mode == "bracket":
        if c.isdigit():
            return _mode(s, "ending", c)
        if c == "|":
            return _mode(s, "bar", "[|")
        if c in ACCIDENTALS:
            return replaced(s, mode="acc", buf=c, in_chord=True, chord=None)
        if c.isascii() and c.isalpha():
            return _mode(s, "bracketletter", c)
        return None
    if mode == "bracketletter":
        if c == ":":
            return _mode(s, "inline", s.buf + ":")
        if s.buf in NOTE_LETTERS:  # `[C...`: a chord after all
            chord = replaced(s, mode="note", buf="", in_chord=True, chord=None)
            return step(chord, c)
        return None
    if mode == "fieldq" and c == ":":
        return _mode(s, "field", s.buf + ":")
    if mode == "paren" and c.isdigit():
        return _mode(s, "tuplet", c)
    if mode == "bar" and c.isdigit() and "|" in s.buf:  # `|1`, `:|2`: the bar ends, an ending begins
        closed = _end_token(s)
        return None if closed is None else replaced(closed, mode="ending", buf=c)
    more = _continue(s, c)
    if more is not None:
        return more
    ended = _end_token(s)
    if ended is None:
        return None
    if ended.mode != "body" and ended.mode != "chord":  # fieldq replayed a letter that opened a token
        return step(ended, c)
    return _body(ended, c)


def feed(state: MeterState | None, text: str) -> MeterState | None:
    """`step` over every character of `text` (None as soon as one cannot follow)."""
    for c in text:
        if state is None:
            return None
        state = step(state, c)
    return state


def finish(state: MeterState) -> list[Bar] | None:
    """The bars the end of the text completes (the open token and the last bar); None when the text cannot
    end here (an open quote, chord, grace group or decoration)."""
    s = step(state, "\n")
    if s is None or s.mode not in ("body", "comment"):
        return None
    done = [s.closed] if s.closed is not None else []
    if s.content or s.pos > 0:
        last = _close(s, "")
        if last is None or last.closed is None:
            return None
        done.append(last.closed)
    elif s.broken != (1, 1) or s.in_chord:
        return None
    return done


# -------------------------------------------------------------------------------------- tunes


def split_header(tune_text: str) -> tuple[dict[str, str], str]:
    """The header fields of the first tune in `tune_text` (up to and including `K:`) and its body.

    A text without a `K:` line is all body, under free meter.
    """
    lines = tune_text.replace("\r\n", "\n").replace(NEWLINE_MARK, "\n").split("\n")
    fields: dict[str, str] = {}
    for i, line in enumerate(lines):
        match = re.match(r"([A-Za-z]):(.*)", line)
        if match is None:
            if line.strip() and not line.startswith("%"):
                break  # music before any K: line: no header after all
            continue
        if match.group(1) == "X" and "K" in fields:
            break
        fields.setdefault(match.group(1), match.group(2).strip())
        if match.group(1) == "K":
            body = []
            for rest in lines[i + 1 :]:
                if rest.startswith("X:"):
                    break  # the next tune
                body.append(rest)
            return fields, "\n".join(body)
    return {}, tune_text


def tune_state(fields: dict[str, str]) -> MeterState:
    """The state at the start of a body with these header fields (a missing M: is a free meter)."""
    unit = fields.get("L", "").split("%")[0].strip()
    return initial_state(fields.get("M", "none").split("%")[0].strip() or "none", unit or None)


def bars(tune_text: str) -> list[Bar]:
    """Every bar of a tune, in order, with `first` and `last` flags; AbcSyntaxError where it cannot be read."""
    fields, body = split_header(tune_text)
    s = tune_state(fields)
    found: list[Bar] = []
    line, col = 1, 0
    for c in body:
        nxt = step(s, c)
        if nxt is None:
            text_line = body.split("\n")[line - 1]
            raise AbcSyntaxError(
                f"cannot read the tune body at line {line}, column {col + 1} ({c!r} in mode {s.mode}): {text_line[:80]!r}"
            )
        s = nxt
        if s.closed is not None:
            found.append(s.closed)
        line, col = (line + 1, 0) if c == "\n" else (line, col + 1)
    tail = finish(s)
    if tail is None:
        raise AbcSyntaxError(f"the tune body ends inside a token ({s.mode}): close it")
    found.extend(tail)
    if found:
        found[0] = replace(found[0], first=True)
        found[-1] = replace(found[-1], last=True)
    return found


def bar_lengths(tune_text: str) -> list[Fraction]:
    """The length of every bar of a tune in whole notes (see `bars` for the anacrusis and ending flags)."""
    return [bar.length for bar in bars(tune_text)]
