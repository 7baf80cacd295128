"""Steps shared by concurrent streams (orchestrion.gpt.batching): each row keeps the bits it has alone."""

from __future__ import annotations

import threading

import pytest
import torch

from orchestrion.gpt.batching import StepBatcher, StepsCancelled, forward_rows
from orchestrion.gpt.decoding import KVDecoder
from orchestrion.registry import BUILTIN_DIR


def _model(name: str):
    from transformers import GPT2LMHeadModel

    directory = BUILTIN_DIR / name
    if not (directory / "model.safetensors").is_file():
        pytest.skip(f"builtin:{name} is not shipped")
    return GPT2LMHeadModel.from_pretrained(directory, use_safetensors=True).eval()


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # what share_steps sets for a server's process
    yield
    torch.set_num_threads(before)


def _pair(model, rows: list[int], seed: int) -> tuple[list[KVDecoder], list[KVDecoder]]:
    g = torch.Generator().manual_seed(seed)
    alone = [KVDecoder(model, n, 128) for n in rows]
    shared = [KVDecoder(model, n, 128) for n in rows]
    for i, n in enumerate(rows):  # prompts of different lengths: every cache at its own length
        prompt = torch.randint(0, model.config.vocab_size, (n, 3 + 2 * i), generator=g)
        alone[i].forward(prompt)
        shared[i].forward(prompt)
    return alone, shared


@pytest.mark.parametrize("name", ["chorales", "folk"])
def test_a_batched_step_gives_each_row_its_bits_alone(name):
    model = _model(name)
    rows = [1, 8, 2, 8, 1, 3, 5, 16]
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        alone, shared = _pair(model, rows, 0)
        for _ in range(12):
            ids = [torch.randint(0, model.config.vocab_size, (n, 1), generator=g) for n in rows]
            together = forward_rows(shared, ids)
            for i in range(len(rows)):
                assert torch.equal(alone[i].forward(ids[i]), together[i]), f"decoder {i} ({rows[i]} rows)"
        assert [d.length for d in alone] == [d.length for d in shared]


def test_the_one_token_step_matches_the_models_own_forward():
    model = _model("folk")
    ids = torch.randint(0, model.config.vocab_size, (1, 24), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        decoder = KVDecoder(model, 1, 64)
        decoder.forward(ids[:, :8])
        for t in range(8, 24):
            logits = decoder.forward(ids[:, t : t + 1])
        reference = model(input_ids=ids).logits[:, -1]
    assert torch.allclose(logits, reference, atol=1e-4)


def test_threads_stepping_through_a_batcher_get_what_they_get_alone():
    model = _model("chorales")
    rows = [8, 1, 8, 3]
    batcher = StepBatcher(model)
    steps = 20
    g = torch.Generator().manual_seed(3)
    tokens = [[torch.randint(0, model.config.vocab_size, (n, 1), generator=g) for _ in range(steps)] for n in rows]
    with torch.inference_mode():
        alone, shared = _pair(model, rows, 1)
        expected = [[alone[i].forward(t) for t in tokens[i]] for i in range(len(rows))]
    got: list[list] = [[] for _ in rows]
    errors: list[BaseException] = []

    def stream(i: int) -> None:
        try:
            with torch.inference_mode():
                for t in tokens[i]:
                    got[i].append(batcher.step(shared[i], t))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(rows))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for i in range(len(rows)):
        assert all(torch.equal(a, b) for a, b in zip(expected[i], got[i], strict=True)), f"stream {i}"
    stats = batcher.stats.to_json()
    assert stats["steps"] == steps * len(rows) and stats["batches"] < stats["steps"], stats


def test_a_stopped_streams_next_step_is_refused():
    model = _model("chorales")
    batcher = StepBatcher(model)
    outcome: list[str] = []

    def run() -> None:
        threading.current_thread().stop_event.set()
        with torch.inference_mode():
            decoder = KVDecoder(model, 1, 16)
            decoder.forward(torch.zeros(1, 2, dtype=torch.long))
            try:
                batcher.step(decoder, torch.zeros(1, 1, dtype=torch.long))
            except StepsCancelled:
                outcome.append("cancelled")

    thread = threading.Thread(target=run)
    thread.stop_event = threading.Event()
    thread.start()
    thread.join(30)
    assert outcome == ["cancelled"]


def test_bar_positions_go_through_a_batched_step_as_alone():
    model = _model("chorales")
    if not getattr(model.config, "token_types", None):
        pytest.skip("builtin:chorales reads no bar positions")
    rows = [8, 1, 3]
    g = torch.Generator().manual_seed(4)
    with torch.inference_mode():
        alone, shared = _pair(model, rows, 2)
        for _ in range(6):
            ids = [torch.randint(0, model.config.vocab_size, (n, 1), generator=g) for n in rows]
            types = [torch.randint(0, model.config.vocab_size, (n, 1), generator=g) for n in rows]
            together = forward_rows(shared, ids, types)
            for i in range(len(rows)):
                assert torch.equal(alone[i].forward(ids[i], types[i]), together[i]), f"decoder {i}"
        # and a step with positions is the model's own forward with token_type_ids
        ids = torch.randint(0, model.config.vocab_size, (1, 12), generator=g)
        types = torch.randint(0, model.config.vocab_size, (1, 12), generator=g)
        decoder = KVDecoder(model, 1, 32)
        decoder.forward(ids[:, :8], types[:, :8])
        for t in range(8, 12):
            logits = decoder.forward(ids[:, t : t + 1], types[:, t : t + 1])
        reference = model(input_ids=ids, token_type_ids=types).logits[:, -1]
    assert torch.allclose(logits, reference, atol=1e-4)


def test_rows_with_a_common_prefix_read_it_once_and_attend_as_before():
    """Best-of-N candidates after their common prefix (`KVDecoder.common`): the prefix is read from row 0
    for all rows, one matmul per head; the logits agree with every row reading its own copy, and the same
    decoder gives the same bits alone and batched with others."""
    from orchestrion.gpt.batching import COMMON_MIN

    model = _model("chorales")
    n, prefix = 8, COMMON_MIN + 9
    g = torch.Generator().manual_seed(3)
    with torch.inference_mode():
        decoders = [KVDecoder(model, n, 256) for _ in range(3)]
        block = torch.randint(0, model.config.vocab_size, (1, prefix), generator=g).expand(n, -1)
        for d in decoders:
            d.forward(block)
        decoders[0].common = decoders[2].common = prefix  # the rows are the same up to here
        other = KVDecoder(model, 3, 256)
        other.forward(torch.randint(0, model.config.vocab_size, (3, 5), generator=g))
        for _ in range(6):
            ids = torch.randint(0, model.config.vocab_size, (n, 1), generator=g)
            common, plain = decoders[0].forward(ids), decoders[1].forward(ids)
            batched = forward_rows([other, decoders[2]], [ids[:3], ids])[1]
            assert torch.allclose(common, plain, atol=1e-4, rtol=1e-4)
            assert torch.equal(common, batched)
        assert decoders[0].common == prefix  # the rows' own tokens after it differ
        decoders[0].keep(5, decoders[0].length)
        assert decoders[0].common == decoders[0].length
        decoders[0].length = 10  # set back: nothing after it is common any more
        decoders[0].forward(ids)
        assert decoders[0].common == 10
