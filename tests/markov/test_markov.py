"""The Markov composer: counting, back-off, merge, save/load, generation, validation, the shipped model."""

from __future__ import annotations

import random

import numpy as np
import pytest

from orchestrion.core.music import estimate_key, parse_key, save_midi, score_from_notes
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.markov import composer as mk
from orchestrion.markov import counts as mc
from orchestrion.markov import dataset as events_dataset
from orchestrion.markov import events as ev
from orchestrion.markov import training as mt
from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest

SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}


def random_piece(rng: random.Random, mode: str, n: int = 60) -> ev.PieceEvents:
    """A piece of random events in C, with rests, all durations and real chords."""
    scale = SCALES[mode]

    def line(octave: int) -> np.ndarray:
        tones = [ev.REST if rng.random() < 0.05 else octave * 12 + rng.choice(scale) for _ in range(n)]
        return np.asarray([ev.melody_event(t, rng.randrange(ev.N_DURATIONS)) for t in tones], dtype=np.int64)

    chords = [ev.chord_code([rng.choice(scale) + 48 + 12 * k for k in range(rng.randint(0, 4))]) for _ in range(n // 2)]
    return ev.PieceEvents(line(3), line(1), np.asarray(chords, dtype=np.int64), 0, mode)


@pytest.fixture(scope="module")
def pieces() -> list[ev.PieceEvents]:
    rng = random.Random(7)
    return [random_piece(rng, "major" if i % 3 else "minor", n=20 + 7 * i) for i in range(12)]


@pytest.fixture(scope="module")
def composer(pieces) -> mk.MarkovComposer:
    return mk.MarkovComposer(mc.count_pieces(pieces))


def write_corpus(folder, n: int = 8) -> None:
    """Small two-voice MIDI pieces in C major and A minor (random walks), plus one corrupt file."""
    rng = random.Random(3)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        scale = [0, 2, 4, 5, 7, 9, 11] if i % 2 == 0 else [9, 11, 0, 2, 4, 5, 7, 8]
        tracks = []
        for octave in (5, 3):
            t, pitch, start, duration = 0, [], [], []
            for _ in range(24):
                d = rng.choice([240, 480, 480, 960])
                pitch.append(12 * octave + rng.choice(scale))
                start.append(t)
                duration.append(d)
                t += d
            tracks.append({"pitch": pitch, "start": start, "duration": duration})
        save_midi(score_from_notes(tracks), folder / f"piece{i}.mid")
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")


# --------------------------------------------------------------------------------------- counting


def test_vectorised_counts_equal_the_sequential_reference(pieces):
    fast, slow = mc.count_pieces(pieces), mc.count_sequential(pieces)
    assert sorted(fast) == sorted(slow)
    for name in fast:
        np.testing.assert_array_equal(fast[name][0], slow[name][0], err_msg=name)
        np.testing.assert_array_equal(fast[name][1], slow[name][1], err_msg=name)
    # Every event of every piece is counted once per order: nothing crosses from one piece to the next.
    for mode in mk.MODES:
        events = sum(len(p.high) for p in pieces if p.mode == mode)
        for order in (0, 1, 2):
            assert fast[mk.chain_name(mode, "high", order)][1].sum() == events


def test_counts_on_real_midi_equal_the_reference(fixtures_dir):
    paths = [fixtures_dir / n for n in ("one_track.mid", "multitrack.mid", "three_four.mid", "drums.mid")]
    real, _ = events_dataset.encode_files(paths, workers=1)
    fast, slow = mc.count_pieces(real), mc.count_sequential(real)
    for name in fast:
        np.testing.assert_array_equal(fast[name][1], slow[name][1], err_msg=name)


def test_index_add_counting_equals_the_sort(pieces):
    keys = mc.transition_keys([p.chords for p in pieces], "chords", [p.mode == "minor" for p in pieces])[1]
    by_sort, by_index_add = mc.reduce_keys(keys), mc.reduce_keys(keys, device="torch")
    np.testing.assert_array_equal(by_sort[0], by_index_add[0])
    np.testing.assert_array_equal(by_sort[1], by_index_add[1])


@pytest.mark.gpu
def test_gpu_counting_equals_cpu(pieces):
    keys = mc.transition_keys([p.high for p in pieces], "high")[2]
    cpu, gpu = mc.reduce_keys(keys), mc.reduce_keys(keys, device="cuda")
    np.testing.assert_array_equal(cpu[0], gpu[0])
    np.testing.assert_array_equal(cpu[1], gpu[1])


def test_merge_adds_counts(pieces):
    whole = mc.count_pieces(pieces)
    merged = mk.merge_counts(mc.count_pieces(pieces[:5]), mc.count_pieces(pieces[5:]))
    for name in whole:
        np.testing.assert_array_equal(whole[name][0], merged[name][0])
        np.testing.assert_array_equal(whole[name][1], merged[name][1])
    a, b = mk.MarkovComposer(mc.count_pieces(pieces[:5])), mk.MarkovComposer(mc.count_pieces(pieces[5:]))
    assert a.merge(b).counts.keys() == whole.keys()


def test_sparse_model_is_tiny_next_to_the_dense_layout(composer):
    assert mc.counts_nbytes(composer.counts) < 0.0001 * mc.dense_nbytes()


# --------------------------------------------------------------------------------------- sampling


def test_backoff_from_unseen_states():
    e = [ev.melody_event(t, 4) for t in (10, 20, 30)]  # one piece: 10 -> 20 -> 30 (quarters)
    piece = ev.PieceEvents(np.asarray(e), np.asarray(e), np.asarray([ev.chord_code([60])]), 0, "major")
    chain = mk.Chain(mc.count_pieces([piece]), "major", "high")
    us = [i / 10 for i in range(10)]
    assert {chain.draw((mk.MELODY_BOS, mk.MELODY_BOS), u) for u in us} == {e[0]}  # 2nd order: the start
    assert {chain.draw((e[0], e[1]), u) for u in us} == {e[2]}  # seen state
    assert {chain.draw((e[2], e[1]), u) for u in us} == {e[2]}  # unseen pair -> 1st order from e[1]
    assert {chain.draw((e[1], e[2]), u) for u in us} <= set(e)  # e[2] ends the piece -> unigram
    assert {chain.draw((e[1], e[2]), u) for u in us} == set(e)


def test_rows_sample_in_proportion_to_counts():
    e = [ev.melody_event(t, 4) for t in (10, 20, 30)]
    seqs = [np.asarray([e[0], e[1]])] * 3 + [np.asarray([e[0], e[2]])]
    pieces = [ev.PieceEvents(s, s, np.asarray([1]), 0, "major") for s in seqs]
    chain = mk.Chain(mc.count_pieces(pieces), "major", "high")
    draws = [chain.draw((mk.MELODY_BOS, e[0]), (i + 0.5) / 1000) for i in range(1000)]
    assert draws.count(e[1]) == 750
    cold = chain.at_temperature(100.0)
    assert 480 < [cold.draw((mk.MELODY_BOS, e[0]), (i + 0.5) / 1000) for i in range(1000)].count(e[1]) < 520
    assert [chain.draw((mk.MELODY_BOS, e[0]), (i + 0.5) / 1000) for i in range(1000)].count(e[1]) == 750


# ------------------------------------------------------------------------------------- generation


@pytest.mark.parametrize(
    ("voices", "key", "bars", "pull"),
    [([0], "C major", 5, True), ([1, 2], "F# minor", 7, True), ([0, 0, 1, 1, 2, 2, 0, 0, 1, 2], "D minor", 9, True),
     ([2], "Bb major", 3, True), ([0, 1], "A minor", 6, False), ([2, 2, 2, 0], "Eb minor", 4, False)],
    ids=lambda x: str(x),
)  # fmt: skip
def test_every_voice_fills_every_measure(composer, voices, key, bars, pull):
    request = ComposeRequest(voices=voices, key=key, bars=bars, seed=11, chord_pull=pull)
    measures = list(composer.stream(request))
    assert [m.index for m in measures] == list(range(bars))
    leads = {voices.index(k) for k in (0, 1) if k in voices}  # the first high and low line may tie over a bar
    for m in measures:
        assert len(m.voices) == len(voices)
        for n in m.notes:
            assert 4 * m.index <= n.start < 4 * m.index + 4  # a note starts in its measure
            assert n.start + n.duration <= (bars * 4 if n.voice in leads else 4 * m.index + 4) + 1e-9
            assert 28 <= n.pitch <= 108
        for v, kind in enumerate(voices):
            mine = sorted((n.start, n.duration) for n in m.notes if n.voice == v)
            if kind != 2:  # a line never overlaps itself
                assert all(a[0] + a[1] <= b[0] + 1e-9 for a, b in zip(mine, mine[1:], strict=False))
    score = composer.compose(request).score
    assert len(score.tracks) == len(voices)
    for track in score.tracks:
        assert track.end() == bars * 4 * score.tpq  # every track ends exactly on the last bar line


def test_only_the_leads_hold_notes_over_bar_lines(composer):
    request = composer.validate(ComposeRequest(voices=[0, 1, 0, 1, 2], bars=24, seed=3))
    crossing = set()
    for index, notes in enumerate(composer.raw_measures(request)):
        crossing |= {v for v, _, start, steps, _ in notes if start + steps > (index + 1) * ev.MEASURE_STEPS}
    assert crossing <= {0, 1}


def test_same_seed_same_piece(composer, tmp_path):
    request = ComposeRequest(voices=[0, 1, 2], bars=8, seed=5, key="G major")
    composer.compose(request).save(tmp_path / "a.mid")
    composer.compose(request).save(tmp_path / "b.mid")
    composer.compose(request.model_copy(update={"seed": 6})).save(tmp_path / "c.mid")
    assert (tmp_path / "a.mid").read_bytes() == (tmp_path / "b.mid").read_bytes()
    assert (tmp_path / "a.mid").read_bytes() != (tmp_path / "c.mid").read_bytes()


def test_stream_and_compose_make_the_same_score(composer):
    from orchestrion.composer import score_from_measures

    request = ComposeRequest(voices=[0, 1, 2, 2, 2], bars=6, seed=9, key="E minor", temperature=0.7)
    streamed = score_from_measures(list(composer.stream(request)))
    composed = composer.compose(request).score
    assert streamed.dumps_midi() == composed.dumps_midi()


def test_default_programs_and_voices(composer):
    request = composer.validate(ComposeRequest(voices=[0, 0, 1, 2, 2]))
    assert request.programs == [40, 73, 42, 48, 0]
    assert request.key == "C major" and request.bars == 16 and request.seed is not None
    assert composer.validate(ComposeRequest()).voices == [0, 1, 2]
    assert composer.validate(ComposeRequest(seconds=10, tempo=120)).bars == 5


# ------------------------------------------------------------------------------ the shipped model


@pytest.fixture(scope="module")
def shipped() -> mk.MarkovComposer:
    return load_composer("builtin:markov")


def test_shipped_model_loads_and_composes(shipped, tmp_path):
    assert isinstance(shipped, mk.MarkovComposer) and shipped.name == "builtin:markov"
    assert sum(shipped.config.pieces.values()) > 300
    piece = shipped.compose(ComposeRequest(voices=[0, 1, 2], bars=4, seed=1))
    written = piece.save(tmp_path / "p.mid")
    assert written[1].name == "p.mid.json"
    assert sum(len(t.notes) for t in piece.score.tracks) > 12


@pytest.mark.parametrize("mode", ["major", "minor"])
def test_pieces_sound_in_the_requested_mode(shipped, mode):
    keys = [estimate_key(shipped.compose(ComposeRequest(voices=[0, 1, 2], bars=32, seed=s, key=f"C {mode}")).score)
            for s in range(1, 6)]  # fmt: skip
    assert sum(k.name == f"C {mode}" for k in keys) >= 4


@pytest.mark.parametrize("key", ["C# major", "D minor", "F# major", "Bb minor", "E major", "B minor"])
def test_every_key_sounds_in_that_key_and_ends_on_its_tonic(shipped, key):
    from orchestrion.evaluation.polyphonic import final_tonic

    score = shipped.compose(ComposeRequest(voices=[0, 1, 2, 2], bars=8, seed=3, key=key)).score
    assert estimate_key(score).name == parse_key(key).name
    assert final_tonic(score, key) == 1.0


def test_chord_pull_brings_melodies_onto_chord_tones(shipped):
    def chord_tone_share(pull: bool) -> float:
        request = shipped.validate(ComposeRequest(voices=[0, 0, 1, 2], bars=64, seed=4, chord_pull=pull))
        arrangement = shipped.arrangement(request)
        hits = total = 0
        for index in range(64):
            for voice, pitch, start, _, _ in arrangement.measure(index):
                if request.voices[voice] != 2 and start % ev.STEPS_PER_QUARTER == 0:  # melodic notes on beats
                    total += 1
                    hits += bool(arrangement.beats.chord[start // ev.STEPS_PER_QUARTER] >> (pitch % 12) & 1)
        return hits / total

    assert chord_tone_share(True) > chord_tone_share(False) + 0.05


# ------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"voices": []}, "voices"), ({"voices": [0] * 17}, "voices"), ({"voices": [0, 3]}, "voices"),
     ({"bars": 1_000_000}, "bars"), ({"bars": 0}, "bars"), ({"key": "H major"}, "key"),
     ({"key": "C lydian"}, "key"), ({"voices": [0, 1], "programs": [0]}, "programs"),
     ({"voices": [0], "programs": [200]}, "programs"), ({"prompt": "x.mid"}, "prompt"), ({"temperature": 0}, "temperature"),
     ({"style": "baroque"}, "style"), ({"max_hold_bars": 0.5}, "max_hold_bars"), ({"top_p": 0}, "top_p"),
     ({"top_k": -1}, "top_k"), ({"repetition_penalty": 0}, "repetition_penalty"), ({"rhythm": "reel"}, "rhythm"),
     ({"title": "A tune"}, "title"), ({"instruments": ["0"]}, "instruments")],
    ids=lambda x: str(x),
)  # fmt: skip
def test_requests_outside_the_limits_name_the_field(composer, fields, field):
    from pydantic import ValidationError

    from orchestrion.requests import first_error

    # The shared request model refuses most of these already; the composer refuses them all, even
    # when a request was built without validation.
    try:
        ComposeRequest(**fields)
    except ValidationError as exc:
        assert first_error(exc)[0].split(".")[0] in (field, "request")  # "request": a check across fields
    with pytest.raises(InvalidRequest) as info:
        composer.validate(ComposeRequest.model_construct(**{**ComposeRequest().model_dump(), **fields}))
    assert info.value.field == field


def test_a_model_without_notes_says_so():
    empty = {name: (np.zeros(0, np.uint32), np.zeros(0, np.int64)) for name in mc.count_pieces([])}
    with pytest.raises(BadInput, match="no usable notes"):
        mk.MarkovComposer(empty)


def test_a_model_of_one_mode_composes_in_the_other(pieces):
    major_only = mk.MarkovComposer(mc.count_pieces([p for p in pieces if p.mode == "major"]))
    piece = major_only.compose(ComposeRequest(voices=[0, 1, 2], bars=2, seed=1, key="A minor"))
    assert sum(len(t.notes) for t in piece.score.tracks) > 0


# -------------------------------------------------------------------------------- train, save, load


def test_train_save_load_round_trip(tmp_path):
    write_corpus(tmp_path / "midi")
    model = mt.train([str(tmp_path / "midi")], tmp_path / "m1", workers=1)
    assert model.config.pieces["major"] + model.config.pieces["minor"] == 8
    assert len(model.problems) == 1 and "broken.mid" in model.problems[0]
    assert not (tmp_path / "m1" / "shards").exists()
    loaded = load_composer(tmp_path / "m1")
    for name in model.counts:
        np.testing.assert_array_equal(model.counts[name][1], loaded.counts[name][1])
    request = ComposeRequest(voices=[0, 1, 2], bars=4, seed=2)
    assert model.compose(request).score.dumps_midi() == loaded.compose(request).score.dumps_midi()
    # Deterministic whatever the workers and shard sizes: the same bytes on disk.
    mt.train([str(tmp_path / "midi")], tmp_path / "m2", workers=2, shard_size=3)
    assert (tmp_path / "m1" / "counts.safetensors").read_bytes() == (
        tmp_path / "m2" / "counts.safetensors"
    ).read_bytes()


def test_training_on_no_usable_notes_fails_clearly(tmp_path, fixtures_dir):
    folder = tmp_path / "silent"
    folder.mkdir()
    for name in ("no_notes.mid", "empty.mid", "not_midi.mid"):
        (folder / name).write_bytes((fixtures_dir / name).read_bytes())
    with pytest.raises(BadInput, match="no usable notes"):
        mt.train([str(folder)], tmp_path / "m", workers=1)


def test_cli_train_and_generate(tmp_path):
    import subprocess
    import sys

    write_corpus(tmp_path / "midi", n=4)
    cli = [sys.executable, "-m", "orchestrion"]
    subprocess.run(
        [*cli, "train", "markov", str(tmp_path / "midi"), "--out", str(tmp_path / "m")], check=True, timeout=120
    )
    out = tmp_path / "x.mid"
    gen = [
        *cli,
        "generate",
        str(tmp_path / "m"),
        "--voices",
        "0,1,2,2",
        "--bars",
        "6",
        "--key",
        "D minor",
        "--out",
        str(out),
    ]
    subprocess.run(gen, check=True, timeout=120)
    replay = [*cli, "generate", "--replay", str(out) + ".json", "--out", str(tmp_path / "y.mid")]
    subprocess.run(replay, check=True, timeout=120)
    assert out.read_bytes() == (tmp_path / "y.mid").read_bytes()
    bad = subprocess.run([*cli, "generate", str(tmp_path / "m"), "--voices", "0,4", "--out", str(tmp_path / "z.mid")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 1 and "voices" in bad.stderr and "Traceback" not in bad.stderr


def test_interrupted_training_resumes_from_its_shards(tmp_path, monkeypatch):
    write_corpus(tmp_path / "midi", n=6)
    fresh = mt.train([str(tmp_path / "midi")], tmp_path / "fresh", workers=1, shard_size=2)

    def interrupted(self, directory):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(mk.MarkovComposer, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            mt.train([str(tmp_path / "midi")], tmp_path / "m", workers=1, shard_size=2)
    assert len(list((tmp_path / "m" / "shards").glob("*.safetensors"))) == 4  # 7 files in shards of 2

    def recount(*args, **kwargs):
        raise AssertionError("a finished shard was counted again")

    monkeypatch.setattr(mt, "_shard_counts", recount)
    resumed = mt.train([str(tmp_path / "midi")], tmp_path / "m", workers=1, shard_size=2)
    assert resumed.problems == fresh.problems
    assert (tmp_path / "m" / "counts.safetensors").read_bytes() == (
        tmp_path / "fresh" / "counts.safetensors"
    ).read_bytes()


def test_training_on_ray_gives_the_same_model(tmp_path, tmp_path_factory, monkeypatch):
    pytest.importorskip("ray")
    import ray

    from orchestrion.testing.local_ray import offline_ray_env

    write_corpus(tmp_path / "midi", n=6)
    mt.train([str(tmp_path / "midi")], tmp_path / "local", workers=2, shard_size=3)
    # The Ray processes ray.init starts get these. One HOME for every Ray of the session: Ray (2.60) makes its
    # auth token there when it first starts, and keeps token auth on for the rest of this process.
    for key, value in offline_ray_env(tmp_path_factory.getbasetemp() / "ray-home").items():
        monkeypatch.setenv(key, value)
    try:
        mt.train([str(tmp_path / "midi")], tmp_path / "ray", workers=2, shard_size=3, engine="ray")
    finally:
        ray.shutdown()
    for name in ("counts.safetensors", "config.json", "report.json"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
