"""core/isolate.py and the render dispatch: engraving and synthesis in a child process, crashes and hangs
contained, each tune of an ABC file rendered on its own, messages naming the user's file."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from orchestrion.core.abcfile import engraving_problem
from orchestrion.core.isolate import Crashed, Isolated, run_isolated
from orchestrion.core.render import render_file
from orchestrion.errors import BadInput
from orchestrion.testing import real_world


def test_a_crash_in_the_child_is_our_error_and_the_next_call_gets_a_fresh_child() -> None:
    with Isolated() as child:
        with pytest.raises(Crashed, match=r"crashed \(SIGSEGV\)") as info:
            child.call("crash", int(signal.SIGSEGV), name="song.abc")
        assert info.value.path == "song.abc"
        assert child.call("sleep", 0) is None and (child.started, child.crashes) == (2, 1)


def test_a_hang_in_the_child_is_stopped_at_its_time_limit() -> None:
    with pytest.raises(BadInput, match="did not finish within 0.5 s"):
        run_isolated("sleep", 30, timeout=0.5, name="song.abc")


def test_a_child_is_recycled_after_so_many_calls() -> None:
    with Isolated(recycle=2) as child:
        for _ in range(5):
            child.call("sleep", 0)
        assert child.started == 3


def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A parent killed by SIGKILL while its child is busy (a hang in verovio, say) leaves no child running."""
    import os
    import subprocess
    import sys
    import time

    parent = (
        "import os, signal, threading\n"
        "from orchestrion.core.isolate import Isolated\n"
        "child = Isolated()\n"
        "child.call('sleep', 0)\n"
        "print(child.proc.pid, flush=True)\n"
        "threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGKILL)).start()\n"
        "child.call('sleep', 600)\n"
    )
    run = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == -signal.SIGKILL, run.stderr
    pid = int(run.stdout.split()[0])
    for _ in range(100):  # the kernel sends SIGKILL at once; the wait only gives the child time to be reaped
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{pid}/stat").is_file() and Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            break  # dead, waiting for init to reap it
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        pytest.fail("the child outlived its parent")


def test_the_tune_that_crashed_verovio_is_engraved_in_a_child(tmp_path: Path) -> None:
    tune = tmp_path / "nested.abc"
    tune.write_text(f"X:1\nT:t\nM:4/4\nL:1/8\nK:G\n{real_world.NESTED_CHORDS}\n")
    with pytest.raises(Crashed, match="score engraver"):  # verovio alone dies on it: now the child does
        run_isolated("svg", tune, tmp_path / "x.svg", name=tune)
    with pytest.raises(BadInput, match="chord inside a chord") as info:  # the render path refuses it first
        render_file(tune, svg=tmp_path / "x.svg")
    assert info.value.path == str(tune)


def test_each_tune_of_a_file_is_rendered_on_its_own(tmp_path: Path) -> None:
    source = tmp_path / "collection.abc"
    source.write_text(real_world.abc_collection())
    problems: list[str] = []
    written = render_file(source, svg=tmp_path / "out.svg", png=tmp_path / "out.png", problems=problems)
    assert [p.name for p in written] == ["out-1.png", "out-1.svg", "out-2.png", "out-2.svg"]
    assert 'class="note"' in (tmp_path / "out-2.svg").read_text()
    (problem,) = problems
    assert problem.startswith(f'{source}: tune 3 ("Nested Chords"): ') and "orchestrion-" not in problem
    with pytest.raises(BadInput, match="tune 3") as info:  # without a list for the problems, they are raised
        render_file(source, svg=tmp_path / "again.svg")
    assert info.value.path == str(source) and (tmp_path / "again-2.svg").is_file()


def test_a_render_error_names_the_users_file_not_a_temporary_one(tmp_path: Path) -> None:
    source = tmp_path / "broken.abc"
    source.write_text("X:1\nT:b\nK:C\n[[[[ (((( ||||\n")
    with pytest.raises(BadInput) as info:
        render_file(source, wav=tmp_path / "x.wav")
    assert info.value.path == str(source) and "orchestrion-" not in str(info.value)


def test_a_damaged_midi_file_renders_and_strict_refuses_it(fixtures_dir: Path, tmp_path: Path) -> None:
    damaged = fixtures_dir / "pop_damaged_cc.mid"
    assert render_file(damaged, png=tmp_path / "x.png") == [tmp_path / "x.png"]
    with pytest.raises(BadInput, match="corrupt"):
        render_file(damaged, png=tmp_path / "x.png", strict=True)


@pytest.mark.parametrize(
    "tune",
    ["X:", "X:1\nT:a\nM:4/4\n", "X:1\nK:\n", "X:1\nK:C", "X:\nK:C\nC|\n", "X:1\nK:C\nC]|\n", "X:1\nK:C\n[C]]|\n",
     "X:1\nK:C\n|]]\n", "X:1\nK:C\nC[]\n", "X:1\nK:G\n[ [ B, B, ] ]\n", "X:1\nK:G\n[ :\n", 'X:1\nK:D\n"\n',
     "X:1\nK:D\n!\n", "X:1\nK:e\n[M:\n", "X:1\nQ4=\nK:D\nD|\n", "X:1\nQ:1/4=\nK:D\nD|\n", "X:1\nK:G\n%\rL]\n",
     "X:6\nK:1\nz0!!", "X:1\nK:C\nC>x0/2|\n", "X:1\nK:C\n[z00]|\n"],
)  # fmt: skip
def test_each_kind_of_tune_that_crashed_verovio_is_refused_before_engraving(tune: str) -> None:
    assert engraving_problem(tune) is not None


@pytest.mark.parametrize(
    "tune",
    ["X:1\nK:C\n[K:D] [CEG] |] [1 A :| [2 B |]\n", 'X:1\nK:C\n"[x]" !trill]! C % ]]\n|:A|]\n', "X:1\nK:C\n[|]C|\n",
     "X:1\nT:a\n%%MIDI program 1\n% c\nQ:1/4=120\nK:C\nC|\n", "X:1\nK: \nC|\n", 'X:1\nK:C\nC2 z02 z10 "z0" !z0!|\n'],
)  # fmt: skip
def test_tunes_verovio_engraves_are_not_refused(tune: str) -> None:
    assert engraving_problem(tune) is None
