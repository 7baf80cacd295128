"""Export a folder of the user's MIDI and ABC files as a clean corpus, with a report of the bad ones.

    orchestrion corpus export FOLDER --out DIR

The usable files are written in the built-in corpora's layout (flat, portable names; MIDI files as they
are, a damaged one as its readable tracks and events, listed under "repaired"; one `.abc` file per tune), so that the corpus then goes through `encode`, `train` and the rest like a
built-in one. Each bad file (empty, truncated, not MIDI, no notes, binary or cut-short ABC) is left out
and listed with its reason in `DIR/report.json` and on the console: a folder with broken files in it
exports to exactly what its good files alone export to.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchestrion.core import abcfile
from orchestrion.core.files import write_atomic, write_json
from orchestrion.core.music import MIDI_SUFFIXES, read_midi
from orchestrion.errors import BadInput


def _export_name(relative: Path, ending: str) -> str:
    """A flat, portable file name for a file found at `relative` in a folder: sub/My Song.MID -> sub_My_Song.mid."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", relative.with_suffix("").as_posix()).strip("._")
    return (stem or "piece") + ending


def _abc_tunes(path: Path) -> tuple[list[tuple[int, str]], list[tuple[int | None, str]]]:
    """The usable tunes of an ABC file as (number, text), and its problems as (tune number or None, reason).

    Files are split with `orchestrion.core.abcfile` and each tune gets its file header's fields, as the
    built-in folk corpus does. Tunes are checked as text only (no abc2midi): binary junk, no tune at all,
    a tune with no K: field (cut short before its music) or no note after it. A tune cut inside its music
    stays a shorter tune; `encode abc` compiles every tune and catches what is left.
    """
    text = abcfile.decode(path.read_bytes())
    if not text.strip():
        return [], [(None, "the file is empty")]
    if abcfile.is_binary(text):
        return [], [(None, "binary data, not ABC text")]
    found = abcfile.split(text)
    if not found.tunes:
        return [], [(None, "no tune (no X: line, and no block with a K: field)")]
    fields = found.fields
    good, bad = [], []
    for number, tune in enumerate(found.tunes, start=1):
        body = tune.split("\n")
        k_line = next((i for i, line in enumerate(body) if line.startswith("K:")), None)
        if abcfile.is_binary(tune):
            bad.append((number, "binary data inside the tune"))
        elif k_line is None:
            bad.append((number, "no K: field (the tune is cut short before its music)"))
        elif not any(
            re.search(r"[A-Ga-g]", re.sub(r'"[^"]*"|![^!]*!|%.*', "", line))
            for line in body[k_line + 1 :]
            if line and not re.match(r"^[A-Za-z]:", line)
        ):
            bad.append((number, "no note after the K: field"))
        else:
            good.append((number, abcfile.with_fields(tune, fields)))
    return good, bad


def export_folder(folder: Path, out: Path) -> dict:
    """Check a folder of the user's MIDI and ABC files and write the usable ones into `out`.

    The layout is the built-in corpora's: flat, portable names, MIDI files as they are (`.mid`), one
    `.abc` file per tune. Files that fail (empty, truncated, not MIDI, no notes, binary or cut-short
    ABC) are listed with the reason in `out/report.json` and on the console; files of other kinds are
    listed as ignored. Returns the report.
    """
    from rich.console import Console
    from rich.markup import escape

    folder, out = Path(folder), Path(out)
    if not folder.is_dir():
        raise BadInput("no such folder", folder)
    if out.resolve().is_relative_to(folder.resolve()):
        raise BadInput("the output folder must not be inside the folder it exports", out)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    out.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    bad: list[dict] = []
    repaired: list[dict] = []
    ignored: list[str] = []

    def write(name: str, data: bytes) -> None:
        unique, n = name, 1
        while unique in taken:  # sub/a.mid and sub_a.mid would otherwise meet; sorted order decides
            n += 1
            unique = f"{Path(name).stem}-{n}{Path(name).suffix}"
        taken.add(unique)
        dest = out / unique
        if not (dest.is_file() and dest.read_bytes() == data):
            write_atomic(dest, data)

    for path in files:
        relative = path.relative_to(folder)
        suffix = path.suffix.lower()
        if suffix in MIDI_SUFFIXES:
            try:
                _, dropped = read_midi(path)
            except BadInput as exc:
                bad.append({"path": relative.as_posix(), "reason": exc.reason})
                continue
            data = path.read_bytes()
            if dropped:  # a damaged file: its readable tracks and events, and what was dropped in the report
                from orchestrion.core.midifile import repair

                data = repair(data[data.find(b"MThd") :])[0]
                repaired.append({"path": relative.as_posix(), "dropped": dropped})
            write(_export_name(relative, ".mid"), data)
        elif suffix == ".abc":
            tunes, problems = _abc_tunes(path)
            for number, reason in problems:
                bad.append({"path": relative.as_posix() + (f"#{number}" if number else ""), "reason": reason})
            for number, tune in tunes:
                write(_export_name(relative, f"-{number:04d}.abc"), tune.encode("utf-8"))
        else:
            ignored.append(relative.as_posix())
    report = {"source": str(folder), "files": len(files), "written": len(taken), "bad": bad, "ignored": ignored}
    if repaired:
        report["repaired"] = repaired
    write_json(out / "report.json", report)
    console = Console(stderr=True)
    console.print(f"{folder}: {len(taken)} files written to {out}", markup=False, highlight=False, soft_wrap=True)
    if bad:
        where = escape(str(out / "report.json"))
        console.print(
            f"[yellow]{len(bad)} bad file(s) or tune(s) left out[/yellow] (the list is in {where}):", soft_wrap=True
        )
        for item in bad[:20]:
            console.print(f"  {item['path']}: {item['reason']}", markup=False, highlight=False, soft_wrap=True)
        if len(bad) > 20:
            console.print(f"  ... and {len(bad) - 20} more")
    for item in repaired[:20]:
        console.print(f"  repaired {item['path']}: dropped {'; '.join(item['dropped'])}", markup=False, soft_wrap=True)
    if ignored:
        console.print(f"{len(ignored)} file(s) neither MIDI nor ABC were ignored", highlight=False)
    return report
