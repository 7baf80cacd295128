"""Audio loading: any file -> mono float32 at the rate a model wants (16 kHz for SaShiMi).

soundfile (libsndfile) reads wav, flac, ogg, aiff and friends directly; anything it cannot read (mp3,
m4a, opus in odd containers, video) is decoded by ffmpeg into a WAV in memory. Resampling is soxr's
high-quality mode, which is both faster and cleaner than ffmpeg's default resampler.
Whether audio is silence, noise or music is `orchestrion.core.audio_analysis`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from orchestrion.core.tools import run_tool
from orchestrion.errors import BadInput, ToolFailed

SAMPLE_RATE = 16000
# Read by soundfile; the rest go through ffmpeg.
SNDFILE_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".au", ".w64")
FFMPEG_SUFFIXES = (".mp3", ".m4a", ".aac", ".opus", ".wma", ".webm", ".mp4", ".mka")
AUDIO_SUFFIXES = SNDFILE_SUFFIXES + FFMPEG_SUFFIXES
FFMPEG_TIMEOUT = 300.0
# Limits that keep a corrupt header from turning a small file into gigabytes: a rate under any real
# recording's would be upsampled many times over, and the length cap bounds the decoded array.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 1_000_000
MAX_AUDIO_SECONDS = 4 * 3600.0


def find_audio_files(inputs: list[str | Path]) -> list[Path]:
    """Files and folders (searched recursively) -> the audio files among them, sorted, de-duplicated."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise BadInput("no such file or folder", path)
    return sorted(dict.fromkeys(p.resolve() for p in found))


def resample(x: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 at `rate` -> float32 at `target` (soxr, high quality)."""
    if rate == target:
        return np.ascontiguousarray(x, dtype=np.float32)
    import soxr

    return soxr.resample(np.asarray(x, dtype=np.float32), rate, target, quality="HQ").astype(np.float32)


def _check_layout(frames: int, channels: int, rate: int, path: Path) -> None:
    """Refuse, before anything large is allocated, what no real recording looks like."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise BadInput(
            f"implausible sample rate {rate} Hz (accepted: {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE}); the header is corrupt",
            path,
        )
    if channels < 1:
        raise BadInput(f"the audio has {channels} channels", path)
    if frames / rate > MAX_AUDIO_SECONDS:
        raise BadInput(
            f"the audio claims {frames / rate / 3600:.1f} hours, over the {MAX_AUDIO_SECONDS / 3600:.0f} hour limit; "
            "split it or check that the file is not corrupt",
            path,
        )


def _read_with_soundfile(path: Path) -> tuple[np.ndarray, int] | None:
    """(samples, rate), or None when libsndfile does not know the format."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            _check_layout(f.frames, f.channels, f.samplerate, path)
            return f.read(dtype="float32", always_2d=True), int(f.samplerate)
    except (RuntimeError, ValueError):  # soundfile raises LibsndfileError, a RuntimeError
        return None


def _read_with_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        result = run_tool(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-vn", "-f", "wav", "-acodec", "pcm_f32le", "-"],
            timeout=FFMPEG_TIMEOUT,
        )
    except ToolFailed as exc:
        raise BadInput(f"cannot decode audio: {exc}", path) from exc
    try:
        data, rate = sf.read(io.BytesIO(result.stdout), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError) as exc:  # soundfile raises LibsndfileError, a RuntimeError
        raise BadInput(f"ffmpeg produced no readable audio: {exc}", path) from exc
    return data, int(rate)


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, *, use_ffmpeg: bool = True) -> np.ndarray:
    """Read any audio file as mono float32 in [-1, 1] at `sample_rate`; BadInput when it is not audio.

    With `use_ffmpeg=False` what libsndfile cannot read is refused instead of handed to ffmpeg.
    """
    path = Path(path)
    if not path.is_file():
        raise BadInput("no such audio file", path)
    read = _read_with_soundfile(path) if path.suffix.lower() not in FFMPEG_SUFFIXES else None
    if read is None:
        if not use_ffmpeg:
            raise BadInput("not an audio file libsndfile can read (and ffmpeg was not asked)", path)
        read = _read_with_ffmpeg(path)
        _check_layout(read[0].shape[0], read[0].shape[1], read[1], path)
    data, rate = read
    if data.shape[0] == 0:
        raise BadInput("the audio file is empty", path)
    # float64 so that loud float samples in many channels cannot overflow the sum into infinity; NaN and
    # infinity in a corrupt float file are refused just below, so numpy need not warn about them
    with np.errstate(over="ignore", invalid="ignore"):
        mono = data.mean(axis=1, dtype=np.float64) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise BadInput("the audio holds NaN or infinite samples", path)
    return np.clip(resample(mono, rate, sample_rate), -1.0, 1.0)
