"""Composing chorales window by window: voices by construction, any length, continuation, fill, harmonisation,
best-of-N and the stream, from random weights (valid by construction, whatever the model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from orchestrion.composer import Measure, PieceReport
from orchestrion.core.music import load_midi, parse_key, save_midi, score_from_notes
from orchestrion.evaluation import polyphonic
from orchestrion.mmm import codec as mmm
from orchestrion.mmm.sampler import sample_mmm
from orchestrion.mmm.search import Unit, best_of_n
from orchestrion.mmm.voices import VOICE_RANGES
from orchestrion.requests import ComposeRequest

SATB = ["SOPRANO", "ALTO", "TENOR", "BASS"]
RANGES = [VOICE_RANGES[v] for v in SATB]


def compose(model, tokenizer, prompt_tokens=None, **fields):
    request = ComposeRequest(model="x", **{"candidates": 2, "seed": 1, **fields})
    events = list(sample_mmm(model, tokenizer, request, prompt_tokens, token_events=False))
    return [e for e in events if e.kind == "piece"], events


def check_voices(tokens: list[str], key: str, ranges=RANGES) -> object:
    score, repairs = mmm.decode(tokens)
    assert repairs == []
    assert polyphonic.voice_polyphony(score) == 0  # every voice one line
    assert polyphonic.range_ok(score, ranges) == 1.0
    assert polyphonic.clash_rate(score) == 0 and polyphonic.parallel_rate(score) == 0
    assert polyphonic.voices_sounding(score) == 1.0
    return score


def test_four_real_voices_and_a_final_tonic_from_random_weights(mmm_model, mmm_tokenizer):
    for seed in range(4):
        (piece,), _ = compose(mmm_model, mmm_tokenizer, bars=4, seed=seed, key="D minor" if seed else None)
        report = piece.report
        assert report["relaxed"] == 0, report
        score = check_voices(piece.tokens, report["key"])
        assert polyphonic.final_tonic(score, report["key"]) == 1.0
        assert seed == 0 or report["key"] == "D minor"


@pytest.mark.parametrize("bars", [16, 32])
def test_any_length_composes_window_by_window(mmm_model, mmm_tokenizer, bars):
    (piece,), events = compose(mmm_model, mmm_tokenizer, bars=bars, candidates=1)
    assert piece.report["windows"] == 2 + (bars - 4) // 2  # bar 0 alone first, then 4 bars, then 2 at a time
    spans = [t for t in piece.tokens if t == "TRACK_START"]
    assert len(spans) == 4 and piece.tokens.count("BAR_START") == 4 * bars
    score, repairs = mmm.decode(piece.tokens)
    assert repairs == [] and score.end() <= bars * 16
    per_bar = np.bincount(np.concatenate([t.notes.numpy()["time"] // 16 for t in score.tracks]), minlength=bars)
    assert per_bar.min() >= 4  # every bar of every window sounds: no starved bars at the end
    measures = [e for e in events if e.kind == "measures"]
    assert [e.bars for e in measures] == [1, *range(4, bars + 1, 2)]  # final bars stream out window by window


def test_sixty_four_bars(mmm_model, mmm_tokenizer):
    (piece,), _ = compose(mmm_model, mmm_tokenizer, bars=64, candidates=1)
    assert piece.tokens.count("BAR_START") == 4 * 64 and mmm.decode(piece.tokens)[1] == []


def test_continuing_to_eight_bars_keeps_the_prompt(mmm_model, mmm_tokenizer):
    (source,), _ = compose(mmm_model, mmm_tokenizer, bars=4, seed=9)
    (piece,), _ = compose(mmm_model, mmm_tokenizer, source.tokens, bars=8, seed=3)
    assert piece.report["mode"] == "continue" and piece.tokens.count("BAR_START") == 32
    before, _ = mmm.decode(source.tokens)
    after = check_voices(piece.tokens, piece.report["key"])
    for a, b in zip(before.tracks, after.tracks, strict=True):
        x, y = a.notes.numpy(), b.notes.numpy()
        early = y["time"] < 64
        for field in ("time", "duration", "pitch"):
            assert np.array_equal(x[field], y[field][early])


def test_a_fill_keeps_each_track_in_its_voice_and_range(mmm_model, mmm_tokenizer):
    (source,), _ = compose(mmm_model, mmm_tokenizer, bars=4, seed=5)
    (piece,), _ = compose(mmm_model, mmm_tokenizer, source.tokens, fill_bars=[1, 2], seed=2)
    score = check_voices(piece.tokens, piece.report["key"])
    assert [t.name for t in score.tracks] == [v.capitalize() for v in SATB]
    # an instrument that is no voice keeps the range its own notes use in the prompt
    piano = score_from_notes([{"pitch": [60, 64, 62, 63] * 4, "start": list(range(0, 64, 4)), "duration": [4] * 16}],
                             tpq=4)  # fmt: skip
    (filled,), _ = compose(mmm_model, mmm_tokenizer, mmm.encode(piano), fill_bars=[2], seed=4)
    pitches = mmm.decode(filled.tokens)[0].tracks[0].notes.numpy()["pitch"]
    assert pitches.min() >= 60 and pitches.max() <= 64


def test_a_high_melody_is_harmonised_in_range_kept_exactly_and_warned(mmm_model, mmm_tokenizer, tmp_path):
    pitch = [86, 88, 89, 91, 89, 88, 86, 84] * 2
    melody = score_from_notes(
        [{"pitch": pitch, "start": [480 * i for i in range(16)], "duration": [480] * 16}], tpq=480, tempo_qpm=84
    )
    path = save_midi(melody, tmp_path / "high.mid")
    (piece,), _ = compose(mmm_model, mmm_tokenizer, prompt=str(path), seed=2)
    report = piece.report
    assert report["mode"] == "harmonise" and report["shift"] == -12 and report["warnings"]
    assert report["tempo"] == pytest.approx(84)
    score, repairs = mmm.decode(piece.tokens)
    assert repairs == [] and score.tracks[0].notes.numpy()["pitch"].tolist() == pitch
    moved = [(0, 127)] + [(lo + 12, hi + 12) for lo, hi in RANGES[1:]]  # composed an octave down, moved back
    assert polyphonic.range_ok(score, moved) == 1.0 and polyphonic.voice_polyphony(score) == 0


def test_the_composer_streams_measures_with_the_key_signature_tempo_and_title(mmm_model, mmm_tokenizer, tmp_path):
    from orchestrion.gpt.composer import GPTComposer
    from orchestrion.mmm.encoding import MMMEncoding

    composer = GPTComposer(mmm_model, mmm_tokenizer, MMMEncoding())
    request = ComposeRequest(model="x", bars=8, seed=3, key="A minor", candidates=1, instruments=SATB)
    chunks = list(composer.stream(composer.validate(request)))
    measures = [c for c in chunks if isinstance(c, Measure)]
    assert [m.index for m in measures] == list(range(8)) and isinstance(chunks[-1], PieceReport)
    assert chunks.index(measures[0]) < chunks.index(measures[-1]) - 4  # the first bars come before the last
    piece = composer.compose(request.model_copy(update={"title": "Test Chorale"}))
    path = piece.save(tmp_path / "c.mid")[0]
    saved = load_midi(path)
    assert [(k.key, k.tonality) for k in saved.key_signatures] == [(0, 1)]  # A minor: no sharps, minor
    assert [m.text for m in saved.markers] == ["Title: Test Chorale"]


def test_best_of_n_keeps_the_judges_choice_and_goes_on_from_it(mmm_model, mmm_tokenizer):
    from orchestrion.core.sampling import SamplingConfig, build_processors
    from orchestrion.gpt.decoding import KVDecoder
    from orchestrion.mmm.grammar import MMMGrammar, MMMIds

    vocab = mmm_tokenizer.get_vocab()
    ids = MMMIds.from_vocab(vocab)
    grammar = MMMGrammar(ids, 5, bars=2, tracks=1)
    head = [vocab[t] for t in "PIECE_START TRACK_START INST=0 DENSITY=3 BAR_START".split()]
    choices = list(
        best_of_n(
            mmm_model,
            [Unit(head, (0, 0)), Unit([vocab["BAR_START"]], (0, 1))],
            n=5,
            processors=build_processors(SamplingConfig(seed=0), [grammar]),
            stateful=[grammar],
            judge=lambda row, cell, tokens, logprob: (float(len(tokens)), {}),  # the longest bar wins
            bar_end=vocab["BAR_END"],
            pad=0,
            generator=torch.Generator().manual_seed(0),
        )
    )
    for choice in choices:
        assert len(choice.tokens) == max(choice.scores) and len(set(choice.scores)) > 1
    # the cache all rows go on from is the chosen row's: the same logits as the model's own forward
    sequence = head + choices[0].tokens + [vocab["BAR_START"]] + choices[1].tokens
    with torch.inference_mode():
        decoder = KVDecoder(mmm_model, 3, 64)
        decoder.forward(torch.tensor([sequence[:-3], sequence[:-3], sequence[:-3]]))
        decoder.forward(torch.tensor([[5, 6, 7], sequence[-3:], [7, 6, 5]]))
        decoder.keep(1, len(sequence))
        logits = decoder.forward(torch.tensor([[9], [9], [9]]))
        reference = mmm_model(torch.tensor([[*sequence, 9]])).logits[0, -1]
    assert torch.allclose(logits, reference.expand(3, -1), atol=1e-4)


def test_a_key_is_honoured_and_recorded(mmm_model, mmm_tokenizer):
    (piece,), _ = compose(mmm_model, mmm_tokenizer, bars=4, key="Bb major", seed=8)
    score, _ = mmm.decode(piece.tokens)
    assert piece.report["key"] == parse_key("Bb major").name
    assert polyphonic.in_key(score, "Bb major") >= 0.8 and polyphonic.final_tonic(score, "Bb major") == 1.0


# ------------------------------------------------------------------------------------------ bar positions


def test_bar_positions_token_by_token_are_the_vectorised_ones(chorale_files):
    from orchestrion.mmm.timing import TYPE_TOKENS, BarClock, token_types

    vocab = {t: i for i, t in enumerate([*mmm.vocabulary(), *TYPE_TOKENS])}
    names = {i: t for t, i in vocab.items()}
    tokens = mmm.encode_windows(load_midi(chorale_files[0]), bars=4, hop=4)[0]
    ids = np.array([vocab[t] for t in tokens])
    types = token_types(ids, vocab)
    clock = BarClock(vocab, 1)
    assert [clock.feed(0, int(t)) for t in ids] == types.tolist()
    seen = dict(zip(tokens, [names[int(t)] for t in types], strict=False))
    assert seen["PIECE_START"] == "POS=64" and [names[int(t)] for t in types[tokens.index("BAR_START") :][:1]] == [
        "POS=0"
    ]
    bar_starts = [names[int(t)] for t, tok in zip(types, tokens, strict=True) if tok == "BAR_START"]
    assert bar_starts[:4] == ["POS=0", "POS=16", "POS=32", "POS=48"] and bar_starts[4] == "POS=0"  # the alto


def test_a_model_with_bar_positions_trains_samples_and_scores(tmp_path, monkeypatch):
    from dataclasses import replace

    from orchestrion.gpt import model as gpt_model
    from orchestrion.gpt.decoding import KVDecoder
    from orchestrion.gpt.training import train_gpt
    from orchestrion.mmm.timing import TYPE_TOKENS, token_types
    from orchestrion.registry import load_composer
    from orchestrion.testing.datasets import make_token_dataset

    monkeypatch.setitem(gpt_model.PRESETS, "tiny-bars", replace(gpt_model.PRESETS["tiny"], token_types="bar-steps"))
    data = make_token_dataset(tmp_path / "data")
    train_gpt(data, tmp_path / "model", preset_name="tiny-bars", steps=4, quiet=True)
    composer = load_composer(tmp_path / "model")
    vocab = composer.tokenizer.get_vocab()
    assert composer.model.config.token_types == "bar-steps" and all(t in vocab for t in TYPE_TOKENS)
    (piece,), _ = compose(composer.model, composer.tokenizer, bars=6, candidates=2)
    assert mmm.decode(piece.tokens)[1] == []
    # the decoder feeds the positions as GPT-2's token_type_ids do
    ids = np.array([vocab[t] for t in piece.tokens[:40]])
    types = token_types(ids, vocab)
    with torch.inference_mode():
        decoder = KVDecoder(composer.model, 1, 64)
        decoder.forward(torch.from_numpy(ids[None, :30]), torch.from_numpy(types[None, :30]))
        for i in range(30, 40):
            logits = decoder.forward(torch.tensor([[ids[i]]]), torch.tensor([[types[i]]]))
        reference = composer.model(torch.from_numpy(ids[None]), token_type_ids=torch.from_numpy(types[None])).logits[
            0, -1
        ]
    assert torch.allclose(logits[0], reference, atol=1e-4)
    from orchestrion.gpt.likelihood import gpt_likelihood

    assert gpt_likelihood(composer, data, windows=2, context=32)["loss"] < math.log(len(vocab))


def test_fewer_candidates_in_the_first_window_only(mmm_model, mmm_tokenizer):
    """`SearchSettings.first_candidates` (off by default): the one-bar first window searched with fewer rows;
    the piece stays whole, decodable without repair, and the same for the same seed."""
    from orchestrion.mmm.sampler import SearchSettings

    assert SearchSettings().first_candidates is None
    request = ComposeRequest(model="x", bars=4, seed=3)
    settings = SearchSettings(candidates=2, first_candidates=1)
    pieces = [
        [e for e in sample_mmm(mmm_model, mmm_tokenizer, request, settings=settings, token_events=False)][-1]
        for _ in range(2)
    ]
    assert pieces[0].tokens == pieces[1].tokens and pieces[0].report["windows"] == 2
    score, repairs = mmm.decode(pieces[0].tokens)
    assert repairs == [] and len(score.tracks) == 4
