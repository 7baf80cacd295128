"""The one atomic write: whole or nothing, the suffix kept, temporary names recognisable, durable mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion.core.files import atomic_path, is_temporary, temporary_name, write_atomic, write_json


def test_write_replaces_the_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.txt"
    write_atomic(target, "first")
    write_atomic(target, b"second", durable=True)
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.npy"
    write_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("cut short")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_temporary_names_keep_the_suffix_and_are_recognised(tmp_path: Path) -> None:
    tmp = temporary_name(tmp_path / "piece.wav")
    assert tmp.suffix == ".wav" and tmp.name.startswith(".piece.wav.") and is_temporary(tmp.name)
    assert not is_temporary("piece.wav") and not is_temporary(".hidden")


def test_json_has_a_trailing_newline(tmp_path: Path) -> None:
    assert write_json(tmp_path / "r.json", {"b": 1, "a": [2]}).read_text() == '{\n "b": 1,\n "a": [\n  2\n ]\n}\n'
