"""Music quality of every built-in model against the real data, on fixed samples: the measuring stick.

    .venv/bin/python benchmarks/quality.py [--models chorales,folk,markov,piano] [--json out.json] [--chorales DIR]

Each model composes a fixed set of pieces (fixed seeds, default settings) and every measure of
`orchestrion.evaluation.quality` is taken on them and on real pieces of the same kind and length:

- builtin:chorales: 8 x 4 bars, 2 x 16 bars and one harmonised Bach soprano (4 bars of bwv26.6's melody),
  against the last 4 / 16 bars of 64 Bach chorales (the built-in corpus);
- builtin:folk: 12 each of reel, jig, hornpipe and polka, against O'Neill's tunes of those rhythms;
- builtin:markov: 8 keys x 3 voices x 16 bars, 8 more at temperature 0.2 and 8 with 10 voices, against the
  last 16 bars of the chorales;
- builtin:piano: 3 x 5 s, against 5 s of FluidSynth piano renderings of chorales (16 kHz).

A piece a model refuses or fails to make is counted and shown; it is not left out silently. The target
column holds the figures the model issues ask for (the real column is what the data does).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from orchestrion.errors import OrchestrionError
from orchestrion.evaluation.quality import last_bars, quality_table, summary
from orchestrion.registry import load_composer
from orchestrion.requests import ComposeRequest

KEYS = ("C major", "G major", "D major", "F major", "A minor", "E minor", "D minor", "G minor")
RHYTHMS = ("reel", "jig", "hornpipe", "polka")
REAL_CHORALES = 64
# What the model issues ask for: (measure, comparison, value).
TARGETS = {
    "chorales": {"clash_rate": ("<=", 0.08), "parallel_rate": ("<=", 0.5), "voices_sounding": (">=", 0.9),
                 "voice_polyphony": ("<=", 0.0), "range_ok": (">=", 0.98), "final_tonic": (">=", 0.7)},
    "folk": {"bar_length_ok_abc2midi": (">=", 0.9), "final_tonic": (">=", 0.8), "repeat_structure": (">=", 0.5)},
    "markov": {"final_tonic": (">=", 0.9), "clash_rate": ("<=", 0.08)},
    "piano": {"spectral_flatness": ("<=", 0.01), "tonal": (">=", 1.0)},
}  # fmt: skip


MODELS: dict[str, str] = {}  # --chorales DIR: another chorale model in place of builtin:chorales


def compose_all(model: str, requests: list[dict]) -> tuple[list, list[str], float]:
    """Compose each request; returns the pieces, the failures (with their reason) and the seconds taken."""
    name = MODELS.get(model, f"builtin:{model}")
    composer = load_composer(name)
    pieces, failures = [], []
    began = time.perf_counter()
    for fields in requests:
        try:
            pieces.append(composer.compose(ComposeRequest(model=name, **fields)))
        except OrchestrionError as exc:
            failures.append(f"{fields}: {exc}")
    return pieces, failures, time.perf_counter() - began


def chorale_scores(count: int) -> list:
    from orchestrion.core.corpora import corpus_files
    from orchestrion.core.music import load_midi

    files = corpus_files("bach-chorales")
    picks = np.linspace(0, len(files) - 1, min(count, len(files))).astype(int)
    return [load_midi(files[i]) for i in picks]


def soprano_prompt(tmp: Path) -> Path:
    """The first 4 bars of bwv26.6's soprano as a one-track MIDI file."""
    from orchestrion.core.corpora import corpus_files
    from orchestrion.core.music import load_midi, save_midi

    path = next(p for p in corpus_files("bach-chorales") if p.stem == "bwv26.6")
    score = load_midi(path)
    score.tracks = [score.tracks[0]]
    tpq = score.ticks_per_quarter
    score = score.clip(0, 16 * tpq)
    return save_midi(score, tmp / "soprano.mid")


def run_chorales(tmp: Path) -> dict:
    real = chorale_scores(REAL_CHORALES)
    sets = {
        "4 bars": ([{"bars": 4, "seed": s} for s in range(8)], 4),
        "16 bars": ([{"bars": 16, "seed": s} for s in range(2)], 16),
        "harmonised soprano": ([{"prompt": str(soprano_prompt(tmp)), "seed": 0}], 4),
    }
    out = {}
    for name, (requests, bars) in sets.items():
        pieces, failures, seconds = compose_all("chorales", requests)
        table = quality_table(scores=[p.score for p in pieces if p.score is not None],
                              real_scores=[last_bars(s, bars) for s in real])  # fmt: skip
        out[name] = (table, len(requests), failures, seconds)
    return out


def run_folk() -> dict:
    from orchestrion.core.corpora import folk_tunes

    real = {r: [t["abc"] for t in folk_tunes() if t["source"] == "oneills1850" and _rhythm(t["abc"]) == r][:48]
            for r in RHYTHMS}  # fmt: skip
    requests = [{"rhythm": r, "seed": s} for r in RHYTHMS for s in range(12)]
    pieces, failures, seconds = compose_all("folk", requests)
    table = quality_table(
        tunes=[p.abc for p in pieces if p.abc is not None],
        real_tunes=[t for r in RHYTHMS for t in real[r]],
    )
    return {"12 x reel, jig, hornpipe, polka": (table, len(requests), failures, seconds)}


def _rhythm(tune: str) -> str:
    return next((line[2:].strip().lower() for line in tune.splitlines() if line.startswith("R:")), "")


def run_markov() -> dict:
    real = [last_bars(s, 16) for s in chorale_scores(REAL_CHORALES)]
    sets = {
        "8 keys x 3 voices x 16 bars": [{"key": k, "bars": 16, "seed": i} for i, k in enumerate(KEYS)],
        "temperature 0.2": [{"key": k, "bars": 16, "seed": i, "temperature": 0.2} for i, k in enumerate(KEYS)],
        "10 voices": [{"key": k, "bars": 16, "seed": i, "voices": [0, 0, 1, 1, 2, 2, 0, 0, 1, 2]}
                      for i, k in enumerate(KEYS)],
    }  # fmt: skip
    out = {}
    for name, requests in sets.items():
        pieces, failures, seconds = compose_all("markov", requests)
        table = quality_table(scores=[p.score for p in pieces], real_scores=real)
        out[name] = (table, len(requests), failures, seconds)
    return out


def run_piano(tmp: Path) -> dict:
    from orchestrion.core.audio import load_audio
    from orchestrion.core.render import render_wav

    real = []
    for i, score in enumerate(chorale_scores(3)):
        for track in score.tracks:
            track.program = 0  # acoustic grand piano, as the training data was rendered
        wav = render_wav(score, tmp / f"real-{i}.wav", sample_rate=16000)
        x = load_audio(wav, 16000)
        real.append(x[: 5 * 16000])
    pieces, failures, seconds = compose_all("piano", [{"seconds": 5.0, "seed": s} for s in range(3)])
    table = quality_table(audio=[p.audio for p in pieces], real_audio=real, sample_rate=16000)
    return {"3 x 5 s": (table, 3, failures, seconds)}


def _target(model: str, name: str) -> str:
    rule = TARGETS.get(model, {}).get(name)
    return f"{rule[0]} {rule[1]:g}" if rule else ""


def _met(model: str, name: str, value: float | None) -> str:
    rule = TARGETS.get(model, {}).get(name)
    if rule is None or value is None or math.isnan(value):
        return ""
    ok = value <= rule[1] + 1e-12 if rule[0] == "<=" else value >= rule[1] - 1e-12
    return "met" if ok else "MISSED"


def print_tables(model: str, results: dict) -> dict:
    record = {}
    for name, (table, asked, failures, seconds) in results.items():
        print(f"\nbuiltin:{model}, {name}: {asked - len(failures)} of {asked} composed in {seconds:.1f} s")
        for failure in failures[:3]:
            print(f"  failed: {failure[:160]}")
        print(f"  {'measure':24} {'real (mean +- std)':>22} {'generated':>10}  {'verdict':8} {'target':>8}")
        for measure, row in table.items():
            real = f"{row.real_mean:.3f} +- {row.real_std:.3f}"
            print(f"  {measure:24} {real:>22} {row.generated:>10.3f}  {row.verdict:8} "
                  f"{_target(model, measure):>8} {_met(model, measure, row.generated)}")  # fmt: skip
        print(f"  verdict: {summary(table)['text']}")
        record[name] = {"composed": asked - len(failures), "asked": asked, "failures": failures, "seconds": seconds,
                        "quality": {k: v.to_json() for k, v in table.items()}, "summary": summary(table)}  # fmt: skip
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="chorales,folk,markov,piano")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--chorales", help="measure this chorale model (a directory) in place of builtin:chorales")
    args = parser.parse_args()
    if args.chorales:
        MODELS["chorales"] = args.chorales
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        runners = {"chorales": lambda: run_chorales(Path(tmp)), "folk": run_folk, "markov": run_markov,
                   "piano": lambda: run_piano(Path(tmp))}  # fmt: skip
        for model in args.models.split(","):
            if model not in runners:
                sys.exit(f"unknown model {model!r}; choose from {', '.join(runners)}")
            report[model] = print_tables(model, runners[model]())
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
