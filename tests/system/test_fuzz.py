"""Fuzzing the readers: any input decodes or raises our own error, in time, without growing memory.

The default suite runs a short seeded mutation run per reader plus hypothesis-generated inputs; `slow` runs
100,000 inputs per reader (fewer for the external programs) over the fixtures and whatever corpus files are
cached. Below them, one regression test per bug the fuzzing found, with its minimal input.
"""

from __future__ import annotations

import io
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.core.music import load_midi, score_from_notes
from orchestrion.errors import BadInput, OrchestrionError
from orchestrion.mmm.codec import encode_batch
from orchestrion.mmm.decode import decode_tokens
from orchestrion.mmm.vocabulary import MMMOptions, vocabulary
from orchestrion.testing import fuzz_inputs, fuzzing
from orchestrion.testing.fuzzing import FuzzStats, fuzz_reader, run_all

MAX_RSS_GROWTH = 64 * 2**20  # a leak of a few hundred bytes per input shows over thousands of inputs


def _holds_promise(stats: FuzzStats) -> None:
    broken = [f"#{f.index} {f.kind}: {f.error} input={f.data[:200]!r}" for f in stats.failures]
    assert stats.foreign == 0 and stats.hangs == 0, f"{stats.reader}: " + "\n".join(broken)
    assert stats.rss_growth < MAX_RSS_GROWTH, f"{stats.reader}: RSS grew {stats.rss_growth / 2**20:.0f} MiB"
    assert stats.inputs == stats.decoded + stats.our_error


def _call(fn, *args) -> object:  # noqa: ANN001 - any reader
    """The reader's result, or None when it raised our own error (anything else propagates and fails)."""
    try:
        return fn(*args)
    except OrchestrionError:
        return None


# ---------------------------------------------------------------------------------- the harness itself


def test_harness_counts_foreign_exceptions_hangs_and_our_errors() -> None:
    def reader(x: int) -> int:
        if x == 1:
            raise BadInput("ours")
        if x == 2:
            raise KeyError("foreign")
        if x == 3:
            while True:  # a hang in Python code: the per-input timer must stop it
                pass
        return x

    stats = fuzz_reader("toy", reader, iter([0, 1, 2, 3, 0]), limit_s=0.2, warmup=0)
    assert (stats.inputs, stats.decoded, stats.our_error, stats.foreign, stats.hangs) == (5, 2, 1, 1, 1)
    assert [f.kind for f in stats.failures] == ["foreign", "hang"]
    assert "KeyError" in stats.failures[0].error
    assert stats.errors_seen == {"ours": 1}


def test_mutators_are_seeded_and_change_the_input(fixtures_dir: Path) -> None:
    import random

    seeds = fuzzing.midi_seeds(fixtures_dir)
    first = list(fuzz_inputs.midi_inputs(seeds, random.Random(7), 200))
    again = list(fuzz_inputs.midi_inputs(seeds, random.Random(7), 200))
    assert first == again
    assert sum(data not in seeds for data in first) > 150
    wav = list(fuzz_inputs.wav_inputs(fuzz_inputs.wav_seeds(random.Random(0)), random.Random(7), 50))
    assert all(isinstance(w, bytes) for w in wav) and len(set(wav)) > 40


# ------------------------------------------------------------------------------ short mutation runs

SHORT_RUN = {  # reader -> inputs; the external program gets few (one ffmpeg process per rejected file)
    "midi": 5_000,
    "midi-path": 400,
    "mmm": 4_000,
    "abc": 2_500,
    "audio-soundfile": 4_000,
    "audio-ffmpeg": 30,
    "render": 200,  # the render path: abc2midi, then verovio in a child process
    "engrave": 200,  # verovio on the text after our own check only
    "render-midi": 4,  # music21, verovio and FluidSynth: seconds an input
}


@pytest.mark.parametrize("reader", sorted(SHORT_RUN))
def test_short_fuzz_run(fixtures_dir: Path, reader: str) -> None:
    n = SHORT_RUN[reader]
    (stats,) = run_all(fixtures_dir, n, seed=1, readers=(reader,), ffmpeg_n=n, render_midi_n=n, warmup=100)
    _holds_promise(stats)
    # The inputs reach both outcomes, so the run exercised decoding and refusing alike.
    assert stats.decoded > 0 and (stats.our_error > 0 or reader in ("mmm", "abc"))


LONG_READERS = ["midi", "midi-path", "mmm", "abc", "abc2midi", "audio-soundfile", "audio-ffmpeg", "render", "engrave",
                "render-midi"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("reader", LONG_READERS)
def test_long_fuzz_run(fixtures_dir: Path, reader: str) -> None:
    """100,000 inputs per reader, abc2midi and the render path included; 2,000 through the ffmpeg fallback (a
    process per input) and 1,000 MIDI files rendered through music21, verovio and FluidSynth (seconds each)."""
    n = {"audio-ffmpeg": 2_000, "render-midi": 1_000}.get(reader, 100_000)
    (stats,) = run_all(
        fixtures_dir, n, seed=2, corpus_limit=200, readers=(reader,), ffmpeg_n=n, abc2midi_n=n, render_midi_n=n
    )
    print("\n" + fuzzing.format_table([stats]))
    _holds_promise(stats)


# ------------------------------------------------------------------------------------------ hypothesis


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"MThd", b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk"]))
def test_midi_bytes(tail: bytes, head: bytes) -> None:
    _call(fuzzing.read_midi, head + tail)


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False))
def test_generated_midi(rng) -> None:  # noqa: ANN001 - hypothesis' Random
    data = bytearray(fuzz_inputs.generate_midi(rng))
    rng.choice(fuzz_inputs.MIDI_MUTATORS)(rng, data)
    _call(fuzzing.read_midi, bytes(data))


_TOKENS = st.one_of(
    st.sampled_from(vocabulary()), st.text(max_size=12), st.sampled_from(["NOTE_ON=²", "INST=١", "\ud800"])
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_TOKENS, max_size=120))
def test_mmm_tokens_never_raise(tokens: list[str]) -> None:
    score, repairs = decode_tokens(tokens)
    assert isinstance(repairs, list)
    score.dumps_midi()
    decode_tokens(" ".join(tokens))


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(fuzz_inputs.ABC_ALPHABET), max_size=400) | st.text(max_size=200))
def test_abc_text(text: str) -> None:
    fuzzing.read_abc(text)
    fuzzing.read_abc("X:1\nK:C\n" + text + "\ud800")  # hypothesis draws no lone surrogates: one is added


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1), st.integers(0, 0xFFFF),
    st.binary(max_size=200), st.integers(0, 2**32 - 1),
)  # fmt: skip
def test_wav_header_fields(tmp_path_factory: pytest.TempPathFactory, tag, channels, rate, bits, samples, size) -> None:  # noqa: ANN001
    align = (channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * align) & 0xFFFFFFFF, align, bits)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", size) + samples
    path = tmp_path_factory.mktemp("wav") / "x.wav"
    _call(fuzzing.read_audio_soundfile, b"RIFF" + struct.pack("<I", len(body)) + body, path)


# ---------------------------------------------------------------------------- regressions (one per bug)


@pytest.mark.parametrize("token", ["NOTE_ON=²", "TIME_DELTA=١٢", "NOTE_OFF=٣", "INST=١", "NOTE_ON=" + "1" * 5000])
def test_mmm_decode_refuses_non_ascii_and_huge_numbers(token: str) -> None:
    # str.isdigit() accepted these, then int() raised ValueError (or, for 5,000 digits, the int size limit).
    score, repairs = decode_tokens(f"PIECE_START TRACK_START INST=0 BAR_START NOTE_ON=60 {token} TIME_DELTA=4 BAR_END")
    assert [n.pitch for n in score.tracks[0].notes] == [60]
    assert any(token[:20] in r for r in repairs)


def _wav(rate: int, x: np.ndarray, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, max(rate, 1), subtype=subtype, format="WAV")
    data = bytearray(buf.getvalue())
    data[24:28] = struct.pack("<I", rate)  # the fmt chunk's sample rate, as a corrupt header would hold it
    return bytes(data)


def test_audio_absurd_sample_rate_is_refused_not_upsampled(tmp_path: Path) -> None:
    # 2 Hz: 1,000 frames would have been resampled to 8,000,000 samples (a 19 KB file took seconds and 30 MB).
    path = tmp_path / "two_hz.wav"
    path.write_bytes(_wav(2, np.zeros(1000, np.float32)))
    with pytest.raises(BadInput, match="implausible sample rate 2 Hz") as info:
        fuzzing.read_audio(path.read_bytes(), path)
    assert info.value.path == str(path)


def test_audio_too_long_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrion.core import audio

    monkeypatch.setattr(audio, "MAX_AUDIO_SECONDS", 0.5)
    path = tmp_path / "long.wav"
    path.write_bytes(_wav(16000, np.zeros(16000, np.float32)))
    with pytest.raises(BadInput, match="hour limit"):
        audio.load_audio(path)


def test_audio_loud_float_channels_do_not_overflow(tmp_path: Path) -> None:
    # The float32 channel mean overflowed to inf (and warned), so a finite file was refused as non-finite.
    path = tmp_path / "loud.wav"
    path.write_bytes(_wav(16000, np.full((800, 6), 3e38, np.float32), subtype="FLOAT"))
    with np.errstate(all="raise"):
        x = fuzzing.read_audio(path.read_bytes(), path)
    assert x.dtype == np.float32 and len(x) == 800 and float(x.max()) == 1.0


def test_audio_zero_channels_is_our_error(tmp_path: Path) -> None:
    data = bytearray(_wav(16000, np.zeros(100, np.float32)))
    data[22:24] = struct.pack("<H", 0)
    path = tmp_path / "zero.wav"
    with pytest.raises(BadInput):
        fuzzing.read_audio_soundfile(bytes(data), path)


def _wide_score(n_tracks: int, bars: int):  # noqa: ANN202 - symusic.Score
    """One far note that makes `bars` bars, and `n_tracks` one-note tracks at the start."""
    tracks = [{"pitch": [60], "start": [(bars - 1) * 16], "duration": [1]}]
    tracks += [{"pitch": [60], "start": [0], "duration": [1], "program": k % 128} for k in range(n_tracks)]
    return score_from_notes(tracks, tpq=4)


def test_encoder_refuses_a_grid_that_would_need_gigabytes() -> None:
    # 2,000 one-note tracks in a 2,000-bar piece: a 40 KB MIDI file made a 8-million-cell dense grid (300 MB);
    # 20,000 tracks would have needed gigabytes. Now refused up front.
    (result,) = encode_batch([_wide_score(2_000, 1_999)], MMMOptions(bars=4, hop=2))
    assert isinstance(result, BadInput) and "too large to encode" in str(result)


def test_encoder_splits_a_batch_over_the_limit_and_keeps_every_result(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrion.mmm import codec as mmm

    scores = [_wide_score(3, 40), _wide_score(2, 8), _wide_score(1, 12)]
    whole = encode_batch(scores, MMMOptions(bars=4, hop=2))
    # (windows x tracks x bars) is 19 x 4 x 4 = 304 for the first score alone, 27 x 4 x 4 = 432 for the batch
    monkeypatch.setattr(mmm, "MAX_GRID_CELLS", 350)
    split = encode_batch(scores, MMMOptions(bars=4, hop=2))
    assert all(not isinstance(r, BadInput) for r in split)
    for a, b in zip(whole, split, strict=True):
        assert np.array_equal(a.ids, b.ids) and np.array_equal(a.offsets, b.offsets)


def test_encoder_refuses_a_note_held_through_too_many_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrion.mmm import codec as mmm

    monkeypatch.setattr(mmm, "MAX_NOTE_WINDOWS", 100)
    long_notes = score_from_notes(
        [{"pitch": list(range(40, 60)), "start": [0] * 20, "duration": [16 * 40] * 20}], tpq=4
    )
    (result,) = encode_batch([long_notes], MMMOptions(bars=4, hop=2))
    assert isinstance(result, BadInput) and "(note, window) pairs" in str(result)


def test_midi_with_thousands_of_tracks_is_our_error() -> None:
    # The file behind test_encoder_refuses_a_grid_that_would_need_gigabytes, as the fuzzer wrote it: 60 KB.
    far = fuzz_inputs.vlq(1_999 * 16) + b"\x90\x3c\x40\x01\x80\x3c\x00\x00\xff\x2f\x00"  # a note in bar 2,000
    note = b"\x00\x90\x3c\x40\x01\x80\x3c\x00\x00\xff\x2f\x00"
    wide = b"MThd" + struct.pack(">IHHH", 6, 1, 3000, 4) + b"MTrk" + struct.pack(">I", len(far)) + far
    wide += (b"MTrk" + struct.pack(">I", len(note)) + note) * 2999
    assert len(load_midi(wide).tracks) == 3_000
    with pytest.raises(BadInput, match="too large to encode"):
        fuzzing.read_midi(wide)


def test_encoder_with_windows_but_no_note_in_any_window() -> None:
    # Found by atheris: a 4/4 restated mid-bar at step 89 starts a second, 1-bar segment holding every note,
    # while the 5 empty bars before it make windows; with no sequence at all, the token cap indexed an empty
    # array (IndexError). Now it is an encoding with no sequence, which the pipeline reports as skipped.
    data = bytes.fromhex(
        "4d546864000000060000000101e04d54726b0000002c00ff510307a120d300ff58040402180800c000"
        "00903c6400405083603c0000400000435a8740804340003a2f00"
    )
    result = fuzzing.read_midi(data)
    assert result.sequences == 0 and result.skipped == ["4/4 segment at step 89 is 1 bars, under 4"]


def test_midi_bytes_over_the_size_limit_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Files had a size limit, bytes (uploads, archive members) had none.
    from orchestrion.core import music

    monkeypatch.setattr(music, "MAX_MIDI_BYTES", 1000)
    with pytest.raises(BadInput, match="MiB limit"):
        load_midi(b"MThd" + bytes(2000))


@pytest.mark.parametrize(
    "body",
    ["_" * 50_000, "-" * 50_000, "TL" * 25_000, "[K:" * 20_000, "A-" + " " * 50_000],
    ids=["accidentals", "dashes", "decorations", "inline-fields", "spaces-after-tie"],
)
def test_abc_cleaning_is_linear_in_long_runs(body: str) -> None:
    # Found by the fuzzer (an Essen tune with a run of 13,000 `_` took 1.2 s): fix_slur_ties, fix_decorated_slurs
    # and the inline-field pattern retried a whole run from each of its characters, so these 50,000-character
    # tunes took tens of seconds. A limit of 10 s per input is far above the linear time and far below that.
    stats = fuzz_reader("abc", fuzzing.read_abc, iter(["X:1\nT:t\nK:C\n" + body + "\n"]), limit_s=10.0, warmup=0)
    _holds_promise(stats)
    assert stats.decoded == 1


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abcmidi is not installed")
def test_abc2midi_classifies_a_lone_surrogate() -> None:
    # A str may hold a lone surrogate (JSON "\ud800" decodes to one); writing the tune for abc2midi raised
    # UnicodeEncodeError. It is now written as "?", which abc2midi reports as an error like any junk character.
    from orchestrion.core.abcmidi import validate

    validity = validate("X:1\nT:t\nM:4/4\nK:C\nabc\ud800|\n")
    assert validity.status == "errors" and any("Unrecognized character" in m for m in validity.messages)
    with pytest.raises(BadInput):
        fuzzing.read_abc2midi("X:1\nK:C\n\ud800\n")


@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abcmidi is not installed")
def test_abc2midi_output_symusic_cannot_read_is_classified() -> None:
    # Found by the slow abc2midi run: a note 3,333,333 units long overflows abc2midi, which writes velocity 128;
    # symusic refused the file with a plain RuntimeError out of compile_notes.
    from orchestrion.core.abcmidi import compile_notes

    validity, notes = compile_notes("X:1\nT:t\nM:4/4\nL:1/8\nK:D\nA3333333A|\n")
    assert notes is None and validity.status == "errors"
    assert "unreadable MIDI file" in validity.messages[-1]


def test_render_of_the_tune_that_crashed_verovio_is_our_error(tmp_path: Path) -> None:
    # `orchestrion render` died with a segmentation fault on nested chords in a file's second tune: verovio ran
    # in-process. The render path now checks the tune first, and engraves in a child process in any case.
    from orchestrion.core.isolate import Isolated
    from orchestrion.testing.real_world import abc_collection

    with Isolated() as child:
        written = fuzzing.read_render(abc_collection(), tmp_path, child, 30.0)
        assert [p.name for p in written] == ["out-1.svg", "out-2.svg"] and child.crashes == 0
        with pytest.raises(BadInput, match="crashed"):
            child.call("svg", tmp_path / "input.abc", tmp_path / "x.svg")  # verovio alone: the child dies
        assert child.crashes == 1
