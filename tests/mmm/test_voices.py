"""The pieces of long, four-voice composing: windows and bar tokens, the voice rules, the critic, the plan."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from orchestrion.core.music import Key, load_midi, parse_key, save_midi, score_from_notes
from orchestrion.evaluation import polyphonic
from orchestrion.mmm import codec as mmm
from orchestrion.mmm.critic import Critic
from orchestrion.mmm.grammar import MMMIds, track_spans
from orchestrion.mmm.plan import Prompt, plan_piece
from orchestrion.mmm.voices import VOICE_RANGES, TrackSpec, VoiceConstraints
from orchestrion.mmm.windows import bar_tokens, cut_notes, next_window, track_notes
from orchestrion.requests import ComposeRequest

VOCAB = {t: i for i, t in enumerate(mmm.vocabulary())}
NAMES = {i: t for t, i in VOCAB.items()}
IDS = MMMIds.from_vocab(VOCAB)
SOPRANO_BAR = "NOTE_ON=72 TIME_DELTA=8 NOTE_OFF=72 NOTE_ON=67 TIME_DELTA=8 NOTE_OFF=67"  # C5 half, G4 half


# --------------------------------------------------------------------------------------------- windows


def test_bar_tokens_are_the_codecs_tokens_for_every_window(chorale_files):
    for path in chorale_files:
        score = load_midi(path)
        windows = mmm.encode_windows(score, bars=4, hop=2)
        canon = mmm.canonical_notes(score)
        bars = -(-int(canon.end.max()) // 16)
        for w, window in enumerate(windows[:6]):
            first = 2 * w
            if first + 4 >= bars:  # the last window sits flush with the end, off the hop
                break
            for k, track in enumerate(track_spans(window)):
                notes = np.stack(
                    [canon.start[canon.track == k], canon.end[canon.track == k], canon.pitch[canon.track == k]], 1
                )
                ours = ["BAR_START"]
                for i, body in enumerate(bar_tokens(notes, first, 4)):
                    ours += [*body, "BAR_END"] + (["BAR_START"] if i < 3 else [])
                assert track[3:-1] == ours, (path.name, w, k)


def test_track_notes_reads_back_bar_tokens():
    notes = np.array([[0, 4, 60], [4, 20, 62], [20, 32, 64], [32, 48, 65]])  # one held over a bar line
    tokens = [t for body in bar_tokens(notes, 0, 3) for t in ["BAR_START", *body, "BAR_END"]]
    assert np.array_equal(track_notes(tokens, 0), notes)
    # a window from bar 1 clips the held note to its start
    later = [t for body in bar_tokens(notes, 1, 2) for t in ["BAR_START", *body, "BAR_END"]]
    assert track_notes(later, 1).tolist() == [[16, 20, 62], [20, 32, 64], [32, 48, 65]]


def test_windows_cover_any_length_two_bars_at_a_time():
    todo = np.ones((4, 16), bool)
    starts = []
    while (window := next_window(todo)) is not None:
        start, end = window
        starts.append(start)
        todo[:, start:end] = False
    assert starts == [0, 2, 4, 6, 8, 10, 12]  # bars 0-3, then each window 2 bars given and 2 new
    fill = np.zeros((4, 16), bool)
    fill[:, 9] = True
    assert next_window(fill) == (7, 11)  # bar 9 between bars 7-8 and 10
    assert next_window(np.zeros((2, 3), bool)) is None
    # a first window of one bar (a stream's first measure comes sooner), then the same schedule
    todo = np.ones((4, 8), bool)
    windows = []
    while (window := next_window(todo, first=1)) is not None:
        windows.append(window)
        todo[:, window[0] : window[1]] = False
    assert windows == [(0, 1), (0, 4), (2, 6), (4, 8)]
    assert next_window(np.ones((4, 1), bool), first=1) == (0, 1)


def test_cut_notes_keeps_the_parts_outside():
    notes = np.array([[0, 20, 60], [20, 40, 62], [40, 50, 64]])
    assert cut_notes(notes, 16, 32).tolist() == [[0, 16, 60], [32, 40, 62], [40, 50, 64]]


# ----------------------------------------------------------------------------------------------- rules


def rules_after(tokens: str, *, key: Key | None = None, final_bar: int | None = None, crossing: bool = False):
    tracks = [TrackSpec.for_instrument("SOPRANO", crossing), TrackSpec.for_instrument("ALTO", crossing)]
    rules = VoiceConstraints(IDS, 1, bars=1, tracks=tracks, free={(1, 0)}, key=key, final_bar=final_bar)
    ids = torch.tensor([[VOCAB[t] for t in tokens.split()]])
    out = rules(ids, torch.zeros(1, len(VOCAB)))
    return {NAMES[i] for i in torch.nonzero(torch.isinf(out[0])).flatten().tolist()}, rules


ALTO_START = f"PIECE_START TRACK_START INST=SOPRANO DENSITY=0 BAR_START {SOPRANO_BAR} BAR_END TRACK_END " + (
    "TRACK_START INST=ALTO DENSITY=0 BAR_START"
)


def test_a_voice_keeps_its_range_and_stays_consonant_on_the_beat():
    banned, _ = rules_after(ALTO_START)
    low, high = VOICE_RANGES["ALTO"]
    assert f"NOTE_ON={low - 1}" in banned and f"NOTE_ON={high + 1}" in banned and f"NOTE_ON={low}" not in banned
    assert "NOTE_ON=71" in banned and "NOTE_ON=61" in banned  # B4 and C#4 clash with the soprano's C5
    assert "NOTE_ON=64" not in banned and "NOTE_ON=67" not in banned
    assert "TIME_DELTA=1" in banned and "BAR_END" in banned  # silent on the beat: a note must start now


def test_one_line_and_a_held_note_ends_before_a_clash():
    banned, _ = rules_after(ALTO_START + " NOTE_ON=68")  # G#4: fine under C5, a clash with the G4 at step 8
    assert "NOTE_ON=64" in banned  # one note at a time
    assert "TIME_DELTA=8" not in banned and "TIME_DELTA=9" in banned


def test_no_parallel_fifths_or_octaves():
    # alto F4 under C5 (a fifth); the soprano falls to G4 at step 8: an alto C4 there is a parallel fifth
    banned, _ = rules_after(ALTO_START + " NOTE_ON=65 TIME_DELTA=8 NOTE_OFF=65")
    assert "NOTE_ON=60" in banned and "NOTE_ON=62" not in banned and "NOTE_ON=64" not in banned


def test_crossing_is_forbidden_unless_allowed():
    banned, _ = rules_after(ALTO_START + " NOTE_ON=65 TIME_DELTA=8 NOTE_OFF=65")
    assert "NOTE_ON=69" in banned  # above the soprano's G4
    banned, _ = rules_after(ALTO_START + " NOTE_ON=65 TIME_DELTA=8 NOTE_OFF=65", crossing=True)
    assert "NOTE_ON=69" not in banned


def test_the_last_bar_is_a_held_perfect_cadence():
    key = parse_key("C major")
    banned, _ = rules_after(ALTO_START + " NOTE_ON=64 TIME_DELTA=4 NOTE_OFF=64", key=key, final_bar=0)
    assert "NOTE_ON=62" not in banned and "NOTE_ON=60" in banned  # beat 2: the dominant seventh, D yes, C no
    banned, _ = rules_after(ALTO_START + " NOTE_ON=64 TIME_DELTA=4 NOTE_OFF=64 NOTE_ON=62 TIME_DELTA=4 NOTE_OFF=62",
                            key=key, final_bar=0)  # fmt: skip
    assert "NOTE_ON=64" not in banned and "NOTE_ON=62" in banned  # the final chord: the tonic triad
    banned, _ = rules_after(ALTO_START + " NOTE_ON=60 TIME_DELTA=4 NOTE_OFF=60 NOTE_ON=62 TIME_DELTA=4 NOTE_OFF=62 "
                            "NOTE_ON=64", key=key, final_bar=0)  # fmt: skip
    assert "TIME_DELTA=4" in banned and "TIME_DELTA=8" not in banned  # held to the end of the piece


def test_rules_give_way_rather_than_leave_nothing():
    _, rules = rules_after(ALTO_START)
    scores = torch.full((1, len(VOCAB)), float("-inf"))
    scores[0, VOCAB["NOTE_ON=71"]] = 0.0  # the grammar (say) allows only a clash
    out = rules(torch.tensor([[VOCAB[t] for t in ALTO_START.split()]]), scores)
    assert torch.isfinite(out[0, VOCAB["NOTE_ON=71"]]) and rules.relaxed == [1]


# ---------------------------------------------------------------------------------------------- critic


def grids(*lines: list[tuple[int, int, int]], steps: int = 33) -> tuple[np.ndarray, np.ndarray]:
    pitch = np.full((len(lines), steps), -1)
    onset = np.zeros((len(lines), steps), bool)
    for k, notes in enumerate(lines):
        for start, end, p in notes:
            pitch[k, start:end] = p
            onset[k, start] = True
    return pitch, onset


def score_of(*lines):
    return score_from_notes(
        [
            {"pitch": [p for _, _, p in n], "start": [s for s, _, _ in n], "duration": [e - s for s, e, _ in n]}
            for n in lines
        ],
        tpq=4,
    )


def test_the_critic_counts_what_the_quality_metrics_measure():
    soprano = [(0, 4, 72), (4, 8, 74), (8, 12, 76), (12, 16, 77)]
    alto = [(0, 4, 65), (4, 8, 67), (8, 12, 75), (12, 16, 70)]  # a parallel fifth, then a clash on beat 3
    pitch, onset = grids(soprano, alto)
    terms = Critic().terms(pitch, onset, 1, 0, voices=[True, True])
    assert terms["parallel"] == 1 and terms["clash"] == 1
    score = score_of(soprano, alto)
    assert polyphonic.parallel_rate(score) > 0 and polyphonic.clash_rate(score) == pytest.approx(1 / 4)
    clean = [(0, 4, 64), (4, 8, 65), (8, 12, 67), (12, 16, 69)]
    pitch, onset = grids(soprano, clean)
    good = Critic().score(pitch, onset, 1, 0, voices=[True, True], logprob=-10.0)[0]
    bad = Critic().score(*grids(soprano, alto), 1, 0, voices=[True, True], logprob=-10.0)[0]
    assert good > bad


def test_the_critic_asks_four_voices_for_chords_and_a_full_final_triad():
    key = parse_key("C major")
    soprano, alto, tenor = [(0, 16, 72)], [(0, 16, 67)], [(0, 16, 64)]
    pitch, onset = grids(soprano, alto, tenor, [(0, 16, 48)])
    full = Critic(key=key).terms(pitch, onset, 3, 0, voices=[True] * 4, final=True)
    pitch, onset = grids(soprano, alto, [(0, 16, 60)], [(0, 16, 48)])
    bare = Critic(key=key).terms(pitch, onset, 3, 0, voices=[True] * 4, final=True)
    assert full["chord"] == 0 and bare["chord"] == 4  # C-G-C-C: no third on any beat
    assert bare["cadence"] > full["cadence"]


# ------------------------------------------------------------------------------------------------ plan


def test_a_high_melody_is_moved_into_the_soprano_range_and_back(tmp_path):
    melody = score_from_notes([{"pitch": [86, 88, 89, 91], "start": [0, 4, 8, 12], "duration": [4] * 4}], tpq=4)
    prompt = Prompt.from_score(load_midi(save_midi(melody, tmp_path / "m.mid")))
    plan = plan_piece(ComposeRequest(model="x", prompt=str(tmp_path / "m.mid")), prompt)
    assert plan.mode == "harmonise" and plan.shift == -12
    assert plan.tracks[0].notes[:, 2].tolist() == [74, 76, 77, 79]
    assert any("soprano" in w for w in plan.warnings)
    assert [t.instrument for t in plan.tracks] == ["SOPRANO", "ALTO", "TENOR", "BASS"]


def test_the_plan_keeps_the_prompts_tempo_unless_the_request_sets_one(tmp_path):
    melody = score_from_notes([{"pitch": [72, 74], "start": [0, 4], "duration": [4, 4]}], tpq=4, tempo_qpm=72.0)
    path = save_midi(melody, tmp_path / "m.mid")
    prompt = Prompt.from_score(load_midi(path))
    assert plan_piece(ComposeRequest(model="x", prompt=str(path)), prompt).tempo == pytest.approx(72.0)
    assert plan_piece(ComposeRequest(model="x", prompt=str(path), tempo=100), prompt).tempo == 100


def test_the_key_is_the_requests_else_drawn_from_the_chorales():
    assert plan_piece(ComposeRequest(model="x", key="D minor"), None).key == parse_key("D minor")
    drawn = {plan_piece(ComposeRequest(model="x"), None, seed=s).key.name for s in range(40)}
    assert "G major" in drawn and len(drawn) > 4


def test_a_prompts_key_signature_gives_its_key(tmp_path):
    import symusic

    melody = score_from_notes([{"pitch": [71, 74, 78, 74], "start": [0, 4, 8, 12], "duration": [4] * 4}], tpq=4)
    melody.key_signatures.append(symusic.KeySignature(0, 2, 1))  # two sharps, minor: B minor
    prompt = Prompt.from_score(load_midi(save_midi(melody, tmp_path / "m.mid")))
    assert prompt.key() == parse_key("B minor")
    melody.key_signatures[0] = symusic.KeySignature(0, -3, 0)  # three flats, major: E-flat major
    assert Prompt.from_score(load_midi(save_midi(melody, tmp_path / "n.mid"))).key() == parse_key("Eb major")
