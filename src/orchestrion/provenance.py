"""Provenance sidecars: every composed piece says which model made it, from what request, with which code.

`orchestrion generate --replay piece.json` reads a sidecar and makes the same piece again.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from orchestrion import __version__
from orchestrion.core.files import write_atomic
from orchestrion.errors import BadInput

WEIGHT_SUFFIXES = (".safetensors", ".npz", ".json", ".bin")


def checkpoint_hash(directory: str | Path) -> str:
    """sha256 over a model directory's weight and config files (names and bytes), in a stable order."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        # The model card and a training run's report.json (which files it skipped) describe the model; they are not it.
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES and path.name not in ("model_card.json", "report.json"):
            digest.update(path.relative_to(directory).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def make_provenance(model: str, model_hash: str, request: dict, extra: dict | None = None) -> dict:
    record = {
        "orchestrion_version": __version__,
        "model": model,
        "checkpoint_hash": model_hash,
        "request": request,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if extra:
        record.update(extra)
    return record


def sidecar_path(piece_path: str | Path) -> Path:
    piece_path = Path(piece_path)
    return piece_path.with_name(piece_path.name + ".json")


def write_sidecar(piece_path: str | Path, provenance: dict) -> Path:
    return write_atomic(sidecar_path(piece_path), json.dumps(provenance, indent=2, sort_keys=True) + "\n")


def read_sidecar(path: str | Path) -> dict:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the provenance sidecar: {exc}", path) from exc
    if not isinstance(record, dict) or "request" not in record:
        raise BadInput("not an orchestrion provenance sidecar (no 'request' field)", path)
    return record
