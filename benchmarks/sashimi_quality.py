"""The piano quality check of any SaShiMi model, and a spectrogram of a sample next to a real rendering.

The quality benchmark's piano part (`benchmarks/quality.py`: 3 x 5 s at seeds 0-2, the model's default
sampling, against 5 s of three chorales rendered by FluidSynth on the piano at 16 kHz), for a model
directory as well as a built-in one, so that a candidate is judged before it replaces `builtin:piano`.
Each sample and each real rendering gets the detector's verdict (`core/audio_analysis.classify`); the
targets are flatness <= 0.01 for every sample, harmonicity within the real spread, verdict "tonal".

    .venv/bin/python benchmarks/sashimi_quality.py [--model builtin:piano] [--png docs/images/piano-spectrogram.png]
        [--json out.json]

With --png: the sample of seed 0 and 5 s of the first real rendering from its first note, waveform over
spectrogram, side by side, each titled with its verdict and numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from orchestrion.core.audio_analysis import classify
from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest

RATE = 16000
SECONDS = 5.0


def real_renderings(tmp: Path, count: int = 3) -> list[np.ndarray]:
    """`count` whole chorales spread over the corpus, rendered on the piano (as the training data was)."""
    from orchestrion.core.audio import load_audio
    from orchestrion.core.corpora import corpus_files
    from orchestrion.core.music import load_midi
    from orchestrion.core.render import render_wav

    files = corpus_files("bach-chorales")
    out = []
    for i in np.linspace(0, len(files) - 1, count).astype(int):
        score = load_midi(files[i])
        for track in score.tracks:
            track.program = 0  # acoustic grand piano
        out.append(load_audio(render_wav(score, tmp / f"real-{i}.wav", sample_rate=RATE), RATE))
    return out


def first_sound(x: np.ndarray, seconds: float) -> np.ndarray:
    """`seconds` of x from its first sample above -60 dBFS (a rendering may begin with a rest)."""
    start = int(np.argmax(np.abs(x) > 1e-3)) if (np.abs(x) > 1e-3).any() else 0
    return x[start : start + int(seconds * RATE)]


def side_by_side(sample: np.ndarray, real: np.ndarray, titles: tuple[str, str], path: Path) -> Path:
    """Waveform over spectrogram, the sample on the left and the real rendering on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 5.2), dpi=80, sharex=True, height_ratios=(1, 2))
    for column, (x, title) in enumerate(zip((sample, real), titles, strict=True)):
        wave, spec = axes[0, column], axes[1, column]
        block = max(1, len(x) // 2000)
        env = x[: len(x) // block * block].reshape(-1, block)  # (blocks, block)
        t = np.arange(env.shape[0]) * block / RATE
        wave.fill_between(t, env.min(axis=1), env.max(axis=1), lw=0)
        wave.set_ylim(-1, 1)
        wave.set_title(title, fontsize=9)
        with np.errstate(divide="ignore"):
            spec.specgram(x, NFFT=1024, Fs=RATE, noverlap=512, cmap="magma", scale="dB", vmin=-120)
        spec.set_yscale("symlog", linthresh=200)
        spec.set_ylim(50, RATE / 2)
        spec.set_xlabel("seconds")
    axes[0, 0].set_ylabel("amplitude")
    axes[1, 0].set_ylabel("frequency (Hz)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def describe(name: str, verdict: object) -> str:
    return (
        f"{name}\n{verdict.label}: flatness {verdict.flatness:.3f}, harmonicity {verdict.harmonicity:.2f},"
        f" {verdict.onset_rate:.1f} onsets/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:piano")
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    composer = load_composer(args.model)
    began = time.perf_counter()
    samples = [
        composer.compose(ComposeRequest(model=args.model, seconds=SECONDS, seed=seed)).audio for seed in range(3)
    ]
    seconds = time.perf_counter() - began
    with tempfile.TemporaryDirectory() as tmp:
        whole = real_renderings(Path(tmp))
    real = [x[: int(SECONDS * RATE)] for x in whole]  # what benchmarks/quality.py measures: the first 5 s
    judged = {"model": [classify(x, RATE) for x in samples], "real": [classify(x, RATE) for x in real]}
    print(f"{args.model}: 3 x {SECONDS:g} s in {seconds:.0f} s")
    print("| audio | seed/piece | verdict | flatness | harmonicity | onsets/s | dynamics (dB) |")
    print("|---|---|---|---|---|---|---|")
    for name, verdicts in judged.items():
        for i, v in enumerate(verdicts):
            row = f"| {name} | {i} | {v.label} | {v.flatness:.4f} | {v.harmonicity:.3f} | {v.onset_rate:.2f} |"
            print(f"{row} {v.dynamics:.1f} |")
    harm = [v.harmonicity for v in judged["real"]]
    lo, hi = min(harm), max(harm)
    met = {
        "flatness <= 0.01 (every sample)": all(v.flatness <= 0.01 for v in judged["model"]),
        f"harmonicity within the real spread [{lo:.2f}, {hi:.2f}]": all(
            lo <= v.harmonicity <= hi for v in judged["model"]
        ),
        "verdict tonal (every sample)": all(v.label == "tonal" for v in judged["model"]),
    }
    for target, ok in met.items():
        print(f"target {target}: {'met' if ok else 'missed'}")
    if args.png:  # the real side from its first note: the quality benchmark's first 5 s may begin with a rest
        shown = first_sound(whole[0], SECONDS)
        titles = (
            describe(f"{args.model}, seed 0", judged["model"][0]),
            describe("a real rendering (the corpus's first chorale, from its first note)", classify(shown, RATE)),
        )
        print(side_by_side(samples[0], shown, titles, args.png))
    if args.json:
        rows = {k: [v.to_json() for v in vs] for k, vs in judged.items()}
        args.json.write_text(json.dumps({"model": args.model, "verdicts": rows, "targets": met}, indent=2))


if __name__ == "__main__":
    main()
