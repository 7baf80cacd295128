"""ABC text for the ABC encoder: tunes and their header fields, named switchable cleaning steps, spaceless form.

Files are cut into tunes by `orchestrion.core.abcfile` (the one splitter, shared with the built-in folk corpus
and `corpus export`); `split_tunes` adds each tune's title, meter, unit, key and rhythm.

The reference system (GPT-2 folk) found that most quality problems came from the data: stray HTML,
missing `X:` fields, mode-only keys like `K:maj` that break abc2midi, commentary metadata, and spaces
that a BPE could not learn. Each fix is one named step here, counted when it changes a tune.

Spaceless ABC removes spaces and tabs from the music body only: header fields (`T: The Kesh`), `%%`
directives, inline fields (`[K: G major]`), quoted chord symbols and annotations (`"Am 7"`) and
`!...!` decorations keep theirs, because there a space is part of the value. One space in the body is
kept: between two bar lines (`| |]`, `| |1`), which would otherwise merge into a different symbol.

A dataset stores one tune per line: the newlines inside a tune are written as NEWLINE_MARK ("¶",
U+00B6, which no cleaned tune contains: the `normalize_text` step replaces it), so
`unescape_newlines(escape_newlines(t)) == t` for every cleaned tune.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from orchestrion.core import abcfile
from orchestrion.core.abcfile import is_binary as is_binary  # ABC readers (abc.dataset, fuzzing) call it from here
from orchestrion.core.abcmidi import abc2abc

NEWLINE_MARK = "\u00b6"
MAX_TUNE_CHARS = 100_000  # longer than any real tune by two orders of magnitude; beyond it is junk

# A field line: one letter (or +) and a colon, except body lines such as `c:|` or `B::` that only look like one.
_FIELD = re.compile(r"^([A-Za-z+]):(?![|:\]])")
_MODES = "major|minor|mixolydian|dorian|phrygian|lydian|locrian|aeolian|ionian|maj|min|mix|dor|phr|lyd|loc|aeo|ion|m"
_MODE_ONLY_KEY = re.compile(rf"^K:\s*({_MODES})\s*$", re.IGNORECASE)
_HTML_TAGS = (
    "html|head|body|title|meta|link|script|style|div|span|pre|p|br|hr|a|b|i|u|em|strong|font|center|"
    "table|tr|td|th|tbody|thead|ul|ol|li|img|h[1-6]|tt|code|small|big|sup|sub|form|input|textarea"
)
# In music `<` and `>` are broken rhythms (`c<A)(A>B`), so a tag must be unmistakable there: a closing tag,
# a tag with attributes, or a multi-letter tag name. Single-letter tags (<b>, <i>) are stripped only in fields.
_TAG_STRICT = re.compile(
    rf"</(?:{_HTML_TAGS})\s*>|<(?:{_HTML_TAGS})\s+[a-z-]+\s*=[^<>]*>|<(?:(?!a>|b>|i>|p>|u>)(?:{_HTML_TAGS}))\s*/?>",
    re.IGNORECASE,
)
_TAG_ANY = re.compile(rf"</?(?:{_HTML_TAGS})(?:\s[^<>]*)?/?>", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:nbsp|amp|lt|gt|quot|apos|#\d{1,5});")
_ENTITIES = {"&nbsp;": " ", "&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'"}
_COMMENTARY_FIELDS = set("BDFNOSZw")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


# ------------------------------------------------------------------------------------------ splitting


@dataclass
class Tune:
    """One tune of a collection: its text and the header fields a user looks for."""

    abc: str
    title: str = ""
    meter: str = ""
    unit: str = ""
    key: str = ""
    rhythm: str = ""


def header(abc: str) -> dict[str, str]:
    """The first title, meter, unit length, key and rhythm of a tune ("" where missing)."""
    names = {"T": "title", "M": "meter", "L": "unit", "K": "key", "R": "rhythm"}
    found: dict[str, str] = {}
    for line in abc.splitlines():
        m = _FIELD.match(line)
        if m and m.group(1) in names and names[m.group(1)] not in found:
            found[names[m.group(1)]] = _strip_comment(line[2:]).strip()
        if m and m.group(1) == "K":
            break  # K: ends the header
    return {v: found.get(v, "") for v in names.values()}


def split_tunes(text: str) -> list[Tune]:
    """The tunes of a multi-tune ABC file, cut by `orchestrion.core.abcfile.split` (at each `X:` line, or at
    blank lines when there is none), each with its header fields read.

    The file header (text before the first `X:`: a `%abc-2.1` version line, `%%` directives, comments, fields
    for every tune) is not a tune; its fields (`M:6/8`) are given to every tune, as the standard says.
    """
    found = abcfile.split(text)
    tunes = []
    for tune in (abcfile.with_fields(t, found.fields) for t in found.tunes):
        fields = header(tune)
        fields["unit"] = fields["unit"] or abcfile.default_unit(fields["meter"])  # no L:: as the standard says
        tunes.append(Tune(abc=tune, **fields))
    return tunes


# ------------------------------------------------------------------------------------------ cleaning


def _strip_comment(line: str) -> str:
    """A line without its trailing `%` comment (an escaped `\\%` is text, not a comment)."""
    m = re.search(r"(?<!\\)%", line)
    return line if m is None else line[: m.start()].rstrip()


def normalize_text(abc: str) -> str:
    """Unix newlines, tabs as spaces, no control characters, no trailing spaces, no blank lines inside.

    A blank line ends a tune in ABC, so one inside a tune would silently cut it short.
    """
    abc = abc.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ").replace(NEWLINE_MARK, " ")
    abc = _CONTROL.sub("", abc)
    lines = [line.rstrip() for line in abc.split("\n")]
    return "\n".join(line for line in lines if line.strip()) + "\n"


def strip_markup(abc: str) -> str:
    """Remove stray HTML tags and entities (left by web scrapes)."""
    out = []
    for line in abc.split("\n"):
        if _FIELD.match(line) or line.startswith("%"):
            line = _TAG_ANY.sub("", line)
        else:
            line = _TAG_STRICT.sub("", line)
        line = _ENTITY.sub(lambda m: _ENTITIES.get(m.group(0), " "), line)
        out.append(line)
    return "\n".join(out)


def add_x(abc: str) -> str:
    """Give the tune an integer `X:` reference number as its first line (abc2midi needs one)."""
    lines = abc.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), 0)
    if lines and lines[first].startswith("X:"):
        if re.match(r"X:\s*\d+\s*$", lines[first]):
            return abc
        lines[first] = "X:1"
        return "\n".join(lines)
    return "X:1\n" + abc


def tidy_fields(abc: str) -> str:
    """`X:1` for every tune and no space after a field's colon (`K: G` -> `K:G`).

    The reference numbers are arbitrary and the spacing differs between collections; a model should not
    spend capacity learning either.
    """
    out = []
    for line in abc.split("\n"):
        if _FIELD.match(line):
            line = "X:1" if line.startswith("X:") else line[:2] + line[2:].lstrip(" ")
        out.append(line)
    return "\n".join(out)


def fix_mode_keys(abc: str) -> str:
    """Rewrite mode-only keys (`K:maj`, `K:min`, `K:dor`, `K:mix`, ...) as keys on C, which abc2midi accepts."""
    out = []
    for line in abc.split("\n"):
        m = _MODE_ONLY_KEY.match(_strip_comment(line))
        if m:
            mode = m.group(1).lower()
            line = "K:C" + ("min" if mode == "m" else mode[:3])
        out.append(line)
    return "\n".join(out)


def drop_commentary(abc: str) -> str:
    """Drop commentary fields (B: D: F: N: O: S: Z: w:) and `%` comments, keeping `%%` directives."""
    out = []
    for line in abc.split("\n"):
        m = _FIELD.match(line)
        if m and m.group(1) in _COMMENTARY_FIELDS:
            continue
        if line.startswith("%%"):
            out.append(line)
            continue
        if line.startswith("%"):
            continue
        stripped = _strip_comment(line)
        if stripped.strip() or not line.strip():
            out.append(stripped)
    return "\n".join(out)


def fix_empty_meter(abc: str) -> str:
    """Rewrite an empty `M:` field as `M:none` (free meter, as the Essen collection spells it).

    abc2midi stops on an empty meter with "Expecting fraction in form A/B"; `none` compiles cleanly.
    """
    return re.sub(r"^M:\s*$", "M:none", abc, flags=re.MULTILINE)


# An inline field's value stops at the next `[`: a line of unclosed `[K:` would otherwise be rescanned to its
# end from each one (quadratic; 16,000 characters took 0.4 s per step).
_PROTECTED = re.compile(r'("[^"\n]*"|![^!\n]*!|\[[A-Za-z]:[^\]\n\[]*\]|(?<!\\)%.*$)')
_CHORD = re.compile(r"[A-G][#b]?(?:m|min|maj|dim|aug|sus|add|M|\+|o|[0-9]|#|b|-|\(|\))*(?:/[A-Ga-g][#b]?)?")


def _map_body(abc: str, music: Callable[[str], str] | None = None, quoted: Callable[[str], str] | None = None) -> str:
    """Apply `music` to the music text of body lines and `quoted` to their "..." strings.

    Header and field lines, `%` comments, `!...!` decorations and inline fields are left as they are.
    """
    out, in_body = [], False
    for line in abc.split("\n"):
        if _FIELD.match(line) or line.startswith("%") or not in_body:
            in_body = in_body or line.startswith("K:")
            out.append(line)
            continue
        parts = _PROTECTED.split(line)
        for k, part in enumerate(parts):
            if k % 2 == 0 and music is not None:
                parts[k] = music(part)
            elif k % 2 == 1 and quoted is not None and part.startswith('"'):
                parts[k] = quoted(part)
        out.append("".join(parts))
    return "\n".join(out)


def fix_annotations(abc: str) -> str:
    """Quoted text that is no chord name ("4", "D.C.", "Fine", "f") becomes an annotation ("^4").

    abc2midi reads any plain quoted string as a guitar chord and stops with an error on text; the `^`
    prefix is ABC's way to say "text above the staff", so the notes are unchanged.
    """

    def fix(q: str) -> str:
        body = q[1:-1]
        if not body or body[0] in "^_<>@" or _CHORD.fullmatch(body):
            return q
        return '"^' + body + '"'

    return _map_body(abc, quoted=fix)


def drop_bowing(abc: str) -> str:
    """Drop the bowing marks `u` and `v` (up-bow, down-bow), which abc2midi reads as malformed notes."""
    return _map_body(abc, music=lambda text: re.sub(r"[uv]", "", text))


def fix_stray_fermata(abc: str) -> str:
    """Drop a fermata `H` written on a bar line (`H:|`, `H|]`), where abc2midi expects a note after it."""
    return _map_body(abc, music=lambda text: re.sub(r"H(?=\s*[|:\]\[])", "", text))


def fix_decorated_slurs(abc: str) -> str:
    """Move a decoration written before a slur into it (`~(dcd)` -> `(~dcd)`), where abc2midi can read it.

    Staccato dots stay where they are: abc2midi accepts `.(` and ignores it, while `(.E` would shorten the
    note (measured on O'Neill's: moving them changed the notes of a cleanly compiling tune).
    """
    return _map_body(abc, music=lambda text: re.sub(r"(?<![~HLMOPST])([~HLMOPST]+)\((?![0-9])", r"(\1", text))


# Each run of repeatable characters may only be entered at its start (the lookbehinds) and the spaces around a
# bar line are one choice, not two adjacent `\s*`: otherwise a long run of `_`, `-` or spaces makes the regex
# retry the whole run from every position in it, quadratic time (a 13,000-character tune took seconds).
_TIE = re.compile(
    r"(?<![_=^])([_=^]*)([A-Ga-g][,']*)([0-9/]*)([)]*)-(\s*(?:[|:]+\s*)?[({]*[.~HLMOPST]*)([_=^]*)([A-Ga-g][,']*)"
)


def fix_slur_ties(abc: str) -> str:
    """Drop a tie `-` between notes of different pitch (`G3-A`, `G>-A`): some transcribers write slurs that way.

    abc2midi cannot tie different pitches ("Could not find note to be tied") and plays them untied anyway.
    """

    def fix(m: re.Match) -> str:
        if m.group(2) == m.group(7):
            return m.group(0)
        return m.group(1) + m.group(2) + m.group(3) + m.group(4) + m.group(5) + m.group(6) + m.group(7)

    def music(text: str) -> str:
        text = re.sub(r"(?<=[<>])-+|(?<!-)-+(?=[<>])", "", text)  # `G>-A`, `G-<E`: a legato mark beside a broken rhythm
        previous = None
        while previous != text:  # overlapping chains (A-B-c) need a second pass
            previous, text = text, _TIE.sub(fix, text)
        return text

    return _map_body(abc, music=music)


def fix_hornpipe_meter(abc: str) -> str:
    """Drop `R: hornpipe` from tunes not in 2/4 or 4/4 (even C|): abc2midi swings hornpipes, refuses other meters."""
    head = header(abc)
    if "hornpipe" not in head["rhythm"].lower() or head["meter"].replace(" ", "") in ("2/4", "4/4", "C"):
        return abc
    return "\n".join(line for line in abc.split("\n") if not (line.startswith("R:") and "hornpipe" in line.lower()))


def normalize_abc2abc(abc: str) -> str:
    """Re-layout the tune with abc2abc (off by default: it rewrites bar layout, slow on 11,000 tunes)."""
    # abc2abc reports problems as `%Warning` / `%Error` comment lines in its output: not part of the tune.
    out = "\n".join(line for line in abc2abc(abc).split("\n") if not re.match(r"%\s*(Warning|Error)", line))
    return normalize_text(out)


@dataclass(frozen=True)
class Step:
    name: str
    fn: Callable[[str], str]
    default: bool
    help: str


STEPS: tuple[Step, ...] = (
    Step("normalize_text", normalize_text, True, "unix newlines, no tabs/control chars/blank lines inside"),
    Step("strip_markup", strip_markup, True, "remove stray HTML tags and entities"),
    Step("add_x", add_x, True, "give every tune an integer X: field"),
    Step("tidy_fields", tidy_fields, True, "X:1 everywhere, no space after a field's colon (K: G -> K:G)"),
    Step("fix_mode_keys", fix_mode_keys, True, "K:maj/min/dor/mix... -> K:Cmaj/Cmin/Cdor/Cmix"),
    Step("drop_commentary", drop_commentary, True, "drop B: D: F: N: O: S: Z: w: and % comments (keep %%)"),
    Step("fix_empty_meter", fix_empty_meter, True, "an empty M: field becomes M:none"),
    Step("fix_annotations", fix_annotations, True, 'quoted text that is no chord ("4", "D.C.") -> annotation "^4"'),
    Step("drop_bowing", drop_bowing, True, "drop u/v bowing marks (abc2midi: malformed note)"),
    Step("fix_stray_fermata", fix_stray_fermata, True, "drop a fermata H written on a bar line"),
    Step("fix_decorated_slurs", fix_decorated_slurs, True, "~(dcd) -> (~dcd): a decoration before a slur"),
    Step("fix_slur_ties", fix_slur_ties, True, "G3-A, G>-A -> G3A, G>A: a tie between different pitches"),
    Step("fix_hornpipe_meter", fix_hornpipe_meter, True, "drop R:hornpipe outside 2/4, 4/4 (abc2midi error)"),
    Step("abc2abc", normalize_abc2abc, False, "re-layout through abc2abc (optional)"),
)
STEP_NAMES = tuple(s.name for s in STEPS)


@dataclass
class CleanResult:
    abc: str
    changed: list[str] = field(default_factory=list)


def clean(abc: str, steps: Iterable[str] | None = None) -> CleanResult:
    """Run the named cleaning steps in order (default: every step on by default) and say which changed the tune."""
    wanted = set(s.name for s in STEPS if s.default) if steps is None else set(steps)
    unknown = wanted - set(STEP_NAMES)
    if unknown:
        raise ValueError(f"unknown cleaning steps {sorted(unknown)}; known: {', '.join(STEP_NAMES)}")
    result = CleanResult(abc)
    for step in STEPS:
        if step.name in wanted:
            new = step.fn(result.abc)
            if new != result.abc:
                result.changed.append(step.name)
                result.abc = new
    result.abc = result.abc.strip("\n") + "\n"
    return result


# ------------------------------------------------------------------------------------------ spaceless


def _spaceless_line(line: str) -> str:
    out = []
    quote = bang = False
    bracket = 0  # inside an inline field [K: ...]
    i = 0
    while i < len(line):
        c = line[i]
        if c == "%" and not quote and (i == 0 or line[i - 1] != "\\"):
            out.append(line[i:])  # a comment keeps its text as written
            break
        if c == '"' and not bang and not bracket:
            quote = not quote
        elif c == "!" and not quote and not bracket:
            bang = not bang
        elif c == "[" and not quote and not bang and re.match(r"\[[A-Za-z]:", line[i : i + 3]):
            bracket = 1
        elif c == "]" and bracket:
            bracket = 0
        if c in " \t" and not (quote or bang or bracket):
            rest = line[i:].lstrip(" \t")
            # `| |]` and `| |1` are a bar line then an ending; `||]`, `||1` would not parse.
            if out and out[-1] == "|" and rest.startswith("|"):
                out.append(" ")
            i = len(line) - len(rest)
            continue
        out.append(c)
        i += 1
    return "".join(out)


def spaceless(abc: str) -> str:
    """Remove spaces from the music body (not from header or field lines, `%%` directives or quoted text)."""
    out = []
    in_body = False
    for line in abc.split("\n"):
        if _FIELD.match(line) or line.startswith("%"):
            out.append(line)
            if line.startswith("K:"):
                in_body = True
        elif in_body:
            out.append(_spaceless_line(line))
        else:
            out.append(line)
    return "\n".join(out)


def escape_newlines(abc: str) -> str:
    """One tune as one line: newlines become NEWLINE_MARK (the trailing newline is dropped)."""
    return abc.rstrip("\n").replace("\n", NEWLINE_MARK)


def unescape_newlines(line: str) -> str:
    return line.replace(NEWLINE_MARK, "\n").rstrip("\n") + "\n"


def to_readable(text: str, *, reference: int = 1) -> str:
    """Turn a spaceless (possibly one-line, possibly generated) tune into an .abc file abc2midi can compile.

    Undoes the newline escaping, drops the model's <s>/</s>/<pad> markers, puts each header field on its
    own line, and inserts `X:` when the model left it out.
    """
    for marker in ("<s>", "</s>", "<pad>"):
        text = text.replace(marker, "")
    text = unescape_newlines(text.strip())
    lines = [line.rstrip() for line in text.split("\n") if line.strip()]
    if not lines or not lines[0].startswith("X:"):
        lines.insert(0, f"X:{reference}")
    return "\n".join(lines) + "\n"


def with_header_lines(tune: str, lines: list[str]) -> str:
    """`tune` with header `lines` ("Q:1/4=200\\n") put just before its `K:` line (the header's last)."""
    if not lines:
        return tune
    rows = tune.split("\n")
    at = next((i for i, row in enumerate(rows) if row.startswith("K:")), len(rows))
    return "\n".join(rows[:at] + [line.rstrip("\n") for line in lines] + rows[at:])
