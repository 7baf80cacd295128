"""`GPTComposer`: composes with a GPT-2 checkpoint through the encoding it was trained on.

The checkpoint directory is a plain `save_pretrained` directory plus tokenizer.json (and a model card);
config.json's "encoding" field names the `Encoding` (looked up in `orchestrion.registry.ENCODINGS`) that
turns sampled tokens into music. This class holds no knowledge of mmm or ABC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrion.composer import Chunk, Composer, Piece
from orchestrion.core.files import write_atomic
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.gpt.encoding import Encoding
from orchestrion.gpt.likelihood import gpt_likelihood
from orchestrion.registry import ENCODINGS, encoding_for
from orchestrion.requests import ComposeRequest

if TYPE_CHECKING:
    from orchestrion.evaluation.heldout import EvalConfig, HeldOut


class GPTComposer(Composer):
    """Composes with a GPT-2 checkpoint: mmm (multi-track MIDI) or ABC (folk tunes)."""

    kind = "gpt"

    def __init__(self, model, tokenizer, encoding: Encoding, directory: Path | None = None):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer  # a `tokenizers.Tokenizer`
        self.encoding = encoding
        self.directory = directory
        self.card: dict = {}
        if directory is not None and (directory / "model_card.json").is_file():
            self.card = json.loads((directory / "model_card.json").read_text())

    @classmethod
    def load(cls, directory: str | Path) -> GPTComposer:
        from tokenizers import Tokenizer
        from transformers import GPT2LMHeadModel
        from transformers.utils import logging as hf_logging

        directory = Path(directory)
        if not (directory / "tokenizer.json").is_file():
            raise BadInput("a GPT model directory needs tokenizer.json next to config.json", directory)
        # A model of a few MB loads in milliseconds: transformers' per-weight progress bar is only noise
        # in the CLI, the demo and the server log.
        hf_logging.disable_progress_bar()
        model = GPT2LMHeadModel.from_pretrained(directory, use_safetensors=True)  # never a pickled .bin
        name = getattr(model.config, "encoding", None) or "abc"
        if name not in ENCODINGS:
            raise BadInput(
                f"config.json has encoding {name!r}; expected one of {', '.join(ENCODINGS)}", directory / "config.json"
            )
        return cls(model, Tokenizer.from_file(str(directory / "tokenizer.json")), encoding_for(name), directory)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save(str(directory / "tokenizer.json"))
        if self.card:
            write_atomic(directory / "model_card.json", json.dumps(self.card, indent=2, sort_keys=True) + "\n")
        return directory

    @property
    def context(self) -> int:
        return int(self.model.config.n_positions)

    def options(self) -> dict:
        return {
            **super().options(),
            "encoding": self.encoding.name,
            "context": self.context,
            "vocab_size": int(self.model.config.vocab_size),
            "val_loss": self.card.get("val_loss"),
            # what config.json learned from the training data (Encoding.data_defaults): a page's defaults
            "data_defaults": {k: v for k, v in self.model.config.to_dict().items() if k.startswith("default_")},
        }

    def share_steps(self) -> Callable[[], dict]:
        """Concurrent streams run their one-token steps as one batched forward (`orchestrion.gpt.batching`)."""
        from orchestrion.gpt.batching import share_steps

        return share_steps(self.model).stats.to_json

    def validate(self, request: ComposeRequest) -> ComposeRequest:
        request = self.encoding.validate(self.model.config, request.with_seed())
        if request.max_tokens is not None and request.max_tokens > 64 * self.context:
            raise InvalidRequest("max_tokens", f"at most {64 * self.context} for this model")
        return request

    def stream(self, request: ComposeRequest) -> Iterator[Chunk]:
        single = self.validate(request).model_copy(update={"num_samples": 1})  # a batch is made piece by piece
        yield from self.encoding.chunks(self.model, self.tokenizer, single)

    def finish(self, piece: Piece, request: ComposeRequest) -> Piece:
        return self.encoding.finish(piece)

    def check(self, piece: Piece) -> dict:
        return self.encoding.check(piece)

    def trained_on(self) -> list[str]:
        return [self.card["data"]] if self.card.get("data") else []

    def likelihood(self, held: HeldOut, config: EvalConfig) -> dict:
        if held.form == "tokens":
            return gpt_likelihood(self, held.root, windows=config.windows, context=config.context)
        if held.tunes and hasattr(self.encoding, "token_ids"):  # text files: tokenised the model's way
            return gpt_likelihood(self, texts=held.tunes, windows=config.windows, context=config.context)
        return {"skipped": "a GPT likelihood needs a token dataset (orchestrion encode) or text files as --data"}
