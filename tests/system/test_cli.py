"""The command line: every command's --help, the not-built path, render and corpus list end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from orchestrion import cli

ORCHESTRION = Path(sys.executable).parent / "orchestrion"
DESIGN_COMMANDS = {
    ("corpus", "list"), ("corpus", "export"), ("encode", "mmm"), ("encode", "abc"), ("encode", "events"),
    ("encode", "audio"), ("decode", "mmm"), ("decode", "abc"), ("train", "markov"), ("train", "gpt"),
    ("train", "sashimi"), ("generate",), ("render",), ("eval",), ("serve",), ("demo",),
}  # fmt: skip


def all_commands() -> list[tuple[str, ...]]:
    """Every leaf command of the app, as its path of names."""
    root = typer.main.get_command(cli.app)
    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):  # a group (typer may bundle its own click)
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
        else:
            paths.append(path)

    walk(root, ())
    return sorted(paths)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ORCHESTRION), *args], capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})}
    )


def test_the_design_commands_exist() -> None:
    assert DESIGN_COMMANDS <= set(all_commands())


@pytest.mark.parametrize("path", all_commands(), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli.app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


def test_top_level_help_lists_commands() -> None:
    result = CliRunner().invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for name in ("corpus", "encode", "train", "generate", "render", "serve", "demo"):
        assert name in result.output


def test_render_end_to_end(fixtures_dir: Path, tmp_path: Path) -> None:
    result = run_cli(
        "render",
        str(fixtures_dir / "multitrack.mid"),
        "--wav",
        str(tmp_path / "m.wav"),
        "--png",
        str(tmp_path / "m.png"),
        "--sample-rate",
        "16000",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / "m.wav"), str(tmp_path / "m.png")]
    assert (tmp_path / "m.wav").stat().st_size > 10_000 and (tmp_path / "m.png").stat().st_size > 5_000


def test_render_bad_file_is_a_clear_error(fixtures_dir: Path, tmp_path: Path) -> None:
    result = run_cli("render", str(fixtures_dir / "truncated.mid"), "--wav", str(tmp_path / "t.wav"))
    assert result.returncode == 1
    assert "truncated.mid" in result.stderr and "Traceback" not in result.stderr


def test_corpus_list_end_to_end(tmp_path: Path) -> None:
    result = run_cli("corpus", "list", env={"ORCHESTRION_CACHE": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for name in ("bach-chorales", "palestrina", "folk-abc"):
        assert name in result.stdout
    assert "not yet" in result.stdout


def test_corpus_export_unknown_name(tmp_path: Path) -> None:
    result = run_cli("corpus", "export", "mozart", "--out", str(tmp_path / "o"))
    assert result.returncode == 1 and "unknown corpus" in result.stderr
