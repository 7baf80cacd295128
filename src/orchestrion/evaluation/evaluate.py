"""One evaluation for every model: likelihood on held-out data, musical statistics, validity, novelty.

`evaluate(model, data, report_dir)` measures one model (and, with `compare`, a second one on the same
held-out data) and writes `report.json` plus an HTML page (`evaluation.report.write_report`).

- Likelihood: GPT models over windows of a token dataset's validation split (loss, perplexity, bits per
  token / character / byte, accuracy@k); SaShiMi through `sashimi.training.evaluate`; Markov as the
  log-likelihood per event of the held-out pieces under its counts, smoothed by Witten-Bell
  interpolation across the orders (the sampler's hard back-off gives unseen events probability 0).
- Musical statistics: `metrics.compare_sets` over pieces generated with seeds 0..N-1 vs held-out pieces.
- Validity (decodes without repairs / compiles with abc2midi / audio neither silent nor noise), the share
  of samples where a repetition trap fired, and novelty: the share of samples flagged as copies of
  training pieces (`novelty.NoveltyIndex` on the melody's (interval, duration) events).

Every figure is computed with fixed seeds and fixed windows, so the same command gives the same report.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import numpy as np

from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.evaluation.heldout import EvalConfig, HeldOut, load_held_out
from orchestrion.evaluation.quality import quality_table, summary

# ------------------------------------------------------------------------------------------ samples


def score_events(score) -> np.ndarray:
    """A score's melody as novelty events (interval, duration), at abc2midi's 480 ticks per quarter."""
    from orchestrion.core.novelty import events_from_notes

    notes = []
    for t, track in enumerate(score.tracks):
        if track.is_drum or not len(track.notes):
            continue
        a = track.notes.numpy()
        scale = 480.0 / score.tpq
        notes += [
            (t, int(round(tm * scale)), int(p), int(round(d * scale)))
            for tm, p, d in zip(a["time"], a["pitch"], a["duration"], strict=True)
        ]
    return events_from_notes(notes)


def _novelty_index(held: HeldOut):
    """The dataset's own index when it has one (ABC datasets), else one built from training-side pieces."""
    from orchestrion.core.novelty import NoveltyIndex

    if held.novelty_path is not None:
        return NoveltyIndex.load(held.novelty_path)
    if held.index_scores:
        events = [score_events(s) for s in held.index_scores]
        return NoveltyIndex.build(events, [f"train-{i}" for i in range(len(events))])
    return None


def _novelty(index, piece):
    if piece.abc is not None:
        try:
            return index.check_abc(piece.abc)
        except BadInput:
            pass
    return index.check(score_events(piece.score))


def generate(composer, config: EvalConfig, bars: int, progress=None) -> list[dict]:
    """Pieces for seeds 0..N-1 with their validity, repetition traps and (later) novelty."""
    from orchestrion.requests import ComposeRequest

    out = []
    for seed in range(config.samples):
        if composer.output == "audio":
            request = ComposeRequest(seed=seed, seconds=config.seconds)
        else:
            request = ComposeRequest(seed=seed, bars=bars)
        piece = composer.compose(request)
        traps = int(piece.report.get("repetition_traps", 0) or 0)
        out.append({"seed": seed, "piece": piece, **composer.check(piece), "traps": traps})
        if progress is not None:
            progress()
    return out


# ------------------------------------------------------------------------------------------ one model


def evaluate_one(model_ref: str, held: HeldOut, config: EvalConfig) -> dict:
    from rich.progress import Progress

    from orchestrion.evaluation.metrics import compare_sets
    from orchestrion.registry import load_composer, resolve_model_dir

    composer = load_composer(model_ref)
    result: dict = {
        "model": model_ref,
        "kind": composer.kind,
        "encoding": composer.options().get("encoding"),
        "model_dir": str(resolve_model_dir(model_ref)),
    }
    result["likelihood"] = composer.likelihood(held, config)
    result["likelihood"].setdefault("baseline", baselines(held, result["likelihood"], config))
    result["warnings"] = overlap_warnings(composer, held)
    bars = held.sample_bars(config)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"sampling {model_ref}", total=config.samples)
        samples = generate(composer, config, bars, lambda: progress.advance(task))
    index = _novelty_index(held) if composer.output == "score" else None
    for s in samples:
        s["copied"] = None
        if index is not None and s["piece"].score is not None:
            report = _novelty(index, s["piece"])
            s["copied"], s["longest_run"], s["ngram_share"] = report.copied, report.longest_run, report.ngram_share
    n = len(samples)
    result["validity_rate"] = sum(s["valid"] for s in samples) / n
    result["repetition_trap_rate"] = sum(s["traps"] > 0 for s in samples) / n
    checked = [s for s in samples if s["copied"] is not None]
    result["novelty"] = {
        "copied_share": sum(bool(s["copied"]) for s in checked) / len(checked) if checked else None,
        "checked": len(checked),
        "mean_ngram_share": float(np.mean([s["ngram_share"] for s in checked])) if checked else None,
        "index": "dataset novelty.npz"
        if held.novelty_path is not None
        else f"{len(held.index_scores)} training-side pieces of --data",
    }
    scores = [s["piece"].score for s in samples if s["piece"].score is not None and s["valid"]]
    real_scores = held.real_scores(bars)
    if composer.output == "audio":
        result["statistics"] = {"skipped": "audio samples have no notes to measure"}
    else:
        result["statistics"] = compare_sets(scores, real_scores)
    pieces = [s["piece"] for s in samples]
    # Every generated piece counts, valid or not: an invalid piece is part of what the model makes.
    table = quality_table(
        scores=[p.score for p in pieces if p.score is not None],
        real_scores=real_scores,
        tunes=[p.abc for p in pieces if p.abc is not None],
        real_tunes=held.tunes,
        audio=[p.audio for p in pieces if p.audio is not None],
        real_audio=held.audio,
        sample_rate=held.sample_rate,
    )
    result["quality"] = {name: row.to_json() for name, row in table.items()}
    result["verdict"] = summary(table)
    result["sample_length"] = {"seconds": config.seconds} if composer.output == "audio" else {"bars": bars}
    result["samples"] = [{k: v for k, v in s.items() if k != "piece"} for s in samples]
    result["_pieces"] = [s["piece"] for s in samples]
    return result


def baselines(held: HeldOut, likelihood: dict, config: EvalConfig) -> dict:
    """The baselines of the held-out data's kind, scored where the model was (see evaluation/baselines.py)."""
    from orchestrion.evaluation.baselines import audio_baselines, token_baselines

    if "skipped" in likelihood:
        return {}
    if held.form == "tokens" and "window_starts" in likelihood:
        return token_baselines(held.root, likelihood["window_starts"], likelihood["window_length"])
    if held.form == "audio":
        return audio_baselines(held.root, windows=config.windows, seq_len=config.audio_seq_len)
    return {}


def _same_source(a: str, b: str) -> bool:
    if a.startswith("builtin:") or b.startswith("builtin:"):
        return a.removeprefix("builtin:") == b.removeprefix("builtin:")
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def overlap_warnings(composer, held: HeldOut) -> list[str]:
    """Warn when --data is (or holds) what the model was trained on: 'held-out' figures would be optimistic."""
    import json

    sources = list(composer.trained_on())
    for source in list(sources):  # a training dataset: what it was made from
        meta = Path(source).expanduser() / "dataset.json"
        if not source.startswith("builtin:") and meta.is_file():
            if held.root is not None and _same_source(source, str(held.root)):
                return []  # the model's own dataset: its validation split was held out in training
            sources += [str(x) for x in json.loads(meta.read_text()).get("inputs", [])]
    data = [held.source, *held.inputs]
    seen = sorted({s for s in sources for d in data if _same_source(s, d)})
    if not seen:
        return []
    return [f"--data overlaps the model's training data ({', '.join(seen)}): these pieces were seen in training, "
            "so likelihood and novelty are optimistic; evaluate on data the model did not train on"]  # fmt: skip


def evaluate(
    model: str,
    data: str,
    report_dir: str | Path,
    *,
    compare: str | None = None,
    config: EvalConfig | None = None,
    command: str | None = None,
) -> dict:
    """Evaluate `model` (and `compare`) on held-out `data`; write report.json and index.html into report_dir."""
    from orchestrion.evaluation.report import write_report

    config = config or EvalConfig()
    if config.samples < 1:
        raise InvalidRequest("samples", "at least 1")
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    held = load_held_out(data, config)
    models = [evaluate_one(model, held, config)]
    if compare:
        models.append(evaluate_one(compare, held, config))
    command = command or " ".join(shlex.quote(a) for a in ["orchestrion", *sys.argv[1:]])
    return write_report(report_dir, models, held, config, command)


METRIC_NAMES = (
    "pitch_range",
    "n_pitches_used",
    "n_pitch_classes_used",
    "pitch_class_entropy",
    "scale_consistency",
    "polyphony",
    "polyphony_rate",
    "empty_beat_rate",
    "groove_consistency",
    "note_density",
)
