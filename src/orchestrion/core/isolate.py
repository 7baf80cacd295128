"""Engraving and synthesis of untrusted input in a child process, under a time limit.

verovio is C++ loaded into our process, and some input crashes it: an ABC tune with an unmatched `]`
(`[[B]]`, `B]]`) ends the process with a segmentation fault, no message, no cleanup. So `orchestrion render`
runs engraving (verovio, and music21 before it) and synthesis (FluidSynth and the reading of its WAV) in a
child Python process: a crash or a hang there becomes our own `BadInput`, naming the user's file, and the
parent goes on (to the next tune of the file, the next output, the next input of a fuzzing run).

    run_isolated(task, *args, timeout=..., name=...)   one call in a fresh child
    with Isolated() as child: child.call(task, ...)      one child for many calls (the fuzzer), started again
                                                          after a crash

A task is a name in `TASKS` (never a function sent over the pipe); arguments and results are JSON. The
child speaks on a duplicate of its stdout and sends its stdout to stderr, so that nothing a library prints
can break the protocol; its stderr goes to a scratch file, whose tail explains a crash. The child dies with
its parent (Linux: PR_SET_PDEATHSIG), so a parent killed mid-task leaves no engraver running on.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from orchestrion.errors import BadInput, OrchestrionError

# The tasks a child runs: engraving, synthesis, and two for tests (a crash by the signal given, a hang).
TASKS = ("svg", "wav", "crash", "sleep")
WHAT = {"svg": "the score engraver (verovio)", "wav": "the synthesiser (FluidSynth)"}
DEFAULT_TIMEOUT = 120.0
STARTUP_S = 60.0  # a cold child imports numpy, symusic and verovio before it says it is ready


class Crashed(BadInput):
    """The child died (by a signal, or exited) while it worked on an input."""


def _crash(signum: int = int(signal.SIGSEGV)) -> None:
    os.kill(os.getpid(), signum)


def _task(name: str) -> Callable[..., object]:
    """The function a task name stands for (imported in the child only)."""
    if name == "svg":
        from orchestrion.core.render import render_svg

        return render_svg
    if name == "wav":
        from orchestrion.core.render import render_wav

        return render_wav
    return {"crash": _crash, "sleep": time.sleep}[name]


def _signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


class Isolated:
    """A child process that runs tasks one at a time; started on first use and again after it dies."""

    def __init__(self, *, quiet: bool = False, recycle: int | None = None) -> None:
        self.quiet = quiet  # the child's stderr is dropped (the fuzzer), not kept for messages
        self.recycle = recycle  # start a fresh child after this many calls (bounds what a library leaks)
        self.proc: subprocess.Popen | None = None
        self.stderr: IO[bytes] | None = None
        self.crashes = 0  # children that died, over this object's life
        self.started = 0
        self.calls = 0  # calls answered by the child now running

    def __enter__(self) -> Isolated:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> subprocess.Popen:
        self.stderr = None if self.quiet else tempfile.TemporaryFile(prefix="orchestrion-isolate-")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrion.core.isolate", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if self.quiet else self.stderr,
            start_new_session=True,  # a Ctrl+C reaches the parent, which ends the child itself
        )
        self.started += 1
        self.calls = 0
        if self._read_line(self.proc, time.monotonic() + STARTUP_S) != b'{"ready": true}\n':
            tail = self._stderr_tail()
            self._kill()
            raise BadInput(f"the child process for rendering did not start{': ' + tail if tail else ''}")
        return self.proc

    def _stderr_tail(self) -> str:
        if self.stderr is None:
            return ""
        self.stderr.seek(0)
        text = self.stderr.read().decode("utf-8", "replace").strip()
        return text[-600:]

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if self.stderr is not None:
            self.stderr.close()
            self.stderr = None

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        self.close()

    def _read_line(self, proc: subprocess.Popen, deadline: float) -> bytes | None:
        """The child's next line, or None when it died or the deadline passed."""
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            chunks = []
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(left):
                    return None
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    return b"".join(chunks) or None
                chunks.append(chunk)
                if chunk.endswith(b"\n"):
                    return b"".join(chunks)

    def call(
        self,
        task: str,
        *args: object,
        timeout: float = DEFAULT_TIMEOUT,
        name: str | Path | None = None,
        **kwargs: object,
    ) -> object:
        """Run `task(*args, **kwargs)` in the child; its result, or our error (BadInput naming `name`) for
        anything that went wrong, a crash or a hang of the child included."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
        what = WHAT.get(task, task)
        if self.proc is not None and self.recycle is not None and self.calls >= self.recycle:
            self.close()
        proc = self._start() if self.proc is None or self.proc.poll() is not None else self.proc
        self.calls += 1
        assert proc is not None and proc.stdin is not None
        request = json.dumps(
            {"task": task, "args": _jsonable(args), "kwargs": {k: _jsonable(v) for k, v in kwargs.items()}}
        )
        request += "\n"
        try:
            proc.stdin.write(request.encode())
            proc.stdin.flush()
        except OSError:
            pass  # the child is gone: reading its answer says so
        try:
            line = self._read_line(proc, time.monotonic() + timeout)
        except BaseException:  # interrupted (Ctrl+C, a caller's own timer): the answer would come out of turn
            self._kill()
            raise
        if line is None:
            try:
                proc.wait(timeout=1.0)  # a child that closed its end has died: let it be reaped
            except subprocess.TimeoutExpired:
                pass
            alive = proc.poll() is None
            tail = self._stderr_tail()
            self._kill()
            if alive:
                raise BadInput(f"{what} did not finish within {timeout:g} s", name)
            self.crashes += 1
            detail = f"; its last words: {tail}" if tail else ""
            raise Crashed(f"{what} crashed ({_signal_name(proc.returncode)}) on this input{detail}", name)
        answer = json.loads(line)
        if "error" in answer:
            raise BadInput(answer["error"], name)
        return answer["result"]


def run_isolated(
    task: str, *args: object, timeout: float = DEFAULT_TIMEOUT, name: str | Path | None = None, **kwargs: object
) -> object:
    """`task(*args, **kwargs)` in a fresh child process (see the module docstring): its result, or BadInput."""
    with Isolated() as child:
        return child.call(task, *args, timeout=timeout, name=name, **kwargs)


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _die_with_parent(parent: int) -> None:
    """Have Linux end this child when its parent dies, even by SIGKILL: a child stuck in verovio would
    otherwise run on with nobody to read its answer (its stdin closing is only seen between tasks)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if parent and os.getppid() != parent:  # the parent died before the request above took effect
        os._exit(1)


def _serve(parent: int = 0) -> None:
    """The child: one JSON request a line on stdin, one JSON answer a line on the original stdout."""
    _die_with_parent(parent)
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a library prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    import orchestrion.core.render  # noqa: F401 - the slow imports (numpy, symusic, verovio) before "ready"

    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = {"result": _jsonable(_task(request["task"])(*request["args"], **request["kwargs"]))}
        except OrchestrionError as exc:
            result = {"error": getattr(exc, "reason", None) or str(exc)}
        except Exception as exc:  # noqa: BLE001 - any failure of the task is reported to the parent as ours
            result = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(result) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
