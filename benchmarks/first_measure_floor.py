"""How soon N concurrent chorale streams get their first measure, in one process, and the floor the model sets.

    .venv/bin/python benchmarks/first_measure_floor.py [--streams 50] [--candidates 8,1] [--model builtin:chorales]

What the server does for N clients who ask at the same instant, without the server: N threads each stream a
4-bar piece through `Composer.stream` (seeds 0..N-1), their one-token steps batched by the model's
`StepBatcher` (`orchestrion.gpt.batching`), and each records the time to its first `Measure` (all voices of
the first bar). For each candidate count it prints p50/p99/max, the process's CPU time, how many batched
forwards ran and the time inside them, and the **floor**: the same number of forwards of one decoder holding
as many rows as the batches held on average (one matmul chain, the cheapest a batched step can be), timed on
the same machine. No arrangement of the streams' Python can bring the last first measure under that floor on
one core; with every core running forwards in parallel it divides by the cores at best.

The peer is the same N streams with each stream running its own steps (`--peer`, no batcher).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch

import orchestrion.gpt.batching as batching
from orchestrion.composer import Measure
from orchestrion.gpt.decoding import KVDecoder
from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest


def run(model: str, streams: int, candidates: int, batched: bool) -> dict:
    composer = load_composer(model)
    if batched:
        composer.share_steps()
    spent = {"seconds": 0.0, "forwards": 0, "rows": 0}
    lock = threading.Lock()
    original = batching.forward_rows

    def timed(decoders, ids, types=None):
        began = time.perf_counter()
        out = original(decoders, ids, types)
        with lock:
            spent["seconds"] += time.perf_counter() - began
            spent["forwards"] += 1
            spent["rows"] += sum(int(t.shape[0]) for t in ids)
        return out

    batching.forward_rows = timed
    firsts: list[float] = [float("nan")] * streams
    barrier = threading.Barrier(streams)

    def one(i: int) -> None:
        request = ComposeRequest(model=model, bars=4, seed=i, candidates=candidates)
        barrier.wait()
        began = time.perf_counter()
        for chunk in composer.stream(request):
            if isinstance(chunk, Measure):
                firsts[i] = time.perf_counter() - began
                break

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    cpu = time.process_time()
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        batching.forward_rows = original
    cpu = time.process_time() - cpu
    ordered = sorted(firsts)
    result = {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max": ordered[-1],
        "cpu": cpu,
        **spent,
    }
    if batched and spent["forwards"]:
        rows = max(1, round(spent["rows"] / spent["forwards"]))
        result["floor"] = spent["forwards"] * forward_seconds(composer.model, rows)
        result["rows_per_forward"] = rows
    return result


def forward_seconds(model: torch.nn.Module, rows: int, context: int = 64, repeats: int = 30) -> float:
    """One one-token step of one decoder of `rows` rows after `context` positions (the first window's)."""
    with torch.inference_mode():
        decoder = KVDecoder(model, rows, int(model.config.n_positions))
        decoder.shared = None
        decoder.forward(torch.zeros(rows, context, dtype=torch.long))
        ids = torch.zeros(rows, 1, dtype=torch.long)
        batching.forward_rows([decoder], [ids])
        began = time.perf_counter()
        for _ in range(repeats):
            decoder.length = context
            batching.forward_rows([decoder], [ids])
        return (time.perf_counter() - began) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:chorales")
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--candidates", default="8,1", help="candidates per bar, comma-separated")
    parser.add_argument("--peer", action="store_true", help="also each stream running its own steps")
    args = parser.parse_args()
    print(f"{args.streams} streams of {args.model}, 4 bars; load average {os.getloadavg()[0]:.1f}")
    for n in (int(x) for x in args.candidates.split(",")):
        sides = [("batched steps", True)] + ([("own steps (peer)", False)] if args.peer else [])
        for name, batched in sides:
            r = run(args.model, args.streams, n, batched)
            line = (
                f"  {n} candidates, {name:16} first measure p50 {r['p50']:.2f} s  p99 {r['p99']:.2f} s  "
                f"max {r['max']:.2f} s  CPU {r['cpu']:.1f} s  forwards {r['forwards']} ({r['seconds']:.2f} s)"
            )
            if "floor" in r:
                line += f"  floor {r['floor']:.2f} s ({r['rows_per_forward']} rows a forward)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
