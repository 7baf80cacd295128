"""How fast a chorale comes: a 4-bar piece whole, and a stream's first bar and first measure (issue 18).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/chorale_speed.py [--model builtin:chorales] [--repeats 3]
                                                                   [--candidates 8,1]

For each number of candidates per bar, `--repeats` seeds (0, 1, ...) of a default 4-bar SATB request through
the Composer API (what the CLI and the server call): the wall time of `compose`, its CPU time, and, streamed,
the time to the first chosen bar of one voice (the first TextChunk) and to the first measure of all four
voices (the first Measure). Medians; the load average of the machine is printed beside them, since on the
shared development box it moves every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from orchestrion.composer import Measure, TextChunk
from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest


def measure(composer, model: str, seed: int, candidates: int) -> dict[str, float]:
    request = ComposeRequest(model=model, bars=4, seed=seed, candidates=candidates)
    began, cpu = time.perf_counter(), time.process_time()
    composer.compose(request)
    whole, whole_cpu = time.perf_counter() - began, time.process_time() - cpu
    began = time.perf_counter()
    bar = first = None
    for chunk in composer.stream(request):
        now = time.perf_counter() - began
        if isinstance(chunk, TextChunk) and bar is None:
            bar = now
        if isinstance(chunk, Measure):
            first = now
            break
    return {"whole": whole, "cpu": whole_cpu, "bar": bar or float("nan"), "measure": first or float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:chorales")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", default="8,1", help="candidates per bar to time, comma-separated")
    args = parser.parse_args()
    composer = load_composer(args.model)
    composer.compose(ComposeRequest(model=args.model, bars=4, seed=99))  # warm up (imports, first allocations)
    print(f"{args.model}, 4 bars SATB, median of {args.repeats}; load average {os.getloadavg()[0]:.1f}")
    for n in (int(x) for x in args.candidates.split(",")):
        runs = [measure(composer, args.model, seed, n) for seed in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"  candidates {n}: 4 bars {med['whole']:.2f} s (CPU {med['cpu']:.2f} s); stream: first chosen bar "
            f"{1000 * med['bar']:.0f} ms, first measure {1000 * med['measure']:.0f} ms"
        )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
