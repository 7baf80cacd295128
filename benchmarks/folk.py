"""Issue 17's quality benchmark for any folk model (built-in or a model directory), with its targets.

    .venv/bin/python benchmarks/folk.py [--model builtin:folk] [--seeds 12] [--cool 12]
                                        [--novelty /work/data/folk-abc/novelty.npz] [--json out.json]

The model composes 12 each of reel, jig, hornpipe and polka (seeds 0-11, default settings: the rhythm's
meter, unit, tempo and the two-strain form) and each tune is measured as `orchestrion eval` measures it
(`orchestrion.evaluation.abc_metrics`, abc2midi for compiling and bar-length warnings):

- compiles: abc2midi reports no error; bar_length_ok: ... and no bar-length warning either;
- final_tonic, repeat_structure, title_ok (real words), rhythm_ok (a known R:);
- stepwise, repeated_notes, leaps, pitch_range: the melody's motion (`abc_metrics.stepwise_share` ...);
  O'Neill's 2,009 tunes: 0.607, 0.097, 0.031, 18.2 semitones;
- copies: tunes the novelty index of the training data flags (`orchestrion.core.novelty`);
- seconds per tune (`compose`, abc2midi check and retries included).

Then `--cool` more tunes at temperature 0.6 (the four rhythms in turn, seeds 100+) are checked for
degenerate output (`orchestrion.abc.loops`: too few pitches, one bar over and over, or a drone; the sampler
resamples such a tune, so `resampled_at_0.6` shows how often a first draw was refused, for a loop or an
abc2midi error), and the share of them in which the sampler's repetition trap had to break a loop is shown beside it (`trap_fired_at_0.6`: with a
token per note and length, four `e/` in a row already count as a loop, so it is not itself a verdict).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import time
from pathlib import Path

RHYTHMS = ("reel", "jig", "hornpipe", "polka")
TARGETS = {"compiles": 1.0, "bar_length_ok": 0.9, "final_tonic": 0.8, "repeat_structure": 0.5}


def degenerate(tune: str) -> bool:
    """Music a model loops in (`orchestrion.abc.loops`): too few pitches, one bar over and over, or a drone."""
    from orchestrion.abc.loops import loop_reason

    return loop_reason(tune) is not None


def measure(abc: str, index) -> dict:
    from orchestrion.core.abcmidi import validate
    from orchestrion.errors import OrchestrionError
    from orchestrion.evaluation import abc_metrics as m

    head = {line[0]: line[2:].strip() for line in abc.splitlines() if re.match(r"^[A-Z]:", line)}
    status = validate(abc)
    row = {
        "compiles": status.status != "errors",
        "bar_length_ok": m.bar_length_ok(abc, source="abc2midi"),
        "final_tonic": m.final_tonic(abc) == 1.0,
        "repeat_structure": m.repeat_structure(abc),
        "title_ok": m.title_ok(head.get("T", "")),
        "rhythm_ok": m.rhythm_ok(head.get("R", "")),
        # the melody's motion, to hold against O'Neill's (benchmarks/quality.py prints the real figures)
        "stepwise": m.stepwise_share(abc),
        "repeated_notes": m.repeated_note_share(abc),
        "leaps": m.leap_share(abc),
        "pitch_range": m.pitch_range(abc),
    }
    if index is not None:
        try:
            row["copied"] = index.check_abc(abc).copied
        except OrchestrionError:
            row["copied"] = False
    return row


def compose(composer, model: str, fields: dict) -> tuple[str, dict, float]:
    from orchestrion.requests import ComposeRequest

    start = time.perf_counter()
    piece = composer.compose(ComposeRequest(model=model, **fields))
    return piece.abc or "", piece.report or {}, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:folk")
    parser.add_argument("--seeds", type=int, default=12, help="tunes per rhythm (seeds 0..N-1)")
    parser.add_argument("--cool", type=int, default=12, help="tunes at temperature 0.6 checked for degeneracy")
    parser.add_argument("--novelty", type=Path, default=Path("/work/data/folk-abc/novelty.npz"),
                        help="the training data's novelty index (skipped when missing)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write every tune and figure here")
    parser.add_argument("--show", type=int, default=1, help="print this many tunes")
    args = parser.parse_args()

    from orchestrion.core.novelty import NoveltyIndex
    from orchestrion.registry import load_composer

    index = NoveltyIndex.load(args.novelty) if args.novelty.is_file() else None
    composer = load_composer(args.model)
    rows, seconds, tunes, retries = [], [], [], []
    for rhythm in RHYTHMS:
        for seed in range(args.seeds):
            abc, report, took = compose(composer, args.model, {"rhythm": rhythm, "seed": seed})
            rows.append(measure(abc, index))
            seconds.append(took)
            retries.append(int(report.get("retries", 0)))
            tunes.append(abc)
    cool, cool_tunes, trapped, resampled = [], [], [], []
    for i in range(args.cool):
        fields = {"rhythm": RHYTHMS[i % 4], "seed": 100 + i, "temperature": 0.6}
        abc, report, _ = compose(composer, args.model, fields)
        cool.append(degenerate(abc))
        trapped.append(int(report.get("repetition_traps", 0)) > 0)
        resampled.append(int(report.get("retries", 0)) > 0)
        cool_tunes.append(abc)
    n = len(rows)
    figures = {k: statistics.fmean(r[k] for r in rows if not math.isnan(r[k])) for k in rows[0]}
    figures["degenerate_at_0.6"] = sum(cool) / len(cool) if cool else math.nan
    figures["trap_fired_at_0.6"] = sum(trapped) / len(trapped) if trapped else math.nan
    figures["resampled_at_0.6"] = sum(resampled) / len(resampled) if resampled else math.nan
    figures["retries_mean"] = sum(retries) / n
    figures["seconds_median"] = statistics.median(seconds)
    figures["seconds_max"] = max(seconds)
    for tune in tunes[: args.show]:
        print(tune)
    print(f"{args.model}: {args.seeds} each of {', '.join(RHYTHMS)} ({n} tunes), {len(cool)} more at temperature 0.6")
    for name, value in figures.items():
        target = TARGETS.get(name)
        if name == "copied":
            target, met = "< 0.02", value < 0.02
        elif name == "degenerate_at_0.6":
            target, met = "0", value == 0
        elif name in ("retries_mean", "trap_fired_at_0.6", "resampled_at_0.6"):
            target, met = "", True
        elif name.startswith("seconds"):
            target, met = "< 2", value < 2
        else:
            met = target is None or value >= target - 1e-12
            target = "" if target is None else f">= {target:g}"
        print(f"  {name:20} {value:8.3f}  {target:>8}  {'met' if met else 'MISSED'}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"model": args.model, "figures": figures, "tunes": tunes, "cool": cool_tunes, "degenerate": cool},
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
