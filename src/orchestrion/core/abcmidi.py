"""The bridge to abcmidi (Debian package `abcmidi`): abc2midi, midi2abc and abc2abc.

abc2midi exits 0 even when it cannot compile a tune; what it found is only in the lines it prints
("Error in line-char ...", "Warning in line-char ..."). So validity is read from those lines, and a tune is
an error when abc2midi says so or writes no MIDI file. Every call runs with an argument list and a time
limit, because some malformed tunes send abc2midi into a loop.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from orchestrion.core import abcfile
from orchestrion.core.music import load_midi
from orchestrion.core.tools import run_tool
from orchestrion.errors import BadInput, ToolFailed

if TYPE_CHECKING:
    import symusic

PACKAGE = "abcmidi"
Status = Literal["clean", "warnings", "errors"]
# The header line every abc2midi run prints, and its progress chatter: neither says anything about the tune.
_CHATTER = re.compile(r"^(\d+\.\d+ .*abc2midi|writing MIDI file|voice mapping:|\s+\d+(\s+\d+)*\s*$)")


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Run one abcmidi program (no shell, time limit); ToolMissing / ToolFailed(timeout) from the shared runner."""
    # check=False: abc2midi's exit status says nothing useful; its printed messages do.
    return run_tool(args, timeout=timeout, check=False)


def _text(out: bytes | str | None) -> str:
    if out is None:
        return ""
    return out.decode("utf-8", "replace") if isinstance(out, bytes) else out


@dataclass
class Validity:
    """How abc2midi sees one tune: `clean`, `warnings` or `errors`, with its messages."""

    status: Status
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "errors"

    def to_json(self) -> dict:
        return {"status": self.status, "messages": self.messages}


def _messages(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip() and not _CHATTER.match(line)]


def _classify(messages: list[str], wrote_midi: bool) -> Status:
    if not wrote_midi or any(m.startswith("Error") for m in messages):
        return "errors"
    if messages:
        return "warnings"
    return "clean"


def _compile(abc_text: str, out_path: Path, timeout: float) -> tuple[Validity, Path]:
    """Compile the first tune of `abc_text` into `out_path`; the Validity says how it went."""
    if "\x00" in abc_text:
        return Validity("errors", ["Error: the text holds NUL bytes (binary data, not ABC)"]), out_path
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="orchestrion-abc-") as tmp:
        src = Path(tmp) / "tune.abc"
        # errors="replace": a lone surrogate (valid in a str, e.g. from the JSON "\ud800") cannot be encoded
        src.write_text(abc_text if abc_text.endswith("\n") else abc_text + "\n", encoding="utf-8", errors="replace")
        try:
            proc = _run(["abc2midi", str(src), "-o", str(out_path)], timeout=timeout)
        except ToolFailed as e:
            out_path.unlink(missing_ok=True)
            return Validity("errors", [f"Error: {e} (abc2midi looped or the tune is too large)"]), out_path
    messages = _messages(_text(proc.stdout) + "\n" + _text(proc.stderr))
    wrote = out_path.is_file() and out_path.stat().st_size > 0
    if not wrote and not any(m.startswith("Error") for m in messages):
        messages.append("Error: abc2midi wrote no MIDI file")
    return Validity(_classify(messages, wrote), messages), out_path


def abc_to_midi(abc_text: str, out_path: Path, *, timeout: float = 10) -> Path:
    """Compile one ABC tune into a MIDI file with abc2midi; BadInput with abc2midi's message when it fails."""
    validity, out = _compile(abc_text, Path(out_path), timeout)
    if validity.status == "errors":
        Path(out_path).unlink(missing_ok=True)
        errors = [m for m in validity.messages if m.startswith("Error")] or validity.messages
        raise BadInput("abc2midi could not compile the tune: " + "; ".join(errors[:5]), out_path)
    return out


def compile_tunes(
    tunes: list[abcfile.Tune], out: Path
) -> tuple[list[tuple[abcfile.Tune, Path, Validity]], list[tuple[abcfile.Tune, str]]]:
    """Compile each tune of a file on its own: to `out`, or `out-1.mid`, `out-2.mid`, ... when there are several.

    Returns (tune, MIDI file, validity) for those that compiled and (tune, reason) for those that did not.
    """
    out = Path(out)
    written, failed = [], []
    for tune in tunes:
        target = out if len(tunes) == 1 else out.with_name(f"{out.stem}-{tune.number}{out.suffix}")
        validity, _ = _compile(tune.text, target, timeout=10)
        if validity.status == "errors":
            target.unlink(missing_ok=True)
            errors = [m for m in validity.messages if m.startswith("Error")] or validity.messages
            failed.append((tune, "abc2midi could not compile the tune: " + "; ".join(errors[:3])))
        else:
            written.append((tune, target, validity))
    return written, failed


def abc_to_score(abc_text: str, *, timeout: float = 10) -> symusic.Score:
    """The score abc2midi makes of one tune (BadInput with abc2midi's message when it fails)."""
    with tempfile.TemporaryDirectory(prefix="orchestrion-abcs-") as tmp:
        return load_midi(abc_to_midi(abc_text, Path(tmp) / "tune.mid", timeout=timeout))


def validate(abc_text: str, *, timeout: float = 10) -> Validity:
    """Compile a tune with abc2midi into a scratch file and classify it (clean / warnings / errors)."""
    with tempfile.TemporaryDirectory(prefix="orchestrion-abcv-") as tmp:
        validity, _ = _compile(abc_text, Path(tmp) / "tune.mid", timeout)
    return validity


def compile_notes(abc_text: str, *, timeout: float = 10) -> tuple[Validity, list[tuple[int, int, int, int]] | None]:
    """Compile a tune and read back its notes as sorted (track, time, pitch, duration) tuples, 480 ticks per
    quarter (None on errors)."""
    import symusic

    with tempfile.TemporaryDirectory(prefix="orchestrion-abcn-") as tmp:
        validity, path = _compile(abc_text, Path(tmp) / "tune.mid", timeout)
        if validity.status == "errors":
            return validity, None
        try:
            score = symusic.Score(str(path))
        except Exception as exc:  # noqa: BLE001 - symusic raises plain RuntimeError ("Get velocity=128")
            # abc2midi overflows on absurd note lengths (`A3333333`) and writes a MIDI file symusic refuses.
            return Validity(
                "errors", [*validity.messages, f"Error: abc2midi wrote an unreadable MIDI file ({exc})"]
            ), None
    # abc2midi writes 480 ticks per quarter; rescale anyway so callers can rely on that unit.
    scale = 480 / score.ticks_per_quarter
    notes = sorted(
        (t, round(n.time * scale), n.pitch, round(n.duration * scale))
        for t, track in enumerate(score.tracks)
        for n in track.notes
    )
    return validity, notes


def midi_to_abc(midi_path: Path, *, timeout: float = 30, max_chars: int = 300_000) -> str:
    """Decompile a MIDI file to ABC with midi2abc, one line per voice (the reference pipeline's settings).

    Output above `max_chars` is truncated (midi2abc can produce megabytes on pathological files).
    """
    midi_path = Path(midi_path)
    if not midi_path.is_file():
        raise BadInput("no such MIDI file", midi_path)
    try:
        proc = _run(["midi2abc", str(midi_path), "-bpl", "999999", "-nogr"], timeout=timeout)
    except ToolFailed as e:
        raise BadInput(f"midi2abc failed: {e}", midi_path) from e
    text = _text(proc.stdout)
    if proc.returncode != 0 or "K:" not in text:
        raise BadInput(f"midi2abc could not read the file: {_text(proc.stderr).strip()[:300]}", midi_path)
    return text[:max_chars]


def abc2abc(abc_text: str, *, transpose: int = 0, timeout: float = 10) -> str:
    """Normalise a tune's layout with abc2abc (the reference pipeline's homogenising step), optionally
    transposing it by `transpose` semitones."""
    with tempfile.TemporaryDirectory(prefix="orchestrion-abc2abc-") as tmp:
        src = Path(tmp) / "tune.abc"
        src.write_text(abc_text, encoding="utf-8", errors="replace")
        args = ["abc2abc", str(src)] + (["-t", str(int(transpose))] if transpose else [])
        proc = _run(args, timeout=timeout)
    out = _text(proc.stdout)
    if proc.returncode != 0 or not out.strip():
        raise BadInput(f"abc2abc failed: {_text(proc.stderr).strip()[:300]}")
    return out
