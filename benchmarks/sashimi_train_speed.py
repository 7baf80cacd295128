"""SaShiMi training throughput on this machine: samples (bytes) per second of a full training step.

A step is what `orchestrion train sashimi` does per batch: forward, cross-entropy, backward, gradient
clipping and AdamW, on random 8-bit windows (the cost does not depend on the audio). Each configuration
is timed over a few steps after one warm-up step, on `--threads` CPU threads (1: the fair share of a
shared machine). The sample rate does not change the cost per sample; it changes how many seconds of
audio a sample is, so at 8 kHz every figure is twice the audio per second of training.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sashimi_train_speed.py [--steps 3] [--threads 1]
        [--configs 64x2,32x2,128x2,64x4,64x8] [--seq-len 4096] [--batch 4] [--device cpu] [--precision fp32]

Each configuration is WIDTHxLAYERS (d_model, S4 + feed-forward pairs per stage), with the piano preset's
amplitude input and output. Prints one line per configuration and a markdown table.

With `--learn SECONDS --data DIR`: instead, each configuration trains for SECONDS of wall-clock time on the
same batches of the dataset, and the table gives its steps and validation bits per byte (which model
learns fastest per hour of this machine, in the early regime).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F


def step_seconds(width: int, layers: int, seq_len: int, batch: int, steps: int, device: str, precision: str) -> tuple:
    """(seconds per step, parameters) of one configuration."""
    from orchestrion.core.training import resolve_precision
    from orchestrion.sashimi.model import Sashimi, SashimiConfig

    torch.manual_seed(0)
    dev = torch.device(device)
    config = SashimiConfig(d_model=width, n_layers=layers, amplitude_input=True, amplitude_output=True)
    model = Sashimi(config).to(dev).train()
    autocast = resolve_precision(precision, dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    x = torch.randint(0, 256, (batch, seq_len + 1), device=dev)
    times = []
    for i in range(steps + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(dev.type, dtype=autocast, enabled=autocast is not None):
            logits = model(x[:, :-1])  # (B, L, 256)
        loss = F.cross_entropy(logits.float().reshape(-1, 256), x[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], sum(p.numel() for p in model.parameters())


def learn_for(width: int, layers: int, data: str, budget: float) -> tuple[int, float]:
    """(steps, validation bits per byte) of one configuration trained for `budget` seconds of wall-clock
    time on the dataset's batches (4 x 2048, lr 2e-3 after 30 warm-up steps), the same batches for all."""
    from orchestrion.sashimi.dataset import AudioDataset, AudioTask
    from orchestrion.sashimi.model import Sashimi, SashimiConfig

    task = AudioTask(AudioDataset(data), 2048, 4, seed=0)
    torch.manual_seed(0)
    model = Sashimi(SashimiConfig(d_model=width, n_layers=layers, amplitude_input=True, amplitude_output=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.0)
    start, step = time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        for group in optimizer.param_groups:
            group["lr"] = 2e-3 * min(1.0, (step + 1) / 30)
        task.loss(model, task.batch("train", step, 0)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
    with torch.no_grad():
        loss = sum(float(task.loss(model, task.batch("validation", 0, i))) for i in range(3)) / 3
    return step, loss / math.log(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="64x2,32x2,128x2,64x4,64x8", help="WIDTHxLAYERS, comma-separated")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (median)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="fp32 or bf16 (autocast)")
    parser.add_argument("--learn", type=float, default=0, help="instead: train each config this many seconds")
    parser.add_argument("--data", default=None, help="with --learn: an audio dataset")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.learn:
        print("| width x layers | steps | validation bits/byte |\n|---|---|---|")
        for spec in args.configs.split(","):
            steps, bits = learn_for(*(int(v) for v in spec.lower().split("x")), args.data, args.learn)
            print(f"| {spec} | {steps} | {bits:.3f} |", flush=True)
        return
    rows = []
    for spec in args.configs.split(","):
        width, layers = (int(v) for v in spec.lower().split("x"))
        seconds, params = step_seconds(width, layers, args.seq_len, args.batch, args.steps, args.device, args.precision)
        rate = args.batch * args.seq_len / seconds
        rows.append((spec, params, seconds, rate))
        print(f"{spec}: {params:,} parameters, {seconds:.2f} s/step, {rate:,.0f} samples/s", flush=True)
    print()
    print(f"device {args.device}, {args.threads} thread(s), {args.precision}, batch {args.batch} x {args.seq_len}")
    print("| width x layers | parameters | s/step | samples/s | audio s per hour at 16 kHz | at 8 kHz |")
    print("|---|---|---|---|---|---|")
    for spec, params, seconds, rate in rows:
        print(
            f"| {spec} | {params:,} | {seconds:.2f} | {rate:,.0f} | {rate * 3600 / 16000:,.0f} | {rate * 3600 / 8000:,.0f} |"
        )


if __name__ == "__main__":
    main()
