"""The folk-symbol vocabulary: one token per musical symbol, lossless, a plain `tokenizers` file."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion.abc.folkvocab import SPECIALS, make_folk_tokenizer

TUNES = [
    'X:1\nT:The Kesh\nR:jig\nM:6/8\nL:1/8\nK:Dmix\n|:^FGA B2c|d3/2e/2f c\'2B,|(3ABc _B>A:|2 G2z [1 "Am"A2|]\n',
    "X:1\nT:The Reel of Tulloch\nR:reel\nM:4/4\nL:1/8\nK:Dmix\n|:^FGA B2c|d3/2e/2f c'2B,|(3ABc _B>A:|2 G2z|]\n",
    'X:1\nT:Kesh Reel\nR:reel\nM:6/8\nL:1/8\nK:Dmix\n|:^FGA B2c|d3/2e/2f c\'2B,|(3ABc _B>A:|2 G2z [1 "Am"A2|]\n',
    'X:1\nT:The Bead\nR:jig\nM:6/8\nL:1/8\nK:Dmix\n"Am"^FGA B2c|:d3/2e/2f c\'2B,|(3ABc _B>A:|2 G2z|]\n',
]


@pytest.fixture(scope="module")
def tok():
    return make_folk_tokenizer(TUNES, min_count=3, min_word_count=3)


def test_one_token_per_musical_symbol(tok) -> None:
    tokens = tok.encode(TUNES[0]).tokens
    for symbol in ("^F", "c'", "B,", "_B", "3/2", "/2", ":|2", "|:", "|]", "(3", ">", "K:", "M:", "6/8", "Dmix", "\n"):
        assert symbol in tokens, symbol
    assert tokens[:3] == ["X:", "1", "\n"]
    assert "The" in tokens and "Kesh" not in tokens  # a title word needs min_word_count uses


def test_lossless_and_rare_symbols_are_spelled_out(tok) -> None:
    for text in [*TUNES, "X:1\nT:Unheard Title\nM:7/8\nK:Bphr\n^^g''3/4|[K:G]\"Gmaj7\"!trill!A|\n"]:
        enc = tok.encode(text)
        assert tok.decode(enc.ids) == text
        assert tok.token_to_id("<unk>") not in enc.ids
    # A title word made of letters a body could hold is never a token (it would be read in the music).
    assert "Bead" not in tok.get_vocab()


def test_header_values_are_tokens_only_in_their_field(tok) -> None:
    assert tok.encode("M:6/8\n").tokens == ["M:", "6/8", "\n"]
    assert tok.encode("K:Dmix\n").tokens == ["K:", "Dmix", "\n"]
    assert tok.encode("T:").tokens == ["T:"]  # what the sampler forces before a free title
    assert "Dmix" not in tok.encode("K:G\nDmix|\n").tokens


def test_loads_with_transformers(tok, tmp_path: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    tok.save(str(tmp_path / "tokenizer.json"))
    fast = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert fast.decode(fast(TUNES[1])["input_ids"]) == TUNES[1]
    for special in SPECIALS:
        assert tok.token_to_id(special) is not None
