"""Audio analysis on generated signals and a real FluidSynth rendering: silence, noise or tonal music."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrion.core import audio_analysis as aa
from orchestrion.core.audio import load_audio
from orchestrion.core.music import score_from_notes
from orchestrion.core.render import render_wav

SR = 16000
SECONDS = 3


def white(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, SR * SECONDS)


def coloured(exponent: float, seed: int = 0) -> np.ndarray:
    """Noise with power spectrum 1/f^exponent (1: pink, 2: brown), made in the frequency domain."""
    n = SR * SECONDS
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spectrum / f ** (exponent / 2), n)
    return 0.5 * x / np.abs(x).max()


def lowpassed(cutoff: float, seed: int = 0) -> np.ndarray:
    """White noise through a one-pole low-pass: the coloured hiss a weak audio model makes (flatness ~0.1)."""
    n = SR * SECONDS
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    x = np.fft.irfft(spectrum / (1 + 1j * np.fft.rfftfreq(n, 1 / SR) / cutoff), n)
    return 0.5 * x / np.abs(x).max()


def sine(freq: float = 440.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(SR * SECONDS) / SR)


@pytest.fixture(scope="module")
def piano(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """A real FluidSynth piano rendering: eight melody notes a quarter second apart over a bass."""
    melody = {"pitch": [60, 64, 67, 72, 67, 64, 60, 62], "start": [i * 240 for i in range(8)], "duration": [240] * 8}
    bass = {"pitch": [48, 55, 52, 48], "start": [0, 480, 960, 1440], "duration": [480] * 4}
    score = score_from_notes([melody, bass], tpq=480, tempo_qpm=120)
    out: Path = tmp_path_factory.mktemp("render") / "piano.wav"
    render_wav(score, out, sample_rate=SR, mono=True)
    return load_audio(out, SR)


def test_white_noise_is_noise() -> None:
    verdict = aa.classify(white(), SR)
    assert verdict.label == "noise"
    assert verdict.flatness == pytest.approx(0.56, abs=0.03)
    assert verdict.harmonicity == 0.0


def test_pink_noise_is_noise_though_the_old_check_passes_it() -> None:
    x = coloured(1.0)
    verdict = aa.classify(x, SR)
    assert verdict.label == "noise"
    assert 0.05 < verdict.flatness < 0.3  # under the 0.3 flatness threshold the project's old check used


def test_brown_noise_is_noise_by_its_lack_of_pitch() -> None:
    verdict = aa.classify(coloured(2.0), SR)
    assert verdict.label == "noise"
    assert verdict.flatness < aa.NOISE_FLATNESS and verdict.harmonicity == 0.0


def test_model_like_coloured_noise_is_noise() -> None:
    verdict = aa.classify(lowpassed(300.0), SR)
    assert verdict.label == "noise" and 0.05 < verdict.flatness < 0.15


def test_a_steady_hum_over_noise_is_noise() -> None:
    """What a SaShiMi trained 400 steps on melodies makes: one tone held over hiss, pitched in every frame.
    Flatness and harmonicity alone pass it; it has no onsets and no dynamics, so it is a hum, not music."""
    hiss = lowpassed(1000.0)
    x = sine(480.0) + 0.5 * hiss / np.abs(hiss).max()
    verdict = aa.classify(x, SR)
    assert verdict.flatness < aa.NOISE_FLATNESS and verdict.harmonicity > aa.MIN_HARMONICITY  # the old rules pass it
    assert verdict.flatness > 0.01 and verdict.dynamics < 1.0
    assert verdict.label == "noise" and verdict.reason.startswith("a steady hum over noise"), verdict
    assert aa.classify(sine(480.0), SR).label == "tonal"  # a clean tone is still a tone


def test_piano_at_8_khz_in_8_bits_is_still_tonal(piano: np.ndarray) -> None:
    """Down to 8 kHz and mu-law 8 bits a piano gets 2-5x flatter (0.005-0.009 on the chorales), yet it stays
    music: its notes start and decay."""
    from orchestrion.core.audio import resample
    from orchestrion.sashimi import mulaw

    x = mulaw.decode(mulaw.encode(resample(piano, SR, 8000)))
    verdict = aa.classify(x, 8000)
    assert verdict.label == "tonal", verdict
    assert verdict.flatness >= aa.TONAL_FLATNESS > aa.classify(piano, SR).flatness  # the hum rule looks at it


@pytest.mark.parametrize("level", [0.0, 1e-5])
def test_silence(level: float) -> None:
    x = level * np.random.default_rng(1).standard_normal(SR * SECONDS)
    verdict = aa.classify(x, SR)
    assert verdict.label == "silence" and verdict.sounding_share == 0.0
    assert np.isnan(aa.spectral_flatness(x, SR)) and np.isnan(aa.harmonicity(x, SR))
    assert aa.onset_rate(x, SR) == 0.0


def test_sine_is_tonal() -> None:
    verdict = aa.classify(sine(), SR)
    assert verdict.label == "tonal"
    assert verdict.flatness < 0.01 and verdict.harmonicity == 1.0
    assert verdict.dynamics < 1.0  # steady
    assert verdict.to_json()["label"] == "tonal"


def test_fluidsynth_piano_is_tonal(piano: np.ndarray) -> None:
    verdict = aa.classify(piano, SR)
    assert verdict.label == "tonal", verdict
    assert verdict.flatness < 0.01  # the issue quotes about 0.003 for a FluidSynth piano
    assert verdict.harmonicity > 0.5
    assert verdict.dynamics > 10.0  # notes decay


def test_a_four_voice_chorale_on_the_piano_is_tonal(chorale_files: list[Path], tmp_path: Path) -> None:
    """bwv1.6's first five seconds: YIN finds a clear pitch in few frames of its chords, yet it is music."""
    from orchestrion.core.music import load_midi

    score = load_midi(next(p for p in chorale_files if p.stem == "bwv1.6"))
    for track in score.tracks:
        track.program = 0
    x = load_audio(render_wav(score, tmp_path / "bwv1.6.wav", sample_rate=SR), SR)[: 5 * SR]
    verdict = aa.classify(x, SR)
    assert verdict.harmonicity < aa.MIN_HARMONICITY and verdict.flatness < aa.TONAL_FLATNESS
    assert verdict.label == "tonal", verdict


def test_onsets_of_the_piano_rendering(piano: np.ndarray) -> None:
    onsets = aa.onset_times(piano, SR)
    assert len(onsets) == 8
    np.testing.assert_allclose(onsets, 0.25 * np.arange(8), atol=0.05)
    assert aa.onset_rate(piano, SR) == pytest.approx(8 / (len(piano) / SR))


def test_steady_signals_have_no_onsets_after_their_start() -> None:
    for x in (white(), coloured(1.0), sine()):
        assert len(aa.onset_times(x, SR)) <= 1


def test_stereo_and_other_rates(piano: np.ndarray) -> None:
    stereo = np.stack([piano, piano], axis=1)
    assert aa.classify(stereo, SR).label == "tonal"
    up = np.repeat(white(), 2)  # 32 kHz
    assert aa.classify(up, 2 * SR).label == "noise"
    assert aa.classify(0.5 * np.sin(2 * np.pi * 330 * np.arange(44100) / 44100), 44100).label == "tonal"


def test_a_signal_shorter_than_a_frame() -> None:
    verdict = aa.classify(sine()[:300], SR)
    assert verdict.label in ("tonal", "silence", "noise")  # defined, whatever it is
    assert aa.classify(np.zeros(0), SR).label == "silence"


def tones(*pitches: int, seconds: float = 1.0) -> np.ndarray:
    """MIDI pitches sounding together, each with four partials."""
    t = np.arange(int(SR * seconds)) / SR
    x = sum(np.sin(2 * np.pi * k * 440 * 2 ** ((p - 69) / 12) * t) / k for p in pitches for k in range(1, 5))
    return 0.3 * x / np.abs(x).max()


def test_chroma_names_the_pitch_class() -> None:
    profile = aa.chroma(sine(440.0), SR)
    assert profile.shape == (12,) and profile.sum() == pytest.approx(1.0)
    assert int(np.argmax(profile)) == 9  # A
    assert int(np.argmax(aa.chroma(tones(60), SR))) == 0  # C, partials and all
    assert np.array_equal(aa.chroma(np.zeros(SR), SR), np.zeros(12))


def test_chroma_similarity_same_notes_any_octave_high_other_notes_low_noise_none() -> None:
    c_major, c_major_spread, f_sharp = tones(60, 64, 67), tones(48, 76, 79), tones(61, 66, 70)
    assert aa.chroma_similarity(c_major, c_major_spread, SR) > 0.9
    assert aa.chroma_similarity(c_major, f_sharp, SR) < 0.0
    for seed in range(3):  # noise has no pitch content, whatever its colour (the model's hiss included)
        for noise in (white(seed), coloured(1.0, seed), coloured(2.0, seed), lowpassed(500.0, seed)):
            assert not aa.chroma(noise[:SR], SR).any()
            assert aa.chroma_similarity(c_major, noise[:SR], SR) == 0.0
    assert aa.chroma_similarity(c_major, np.zeros(SR), SR) == 0.0


def test_consecutive_halves_of_a_piano_rendering_share_their_notes(piano: np.ndarray) -> None:
    """The rendering climbs C-E-G-C over C and G, then G-E-C-D over E and C: mostly the same pitch classes."""
    half = len(piano) // 2
    assert aa.chroma_similarity(piano[:half], piano[half:], SR) > 0.35  # 0.49
    assert aa.chroma_similarity(piano[:half], tones(61, 66, 70, seconds=half / SR), SR) < 0.2
