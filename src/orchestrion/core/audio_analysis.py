"""What a waveform sounds like: silence, noise or tonal music, and the numbers behind the verdict.

Pure numpy functions of float samples `x` in [-1, 1] at `sr` Hz (mono, or (n, channels) averaged), judged on frames of about 64 ms
(a power of two: 1024 samples at 16 kHz, 4096 at 44.1 kHz) with half-frame hops:

- `spectral_flatness`: geometric over arithmetic mean of a frame's power spectrum (Hann window), the median
  over loud frames. White noise gives about 0.56, pink (1/f) noise 0.14, a FluidSynth piano 0.001-0.005.
  Flatness alone misses coloured noise: brown (1/f^2) noise gives 0.01, lower than some instruments.
- `harmonicity`: the share of loud frames with a clear pitch between 50 Hz and 1 kHz, by the YIN
  cumulative-mean-normalised difference function (de Cheveigne & Kawahara 2002): a frame is pitched when
  its minimum over those lags is under 0.3. Noise of any colour gives 0.0, a sine 1.0, a FluidSynth piano
  piece 0.6-0.8, a choir (GM "Choir Aahs") chorale 0.45.
- `onset_rate`: onsets per second, peaks of the spectral flux (the summed rise of log magnitudes).
- `dynamics`: the spread of frame loudness, 95th minus 5th percentile of frame RMS in dB over non-silent frames.
- `chroma`: the pitch-class profile (12 shares, C first) of the spectral peaks between 130 Hz and 2.1 kHz
  on frames of ~256 ms (4 Hz bins: a semitone is 8 Hz at the bottom of the range), and
  `chroma_similarity`, the correlation of two profiles: 1 for the same pitch content, 0 when either is
  noise or silence. Peaks, not the whole spectrum: a profile of all the magnitude gives coloured noise a
  fixed, uneven profile (a low octave has few bins per semitone), which correlates with the keys chorales
  are in (0.3-0.4, as much as two unrelated chorales). In noise the peaks hold ~0.1% of the magnitude,
  in a piano rendering ~30%. Consecutive seconds of a chorale on the piano correlate (0.43 on average over
  held-out places, two different chorales 0.33: they share keys); a continuation that keeps its prompt's
  notes should too.
- `classify`: "silence" when fewer than 10% of frames are above -60 dBFS; else "noise" when the median
  flatness is 0.05 or more, or the harmonicity under 0.1, or the harmonicity under 0.25 with a flatness of
  0.005 or more, or the signal is a steady hum over noise (a flatness of 0.005 or more, dynamics under
  3 dB and under 0.5 onsets per second after its start); else "tonal". A low harmonicity alone is no
  proof of noise: YIN often finds no single pitch in a chord, and the first five seconds of a four-voice
  chorale on the piano (bwv1.6) have a harmonicity of 0.21 at a flatness of 0.001; but noise has no
  pitched frames at all (0.0 for white, pink and brown noise), and brown noise, at a flatness of 0.0001,
  is caught only by that. The hum rule is what a SaShiMi trained 400 steps on melodies makes: one 480 Hz
  tone held for 5 s over hiss, pitched in every frame (harmonicity 1.0) at a flatness of 0.03, with no
  onset after its start and 0.6 dB of dynamics. Music that noisy (0.005 is 2-5x a piano rendering; at
  8 kHz in 8 bits a piano is at 0.005-0.009) still has notes that start and decay (5 s of piano
  renderings: 0.8-2.6 onsets per second, 6-7 dB). A clean steady tone (a sine, flatness ~0) stays tonal.

The check it replaced judged noise by a flatness over 0.3 alone, which passed pink noise (0.14) and the
coloured noise a weak audio model makes (0.10-0.12).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

SILENT_DB = -60.0  # a frame quieter than this (dBFS RMS) is silent
LOUD_RANGE_DB = 40.0  # loud frames: not silent, and within this many dB of the loudest frame
SILENCE_SHARE = 0.1  # under this share of non-silent frames, the whole signal is silence
NOISE_FLATNESS = 0.05  # median flatness at or over this is noise
PITCH_THRESHOLD = 0.3  # YIN: a frame whose normalised difference dips under this has a clear pitch
MIN_HARMONICITY = 0.25  # under this share of pitched loud frames, a signal flatter than TONAL_FLATNESS is noise
TONAL_FLATNESS = 0.005  # music, chords included, stays under this flatness
NOISE_HARMONICITY = 0.1  # under this share of pitched loud frames, a signal is noise whatever its flatness
STEADY_DYNAMICS_DB = 3.0  # a signal at or over TONAL_FLATNESS with less spread of loudness than this ...
STEADY_ONSET_RATE = 0.5  # ... and fewer onsets per second than this is a steady hum over noise
STEADY_AFTER = 0.1  # seconds: the onset of the signal itself (at its start) does not count for the hum rule
ONSET_FLUX_MIN = 0.02  # mean rise of log magnitudes a flux peak needs to be an onset
F0_RANGE = (50.0, 1000.0)  # pitches harmonicity looks for (Hz)
FRAME_SECONDS = 0.064
CHROMA_FRAME_SECONDS = 0.256  # long frames: 4 Hz bins tell semitones apart down to CHROMA_RANGE[0]
CHROMA_RANGE = (130.0, 2100.0)  # C3 to C7 (Hz): fundamentals and the first partials of most notes
CHROMA_PEAK = 4.0  # a spectral peak stands this many times over the median magnitude around it
CHROMA_TONAL_SHARE = 0.02  # peaks holding less of the band's magnitude than this: no pitch content


def _frame_length(sr: int) -> int:
    return 1 << max(6, round(math.log2(FRAME_SECONDS * sr)))


def _mono(x: np.ndarray) -> np.ndarray:
    """Float64 mono samples: (n,) as it is, (n, channels) averaged."""
    x = np.asarray(x, dtype=np.float64)
    return x.mean(axis=1) if x.ndim == 2 else x.ravel()


def _frames(x: np.ndarray, n: int, hop: int) -> np.ndarray:
    """(F, n) overlapping frames of `x` (a signal shorter than one frame is zero-padded to one)."""
    x = _mono(x)
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    count = (len(x) - n) // hop + 1
    index = np.arange(n)[None, :] + hop * np.arange(count)[:, None]
    return x[index]


def _levels(frames: np.ndarray) -> np.ndarray:
    """(F,) frame RMS in dBFS."""
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


def _loud(frames: np.ndarray) -> np.ndarray:
    """(F,) bool: frames above SILENT_DB and within LOUD_RANGE_DB of the loudest."""
    db = _levels(frames)
    return (db > SILENT_DB) & (db > db.max() - LOUD_RANGE_DB)


def _analysis_frames(x: np.ndarray, sr: int) -> np.ndarray:
    n = _frame_length(sr)
    return _frames(x, n, n // 2)


def _flatness(frames: np.ndarray) -> np.ndarray:
    """(F,) spectral flatness of each frame (Hann window, power spectrum)."""
    power = np.abs(np.fft.rfft(frames * np.hanning(frames.shape[1]), axis=1)) ** 2 + 1e-12
    return np.exp(np.mean(np.log(power), axis=1)) / np.mean(power, axis=1)


def spectral_flatness(x: np.ndarray, sr: int) -> float:
    """Median spectral flatness over loud frames (see the module docstring); NaN when no frame is loud."""
    frames = _analysis_frames(x, sr)
    loud = _loud(frames)
    return float(np.median(_flatness(frames[loud]))) if loud.any() else math.nan


def _yin_minimum(frames: np.ndarray, sr: int) -> np.ndarray:
    """(F,) minimum of the YIN cumulative-mean-normalised difference over the lags of F0_RANGE."""
    n = frames.shape[1]
    window = n // 2  # the integration window; lags up to n - window
    max_lag = min(n - window, int(sr / F0_RANGE[0]))
    min_lag = max(2, int(sr / F0_RANGE[1]))
    size = 1 << int(math.ceil(math.log2(n + window)))
    head = frames[:, :window]
    # r[t] = sum_j x[j] x[j + t] over the window, for every lag, by FFT cross-correlation.
    r = np.fft.irfft(np.fft.rfft(frames, size) * np.conj(np.fft.rfft(head, size)), size)[:, : max_lag + 1]  # (F, L)
    energy = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)  # (F, n + 1)
    lags = np.arange(max_lag + 1)
    shifted = energy[:, lags + window] - energy[:, lags]  # (F, L): energy of the window moved by each lag
    diff = np.maximum(energy[:, window : window + 1] + shifted - 2 * r, 0.0)  # YIN's d(t)
    mean = np.cumsum(diff[:, 1:], axis=1) / lags[1:]
    normalised = diff[:, 1:] / np.maximum(mean, 1e-20)  # d'(t) for t >= 1
    return normalised[:, min_lag - 1 : max_lag].min(axis=1)


def harmonicity(x: np.ndarray, sr: int) -> float:
    """Share of loud frames with a clear pitch (YIN, see the module docstring); NaN when no frame is loud."""
    frames = _analysis_frames(x, sr)
    loud = _loud(frames)
    if not loud.any():
        return math.nan
    return float((_yin_minimum(frames[loud], sr) < PITCH_THRESHOLD).mean())


def onset_times(x: np.ndarray, sr: int) -> np.ndarray:
    """Onset times (seconds): peaks of the spectral flux, on frames of ~64 ms with ~16 ms hops.

    The flux is the mean rise of log magnitudes (`log(1 + 1000 |X| / max |X|)`) from one frame to the next,
    with silence before the signal (so a note at time 0 counts) and none in silent frames. An onset is a flux peak that is the largest
    within 50 ms either side, over twice the median flux of the half second around it and over
    ONSET_FLUX_MIN. Steady noise has a high but even flux and so no onsets; a steady tone has none either.
    """
    n = _frame_length(sr)
    hop = n // 4
    frames = _frames(np.r_[np.zeros(n), _mono(x)], n, hop)
    if len(frames) < 3:
        return np.zeros(0)
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1))  # (F, n/2 + 1)
    log_mag = np.log1p(1000.0 * magnitude / max(float(magnitude.max()), 1e-12))
    flux = np.r_[0.0, np.maximum(np.diff(log_mag, axis=0), 0).mean(axis=1)]  # (F,)
    flux[_levels(frames) <= SILENT_DB] = 0.0  # nothing starts in a silent frame
    near = max(1, round(0.05 * sr / hop))
    around = max(near, round(0.25 * sr / hop))
    padded = np.pad(flux, around, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * around + 1)  # (F, 2 * around + 1)
    local_median = np.median(windows, axis=1)
    local_max = windows[:, around - near : around + near + 1].max(axis=1)
    peaks = (flux == local_max) & (flux > 2 * local_median) & (flux > ONSET_FLUX_MIN)
    peaks &= np.r_[True, ~peaks[:-1]]  # a plateau of equal maxima counts once
    # Frame k compares the frames starting at (k - 1) * hop and k * hop of the padded signal: the onset lies
    # within the last hop of frame k, that is between (k - 1) * hop + n and k * hop + n, less the padding n.
    return np.maximum(np.flatnonzero(peaks) * hop - hop // 2, 0) / sr


def onset_rate(x: np.ndarray, sr: int) -> float:
    """Onsets per second of signal (see `onset_times`); 0.0 for silence."""
    seconds = len(_mono(x)) / sr
    return float(len(onset_times(x, sr)) / seconds) if seconds > 0 else math.nan


def dynamics(x: np.ndarray, sr: int) -> float:
    """Spread of loudness in dB: 95th minus 5th percentile of frame RMS over non-silent frames (0 for a
    steady tone or steady noise, more for music that swells and decays). NaN when every frame is silent."""
    db = _levels(_analysis_frames(x, sr))
    db = db[db > SILENT_DB]
    return float(np.percentile(db, 95) - np.percentile(db, 5)) if len(db) else math.nan


@dataclass(frozen=True)
class AudioVerdict:
    """What a signal is (`label`: "silence", "noise" or "tonal") and the numbers behind it."""

    label: str
    reason: str
    sounding_share: float  # share of frames above SILENT_DB
    rms_dbfs: float
    flatness: float
    harmonicity: float
    onset_rate: float
    dynamics: float

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def classify(x: np.ndarray, sr: int) -> AudioVerdict:
    """Silence, noise or tonal music (rules in the module docstring), with the measures that decided it."""
    x = _mono(x)
    frames = _analysis_frames(x, sr)
    sounding = float((_levels(frames) > SILENT_DB).mean())
    rms = float(10 * np.log10(np.mean(x**2) + 1e-20)) if len(x) else -200.0
    numbers = {
        "sounding_share": round(sounding, 3),
        "rms_dbfs": round(rms, 1),
        "flatness": spectral_flatness(x, sr),
        "harmonicity": harmonicity(x, sr),
        "onset_rate": onset_rate(x, sr) if len(x) else math.nan,
        "dynamics": dynamics(x, sr),
    }
    if sounding < SILENCE_SHARE:
        return AudioVerdict("silence", f"only {sounding:.0%} of frames are above {SILENT_DB:.0f} dBFS", **numbers)
    flat, harm = numbers["flatness"], numbers["harmonicity"]
    if flat >= NOISE_FLATNESS:
        return AudioVerdict("noise", f"median spectral flatness {flat:.3f} >= {NOISE_FLATNESS}", **numbers)
    if harm < NOISE_HARMONICITY or (harm < MIN_HARMONICITY and flat >= TONAL_FLATNESS):
        return AudioVerdict(
            "noise", f"only {harm:.0%} of loud frames have a clear pitch, flatness {flat:.3f}", **numbers
        )
    later = onset_times(x, sr)
    later = len(later[later > STEADY_AFTER]) / (len(x) / sr)  # onsets/s after the start of the signal
    if flat >= TONAL_FLATNESS and numbers["dynamics"] < STEADY_DYNAMICS_DB and later < STEADY_ONSET_RATE:
        return AudioVerdict(
            "noise",
            f"a steady hum over noise: flatness {flat:.3f}, {numbers['dynamics']:.1f} dB of dynamics, "
            f"{later:.1f} onsets/s after the start",
            **numbers,
        )
    return AudioVerdict("tonal", f"flatness {flat:.3f}, {harm:.0%} of loud frames pitched", **numbers)


def chroma(x: np.ndarray, sr: int) -> np.ndarray:
    """(12,) pitch-class profile of the tonal peaks, C first, summing to 1; zeros for silence and noise.

    On frames of ~256 ms (Hann window, half-frame hops, silent frames left out), a spectral peak is a local
    maximum over CHROMA_PEAK times the median of the ~100 Hz around it (a partial; noise of any colour
    almost never makes one). Each peak between CHROMA_RANGE adds its height over that median to the pitch
    class nearest its frequency. When the peaks hold under CHROMA_TONAL_SHARE of the band's magnitude the
    signal has no pitch content to speak of, and the profile is all zeros.
    """
    n = 1 << max(6, round(math.log2(CHROMA_FRAME_SECONDS * sr)))
    frames = _frames(x, n, n // 2)
    frames = frames[_levels(frames) > SILENT_DB]
    if not len(frames):
        return np.zeros(12)
    magnitude = np.abs(np.fft.rfft(frames * np.hanning(n), axis=1))  # (F, n/2 + 1)
    freqs = np.fft.rfftfreq(n, 1 / sr)
    half = max(1, round(50.0 / (sr / n)))  # bins in 50 Hz
    padded = np.pad(magnitude, ((0, 0), (half, half)), mode="edge")
    floor = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1, axis=1), axis=2)  # (F, bins)
    local_max = (magnitude >= padded[:, half - 1 : -half - 1]) & (
        magnitude >= padded[:, half + 1 : padded.shape[1] - half + 1]
    )
    peaks = local_max & (magnitude > CHROMA_PEAK * floor)
    band = (freqs >= CHROMA_RANGE[0]) & (freqs <= min(CHROMA_RANGE[1], sr / 2))
    salience = np.where(peaks, magnitude - floor, 0.0)[:, band].sum(axis=0)  # (bins in band,)
    if salience.sum() < CHROMA_TONAL_SHARE * magnitude[:, band].sum():
        return np.zeros(12)
    pitch_class = np.round(69 + 12 * np.log2(freqs[band] / 440.0)).astype(int) % 12  # MIDI pitch mod 12: C = 0
    profile = np.bincount(pitch_class, weights=salience, minlength=12)
    return profile / profile.sum()


def chroma_similarity(a: np.ndarray, b: np.ndarray, sr: int) -> float:
    """Correlation (-1 to 1) of the pitch-class profiles of two signals: 1 for the same notes; 0 when either
    profile is flat (noise) or empty (silence)."""
    pa, pb = chroma(a, sr), chroma(b, sr)
    pa, pb = pa - pa.mean(), pb - pb.mean()
    norm = float(np.linalg.norm(pa) * np.linalg.norm(pb))
    return float(pa @ pb / norm) if norm > 1e-12 else 0.0
