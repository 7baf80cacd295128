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
    is_binary(text)                          mostly unprintable: a binary file read as text, not ABC
    decode(raw)                              UTF-8, or Latin-1 (older collections) when it is not UTF-8

This is the one splitter: the built-in folk corpus (`orchestrion.core.corpora`), `orchestrion corpus export`
(`orchestrion.core.folder_export`) and the ABC encoder (`orchestrion.abc.text`) all cut files here, so a
tune is the same tune wherever it is read. Pure text: no abcmidi, no music.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_FIELD_LINE = re.compile(r"^[A-Za-z]:")
_TITLE = re.compile(r"^T:\s*(.*)$", re.MULTILINE)
_KEY_LINE = re.compile(r"^K:", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n\s*\n")


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
