"""Grammar constraints: valid mmm from random weights, forced conditioning, fills, traps, ABC headers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrion.abc.sampler import sample_abc
from orchestrion.core.sampling import RepetitionTrap, SamplingConfig
from orchestrion.gpt.decoding import generate_all
from orchestrion.mmm import codec as mmm
from orchestrion.mmm.grammar import MMMGrammar, MMMIds
from orchestrion.mmm.sampler import sample_mmm
from orchestrion.requests import ComposeRequest

SATB = ["SOPRANO", "ALTO", "TENOR", "BASS"]


def pieces(model, tokenizer, request, **kwargs):
    return sorted(
        (e for e in sample_mmm(model, tokenizer, request, token_events=False, **kwargs) if e.kind == "piece"),
        key=lambda e: e.sample,
    )


def check_piece(tokens: list[str], bars: int, tracks: int):
    score, repairs = mmm.decode(tokens)
    assert repairs == [], repairs
    spans = [i for i, t in enumerate(tokens) if t == "TRACK_START"]
    assert len(spans) == tracks
    assert tokens.count("BAR_START") == bars * tracks
    assert tokens[0] == "PIECE_START" and tokens[-1] == "PIECE_END"
    assert score.end() <= bars * mmm.STEPS_PER_BAR
    return score


def test_random_samples_all_decode_to_exact_bars_and_tracks(mmm_model, mmm_tokenizer):
    request = ComposeRequest(model="x", bars=4, seed=7, num_samples=12, candidates=2)
    found = pieces(mmm_model, mmm_tokenizer, request)
    assert len(found) == 12
    for event in found:
        score = check_piece(event.tokens, bars=4, tracks=4)
        assert len(score.tracks) <= 4  # tracks without notes are dropped by the decoder
        assert event.report["repetition_traps"] >= 0


@pytest.mark.parametrize(("bars", "tracks"), [(1, 1), (2, 3), (8, 2)])
def test_other_shapes_and_forced_instruments_and_density(mmm_model, mmm_tokenizer, bars, tracks):
    instruments = ["0", "40", "DRUMS"][:tracks]
    request = ComposeRequest(
        model="x", bars=bars, seed=1, num_samples=3, instruments=instruments, density=[3] * tracks, candidates=2
    )
    for event in pieces(mmm_model, mmm_tokenizer, request):
        check_piece(event.tokens, bars, tracks)
        assert [t for t in event.tokens if t.startswith("INST=")] == [f"INST={i}" for i in instruments]
        assert [t for t in event.tokens if t.startswith("DENSITY=")] == ["DENSITY=3"] * tracks
        # bar 0 alone, then bars 0-3 (8 bars: then 2-5 and 4-7, two new bars each)
        assert event.report["windows"] == {1: 1, 2: 2, 8: 4}[bars]


def test_same_seed_same_pieces(mmm_model, mmm_tokenizer):
    request = ComposeRequest(model="x", bars=2, seed=5, num_samples=3, candidates=3)
    a = [e.tokens for e in pieces(mmm_model, mmm_tokenizer, request)]
    b = [e.tokens for e in pieces(mmm_model, mmm_tokenizer, request)]
    assert a == b
    # piece i of a batch is the piece of seed + i, made alone
    alone = pieces(mmm_model, mmm_tokenizer, request.model_copy(update={"seed": 6, "num_samples": 1}))
    assert alone[0].tokens == a[1]


def test_bars_stream_as_they_close(mmm_model, mmm_tokenizer):
    request = ComposeRequest(model="x", bars=2, seed=2, instruments=SATB, candidates=2)
    events = list(sample_mmm(mmm_model, mmm_tokenizer, request))
    bars = [e for e in events if e.kind == "bar"]
    # bar 0 of every track (a first window of one bar), then bar 1 of every track
    assert [(e.track, e.bar) for e in bars] == [(t, b) for b in range(2) for t in range(4)]
    assert [e.instrument for e in bars[:4]] == [f"INST={v}" for v in SATB]
    assert events.index(bars[0]) < len(events) - 5  # the first bar comes long before the piece


def test_melody_is_harmonised_note_for_note(mmm_model, mmm_tokenizer, fixtures_dir):
    from orchestrion.core.music import load_midi

    melody = mmm.encode(load_midi(fixtures_dir / "one_track.mid"))
    given, _ = mmm.decode(melody)
    request = ComposeRequest(model="x", seed=4, num_samples=2, prompt=str(fixtures_dir / "one_track.mid"), candidates=2)
    for event in pieces(mmm_model, mmm_tokenizer, request):
        assert event.report["mode"] == "harmonise"
        score = check_piece(event.tokens, bars=2, tracks=4)
        assert [t for t in event.tokens if t.startswith("INST=")] == [f"INST={v}" for v in SATB]
        a, b = given.tracks[0].notes.numpy(), score.tracks[0].notes.numpy()
        for key in ("time", "duration", "pitch"):
            assert np.array_equal(a[key], b[key])


def test_fill_in_a_bar_keeps_the_others(mmm_model, mmm_tokenizer):
    source = pieces(mmm_model, mmm_tokenizer, ComposeRequest(model="x", bars=4, seed=9, instruments=SATB))[0].tokens
    request = ComposeRequest(model="x", seed=3, num_samples=2, fill_bars=[1, 2], candidates=2)
    for event in pieces(mmm_model, mmm_tokenizer, request, prompt_tokens=source):
        assert event.report["mode"] == "fill" and "FILL_START" not in event.tokens  # composed between its bars
        score, repairs = mmm.decode(event.tokens)
        assert repairs == []
        original, _ = mmm.decode(source)
        for kept_track, new_track in zip(original.tracks, score.tracks, strict=True):

            def notes(track, outside_only):
                a = track.notes.numpy()
                start, end = a["time"], a["time"] + a["duration"]
                keep = (end <= 16) | (start >= 48) if outside_only else np.ones(len(start), bool)
                return set(zip(start[keep].tolist(), end[keep].tolist(), a["pitch"][keep].tolist(), strict=True))

            # notes wholly outside bars 1-2 are kept as they were (a note over the edge is cut at it)
            assert notes(kept_track, True) <= notes(new_track, False)


def test_continuing_a_prompt_keeps_its_bars(mmm_model, mmm_tokenizer):
    source = pieces(mmm_model, mmm_tokenizer, ComposeRequest(model="x", bars=2, seed=9, instruments=SATB[:2]))[0].tokens
    request = ComposeRequest(model="x", seed=3, num_samples=2, bars=4, candidates=2)
    for event in pieces(mmm_model, mmm_tokenizer, request, prompt_tokens=source):
        check_piece(event.tokens, bars=4, tracks=2)
        for track, given in zip(mmm.decode(event.tokens)[0].tracks, mmm.decode(source)[0].tracks, strict=True):
            a = track.notes.numpy()
            early = a["time"] + a["duration"] <= 2 * mmm.STEPS_PER_BAR
            g = given.notes.numpy()
            g_ok = g["time"] + g["duration"] < 2 * mmm.STEPS_PER_BAR  # notes cut at the window end may grow
            assert set(zip(g["time"][g_ok].tolist(), g["pitch"][g_ok].tolist(), strict=True)) <= set(
                zip(a["time"][early].tolist(), a["pitch"][early].tolist(), strict=True)
            )


def test_too_many_tracks_for_the_context_is_a_clear_error(mmm_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    from orchestrion.errors import InvalidRequest

    small = GPT2LMHeadModel(GPT2Config(vocab_size=426, n_positions=64, n_embd=16, n_layer=1, n_head=1)).eval()
    with pytest.raises(InvalidRequest, match="context"):
        pieces(small, mmm_tokenizer, ComposeRequest(model="x", bars=4, instruments=["0"] * 16, candidates=1))


def test_grammar_allows_only_valid_tokens_step_by_step(mmm_tokenizer):
    ids = MMMIds.from_vocab(mmm_tokenizer.get_vocab())
    grammar = MMMGrammar(ids, 1, bars=1, tracks=1, instruments=["INST=0"])
    vocab = mmm_tokenizer.get_vocab()
    names = {i: t for t, i in vocab.items()}
    seq = ["PIECE_START"]
    scores = torch.zeros(1, len(vocab))

    def allowed():
        out = grammar(torch.tensor([[vocab[t] for t in seq]]), scores)
        return {names[i] for i in torch.nonzero(torch.isfinite(out[0])).flatten().tolist()}

    assert allowed() == {"TRACK_START"}
    seq.append("TRACK_START")
    assert allowed() == {"INST=0"}
    seq += ["INST=0", "DENSITY=2", "BAR_START"]
    first = allowed()
    assert "NOTE_ON=60" in first and "BAR_END" in first and not any(t.startswith("NOTE_OFF") for t in first)
    assert "TIME_DELTA=16" not in first  # nothing sounds, so a delta to the bar line would be a dead end
    seq += ["NOTE_ON=60", "TIME_DELTA=4"]
    now = allowed()
    assert "NOTE_OFF=60" in now and "NOTE_OFF=61" not in now and "BAR_END" not in now
    seq += ["NOTE_OFF=60", "TIME_DELTA=12"]  # at the bar line: nothing sounds, no NOTE_ON allowed
    seq.pop()
    seq.append("TIME_DELTA=11")
    assert "TIME_DELTA=2" not in allowed()
    seq.append("NOTE_ON=62")
    assert "TRACK_END" not in allowed() and "BAR_END" not in allowed()  # the last bar must close its notes


# ---------------------------------------------------------------------------------------- traps


def test_repetition_trap_breaks_a_constructed_loop():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_positions=128, n_embd=16, n_layer=1, n_head=1)).eval()

    def loop(input_ids, scores):  # a model stuck in a loop: it always wants "5 6 7 8" again
        out = scores.clone()
        nxt = [5, 6, 7, 8][(input_ids.shape[1] - 1) % 4]
        out[:, nxt] += 50.0
        return out

    plain = generate_all(model, torch.zeros(1, 1, dtype=torch.long), SamplingConfig(seed=0), [loop], max_new_tokens=40)[
        0
    ]
    assert plain[:8] == [5, 6, 7, 8, 5, 6, 7, 8] and plain == [5, 6, 7, 8] * 10
    trap = RepetitionTrap(1, repeats=4, min_tokens=8)
    broken = generate_all(
        model, torch.zeros(1, 1, dtype=torch.long), SamplingConfig(seed=0), [loop, trap], max_new_tokens=40
    )[0]
    assert trap.fired[0] > 0
    # No phrase of the loop comes a fifth time in a row.
    assert all(broken[i : i + 20] != [5, 6, 7, 8] * 5 for i in range(len(broken) - 19))


def test_trap_never_bans_a_forced_token():
    trap = RepetitionTrap(1, repeats=2, min_tokens=2)
    ids = torch.tensor([[0, 3, 3, 3, 3]])
    scores = torch.full((1, 5), float("-inf"))
    scores[0, 3] = 0.0
    out = trap(ids, scores)
    assert torch.isfinite(out[0, 3]) and trap.fired[0] == 0


# ------------------------------------------------------------------------------------------- abc


@pytest.fixture(scope="module")
def abc_setup(fixtures_dir):
    from transformers import GPT2Config, GPT2LMHeadModel

    from orchestrion.abc import text as abccodec
    from orchestrion.abc.dataset import make_tokenizer

    tune = (fixtures_dir / "tune.abc").read_text()
    tokenizer = make_tokenizer([abccodec.spaceless(abccodec.clean(tune).abc)] * 4, 300)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=tokenizer.get_vocab_size(), n_positions=256, n_embd=32, n_layer=1, n_head=2)
    ).eval()
    return model, tokenizer, tune


def test_abc_header_is_forced_from_the_request(abc_setup):
    model, tokenizer, _ = abc_setup
    request = ComposeRequest(
        model="x", seed=1, num_samples=3, title="Test Jig", meter="6/8", rhythm="jig", key="D major", max_tokens=120
    )
    tunes = [e for e in sample_abc(model, tokenizer, request, check=False) if e.kind == "tune"]
    assert len(tunes) == 3
    for tune in tunes:
        lines = tune.text.split("\n")
        assert lines[:4] == ["X:1", "T:Test Jig", "R:jig", "M:6/8"]
        assert lines[4:6] == ["L:1/8", "K:D"]


def test_abc_variations_start_from_the_tune_and_are_checked(abc_setup):
    model, tokenizer, tune = abc_setup
    request = ComposeRequest(model="x", seed=2, num_samples=2, variations_of=tune, max_tokens=60)
    config = SamplingConfig.from_request(request, abc_retries=1)
    tunes = [e for e in sample_abc(model, tokenizer, request, config=config) if e.kind == "tune"]
    assert sorted(t.sample for t in tunes) == [0, 1]
    for t in tunes:
        assert t.text.startswith("X:1\nT:The Test Reel\nR:reel\nM:4/4\nL:1/8\nK:D\n|:A2FADAFA|")
        # random weights rarely make valid ABC: the failures were retried and reported, never hidden
        assert t.valid or (t.report["retries"] == 1 and t.report["invalid"] == 1)


def test_a_long_melody_is_harmonised_window_by_window(mmm_model, mmm_tokenizer, tmp_path):
    from orchestrion.core.music import save_midi, score_from_notes

    # Six bars of quarter notes at tpq 4 steps; one note is tied over the bar line 4 | 5, a window edge.
    pitch = [60 + (i * 5) % 12 for i in range(24)]
    start = [4 * i for i in range(24)]
    duration = [4] * 24
    duration[15] = 8  # from the last beat of bar 4 into bar 5 (a tie across the window edge)
    del pitch[16], start[16], duration[16]
    melody = score_from_notes(
        [{"pitch": pitch, "start": [s * 120 for s in start], "duration": [d * 120 for d in duration]}], tpq=480
    )
    path = save_midi(melody, tmp_path / "melody.mid")
    given, _ = mmm.decode(mmm.encode(melody))
    request = ComposeRequest(model="x", seed=6, num_samples=2, prompt=str(path), candidates=2)
    for event in pieces(mmm_model, mmm_tokenizer, request):
        assert event.report["windows"] == 2  # bars 0-3, then 4-5 after 2-3
        score = check_piece(event.tokens, bars=6, tracks=4)
        a, b = given.tracks[0].notes.numpy(), score.tracks[0].notes.numpy()
        for key in ("time", "duration", "pitch"):
            assert np.array_equal(a[key], b[key])
        assert len(score.tracks) == 4 and all(len(t.notes) for t in score.tracks[1:])


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ("A2FADAFA|BAFABdcB|\n", True),
        ("|:d2fdADFA|dfedcdeg:|\n", True),
        ("e2e>e|(3GBG A|", False),  # a space is no body character
        ("(3GBG>A|", False),  # abc2midi: broken rhythm next to a tuplet
        ("(3(3ABC|", False),  # nested tuplets
        ("{g}A2B|", True),
        ("{g|}A|", False),  # a bar line inside grace notes
        ("A>B2|", False),  # a broken rhythm needs equal lengths
        ("|:AB|:cd:|", False),  # a second |: before the :|
        ("|:ABcd|", False),  # the tune may not end inside a repeat
        ("^^A=B_c|", True),
        ("^^^A|", False),
    ],
)
def test_abc_body_syntax_automaton(body, ok):
    from orchestrion.abc.grammar import ABC_START, abc_can_end, abc_feed

    state = abc_feed(ABC_START, body)
    assert (state is not None and abc_can_end(state)) == ok


def test_abc_bodies_follow_the_automaton_even_from_random_weights(abc_setup):
    from orchestrion.abc.grammar import ABC_START, abc_can_end, abc_feed

    model, tokenizer, _ = abc_setup
    request = ComposeRequest(model="x", seed=5, num_samples=4, meter="6/8", max_tokens=150)
    for tune in (e for e in sample_abc(model, tokenizer, request, check=False) if e.kind == "tune"):
        body = tune.text.split("\n", 6)[6].rstrip("\n")  # sample_abc ends every tune with a newline
        state = abc_feed(ABC_START, body)
        assert state is not None, body
        if tune.report["tokens"] < 140:  # ended by the model, not cut at the budget
            assert abc_can_end(state)
