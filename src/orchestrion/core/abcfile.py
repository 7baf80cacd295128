"""ABC files as found: split into tunes, the file header's fields, titles, binary junk.

An ABC file is an optional *file header* and then tunes. The file header is everything before the first
`X:` line: `%%` directives, comments, and field lines (`M:6/8`, `R:reel`) that apply to every tune of the
file. Each tune starts at a line that begins with `X:` and runs to the next one. A file without any `X:`
line (a tune typed by hand, or written by a model) has no file header; its tunes are its blank-line
separated blocks that hold a `K:` line, and other blocks (notes, stray text) are dropped.

    split(text) -> AbcFile(header, tunes)    newlines made `\\n` first; every tune is stripped of the blank
                                             lines and spaces around it and ends in one newline
    header_fields(header) -> ["M:6/8", ...]   the field lines of a file header
    with_fields(tune, fields)                the tune with those lines after its `X:` line
    title(tune)                              its first `T:` field ("" when it has none)
    with_unit(tune)                          the tune with an explicit `L:` when it has none (ABC 2.1: 1/16
                                             under a meter of 3/4, else 1/8)
    tunes_of(text) -> [Tune]                 every tune of a file as found, ready to compile on its own:
                                             version lines and comments left in the file header, its fields
                                             given to each tune, `L:` made explicit, an empty `X:` numbered
    engraving_problem(tune)                  why verovio would crash on the tune (no K: line, a `]` that
                                             closes nothing, an empty or nested chord), or None
    is_binary(text)                          mostly unprintable: a binary file read as text, not ABC
    decode(raw)                              UTF-8, or Latin-1 (older collections) when it is not UTF-8

A file's tunes are read, compiled, rendered and evaluated one by one: `orchestrion decode abc`, `render` and
`eval` take `tunes_of`, and report an error per tune. This is the one splitter: the built-in folk corpus (`orchestrion.core.corpora`), `orchestrion corpus export`
(`orchestrion.core.folder_export`) and the ABC encoder (`orchestrion.abc.text`) all cut files here, so a
tune is the same tune wherever it is read. Pure text: no abcmidi, no music.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

_FIELD_LINE = re.compile(r"^[A-Za-z]:")
_TITLE = re.compile(r"^T:\s*(.*)$", re.MULTILINE)
_KEY_LINE = re.compile(r"^K:", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n\s*\n")
_UNIT_LINE = re.compile(r"^L:", re.MULTILINE)
_METER_LINE = re.compile(r"^M:\s*(.*?)\s*(?:%.*)?$", re.MULTILINE)
_FRACTION = re.compile(r"\(?(\d+(?:\+\d+)*)\)?\s*/\s*(\d+)")


@dataclass(frozen=True)
class AbcFile:
    """An ABC file cut into its file header and its tunes (see the module docstring)."""

    header: str  # the text before the first X: line ("" for a file without X: lines)
    tunes: list[str] = field(default_factory=list)

    @property
    def fields(self) -> list[str]:
        """The file header's field lines, which apply to every tune of the file."""
        return header_fields(self.header)


def split(text: str) -> AbcFile:
    """Cut an ABC file into its file header and its tunes, each starting at its `X:` line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith("X:")]
    if not starts:
        blocks = [b for b in _BLANK_LINES.split(text) if _KEY_LINE.search(b)]
        return AbcFile("", [b.strip() + "\n" for b in blocks if b.strip()])
    header = "".join(line + "\n" for line in lines[: starts[0]])
    bounds = [*starts, len(lines)]
    blocks = ["\n".join(lines[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    return AbcFile(header, [b.strip() + "\n" for b in blocks])


def header_fields(header: str) -> list[str]:
    """The field lines of a file header (they apply to every tune of the file)."""
    return [line for line in header.splitlines() if _FIELD_LINE.match(line)]


def with_fields(tune: str, fields: list[str]) -> str:
    """`tune` with `fields` (a file header's, say) as the lines right after its first line, its `X:` line."""
    if not fields:
        return tune
    first, _, rest = tune.partition("\n")
    return "\n".join([first, *fields, rest])


def title(tune: str) -> str:
    """The tune's first `T:` field, stripped ("" when it has none)."""
    match = _TITLE.search(tune)
    return match.group(1).strip() if match else ""


def default_unit(meter: str) -> str:
    """The unit note length of a tune without `L:` (ABC 2.1, 3.1.7): 1/16 when its meter, as a number, is
    under 0.75 (2/4, 3/8), else 1/8; 1/8 for `C`, `C|`, `none` and no meter at all."""
    meter = meter.strip()
    value = {"C": Fraction(1), "C|": Fraction(1)}.get(meter)
    match = _FRACTION.match(meter)
    if value is None and match and int(match.group(2)) > 0:
        value = Fraction(sum(int(n) for n in match.group(1).split("+")), int(match.group(2)))
    return "1/16" if value is not None and value < Fraction(3, 4) else "1/8"


def with_unit(tune: str) -> str:
    """`tune` with its unit note length made explicit: an `L:` line before its `K:` line when its header has
    none, as the standard resolves it (`default_unit` of its first `M:`). Readers that assume 1/8 then read
    a 2/4 tune right."""
    head, k, body = tune.partition("\nK:")
    if not k or _UNIT_LINE.search(head):
        return tune
    meter = _METER_LINE.search(head)
    return f"{head}\nL:{default_unit(meter.group(1) if meter else '')}{k}{body}"


@dataclass(frozen=True)
class Tune:
    """One tune of a file: its number there (from 1), its title and its text, ready to compile alone."""

    number: int
    title: str
    text: str

    @property
    def label(self) -> str:
        """How a message names the tune: `tune 2 ("The Kesh")`."""
        return f"tune {self.number}" + (f' ("{self.title}")' if self.title else "")


def tunes_of(text: str) -> list[Tune]:
    """The tunes of an ABC file as found (see the module docstring), each ready to compile on its own."""
    found = split(text)
    tunes = []
    for number, tune in enumerate(found.tunes, start=1):
        tune = with_unit(with_fields(re.sub(r"\AX:[ \t]*\n", f"X:{number}\n", tune), found.fields))
        tunes.append(Tune(number, title(tune), tune))
    return tunes


# What the bracket check skips: quoted text, decorations, comments, inline fields, `[|]` and `[|` bar lines, endings.
_SKIP = re.compile(r'"[^"\n]*"?|![^!\n]*!?|%[^\n]*|\[[A-Za-z]:[^\]\n]*\]?|\[\|\]?|\[[0-9]')
_ZERO_REST = re.compile(r"[zx]0+(?![0-9])")  # a rest of no length: z0, x00, z0/2 (z02 is a rest of 2)


def engraving_problem(tune: str) -> str | None:
    """Why verovio would crash on this tune, or None. verovio 6 dies by a segmentation fault on a tune with no
    K: line or an empty one (`K:` and nothing after it), on a tune that ends on its K: line, on a `]` that
    closes no chord (`C]`, `[C]]`, `|]]`), on an empty chord `[]`, a chord inside a chord (`[[B]]`) or one
    left open, a quote, decoration or inline field left open, a header line that is no field, a `Q:` with
    nothing after its `=`, an `X:` without a number and a rest of no length (`z0`), all of which fuzzing found; `orchestrion.core.render` refuses them before engraving (and engraves in a
    child process, for what this check does not know)."""
    head, k, body = tune.partition("\nK:")
    if re.match(r"X:[ \t]*(\n|$)", tune):
        return "an X: field without a number"
    if not k and not tune.startswith("K:"):
        return "no K: line (the key ends a tune's header; the score engraver cannot do without it)"
    key_line, newline, _ = (body if k else tune[2:]).partition("\n")
    if not key_line:
        return "an empty K: field (give the key, K:C say, or K:none)"
    if not newline:
        return "the tune ends on its K: line, with no line after it"
    for line in re.split(r"\r\n?|\n", head)[1:]:
        if line.strip() and not line.startswith("%") and not _FIELD_LINE.match(line):
            return f"a header line that is no field ({line[:20]!r})"
    for line in re.split(r"\r\n?|\n", tune):
        tempo = re.sub(r'"[^"]*"', "", line[2:]) if line.startswith("Q:") else ""
        if "=" in tempo and not re.search(r"=\s*\d", tempo):
            return f"a Q: field with no number after its '=' ({line[:20]!r})"
    for line in re.split(r"\r\n?|\n", body.partition("\n")[2] if k else body):
        problem = _line_problem(line)
        if problem:
            return problem
    return None


def _line_problem(line: str) -> str | None:
    """What in one line of music would crash verovio (see `engraving_problem`), or None."""
    if not _FIELD_LINE.match(line) and _ZERO_REST.search(_SKIP.sub(" ", line)):
        return "a rest of no length (z0), which the score engraver cannot draw"
    depth, empty, last, pos = 0, False, "", 0
    for match in [*_SKIP.finditer(line), None]:
        for char in line[pos : match.start() if match else len(line)]:
            if char == "[":
                if depth:
                    return "a chord inside a chord ([[B]]), which the score engraver cannot draw"
                depth, empty = 1, True
            elif char == "]":
                if depth:
                    if empty:
                        return "an empty chord ([]), which the score engraver cannot draw"
                    depth = 0
                elif last != "|":
                    return "a ']' that closes no chord, which the score engraver cannot draw"
            elif not char.isspace():
                empty = False
            if not char.isspace():
                last = char
        if match is None:
            break
        token, pos = match.group(), match.end()
        if token[0] in '"!' and (len(token) == 1 or token[-1] != token[0]):
            kind = "quote" if token[0] == '"' else "decoration"
            return f"a {kind} left open at the end of its line"
        if token[0] == "[" and token[1:2].isalpha() and not token.endswith("]"):
            return "an inline field ([M:...]) left open at the end of its line"
        last = token[-1]
    return "a chord left open at the end of its line" if depth else None


def is_binary(text: str) -> bool:
    """Text that is mostly not printable (a binary file read as text) is junk, not ABC."""
    if not text:
        return False
    sample = text[:4096]
    bad = sum(1 for c in sample if (ord(c) < 32 and c not in "\n\r\t") or c == "\ufffd")
    return "\x00" in sample or bad / len(sample) > 0.05


def decode(raw: bytes) -> str:
    """The text of an ABC file: UTF-8, or Latin-1 when it is not (older collections are)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
