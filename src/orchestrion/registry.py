"""The composer registry: a new model is one new package plus one line here.

COMPOSERS maps a model kind (config.json's "composer") to its Composer class and ENCODINGS a GPT
encoding (config.json's "encoding") to its `orchestrion.gpt.encoding.Encoding`, both as "module:Class"
strings imported only when a model of that kind is loaded: the registry itself loads no model code, no
torch. `load_composer("builtin:NAME" | directory)` is the one way the CLI, the server and the evaluation
reach a model; it stamps the composer with its name and checkpoint hash for the pieces' provenance.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrion.composer import Composer
from orchestrion.errors import ModelNotFound
from orchestrion.provenance import checkpoint_hash

if TYPE_CHECKING:
    from orchestrion.gpt.encoding import Encoding

COMPOSERS = {
    "markov": "orchestrion.markov.composer:MarkovComposer",
    "gpt": "orchestrion.gpt.composer:GPTComposer",
    "sashimi": "orchestrion.sashimi.composer:SashimiComposer",
}

# The text forms of music a GPT model can be trained on (config.json's "encoding"); see gpt/encoding.py.
ENCODINGS = {
    "mmm": "orchestrion.mmm.encoding:MMMEncoding",
    "abc": "orchestrion.abc.encoding:ABCEncoding",
}

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
BUILTIN_MODELS = {
    "markov": "Markov chains (melody 2nd order, chords 1st order) trained on the Bach chorales: chorale style",
    "markov-folk": "Markov chains trained on the folk tunes and the Bach chorales: lively style (game music)",
    "chorales": "GPT-2 on mmm tokens, trained on the Bach chorales",
    "folk": "GPT-2 on spaceless ABC in a folk vocabulary (a token per note, length, bar line), trained on the built-in folk tunes",
    "folk-bpe": "GPT-2 on spaceless ABC with a 2,048-token BPE, trained on the built-in folk tunes (the earlier builtin:folk)",
    "piano": "SaShiMi on 16 kHz mu-law piano audio rendered from the chorales",
}


def composer_class(kind: str) -> type[Composer]:
    if kind not in COMPOSERS:
        raise ModelNotFound(f"unknown composer kind {kind!r}; known kinds: {', '.join(COMPOSERS)}")
    return _load(COMPOSERS[kind])


def _load(spec: str) -> type:
    module_name, _, class_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def encoding_for(name: str) -> Encoding:
    """The `Encoding` a GPT model of this config.json "encoding" plugs in."""
    if name not in ENCODINGS:
        raise ModelNotFound(f"unknown encoding {name!r}; known encodings: {', '.join(ENCODINGS)}")
    return _load(ENCODINGS[name])()


def resolve_model_dir(ref: str | Path) -> Path:
    """`builtin:NAME` or a directory -> the model directory (which holds config.json)."""
    ref = str(ref)
    if ref.startswith("builtin:"):
        name = ref.removeprefix("builtin:")
        directory = BUILTIN_DIR / name
        if not (directory / "config.json").is_file():
            available = sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "config.json").is_file())
            raise ModelNotFound(
                f"no built-in model {ref!r}; available: {', '.join('builtin:' + a for a in available) or 'none yet'}"
            )
        return directory
    directory = Path(ref)
    if not (directory / "config.json").is_file():
        raise ModelNotFound(f"{directory}: not a model directory (no config.json); train one with 'orchestrion train'")
    return directory


def model_kind(directory: Path) -> str:
    config = json.loads((directory / "config.json").read_text())
    # Plain transformers GPT-2 checkpoints carry model_type instead of our "composer" field.
    return config.get("composer") or ("gpt" if config.get("model_type") == "gpt2" else "")


def load_composer(ref: str | Path) -> Composer:
    """Load any model: `builtin:markov`, `builtin:chorales`, ... or a directory written by `train`."""
    directory = resolve_model_dir(ref)
    composer = composer_class(model_kind(directory)).load(directory)
    composer.name = str(ref)
    composer.checkpoint_hash = checkpoint_hash(directory)
    return composer


def available_builtins() -> list[str]:
    return sorted(f"builtin:{p.name}" for p in BUILTIN_DIR.iterdir() if (p / "config.json").is_file())
