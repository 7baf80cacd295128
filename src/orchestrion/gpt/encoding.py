"""The seam between the GPT machinery and a music encoding (mmm tokens, spaceless ABC).

`GPTComposer` and `train_gpt` know transformers, the KV decoder and the training loop, and nothing about
music; an `Encoding` knows one text form of music and nothing about the model's insides. A new encoding is
one class with these methods plus one line in `orchestrion.registry.ENCODINGS`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from orchestrion.composer import Chunk, Piece
    from orchestrion.core.shards import TokenDataset
    from orchestrion.requests import ComposeRequest


class Encoding(Protocol):
    name: ClassVar[str]  # what config.json's "encoding" field holds: "mmm" | "abc"

    def validate(self, config: object, request: ComposeRequest) -> ComposeRequest:
        """Fill in the request's defaults from the model's config.json (`config`), recorded for replays."""

    def chunks(self, model: object, tokenizer: object, request: ComposeRequest) -> Iterator[Chunk]:
        """Sample one piece and stream it: text chunks while sampling, then the music, then a PieceReport."""

    def finish(self, piece: Piece) -> Piece:
        """Complete an assembled piece (e.g. the score abc2midi makes of an ABC tune)."""

    def check(self, piece: Piece) -> dict:
        """{"valid": bool, "why": str}: does the piece hold what this encoding promises?"""

    def score_of(self, line: str, meta: dict) -> tuple[object, str]:
        """The score one line of a token dataset's text holds, and a name for it ("" for none)."""

    def text_of(self, line: str, meta: dict) -> str | None:
        """The text a musician reads (an ABC tune) of one line of a token dataset's text, or None."""

    def data_defaults(self, dataset: TokenDataset, tokenizer: object) -> dict:
        """Attributes for config.json learned from the training data (the usual line-up, meters, keys)."""
