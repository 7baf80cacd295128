"""orchestrion: learn music from a corpus and compose new music.

Public API (heavy libraries are imported lazily, inside the functions that need them):

    >>> import orchestrion
    >>> composer = orchestrion.load_composer("builtin:markov")
    >>> piece = orchestrion.compose("builtin:markov", bars=8, seed=3)
    >>> piece.save("piece.mid")

The package: `core` (shared by all), one package per system (`gpt`, with `mmm` and `abc` plugged into it
through `gpt/encoding.py`; `markov`; `sashimi`), then `evaluation`, `server`, `testing` and the top-level
modules (`cli`, `composer`, `registry`, `requests`, `errors`, `provenance`, `generate`, `demo`). Imports
point one way: core imports no system package; the systems import core and not each other (mmm and abc
import gpt); cli, server and evaluation reach models only through `orchestrion.registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from orchestrion.composer import Composer, Piece

__all__ = ["__version__", "compose", "load_composer"]

# The registry and the requests (pydantic, numpy) are imported inside the functions below, not here: every
# command, `orchestrion --help` included, imports this package first, and it takes milliseconds.


def load_composer(ref: str) -> Composer:
    """Load a model by directory or `builtin:NAME`."""
    from orchestrion.registry import load_composer as _load

    return _load(ref)


def compose(model: str = "builtin:markov", **request: object) -> Piece:
    """Compose one piece: `compose("builtin:markov", bars=8, seed=3)`."""
    from orchestrion.requests import ComposeRequest

    req = ComposeRequest(model=model, **request)
    return load_composer(model).compose(req)
