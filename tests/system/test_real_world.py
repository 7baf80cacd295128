"""Real-world input through the commands (issue 22): pop, piano and ABC files as users bring them go through
`render`, `decode`, `encode` and `eval` without a crash or a silent loss, and every message names the user's
file. The files are made by `orchestrion.testing.real_world` (and kept as fixtures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrion.core.midifile import read_tracks
from orchestrion.core.music import load_midi
from orchestrion.errors import BadInput
from orchestrion.mmm import codec as mmm
from orchestrion.testing import real_world


def cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrion", *map(str, args)], capture_output=True, text=True, timeout=600, check=False
    )


def said(run: subprocess.CompletedProcess) -> str:
    return " ".join((run.stdout + run.stderr).split())  # the console wraps long lines


@pytest.fixture
def collection(tmp_path: Path) -> Path:
    path = tmp_path / "tunes as found.abc"
    path.write_text(real_world.abc_collection())
    return path


def test_render_survives_the_tune_that_crashed_verovio(collection: Path, tmp_path: Path) -> None:
    run = cli("render", collection, "--svg", tmp_path / "out.svg", "--png", tmp_path / "out.png")
    assert run.returncode == 0, run.stderr  # it was 139: a segmentation fault, no message
    assert sorted(p.name for p in tmp_path.glob("out-*")) == ["out-1.png", "out-1.svg", "out-2.png", "out-2.svg"]
    assert f'not rendered: {collection}: tune 3 ("Nested Chords"): cannot engrave the score' in said(run)


def test_decode_abc_reads_a_collection_tune_by_tune(collection: Path, tmp_path: Path) -> None:
    run = cli("decode", "abc", collection, "--out", tmp_path / "tune.mid")
    assert run.returncode == 0, run.stderr  # the version line and comments were "second X: field in header"
    # No L:, so the standard's default: a 2/4 tune is in 16ths (120 ticks at abc2midi's 480 a quarter), 6/8 in 8ths.
    for name, count, step in (("tune-1.mid", 32, 120), ("tune-2.mid", 20, 240)):
        score = load_midi(tmp_path / name)
        notes = max(score.tracks, key=lambda t: len(t.notes)).notes
        starts = sorted(n.time for n in notes)
        assert (
            len(notes) == count
            and min(b - a for a, b in zip(starts, starts[1:], strict=False)) == step * 480 // score.tpq
        )
    assert not (tmp_path / "tune-3.mid").exists()
    assert f'not compiled: {collection}: tune 3 ("Nested Chords"): abc2midi could not compile the tune' in said(run)
    assert "orchestrion-" not in said(run)  # no temporary file is named


def test_decode_abc_of_nothing_fails_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "notes.abc"
    path.write_text("X:1\nT:broken\nK:C\n[[[[ |||| ((((\n\nX:2\nT:broken too\nK:C\n]]]]\n")
    run = cli("decode", "abc", path, "--out", tmp_path / "x.mid")
    assert run.returncode == 1 and f"{path}: no tune could be compiled (2 tried" in said(run)
    assert f'{path}: tune 2 ("broken too"): abc2midi could not compile the tune' in said(run)


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (("encode", "mmm"), "no window to train on"),
        (("encode", "events"), "no piece could be encoded (1 file(s) skipped"),
        (("corpus", "export"), "no usable MIDI or ABC file to export"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, tuple) else None,
)
def test_a_command_that_produced_nothing_fails_and_says_why(
    command: tuple[str, ...], says: str, tmp_path: Path
) -> None:
    folder = tmp_path / "songs"
    folder.mkdir()
    (folder / "cut short.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0")  # no track
    run = cli(*command, folder, "--out", tmp_path / "out", "-j", "1")
    assert run.returncode == 1, said(run)  # it was 0, with an empty dataset or folder
    assert says in said(run) and "cut short.mid: corrupt or truncated MIDI" in said(run)


def test_encode_abc_takes_each_tune_of_a_collection_on_its_own(collection: Path, tmp_path: Path) -> None:
    import json

    run = cli("encode", "abc", collection, "--out", tmp_path / "out", "-j", "1")
    assert run.returncode == 0, said(run)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["validity"] == {"clean": 2, "warnings": 0, "errors": 1}  # the version line, comments: no error
    (error,) = report["errors"]
    assert error["source"] == str(collection) and error["id"].endswith("-0003") and "nest chords" in error["error"]
    text = (tmp_path / "out" / "text" / "train-00000.txt").read_text()
    assert "T:Spaced Polka" in text and "T:Spaced Jig" in text and "%abc" not in text


def test_encode_abc_of_nothing_fails_and_measures_nothing(tmp_path: Path) -> None:
    path = tmp_path / "broken.abc"
    path.write_text("%abc-2.1\nX:1\nT:broken\nK:C\n[[[[ |||| ((((\n")
    run = cli("encode", "abc", path, "--out", tmp_path / "out", "-j", "1")
    assert run.returncode == 1 and "no tune survived cleaning" in said(run)
    assert "broken.abc" in said(run) and "Attempt to nest chords" in said(run)  # the file and the first reason
    assert "spaceless equivalence: not measured" in said(run) and "0 of 0" not in said(run)  # was "0 of 0 (100.00%)"


def test_decode_mmm_gives_each_program_its_channel_and_drums_channel_ten(tmp_path: Path) -> None:
    score = real_world.many_tracks(16, drums=True)
    score.tracks[14].program = score.tracks[0].program  # 14 programs and drums: they all fit
    line = " ".join(mmm.encode(score))
    run = cli("decode", "mmm", line, "--out", tmp_path / "x.mid")
    assert run.returncode == 0, run.stderr
    _, tracks, _ = read_tracks((tmp_path / "x.mid").read_bytes())
    programs: dict[int, set[int]] = {}
    for events in tracks:
        channel = {e.status & 0x0F for e in events if e.is_channel}
        assert len(channel) == 1
        programs.setdefault(channel.pop(), set()).update(e.data[1] for e in events if e.status & 0xF0 == 0xC0)
    assert all(len(p) == 1 for p in programs.values()) and 9 in programs  # drums on 10, one program a channel


def test_render_repairs_a_damaged_midi_file_and_strict_refuses_it(fixtures_dir: Path, tmp_path: Path) -> None:
    damaged = fixtures_dir / "pop_damaged_cc.mid"
    run = cli("render", damaged, "--png", tmp_path / "x.png")
    assert run.returncode == 0 and f"repaired: {damaged}: dropped control change with a value over 127" in said(run)
    run = cli("render", damaged, "--png", tmp_path / "y.png", "--strict")
    assert run.returncode == 1 and f"{damaged}: corrupt" in said(run)


def test_eval_says_why_no_held_out_piece_could_be_read(tmp_path: Path) -> None:
    from orchestrion.evaluation.heldout import EvalConfig, load_held_out

    folder = tmp_path / "held"
    folder.mkdir()
    (folder / "a.abc").write_text("X:1\nT:a\nK:C\n[[[[ |||| ((((\n")
    (folder / "b.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0")
    with pytest.raises(BadInput) as info:
        load_held_out(str(folder), EvalConfig())
    message = str(info.value)
    assert message.startswith(f"{folder}: no held-out piece could be read: {folder / 'a.abc'}: tune 1")
    assert "abc2midi could not compile" in message and str(folder / "b.mid") in message
    assert "orchestrion-" not in message  # the temporary MIDI file is not named


def test_eval_reads_every_tune_of_a_collection(collection: Path) -> None:
    from orchestrion.evaluation.heldout import EvalConfig, load_held_out

    held = load_held_out(str(collection), EvalConfig())
    assert held.names == [f"{collection.name}#1", f"{collection.name}#2"] and len(held.tunes) == 2
    assert held.problems == [f'{collection}: tune 3 ("Nested Chords"): ' + held.problems[0].split(": ", 2)[2]]


def test_a_harmonisation_prompt_keeps_its_tempo_programs_and_length(tmp_path: Path) -> None:
    """The encoding side of harmonising a melody: the prompt's tempo, its instruments as programs (a bass
    guitar is INST=33, not a voice), and its length (a note just before the end adds no bar)."""
    from orchestrion.mmm.plan import Prompt

    song = real_world.pop_song(bars=4)
    song.tracks = [song.tracks[0], song.tracks[3]]  # the melody and the bass guitar
    prompt = Prompt.from_score(song)
    assert round(prompt.tempo) == 175 and prompt.instruments == ["73", "33"] and prompt.bars == 4


def test_train_markov_and_encode_events_say_what_they_repaired(fixtures_dir: Path, tmp_path: Path) -> None:
    import json

    damaged = fixtures_dir / "pop_damaged_cc.mid"
    run = cli("train", "markov", damaged, "--out", tmp_path / "model", "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert f"repaired {damaged}: dropped control change with a value over 127" in said(run)
    report = json.loads((tmp_path / "model" / "report.json").read_text())
    assert report["pieces"] == 1 and report["skipped"] == [] and len(report["repaired"]) == 1
    run = cli("encode", "events", damaged, "--out", tmp_path / "events", "--workers", "1")
    assert run.returncode == 0, run.stderr
    assert len((tmp_path / "events" / "events.jsonl").read_text().splitlines()) == 1
    problems = (tmp_path / "events" / "problems.txt").read_text()
    assert problems.startswith(f"repaired: {damaged}: dropped control change with a value over 127")
