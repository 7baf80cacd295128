"""ABC sampling end to end with tiny random models, over three vocabularies: the ABC BPE, the folk-symbol
vocabulary of `encode abc --vocab folk` (`orchestrion.abc.folkvocab`) and a hand-made one token per ABC
symbol with no letters for titles. Whatever the weights, every tune keeps the meter, has two
strains, ends on the tonic and carries a header of known values."""

from __future__ import annotations

import re

import pytest
import torch

from orchestrion.abc import text as abccodec
from orchestrion.abc.body import body_grammar
from orchestrion.abc.grammar import ABCHeader, token_texts
from orchestrion.abc.sampler import sample_abc
from orchestrion.abc.titles import title_prefix_ok, vocabulary_of
from orchestrion.evaluation import abc_metrics as am
from orchestrion.requests import ComposeRequest

TITLES = ["The Boyne Hunt", "The Humours of Glynn", "Rakish Paddy", "The Maid of Mount Kisco", "Paddy's Return"]


def symbol_tokenizer():
    """One token per ABC symbol: field tags and values, notes with their accidental, lengths, bar lines with
    their endings, tuplets; no letters for titles (so a title cannot be spelled)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    symbols = ["X:", "T:", "R:", "M:", "L:", "K:", "4/4", "6/8", "2/4", "1/8", "reel", "jig", "polka", "|:", ":|2"]
    symbols += [":|", "||", "|]", "|1", "::", "(3", "3/2", "/2"]
    notes = [a + n for a in ("", "^", "_", "=") for n in "ABCDEFGabcdefg"]
    pieces = list(dict.fromkeys(symbols + notes + list("0123456789/|:()<>{}z.~,'\n")))
    vocab = ["<s>", "</s>", "<pad>", "<unk>", *pieces]
    pattern = "|".join(re.escape(p) for p in sorted(pieces, key=len, reverse=True)) + r"|[\s\S]"
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return tok


def bpe_tokenizer(fixtures_dir):
    from orchestrion.abc.dataset import make_tokenizer

    tune = abccodec.spaceless(abccodec.clean((fixtures_dir / "tune.abc").read_text()).abc)
    return make_tokenizer([tune] * 4 + [f"T:{t}\n" for t in TITLES] * 4, 300)


def folk_tokenizer(fixtures_dir):
    """The folk-symbol vocabulary fitted on the fixture tune under a few headers (title words and R: values
    become tokens, as in the folk corpus)."""
    from orchestrion.abc.folkvocab import make_folk_tokenizer

    body = abccodec.spaceless(abccodec.clean((fixtures_dir / "tune.abc").read_text()).abc).split("K:", 1)[1]
    heads = [f"X:1\nT:{t}\nR:{r}\nM:{m}\nL:1/8\nK:" for t in TITLES for r, m in (("reel", "4/4"), ("jig", "6/8"))]
    return make_folk_tokenizer([head + body for head in heads], min_count=3, min_word_count=3)


TOKENIZERS = {"bpe": bpe_tokenizer, "folk": folk_tokenizer, "symbols": lambda _: symbol_tokenizer()}


def tiny_model(vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=1024, n_embd=32, n_layer=1, n_head=2)).eval()


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def setup(request, fixtures_dir):
    tok = TOKENIZERS[request.param](fixtures_dir)
    return request.param, tiny_model(tok.get_vocab_size()), tok


def tunes(model, tok, **fields):
    request = ComposeRequest(model="x", **fields)
    return [e for e in sample_abc(model, tok, request, check=False, token_events=False) if e.kind == "tune"]


@pytest.mark.parametrize(("rhythm", "meter", "key"), [("reel", "4/4", "G major"), ("jig", "6/8", "D major")])
def test_dance_tunes_keep_the_meter_have_two_strains_and_end_home(setup, rhythm, meter, key):
    name, model, tok = setup
    for tune in tunes(model, tok, rhythm=rhythm, meter=meter, key=key, title="Test Tune", seed=3, num_samples=2,
                      form="strains"):  # fmt: skip
        text = tune.text
        assert tune.report["complete"], text
        assert text.startswith("X:1\nT:Test Tune\nR:" + rhythm + "\nM:" + meter + "\nL:1/8\nK:"), text
        assert am.bar_length_ok(text) and am.bar_length_ok(text, source="abc2midi"), text
        assert am.final_tonic(text) == 1.0, text
        assert am.repeat_structure(text) and am.strains(text) == 2, text


def test_free_form_ends_on_the_tonic(setup):
    name, model, tok = setup
    for tune in tunes(model, tok, meter="3/4", key="A minor", title="Test", rhythm="air", seed=1, max_tokens=400):
        assert tune.report["complete"] and am.final_tonic(tune.text) == 1.0, tune.text
        assert am.bar_length_ok(tune.text), tune.text


@pytest.mark.parametrize("vocab", ["bpe", "folk"])
def test_free_header_values_are_known_ones(fixtures_dir, vocab):
    """With a vocabulary that can spell words the model writes R: and M: itself, within known values."""
    tok = TOKENIZERS[vocab](fixtures_dir)
    model = tiny_model(tok.get_vocab_size())
    for tune in tunes(model, tok, seed=7, num_samples=3, key="G major", max_tokens=500):
        head = abccodec.header(tune.text)
        assert am.rhythm_ok(head["rhythm"]), tune.text
        from orchestrion.abc.rhythms import rhythm_named

        assert rhythm_named(head["rhythm"]).fits(head["meter"]), tune.text


def test_a_field_the_tokenizer_cannot_spell_is_added_to_the_text(setup):
    name, model, tok = setup
    (tune,) = tunes(model, tok, rhythm="polka", key="G major", title="Rakish Paddy", seed=2)
    assert tune.text.startswith("X:1\nT:Rakish Paddy\nR:polka\nM:2/4\n"), tune.text


@pytest.mark.parametrize("vocab", ["bpe", "folk"])
def test_titles_are_made_of_the_vocabularys_words(fixtures_dir, vocab):
    tok = TOKENIZERS[vocab](fixtures_dir)
    vocabulary = vocabulary_of(TITLES, min_titles=1)
    header = ABCHeader(tok, 1, [("X", "1"), ("T", None), ("R", "reel"), ("M", "4/4"), ("L", "1/8"), ("K", "G")],
                       tok.token_to_id("</s>"), tok.token_to_id("<s>"), titles=vocabulary)  # fmt: skip
    model = tiny_model(tok.get_vocab_size())
    from orchestrion.core.sampling import SamplingConfig, build_processors
    from orchestrion.gpt.decoding import generate_tokens

    header.start()
    config = SamplingConfig(seed=4)
    text = ""
    for step in generate_tokens(model, torch.tensor([[tok.token_to_id("<s>")]]), config,
                                build_processors(config, [header]), [tok.token_to_id("</s>")], 40):  # fmt: skip
        text += header.text[int(step[0])]
        if text.count("\n") == 3:
            break
    title = text.split("\n")[1].removeprefix("T:")
    assert title_prefix_ok(title, vocabulary, final=True), text
    assert am.title_ok(title, vocabulary.forms), text


@pytest.mark.parametrize(
    ("title", "final", "ok"),
    [("The Hum", False, True), ("The Hum", True, False), ("The Humours of Glynn", True, True),
     ("The Humours of", True, False), ("THE BOYNE", False, False), ("Paddy's Return", True, True),
     ("Rakish  Paddy", False, False)],
)  # fmt: skip
def test_title_prefix_ok(title, final, ok):
    assert title_prefix_ok(title, vocabulary_of(TITLES, min_titles=1), final=final) == ok


def test_the_token_steps_are_cached_per_state(fixtures_dir):
    tok = bpe_tokenizer(fixtures_dir)
    texts = token_texts(tok)
    assert token_texts(tok) is texts
    grammar = body_grammar("6/8", "1/8", "D", "strains")
    state = grammar.start("|:")
    a = tok.token_to_id("A")
    first = grammar.advance(state, a, texts)
    assert first is not None and grammar.advance(state, a, texts) is first
    assert grammar.cache(texts)[state][a] is first
    other = token_texts(symbol_tokenizer())  # another vocabulary: its own cache (token ids mean other texts)
    assert grammar.cache(other) is not grammar.cache(texts)
