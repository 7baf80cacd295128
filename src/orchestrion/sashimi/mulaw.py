"""Audio quantisation for SaShiMi: float waveforms <-> 8-bit classes, mu-law (default) or linear.

Pure functions in pairs, `encode`/`decode`, over numpy arrays. mu-law spends its 256 levels where quiet
audio lives (near zero), which is why the reference (and WaveNet before it) trains on 8-bit mu-law:
linear 8-bit quantisation buries quiet piano passages in a hiss a model then learns to reproduce.
"""

from __future__ import annotations

import numpy as np

from orchestrion.errors import BadInput

BITS = 8
QUANTIZATIONS = ("mulaw", "linear")


def _levels(bits: int) -> int:
    if not 1 <= bits <= 16:
        raise BadInput(f"quantisation bits must be 1-16, got {bits}")
    return 1 << bits


def mulaw_encode(x: np.ndarray, bits: int = BITS) -> np.ndarray:
    """Waveform in [-1, 1] -> integer classes 0 .. 2**bits - 1 (uint8 for 8 bits, else uint16)."""
    mu = _levels(bits) - 1
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)  # [-1, 1], companded
    q = np.floor((y + 1) / 2 * mu + 0.5)
    return q.astype(np.uint8 if bits <= 8 else np.uint16)


def mulaw_decode(q: np.ndarray, bits: int = BITS) -> np.ndarray:
    """Integer classes -> float32 waveform in [-1, 1] (the inverse of `mulaw_encode` up to its step)."""
    mu = _levels(bits) - 1
    y = np.asarray(q, dtype=np.float64) / mu * 2 - 1
    x = np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu
    return x.astype(np.float32)


def linear_encode(x: np.ndarray, bits: int = BITS) -> np.ndarray:
    """Waveform in [-1, 1] -> evenly spaced classes 0 .. 2**bits - 1."""
    mu = _levels(bits) - 1
    x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
    q = np.floor((x + 1) / 2 * mu + 0.5)
    return q.astype(np.uint8 if bits <= 8 else np.uint16)


def linear_decode(q: np.ndarray, bits: int = BITS) -> np.ndarray:
    mu = _levels(bits) - 1
    return (np.asarray(q, dtype=np.float64) / mu * 2 - 1).astype(np.float32)


def encode(x: np.ndarray, quantization: str = "mulaw", bits: int = BITS) -> np.ndarray:
    """Dispatch by quantisation name ("mulaw" or "linear")."""
    if quantization == "mulaw":
        return mulaw_encode(x, bits)
    if quantization == "linear":
        return linear_encode(x, bits)
    raise BadInput(f"unknown quantisation {quantization!r}; use one of: {', '.join(QUANTIZATIONS)}")


def decode(q: np.ndarray, quantization: str = "mulaw", bits: int = BITS) -> np.ndarray:
    if quantization == "mulaw":
        return mulaw_decode(q, bits)
    if quantization == "linear":
        return linear_decode(q, bits)
    raise BadInput(f"unknown quantisation {quantization!r}; use one of: {', '.join(QUANTIZATIONS)}")
