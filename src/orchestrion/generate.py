"""Compose to files: the shared body of `orchestrion generate` and `orchestrion demo`."""

from __future__ import annotations

from pathlib import Path

from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest


def numbered(path: Path, index: int, count: int) -> Path:
    """piece.mid -> piece-003.mid when a batch makes several pieces."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index:03d}{path.suffix}")


def generate_to_files(request: ComposeRequest, out: str | Path) -> list[Path]:
    """Load the request's model, compose `num_samples` pieces and write each with its sidecar.

    Sample i of a batch uses seed + i, and its sidecar records that seed, so that each piece of a batch
    replays on its own.
    """
    out = Path(out)
    composer = load_composer(request.model)
    request = composer.validate(request)
    written: list[Path] = []
    count = request.num_samples
    for i in range(count):
        single = request.model_copy(update={"num_samples": 1, "seed": request.seed + i})
        piece = composer.compose(single)
        written.extend(piece.save(numbered(out, i, count)))
    return written
