"""Does a SaShiMi continuation continue? Chroma similarity after a prompt, against real consecutive seconds.

For prompts cut from held-out audio (the test split of an audio dataset), the model continues each one;
the measure is the chroma similarity (`orchestrion.core.audio_analysis.chroma_similarity`: the
correlation of two pitch-class profiles) between the prompt's last second and the continuation's first.
The peer is the real audio itself at the same places: the last second of the prompt against the second
that really followed. A third row, seconds of two different pieces, shows what "unrelated" scores; the last row compares each
continuation with the other prompts: a continuation that keeps its own prompt's notes scores higher
against its prompt than against the others (the real audio does: 0.43 against 0.33 on the chorales),
one that ignores its prompt (or whose fixed spectral colour has a pitch-class profile of its own) scores
the same against both.

    .venv/bin/python benchmarks/sashimi_continuation.py [--model builtin:piano] [--data /work/data/piano]
        [--prompts 8] [--seeds 2] [--prompt-seconds 2] [--json out.json]

The verdict follows the quality table's rule (`orchestrion.evaluation.quality.Row`): "within" when the
model's mean lies within two standard errors of the real mean for as many pieces.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from orchestrion.core.audio_analysis import chroma_similarity
from orchestrion.core.render import write_wav
from orchestrion.evaluation.quality import Row
from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest
from orchestrion.sashimi import mulaw
from orchestrion.sashimi.dataset import AudioDataset


def places(data: str, count: int, prompt: int, after: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` (prompt, what followed) pairs spread evenly over the test split, one piece after another."""
    dataset = AudioDataset(data)
    chunks = [np.asarray(c) for c in dataset.split("test").chunks if len(c) >= prompt + after]
    pairs = []
    for i in range(count):
        c = chunks[i % len(chunks)]
        turn = i // len(chunks)  # more prompts than pieces: later places in the same pieces
        start = int((len(c) - prompt - after) * (0.2 + 0.6 * ((turn * 0.37) % 1.0)))
        x = mulaw.decode(c[start : start + prompt + after], dataset.quantization)
        pairs.append((x[:prompt], x[prompt:]))
    return pairs


def summary(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
        "p10": float(np.percentile(v, 10)),
        "n": len(v),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:piano")
    parser.add_argument("--data", default="/work/data/piano", help="an audio dataset (its test split is used)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2, help="continuations per prompt (seeds 0..n-1)")
    parser.add_argument("--prompt-seconds", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    args = parser.parse_args()

    composer = load_composer(args.model)
    rate = composer.config.sample_rate
    second = rate
    pairs = places(args.data, args.prompts, int(args.prompt_seconds * rate), second)
    real = [chroma_similarity(p[-second:], a, rate) for p, a in pairs]
    unrelated = [
        chroma_similarity(pairs[i][0][-second:], pairs[(i + 1) % len(pairs)][1], rate) for i in range(len(pairs))
    ]
    model, labels, other = [], [], []
    began = time.perf_counter()
    sampling = {k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k)) if v is not None}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (prompt, _) in enumerate(pairs):
            path = write_wav(Path(tmp) / f"prompt-{i}.wav", prompt, rate)
            request = ComposeRequest(
                model=args.model, prompt=str(path), seconds=1.0, seed=0, num_samples=args.seeds, **sampling
            )
            for piece in composer.compose_batch(request):
                model.append(piece.report["continuation_chroma"])
                labels.append(piece.report["label"])
                after = piece.audio[len(piece.audio) - second :]  # the continuation's (first and only) second
                other.append(
                    np.mean([chroma_similarity(q[-second:], after, rate) for j, (q, _) in enumerate(pairs) if j != i])
                )
    seconds = time.perf_counter() - began
    rows = {
        "real (what followed)": summary(real),
        "unrelated pieces": summary(unrelated),
        "model": summary(model),
        "model's continuation vs the other prompts": summary(other),
    }
    judged = Row(rows["model"]["mean"], rows["real (what followed)"]["mean"], rows["real (what followed)"]["std"],
                 len(model), len(real))  # fmt: skip
    print(f"{args.model}: {len(pairs)} prompts of {args.prompt_seconds:g} s x {args.seeds} seeds, {seconds:.0f} s")
    print("| chroma similarity, last second of the prompt vs the next second | mean | std | 10th pct | n |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['mean']:.3f} | {r['std']:.3f} | {r['p10']:.3f} | {r['n']} |")
    ratio = rows["model"]["mean"] / max(rows["real (what followed)"]["mean"], 1e-9)
    print(f"model / real = {ratio:.2f}; verdict: {judged.verdict}; continuation labels: {labels}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "verdict": judged.verdict, "labels": labels}, indent=2))


if __name__ == "__main__":
    main()
