"""Audio in: mu-law codec, loading any format at any rate, the dataset writer and its split by file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orchestrion.core.audio import load_audio
from orchestrion.core.audio_analysis import classify
from orchestrion.errors import BadInput
from orchestrion.sashimi import mulaw
from orchestrion.sashimi.dataset import AudioDataset, assign_splits, encode_audio


def _tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t) * np.exp(-t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.argmax(spectrum) * rate / len(x))


# ------------------------------------------------------------------------------------------- codec


@pytest.mark.parametrize("quantization", ["mulaw", "linear"])
def test_every_class_round_trips(quantization: str) -> None:
    q = np.arange(256, dtype=np.uint8)
    assert np.array_equal(mulaw.encode(mulaw.decode(q, quantization), quantization), q)


def test_mulaw_round_trip_error_is_relative() -> None:
    x = np.linspace(-1, 1, 10001)
    y = mulaw.decode(mulaw.encode(x))
    assert mulaw.encode(x).dtype == np.uint8
    assert np.all(np.abs(y - x) <= 0.025 * np.abs(x) + 1e-4)  # fine steps near zero, coarse near full scale
    quiet = np.linspace(-0.01, 0.01, 101)
    assert (
        np.abs(mulaw.decode(mulaw.encode(quiet)) - quiet).max()
        < np.abs(mulaw.decode(mulaw.encode(quiet, "linear"), "linear") - quiet).max()
    )


def test_unknown_quantization_is_refused() -> None:
    with pytest.raises(BadInput, match="quantisation"):
        mulaw.encode(np.zeros(4), "alaw")


# ----------------------------------------------------------------------------------------- loading


def test_stereo_44k_wav_becomes_mono_16k(tmp_path: Path) -> None:
    x = _tone(1.0, 44100, 440.0)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([x, x], 1), 44100)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 16000) <= 1
    assert abs(_peak_hz(y, 16000) - 440.0) < 2.0


def test_flac_and_mp3(tmp_path: Path) -> None:
    import shutil
    import subprocess

    x = _tone(0.5, 22050, 1000.0)
    flac = tmp_path / "a.flac"
    sf.write(flac, x, 22050)
    assert abs(_peak_hz(load_audio(flac), 16000) - 1000.0) < 3.0
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    mp3 = tmp_path / "a.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(flac), str(mp3)], check=True, timeout=60)
    y = load_audio(mp3)
    assert abs(len(y) - 8000) < 2000  # mp3 frames pad the ends
    assert abs(_peak_hz(y, 16000) - 1000.0) < 3.0


def test_not_audio_is_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    with pytest.raises(BadInput, match="notes.wav"):
        load_audio(bad)


# ----------------------------------------------------------------------------------------- dataset


def _folder(tmp_path: Path, n: int, seconds: float = 1.2) -> Path:
    folder = tmp_path / "audio"
    folder.mkdir()
    for i in range(n):
        sf.write(folder / f"take{i:02d}.wav", _tone(seconds, 8000, 200.0 + 50 * i), 8000)
    return folder


def test_dataset_is_split_by_file_and_resumes(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 10)
    (folder / "broken.wav").write_bytes(b"RIFF....garbage")
    meta = encode_audio([str(folder)], tmp_path / "ds", chunk_seconds=0.5)
    assert meta["split_by"] == "file"
    assert any("broken.wav" in k for k in meta["failed"])  # reported, and the rest carried on
    sources = {s: {sh["source"] for sh in meta["splits"][s]["shards"]} for s in meta["splits"]}
    assert sources["train"] and sources["validation"] and sources["test"]
    assert not (
        sources["train"] & sources["validation"]
        or sources["train"] & sources["test"]
        or sources["validation"] & sources["test"]
    )
    assert len(set.union(*sources.values())) == 10
    # 1.2 s at 0.5 s chunks: two whole chunks, the 0.2 s rest is dropped
    assert meta["splits"]["train"]["chunks"] == 2 * len(sources["train"])
    data = AudioDataset(tmp_path / "ds")
    chunk = data.split("validation").chunks[0]
    assert isinstance(chunk, np.memmap) and chunk.dtype == np.uint8 and len(chunk) == 8000
    # resumable: a second run re-encodes nothing
    shard = next((tmp_path / "ds" / "shards").glob("*.u8"))
    before = shard.stat().st_mtime_ns
    encode_audio([str(folder)], tmp_path / "ds", chunk_seconds=0.5)
    assert shard.stat().st_mtime_ns == before
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["splits"] == meta["splits"]


def test_split_does_not_depend_on_order() -> None:
    files = [Path(f"/x/f{i}.wav") for i in range(20)]
    assert assign_splits(files) == assign_splits(list(reversed(files)))


def test_windows_are_deterministic(tmp_path: Path) -> None:
    meta = encode_audio([str(_folder(tmp_path, 3))], tmp_path / "ds", chunk_seconds=1.0)
    assert meta["split_by"] == "file"
    split = AudioDataset(tmp_path / "ds").split("train")
    a = split.window(np.random.default_rng(5), 100)
    b = split.window(np.random.default_rng(5), 100)
    assert np.array_equal(a, b) and len(a) == 100


# -------------------------------------------------------------------------------------- quality checks


def test_the_audio_verdict_catches_silence_noise_and_runaway_noise() -> None:
    rng = np.random.default_rng(0)
    assert classify(np.zeros(16000 * 3), 16000).label == "silence"
    assert classify(rng.uniform(-0.5, 0.5, 16000 * 3), 16000).label == "noise"
    runaway = np.concatenate([_tone(2.0, 16000, 330.0), rng.uniform(-0.5, 0.5, 16000 * 3).astype(np.float32)])
    assert classify(runaway, 16000).label == "noise"


def test_the_audio_verdict_passes_a_piano_like_tone_through_mu_law() -> None:
    t = np.arange(16000 * 3) / 16000
    notes = sum(np.sin(2 * np.pi * f * t) * np.exp(-3 * (t % 0.75)) for f in (261.6, 329.6, 392.0)) / 4
    verdict = classify(mulaw.decode(mulaw.encode(notes)), 16000)
    assert verdict.label == "tonal", verdict
