"""Fuzzing the readers: N seeded inputs per reader, and what each did.

    .venv/bin/python benchmarks/fuzz.py [--inputs N] [--ffmpeg-inputs M] [--abc2midi-inputs A] [--seed S]
                                        [--corpus-seeds K] [--readers midi,mmm,...] [--save-failures DIR]

Readers: `midi` (load_midi on bytes, then the pipeline's 4-bar mmm encoding), `midi-path` (load_midi on a
file), `mmm` (decode a line of tokens as `orchestrion decode mmm` does, then write MIDI),
`abc` (split_tunes, clean, spaceless, escape, to_readable, header), `abc2midi` (compile_notes: abc2midi
then symusic on its output, classified; A inputs), `audio-soundfile` (load_audio with the
ffmpeg fallback refused, so every input stays in process) and `audio-ffmpeg` (load_audio with the fallback,
one ffmpeg process per input libsndfile rejects, so only M inputs). Seeds are the test fixtures plus up to K
cached corpus files (chorales, Palestrina, folk ABC; no conversion is started).

Prints a markdown table: reader, inputs, decoded, our error (OrchestrionError), foreign exceptions (must be
0), hangs (over the per-input limit; must be 0), the slowest input in ms, and the growth of resident memory
after the first 200 inputs. Exits 1 when any input broke the promise; --save-failures writes those inputs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from orchestrion.testing.fuzzing import format_table, run_all

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
READERS = ("midi", "midi-path", "mmm", "abc", "abc2midi", "audio-soundfile", "audio-ffmpeg")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per reader")
    parser.add_argument("--ffmpeg-inputs", type=int, default=2_000, help="inputs for the ffmpeg fallback")
    parser.add_argument("--abc2midi-inputs", type=int, default=100_000, help="inputs for abc2midi")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus-seeds", type=int, default=200, help="cached corpus files used as seeds")
    parser.add_argument("--readers", default=",".join(READERS))
    parser.add_argument("--limit", type=float, default=2.0, help="seconds per input before it counts as a hang")
    parser.add_argument("--save-failures", type=Path, default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    results = run_all(
        FIXTURES,
        args.inputs,
        seed=args.seed,
        corpus_limit=args.corpus_seeds,
        readers=tuple(args.readers.split(",")),
        ffmpeg_n=args.ffmpeg_inputs,
        abc2midi_n=args.abc2midi_inputs,
        limit_s=args.limit,
    )
    print(format_table(results))
    print(
        f"\nseed {args.seed}, {time.perf_counter() - started:.0f} s in all; seconds per reader: "
        + ", ".join(f"{s.reader} {s.seconds:.0f}" for s in results)
    )
    broken = [f for s in results for f in s.failures]
    for s in results:
        for f in s.failures:
            print(f"{s.reader} #{f.index} {f.kind}: {f.error}", file=sys.stderr)
            if args.save_failures:
                args.save_failures.mkdir(parents=True, exist_ok=True)
                data = f.data if isinstance(f.data, bytes) else f.data.encode("utf-8", "surrogatepass")
                (args.save_failures / f"{s.reader}-{args.seed}-{f.index}.bin").write_bytes(data)
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
