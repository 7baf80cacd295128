"""External programs: one runner for all of them, and the General MIDI soundfont.

Every external program runs from an argument list (never through a shell) and under a time limit, so a
hostile file name cannot inject commands and a stuck tool cannot hang a batch. A missing program becomes
`ToolMissing` naming the Debian package that provides it; a failure becomes `ToolFailed` carrying the
program's own error output, which is usually the only useful explanation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from orchestrion.errors import BadInput, ToolFailed, ToolMissing

# Which Debian package provides each program we call, for the install hint in ToolMissing.
DEBIAN_PACKAGES = {
    "fluidsynth": "fluidsynth",
    "abc2midi": "abcmidi",
    "midi2abc": "abcmidi",
    "abc2abc": "abcmidi",
    "abc2ps": "abcm2ps",
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
    "chromium": "chromium",
}

# Where Debian and friends put a General MIDI soundfont; fluid-soundfont-gm's first.
SOUNDFONT_CANDIDATES = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
)
STDERR_TAIL = 2000  # characters of a failing tool's output worth showing


def _tail(data: bytes | None) -> str:
    text = (data or b"").decode("utf-8", "replace").strip()
    return text[-STDERR_TAIL:]


def which(tool: str) -> str | None:
    """The full path of `tool`, or None when it is not installed."""
    return shutil.which(tool)


def require(tool: str) -> str:
    """The full path of `tool`; raises ToolMissing (with the Debian package to install) when absent."""
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(tool, DEBIAN_PACKAGES.get(tool, tool))
    return path


def run_tool(
    args: list[str],
    *,
    timeout: float,
    input: bytes | None = None,
    check: bool = True,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess:
    """Run `args` (no shell) with a time limit and return the completed process (stdout/stderr bytes).

    Raises ToolMissing when the program is not installed, and ToolFailed when it times out or, with
    `check` (the default), exits non-zero; the message carries the tail of its stderr/stdout.
    """
    if not args:
        raise ValueError("run_tool needs at least the program name")
    args = [str(a) for a in args]
    tool = args[0]
    if os.sep not in tool and shutil.which(tool) is None:
        raise ToolMissing(tool, DEBIAN_PACKAGES.get(tool, tool))
    try:
        result = subprocess.run(
            args,
            input=input,
            capture_output=True,
            timeout=timeout,
            check=False,
            cwd=None if cwd is None else str(cwd),
            stdin=subprocess.DEVNULL if input is None else None,
        )
    except FileNotFoundError as exc:
        raise ToolMissing(tool, DEBIAN_PACKAGES.get(Path(tool).name, Path(tool).name)) from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"{tool} did not finish within {timeout:g} s: {_tail(exc.stderr) or '(no output)'}") from exc
    if check and result.returncode != 0:
        detail = _tail(result.stderr) or _tail(result.stdout) or "(no output)"
        raise ToolFailed(f"{tool} exited with status {result.returncode}: {detail}")
    return result


def find_soundfont() -> Path:
    """The General MIDI soundfont: $ORCHESTRION_SOUNDFONT, else the one from Debian's fluid-soundfont-gm."""
    override = os.environ.get("ORCHESTRION_SOUNDFONT")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise BadInput("ORCHESTRION_SOUNDFONT points to a file that does not exist", path)
        return path
    for candidate in SOUNDFONT_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise ToolMissing("a General MIDI soundfont (FluidR3_GM.sf2)", "fluid-soundfont-gm")
