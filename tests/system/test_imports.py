"""Start-up stays light: the entry points import no heavy library (STYLE.md, "Heavy imports lazily").

ruff's TID253 (pyproject.toml) keeps heavy imports out of module level; this checks the result where it
matters, in a fresh interpreter, for what `orchestrion --help`, `import orchestrion` and a client of the
Python API load first.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = (
    "torch", "transformers", "tokenizers", "safetensors", "music21", "matplotlib", "soundfile", "soxr",
    "verovio", "numba", "ray", "fastapi", "starlette", "uvicorn", "symusic", "miditok",
)  # fmt: skip
ENTRY_POINTS = ("orchestrion", "orchestrion.cli", "orchestrion.registry", "orchestrion.requests")


def loaded_after(module: str) -> list[str]:
    """The heavy libraries that `import module` loads, in a fresh interpreter."""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return sorted({name.partition(".")[0] for name in json.loads(out.stdout)} & set(HEAVY))


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_entry_points_import_no_heavy_library(module: str) -> None:
    assert loaded_after(module) == []


def test_the_check_sees_a_heavy_import() -> None:
    assert "torch" in loaded_after("orchestrion.core.sampling")
