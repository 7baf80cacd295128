"""Golden pieces: one seeded piece per built-in model, replayed from its provenance sidecar.

The files under tests/golden/ were composed before the code was reorganised (`orchestrion generate ...
--seed 11`); replaying each sidecar must give the same bytes. A change that alters sampling on purpose
re-pins them (run the generate commands in tests/golden/README.md) and says why in its commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

GOLDEN = Path(__file__).parents[1] / "golden"
PIECES = sorted(p for p in GOLDEN.iterdir() if p.suffix in {".mid", ".abc", ".wav"})


@pytest.mark.parametrize("piece", PIECES, ids=lambda p: p.name)
def test_replay_gives_identical_bytes(piece: Path, tmp_path: Path) -> None:
    from orchestrion.generate import generate_to_files
    from orchestrion.provenance import read_sidecar
    from orchestrion.requests import ComposeRequest

    record = read_sidecar(piece.with_name(piece.name + ".json"))
    out = tmp_path / piece.name
    written = generate_to_files(ComposeRequest(**record["request"]), out)
    assert out in written
    assert out.read_bytes() == piece.read_bytes(), f"{piece.name} no longer replays byte for byte"


def test_every_builtin_model_has_a_golden_piece() -> None:
    from orchestrion.provenance import read_sidecar

    models = {read_sidecar(p.with_name(p.name + ".json"))["model"] for p in PIECES}
    assert models == {"builtin:markov", "builtin:chorales", "builtin:folk", "builtin:piano"}
