"""One process vs `torchrun --nproc_per_node 2` (gloo, CPU) at the same global batch: the loss curves and the time.

    .venv/bin/python benchmarks/ddp_curve.py [--steps 40] [--preset tiny]

Data: the built-in Bach chorales as mmm tokens (4-bar windows, hop 2), encoded once into a temp folder. Both
runs are the real CLI (`orchestrion train gpt`, then the same under torchrun on 127.0.0.1) with one thread
per process. Prints the largest relative difference between the two train-loss curves and between the
validation losses, and each run's wall time. The preset's batch is the global batch, so the two runs train
on the same windows: the curves differ only by float rounding in the gradient all-reduce. On a 2-core
machine two processes are not faster; the point here is the curve, and what DDP costs per step.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train(command: list[str], out: Path, data: Path, preset: str, steps: int) -> float:
    args = ["train", "gpt", str(data), "--out", str(out), "--preset", preset, "--steps", str(steps)]
    started = time.perf_counter()
    subprocess.run(
        [*command, *args], env={**os.environ, "OMP_NUM_THREADS": "1"}, check=True, capture_output=True, timeout=1800
    )
    return time.perf_counter() - started


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--preset", default="tiny")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="orchestrion-ddp-") as tmp:
        root = Path(tmp)
        data = root / "data"
        subprocess.run(
            [str(BIN / "orchestrion"), "encode", "mmm", "builtin:bach-chorales", "--out", str(data), "--bars", "4",
             "--hop", "2"],
            check=True, capture_output=True, timeout=1800,
        )  # fmt: skip
        one_s = train([str(BIN / "orchestrion")], root / "one", data, args.preset, args.steps)
        torchrun = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
                    "--master_port", str(free_port()), "-m", "orchestrion"]  # fmt: skip
        two_s = train(torchrun, root / "two", data, args.preset, args.steps)
        one, two = metrics(root / "one"), metrics(root / "two")
        assert [r["step"] for r in one] == [r["step"] for r in two], "the two runs logged different steps"
        rel = [abs(a["train_loss"] - b["train_loss"]) / abs(a["train_loss"]) for a, b in zip(one, two, strict=True)]
        val = [
            abs(a["val_loss"] - b["val_loss"]) / abs(a["val_loss"])
            for a, b in zip(one, two, strict=True)
            if "val_loss" in a
        ]
        state = json.loads((root / "two" / "checkpoint" / "train_state.json").read_text())

    print(f"preset {args.preset}, {args.steps} steps, global batch as in the preset; world size {state['world_size']}")
    print(f"train loss: first {one[0]['train_loss']:.4f}, last {one[-1]['train_loss']:.4f} (1 process)")
    print(f"largest relative difference, 2 processes vs 1: train loss {max(rel):.1e} over {len(rel)} logged steps, "
          f"validation loss {max(val, default=float('nan')):.1e} over {len(val)} evaluations")  # fmt: skip
    print(f"wall time: 1 process {one_s:.1f} s, 2 processes {two_s:.1f} s ({one_s / two_s:.2f}x)")


if __name__ == "__main__":
    main()
