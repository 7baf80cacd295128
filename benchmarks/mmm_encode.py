"""mmm encoding throughput: orchestrion vs MidiTok's MMM tokenizer, side by side, in one run.

    .venv/bin/python benchmarks/mmm_encode.py [--limit N] [--repeat R] [--skip-scaling]

Corpus: the built-in chorales plus whatever Palestrina MIDI is already in the corpus cache (the benchmark
never starts a conversion). Prints, single process, load + encode files/s for

  - symusic parsing alone (the floor),
  - MidiTok MMM (base TSD, programs on): load + tokenize each file,
  - orchestrion mmm: load + encode (4-bar windows, hop 2, no transposition), chunks of 32 files per
    vectorised batch as the pipeline's workers do, and whole pieces (one sequence per file);

then the ratios, our time as a multiple of bare parsing, the scaling from 1 to 2 workers (the pipeline's
phase 1 end to end, and the steady state of already-started workers), and the hours 436,000 files (MetaMIDI) would take on 96 cores at our measured per-core rate.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path


def corpus(limit: int | None) -> tuple[list[Path], str]:
    from orchestrion.core.corpora import cache_dir, corpus_files

    chorales = corpus_files("bach-chorales")
    palestrina = sorted((cache_dir() / "palestrina-v1" / "files").glob("*.mid"))
    files = chorales + palestrina
    if limit:
        files = files[:limit]
    return files, f"{len(chorales)} chorales + {len(palestrina)} Palestrina files (those cached now)"


def _encode_paths(paths: list[str]) -> float:
    """Load and encode files in chunks of 32 (one worker's share in the scaling run); returns CPU seconds."""
    import symusic

    from orchestrion.mmm import codec as mmm

    options = mmm.MMMOptions(bars=4, hop=2)
    tokens, cpu = 0, time.process_time()
    for i in range(0, len(paths), 32):
        scores = [symusic.Score.from_midi(Path(p).read_bytes()) for p in paths[i : i + 32]]
        tokens += sum(len(r.ids) for r in mmm.encode_batch(scores, options) if not isinstance(r, Exception))
    return time.process_time() - cpu


def steady_state_scaling(files: list[Path], copies: int) -> tuple[float, float, float, float]:
    """Wall seconds for 1 and for 2 already-started worker processes to load and encode `copies` x the
    corpus, and the CPU seconds all workers spent in each case."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    paths = [str(p) for p in files] * copies
    times, cpus = [], []
    for workers in (1, 2):
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            list(pool.map(_encode_paths, [paths[:8]] * workers))  # start and warm every worker first
            shares = [paths[i::workers] for i in range(workers)]
            t = time.perf_counter()
            cpus.append(sum(pool.map(_encode_paths, shares)))
            times.append(time.perf_counter() - t)
    return times[0], times[1], cpus[0], cpus[1]


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    parser.add_argument("--repeat", type=int, default=3, help="best of R timings")
    parser.add_argument("--skip-scaling", action="store_true", help="skip the 1 vs 2 worker pipeline runs")
    parser.add_argument("--copies", type=int, default=8, help="corpus copies for the scaling runs")
    args = parser.parse_args()

    import symusic
    from miditok import MMM, TokenizerConfig

    from orchestrion.mmm import codec as mmm

    files, what = corpus(args.limit)
    print(f"corpus: {what}")
    warnings.filterwarnings("ignore")
    tokenizer = MMM(TokenizerConfig(base_tokenizer="TSD", use_programs=True))
    windows = mmm.MMMOptions(bars=4, hop=2)
    rate = 0.0
    for label, subset in (("chorales only", [p for p in files if "chorales" in str(p)]), ("whole corpus", files)):
        if not subset:
            continue
        blobs = [p.read_bytes() for p in subset]  # timings exclude disk reads, for all alike
        n = len(blobs)

        def parse(blobs=blobs) -> None:
            for b in blobs:
                symusic.Score.from_midi(b)

        def miditok(blobs=blobs) -> None:
            for b in blobs:
                try:
                    tokenizer.encode(symusic.Score.from_midi(b))
                except Exception:  # noqa: S112 - a file MidiTok cannot take is simply not counted as work
                    continue

        def ours(options: mmm.MMMOptions, blobs=blobs, chunk: int = 32):
            def run() -> None:
                for i in range(0, len(blobs), chunk):
                    mmm.encode_batch([symusic.Score.from_midi(b) for b in blobs[i : i + chunk]], options)

            return run

        t_parse = best_of(args.repeat, parse)
        t_miditok = best_of(max(1, args.repeat - 1), miditok)
        t_ours = best_of(args.repeat, ours(windows))
        t_whole = best_of(args.repeat, ours(mmm.MMMOptions()))
        results = mmm.encode_batch([symusic.Score.from_midi(b) for b in blobs], windows)
        ok = sum(1 for r in results if not isinstance(r, Exception) and r.sequences > 0)
        print(f"{label}: {n} files, {sum(map(len, blobs)) / 2**20:.1f} MiB, {ok} with 4/4 windows to encode "
              f"(the others are checked and skipped); single process, load + encode, best of {args.repeat}:")  # fmt: skip
        print(f"  symusic parse only             {n / t_parse:9,.0f} files/s")
        print(f"  MidiTok MMM (TSD)              {n / t_miditok:9,.0f} files/s")
        print(f"  orchestrion mmm, 4-bar windows {n / t_ours:9,.0f} files/s  {t_miditok / t_ours:5.1f}x MidiTok  "
              f"{t_ours / t_parse:4.1f}x parse time")  # fmt: skip
        print(f"  orchestrion mmm, whole pieces  {n / t_whole:9,.0f} files/s  {t_miditok / t_whole:5.1f}x MidiTok  "
              f"{t_whole / t_parse:4.1f}x parse time")  # fmt: skip
        rate = n / t_ours

    hours = 436_000 / (rate * 96) / 3600
    print(f"extrapolated: 436,000 files on 96 cores at {rate:,.0f} files/s per core: {hours * 3600:.0f} s = "
          f"{hours:.4f} h (the reference system took 30 h: {30 / hours:,.0f}x)")  # fmt: skip

    if args.skip_scaling:
        return
    from orchestrion.mmm.dataset import PipelineConfig, encode_mmm_dataset

    src = Path(tempfile.mkdtemp(prefix="mmm-bench-src-"))
    try:
        for copy in range(args.copies):  # a bigger corpus, so that worker start-up does not dominate
            for p in files:
                shutil.copyfile(p, src / f"{copy}-{p.parent.parent.name}-{p.name}")  # copies: links resolve to one file
        times = {}
        for workers in (1, 2):
            out = Path(tempfile.mkdtemp(prefix=f"mmm-bench-w{workers}-"))
            config = PipelineConfig(options=windows, workers=workers, progress=False)
            encode_mmm_dataset([str(src)], out, config)
            import json

            times[workers] = json.loads((out / "run.log").read_text().splitlines()[-1])["encode_s"]
            shutil.rmtree(out)
        print(f"pipeline phase 1 (load, check, encode, cache), {args.copies * len(files)} files: 1 worker {times[1]:.2f} s, "
              f"2 workers {times[2]:.2f} s, scaling {times[1] / times[2]:.2f}x")  # fmt: skip
        one, two, cpu1, cpu2 = steady_state_scaling(files, args.copies)
        print(f"steady state (workers started first; load + encode, no cache writes), {args.copies * len(files)} "
              f"files: 1 worker {one:.2f} s, 2 workers {two:.2f} s, scaling {one / two:.2f}x; CPU time 1 worker "
              f"{cpu1:.2f} s, 2 workers {cpu2:.2f} s in all: 2 cores of their own would give {2 * cpu1 / cpu2:.2f}x")  # fmt: skip
        per_core = args.copies * len(files) / times[1]
        hours = 436_000 / (per_core * 96) / 3600
        print(f"extrapolated from the whole pipeline phase 1 at {per_core:,.0f} files/s per core: 436,000 files on "
              f"96 cores in {hours * 3600:.0f} s = {hours:.4f} h (reference: 30 h)")  # fmt: skip
    finally:
        shutil.rmtree(src)


if __name__ == "__main__":
    main()
