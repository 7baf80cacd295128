"""Sampling: processors, the KV-cached loop against the model's own forward, seeds, batches."""

from __future__ import annotations

import pytest
import torch

from orchestrion.core.sampling import RepetitionPenalty, SamplingConfig, Temperature, TopK, TopP, build_processors
from orchestrion.errors import InvalidRequest
from orchestrion.gpt.decoding import KVDecoder, generate_all, generate_tokens
from orchestrion.requests import ComposeRequest


@pytest.fixture(scope="module")
def tiny_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=97, n_positions=128, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=1)
    return GPT2LMHeadModel(config).eval()


# ------------------------------------------------------------------------------------- processors


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: Temperature(0), "temperature"),
        (lambda: Temperature(-1.0), "temperature"),
        (lambda: Temperature(float("nan")), "temperature"),
        (lambda: TopK(0), "top_k"),
        (lambda: TopK(2.5), "top_k"),
        (lambda: TopP(0.0), "top_p"),
        (lambda: TopP(1.5), "top_p"),
        (lambda: RepetitionPenalty(0), "repetition_penalty"),
        (lambda: SamplingConfig(temperature=0.0), "temperature"),
        (lambda: SamplingConfig(num_samples=0), "num_samples"),
    ],
)
def test_processor_arguments_are_checked_when_built(make, field):
    with pytest.raises(InvalidRequest) as info:
        make()
    assert info.value.field == field


def test_temperature_zero_says_what_to_do_instead():
    with pytest.raises(InvalidRequest, match="top_k=1"):
        Temperature(0)


def test_processors_never_modify_their_input():
    torch.manual_seed(1)
    scores = torch.randn(3, 50)
    ids = torch.randint(0, 50, (3, 10))
    before, ids_before = scores.clone(), ids.clone()
    for processor in (Temperature(0.7), TopK(5), TopP(0.5), RepetitionPenalty(1.3)):
        out = processor(ids, scores)
        assert out.shape == scores.shape
        assert torch.equal(scores, before) and torch.equal(ids, ids_before)


def test_top_k_and_top_p_keep_the_right_tokens():
    scores = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    ids = torch.zeros(1, 0, dtype=torch.long)
    assert torch.isfinite(TopK(2)(ids, scores)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(TopP(0.7)(ids, scores)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(TopP(0.5)(ids, scores)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(TopP(1.0)(ids, scores)).all()


def test_repetition_penalty_lowers_seen_tokens_only():
    scores = torch.tensor([[2.0, -2.0, 1.0]])
    out = RepetitionPenalty(2.0)(torch.tensor([[0, 1]]), scores)
    assert out.tolist() == [[1.0, -4.0, 1.0]]


def test_config_from_request_and_chain():
    request = ComposeRequest(temperature=0.8, top_k=40, top_p=0.9, repetition_penalty=1.2, seed=5, num_samples=3)
    config = SamplingConfig.from_request(request)
    assert (config.temperature, config.top_k, config.top_p, config.seed, config.num_samples) == (0.8, 40, 0.9, 5, 3)
    kinds = [type(p).__name__ for p in build_processors(config)]
    assert kinds == ["RepetitionPenalty", "Temperature", "TopK", "TopP"]
    assert build_processors(SamplingConfig()) == []


# ---------------------------------------------------------------------------------------- the loop


def test_kv_decoder_matches_the_models_forward(tiny_model):
    ids = torch.randint(0, 97, (2, 30), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = tiny_model(input_ids=ids).logits  # (B, T, V)
        decoder = KVDecoder(tiny_model, 2, 40)
        first = decoder.forward(ids[:, :11])
        rest = [decoder.forward(ids[:, i : i + 1]) for i in range(11, 30)]
    torch.testing.assert_close(first, reference[:, 10], rtol=1e-4, atol=1e-4)
    for i, logits in enumerate(rest):
        torch.testing.assert_close(logits, reference[:, 11 + i], rtol=1e-4, atol=1e-4)


def test_cached_and_uncached_sampling_agree(tiny_model):
    config = SamplingConfig(seed=11, temperature=0.9, top_k=20)
    prompt = torch.zeros(2, 1, dtype=torch.long)
    cached = generate_all(tiny_model, prompt, config, max_new_tokens=60)
    plain = generate_all(tiny_model, prompt, config, max_new_tokens=60, use_cache=False)
    assert cached == plain
    assert len(cached[0]) == 60


def test_same_seed_same_tokens_other_seed_other_tokens(tiny_model):
    prompt = torch.zeros(4, 1, dtype=torch.long)
    a = generate_all(tiny_model, prompt, SamplingConfig(seed=3), max_new_tokens=40)
    b = generate_all(tiny_model, prompt, SamplingConfig(seed=3), max_new_tokens=40)
    c = generate_all(tiny_model, prompt, SamplingConfig(seed=4), max_new_tokens=40)
    assert a == b
    assert a != c
    assert len({tuple(row) for row in a}) > 1  # rows of a batch differ


def test_rows_stop_on_their_own(tiny_model):
    # Force row 0 to stop at once: a processor that only allows the stop token there.
    def stop_row0(input_ids, scores):
        out = scores.clone()
        out[0] = float("-inf")
        out[0, 1] = 0.0
        return out

    steps = list(
        generate_tokens(
            tiny_model,
            torch.zeros(2, 1, dtype=torch.long),
            SamplingConfig(seed=0),
            [stop_row0],
            stop_ids=[1],
            max_new_tokens=10,
        )
    )
    assert steps[0][0].item() == 1
    assert all(s[0].item() == -1 for s in steps[1:])
    assert len(steps) == 10


def test_prompt_longer_than_context_is_refused(tiny_model):
    with pytest.raises(InvalidRequest, match="context"):
        list(generate_tokens(tiny_model, torch.zeros(1, 128, dtype=torch.long), SamplingConfig()))
