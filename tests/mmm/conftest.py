"""A random tiny GPT-2 over the mmm vocabulary: sampling tests need valid, not musical, weights."""

from __future__ import annotations

import pytest
import torch

from orchestrion.mmm import codec as mmm


@pytest.fixture(scope="session")
def mmm_tokenizer():
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {t: i for i, t in enumerate(mmm.vocabulary())}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    return tokenizer


@pytest.fixture(scope="session")
def mmm_model(mmm_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=mmm_tokenizer.get_vocab_size(),
        n_positions=1024,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=2,
        eos_token_id=3,
    )
    return GPT2LMHeadModel(config).eval()
