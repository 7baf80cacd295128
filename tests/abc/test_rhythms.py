"""Tune types: the meter, tempo and form a rhythm gives a request, the errors that name the field, and the
`eval` likelihood of ABC data made with any tokenizer."""

from __future__ import annotations

import pytest

from orchestrion.abc.encoding import ABCEncoding
from orchestrion.abc.rhythms import RHYTHMS, rhythm_named, rhythms_for_meter, tempo_field
from orchestrion.errors import InvalidRequest
from orchestrion.evaluation.abc_metrics import KNOWN_RHYTHMS, rhythm_ok
from orchestrion.requests import ComposeRequest


def test_every_rhythm_is_a_known_one() -> None:
    assert set(RHYTHMS) <= KNOWN_RHYTHMS
    assert all(rhythm_ok(name) and rhythm_ok(name.capitalize()) for name in RHYTHMS)


@pytest.mark.parametrize(
    ("text", "name"),
    [("Reel", "reel"), ("reels", "reel"), ("Slip-Jig", "slip jig"), ("slipjig", "slip jig"), ("JIG", "jig"),
     ("waltz", "waltz"), ("bebop", None), ("", None)],
)  # fmt: skip
def test_rhythm_named(text: str, name: str | None) -> None:
    found = rhythm_named(text)
    assert (found.name if found else None) == name


@pytest.mark.parametrize(
    ("rhythm", "meter", "tempo", "form"),
    [("reel", "4/4", 200, "strains"), ("jig", "6/8", 174, "strains"), ("slip jig", "9/8", 180, "strains"),
     ("hornpipe", "4/4", 160, "strains"), ("polka", "2/4", 140, "strains"), ("waltz", "3/4", 150, "strains"),
     ("slide", "12/8", 195, "strains"), ("march", "2/4", 112, "strains"), ("air", "4/4", 90, "free")],
)  # fmt: skip
def test_a_rhythm_gives_meter_tempo_and_form(rhythm: str, meter: str, tempo: float, form: str) -> None:
    request = ABCEncoding().validate(object(), ComposeRequest(model="x", rhythm=rhythm, seed=1))
    assert (request.meter, request.tempo, request.form) == (meter, tempo, form)
    assert ABCEncoding().validate(object(), request) == request  # a replay is the same request


def test_what_the_request_says_wins() -> None:
    request = ComposeRequest(model="x", rhythm="March", meter="6/8", tempo=90, form="free", seed=1)
    request = ABCEncoding().validate(object(), request)
    assert (request.rhythm, request.meter, request.tempo, request.form) == ("march", "6/8", 90, "free")


def test_a_meter_that_does_not_fit_the_rhythm_names_the_field() -> None:
    with pytest.raises(InvalidRequest) as info:
        ABCEncoding().validate(object(), ComposeRequest(model="x", rhythm="reel", meter="3/4", seed=1))
    assert info.value.field == "meter" and "4/4" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        ABCEncoding().validate(object(), ComposeRequest(model="x", rhythm="bebop", seed=1))
    assert info.value.field == "rhythm" and "reel" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        ABCEncoding().validate(object(), ComposeRequest(model="x", meter="x/4", seed=1))
    assert info.value.field == "meter"


def test_an_unknown_form_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="strains"):
        ComposeRequest(model="x", form="rondo")
    assert ComposeRequest(model="x", form="Free").form == "free"


def test_tempo_field_and_meters() -> None:
    assert tempo_field(174, "6/8") == "Q:3/8=116" and tempo_field(200, "4/4") == "Q:1/4=200"
    assert {r.name for r in rhythms_for_meter("9/8")} == {"slip jig", "hop jig", "air", "song", "lament"}


def test_eval_likelihood_retokenises_data_made_with_another_tokenizer(tmp_path, monkeypatch) -> None:
    """A dataset made with another tokenizer, and plain ABC text, are read the model's way: the same tunes
    give the same figures however they came."""
    from tokenizers import Tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    from orchestrion.abc import text as abccodec
    from orchestrion.abc.dataset import make_tokenizer
    from orchestrion.gpt.composer import GPTComposer
    from orchestrion.gpt.likelihood import gpt_likelihood
    from orchestrion.testing import datasets

    tunes = [abccodec.clean(t).abc for t in datasets.TUNES]  # as `encode abc` writes them: cleaned
    monkeypatch.setattr(datasets, "TUNES", tunes)
    ours = datasets.make_abc_dataset(tmp_path / "ours")
    other = datasets.make_abc_dataset(tmp_path / "other")
    texts = [abccodec.spaceless(t) for t in tunes]
    make_tokenizer(texts * 4, 260).save(str(other / "tokenizer.json"))  # another vocabulary, the same tunes
    tok = Tokenizer.from_file(str(ours / "tokenizer.json"))
    torch_model = GPT2LMHeadModel(GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=128, n_embd=16,
                                             n_layer=1, n_head=2))  # fmt: skip
    composer = GPTComposer(torch_model, tok, ABCEncoding())
    own = gpt_likelihood(composer, ours, windows=2, context=64)
    again = gpt_likelihood(composer, other, windows=2, context=64)
    assert not own["retokenised"] and again["retokenised"] and "window_starts" not in again
    assert again["loss"] == pytest.approx(own["loss"])
    lines = (ours / "text" / "validation-00000.txt").read_text().splitlines()
    plain = gpt_likelihood(composer, texts=[ABCEncoding().text_of(x, {}) for x in lines], windows=2, context=64)
    assert plain["retokenised"] and plain["loss"] == pytest.approx(own["loss"])


def test_generate_takes_a_form(tmp_path) -> None:
    """`--form` reaches the request: a bad value is refused naming the field, before any model is loaded."""
    from typer.testing import CliRunner

    from orchestrion import cli

    result = CliRunner().invoke(cli.app, ["generate", "--help"])
    assert "--form" in result.output
    result = CliRunner().invoke(cli.app, ["generate", "x", "--form", "rondo", "--out", str(tmp_path / "x.abc")])
    assert result.exit_code != 0 and "form" in (result.output + str(result.exception))
