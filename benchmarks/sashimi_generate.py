"""SaShiMi sampling speed: our recurrent sampler against naive convolution-mode sampling, in one run.

1. Real-time factor (seconds of compute per second of audio, below 1 is faster than real time) of the
   recurrent sampler for the 2- and 8-layer models at batch 1 and 16, on one CPU thread.
2. The peer: the same model sampled naively, running the convolutional forward pass over the whole
   prefix for every new sample (what a model without a recurrent mode has to do). Its cost is measured
   at a few prefix lengths, checked against a short real naive run, and summed over one second of audio.

    .venv/bin/python benchmarks/sashimi_generate.py [--seconds 1.0] [--model builtin:piano] [--cpu-time]

With --cpu-time, only the 2-layer recurrent RTF, in wall-clock and in CPU time: on a shared machine the
wall clock counts the time other jobs hold the core, CPU time only what the sampler spends.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

RATE = 16000


def model_for(layers: int, ref: str | None):  # noqa: ANN201
    from orchestrion.sashimi.model import Sashimi, SashimiConfig

    if ref is not None and layers == 2:
        from orchestrion.registry import load_composer

        composer = load_composer(ref)
        if composer.config.n_layers == 2:
            return composer.model, ref
    torch.manual_seed(0)
    return Sashimi(SashimiConfig(n_layers=layers)).eval(), "random init"


def recurrent_rtf(model, batch: int, seconds: float, cpu: bool = False) -> float:  # noqa: ANN001
    """Seconds of compute per second of audio of each stream (batch streams are made at once): wall-clock
    time, or with `cpu` the process's CPU time (what one core spends, however busy the machine is)."""
    from orchestrion.sashimi.sampler import Sampler

    clock = time.process_time if cpu else time.perf_counter
    n = int(seconds * RATE)
    sampler = Sampler(model, batch)
    gumbel = np.random.default_rng(0).gumbel(size=(n, batch, 256)).astype(np.float32)
    sampler.sample(64, 1.0, 1.0, gumbel)  # compile and warm up
    start = clock()
    sampler.sample(n, 1.0, 1.0, gumbel)
    return (clock() - start) / seconds


@torch.inference_mode()
def naive_step_seconds(model, prefix: int) -> float:  # noqa: ANN001
    """Time of one naive step: a forward pass over a prefix (padded to a multiple of 16)."""
    length = -(-prefix // 16) * 16
    tokens = torch.randint(0, 256, (1, length))
    model(tokens)
    repeats = 3
    start = time.perf_counter()
    for _ in range(repeats):
        model(tokens)
    return (time.perf_counter() - start) / repeats


@torch.inference_mode()
def naive_run(model, n: int) -> float:  # noqa: ANN001
    """A real naive sampler for n samples: forward over the whole prefix, sample the last position."""
    tokens = torch.full((1, 16), 128, dtype=torch.long)
    start = time.perf_counter()
    for t in range(n):
        length = -(-(t + 1) // 16) * 16
        logits = model(
            tokens[:, :length]
            if length <= tokens.shape[1]
            else torch.nn.functional.pad(tokens, (0, length - tokens.shape[1]), value=128)
        )[0, t]
        nxt = torch.multinomial(torch.softmax(logits, -1), 1)
        if t + 1 >= tokens.shape[1]:
            tokens = torch.nn.functional.pad(tokens, (0, 16), value=128)
        tokens[0, t + 1] = nxt
    return time.perf_counter() - start


def naive_rtf(model, seconds: float) -> tuple[float, dict]:  # noqa: ANN001
    """Naive seconds per second of audio: step cost measured at a few prefixes, interpolated, summed."""
    n = int(seconds * RATE)
    points = [16, 256, 1024, 4096, n]
    costs = [naive_step_seconds(model, p) for p in points]
    total = float(np.sum(np.interp(np.arange(1, n + 1), points, costs)))
    return total / seconds, dict(zip(points, costs, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="audio per measurement")
    parser.add_argument("--model", default="builtin:piano", help="2-layer model to time (weights do not change speed)")
    parser.add_argument(
        "--cpu-time", action="store_true", help="only the recurrent RTF of the 2-layer model, in wall and CPU time"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core: numba's loops are single-threaded anyway
    if args.cpu_time:  # on a shared machine wall-clock time counts the other jobs too; CPU time does not
        model, source = model_for(2, args.model)
        for batch, seconds in ((1, args.seconds), (16, args.seconds / 4)):
            wall = recurrent_rtf(model, batch, seconds)
            cpu = recurrent_rtf(model, batch, seconds, cpu=True)
            print(f"2-layer ({source}), batch {batch}: RTF {wall:.3f} wall-clock, {cpu:.3f} CPU time (one core)")
        return

    rows = []
    for layers in (2, 8):
        model, source = model_for(layers, args.model)
        ours1 = recurrent_rtf(model, 1, args.seconds)
        ours16 = recurrent_rtf(model, 16, args.seconds / 4)
        naive, costs = naive_rtf(model, args.seconds)
        check_n = 160
        measured = naive_run(model, check_n)
        predicted = float(np.sum(np.interp(np.arange(1, check_n + 1), list(costs), list(costs.values()))))
        rows.append((layers, source, ours1, ours16, naive, measured / predicted))
        print(
            f"{layers}-layer ({source}): recurrent RTF batch 1 = {ours1:.3f}, batch 16 = {ours16:.3f} per stream "
            f"({ours16 / 16:.4f} per second of audio made); naive RTF = {naive:.1f} "
            f"(real naive run / model: {measured / predicted:.2f}); ours is {naive / ours1:,.0f}x faster at batch 1"
        )
    print()
    print("| model | ours, batch 1 (RTF) | ours, batch 16 (RTF per stream / per audio-second) | naive (RTF) | ratio |")
    print("|---|---|---|---|---|")
    for layers, _, ours1, ours16, naive, _ in rows:
        print(
            f"| {layers}-layer | {ours1:.3f} | {ours16:.3f} / {ours16 / 16:.4f} | {naive:.1f} | {naive / ours1:,.0f}x |"
        )


if __name__ == "__main__":
    main()
