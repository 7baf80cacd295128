"""SaShiMi learning curves and the projection of when a run reaches a target, from the runs' metrics.jsonl.

Reads the records `orchestrion train sashimi` logs (train loss every few steps; at every evaluation the
validation loss and the judged samples' flatness, harmonicity and tonal share), plots both learning curves
of every run in one figure, and fits the train loss in bits per byte against log2(step) over the steps
from `--fit-from` on: a straight line, its slope the bits gained per doubling of training. Extending that
line (optimistic: such curves bend flatter, never steeper) gives the step at which each target level is
reached, and with the measured throughput the hours of one CPU core it takes.

    .venv/bin/python benchmarks/sashimi_curve.py --run melodies=/work/runs/piano-melody \\
        --run chords=/work/runs/piano-chords --target "LPC-32 (samples still noise)=4.90" \\
        --target "reference 8-layer on YouTubeMix=2.06" --samples-per-second 5266 --png curve.png
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from orchestrion.sashimi.training import read_records


def fit(records: list[dict], start: int) -> tuple[float, float]:
    """(bits at step 1, bits gained per doubling) of the train loss in bits against log2(step)."""
    points = [(r["step"], r["train_loss"] / math.log(2)) for r in records if r.get("train_loss") and r["step"] >= start]
    x = np.log2([p[0] for p in points])
    y = np.array([p[1] for p in points])
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(-slope)


def plot(runs: dict[str, list[dict]], targets: dict[str, float], fits: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    right = bottom.twinx()
    for i, (name, records) in enumerate(runs.items()):
        train = [(r["step"], r["train_loss"] / math.log(2)) for r in records if r.get("train_loss")]
        top.plot(*zip(*train, strict=True), color=f"C{i}", alpha=0.35, label=f"{name}: train")
        evals = [(r["step"], r["val_loss"] / math.log(2)) for r in records if r.get("val_loss")]
        top.plot(*zip(*evals, strict=True), "o-", color=f"C{i}", label=f"{name}: validation")
        a, b = fits[name]
        steps = np.geomspace(40, 2e5, 50)
        top.plot(steps, a - b * np.log2(steps), ":", color=f"C{i}", label=f"{name}: fit, -{b:.2f} bits per doubling")
        heard = [r for r in records if r.get("sample_flatness") is not None]
        x = [r["step"] for r in heard]
        bottom.plot(x, [r["sample_flatness"] for r in heard], "o-", color=f"C{i}", label=f"{name}: flatness")
        right.plot(x, [r["sample_harmonicity"] for r in heard], "s--", color=f"C{i}", label=f"{name}: harmonicity")
    for j, (name, level) in enumerate(targets.items()):
        top.axhline(level, color=f"C{j + 4}", linestyle="--", label=name)
    bottom.axhline(0.01, color="k", linestyle=":", label="flatness target 0.01")
    top.set_xscale("log")
    top.set_ylabel("bits per byte")
    top.set_ylim(1, 8.5)
    top.legend(fontsize=7, loc="lower left")
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylim(0.003, 1)
    bottom.set_ylabel("samples: median flatness (log)")
    bottom.set_xlabel("step (batch 4 x 4096 samples)")
    bottom.legend(fontsize=7, loc="lower left")
    bottom.grid(alpha=0.3)
    right.set_ylim(-0.05, 1.05)
    right.set_ylabel("samples: median harmonicity")
    right.legend(fontsize=7, loc="lower right")
    top.set_title("SaShiMi on the piano renderings, on this CPU: learning curves and their extension")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR (its metrics.jsonl)")
    parser.add_argument("--target", action="append", default=[], help="NAME=BITS_PER_BYTE")
    parser.add_argument("--fit-from", type=int, default=40, help="first step of the fit (skips the warm-up)")
    parser.add_argument("--samples-per-second", type=float, required=True, help="measured training throughput")
    parser.add_argument("--samples-per-step", type=int, default=4 * 4096)
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    runs = {k: read_records(Path(v) / "metrics.jsonl") for k, v in (r.split("=", 1) for r in args.run)}
    targets = {k: float(v) for k, v in (t.rsplit("=", 1) for t in args.target)}
    fits = {name: fit(records, args.fit_from) for name, records in runs.items()}
    out: dict = {}
    print("| run | last step | train bits (last 30 steps) | validation bits | fit: bits per doubling |", end="")
    print("".join(f" steps to {n} | CPU-core hours |" for n in targets))
    print("|---|---|---|---|---|" + "---|---|" * len(targets))
    for name, records in runs.items():
        a, b = fits[name]
        last = max(r["step"] for r in records)
        recent = np.mean(
            [r["train_loss"] / math.log(2) for r in records if r.get("train_loss") and r["step"] > last - 30]
        )
        val = [r["val_loss"] / math.log(2) for r in records if r.get("val_loss")]
        row = {"last_step": last, "train_bits": float(recent), "val_bits": val[-1], "per_doubling": b, "targets": {}}
        cells = []
        for target, level in targets.items():
            step = 2 ** ((a - level) / b) if b > 0 else math.inf
            hours = step * args.samples_per_step / args.samples_per_second / 3600
            row["targets"][target] = {"step": step, "cpu_core_hours": hours}
            cells.append(f" {step:,.0f} | {hours:,.0f} |")
        out[name] = row
        print(f"| {name} | {last} | {recent:.2f} | {val[-1]:.2f} | {b:.3f} |" + "".join(cells))
    if args.png:
        plot(runs, targets, fits, args.png)
        print(args.png)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
