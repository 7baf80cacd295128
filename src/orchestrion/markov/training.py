"""`orchestrion train markov`: count the transitions of a corpus into a `MarkovComposer`, shard by shard.

Reading MIDI is the slow part: files become events through `orchestrion.markov.dataset` on the shared
engine (`orchestrion.core.engine`: local processes or Ray). Counting is vectorised (`markov.counts`). Each
shard's counts are kept in `out/shards/` until the model is written, so an interrupted run picks up where it
stopped, and the model does not depend on the number of workers, the engine or interruptions.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import closing
from itertools import islice
from pathlib import Path

from orchestrion.core.files import write_atomic
from orchestrion.errors import BadInput
from orchestrion.markov import dataset
from orchestrion.markov import events as ev
from orchestrion.markov.composer import MarkovComposer, MarkovConfig
from orchestrion.markov.counts import (
    LINES,
    MODES,
    ORDERS,
    Counts,
    chain_name,
    count_pieces,
    load_counts,
    merge_counts,
    save_counts,
)


def _shard_counts(events: Iterator[ev.PieceEvents | list[ev.PieceEvents] | str], device: str) -> tuple[Counts, dict]:
    """One shard's counts and what went into them, from its files' events (or problems) in file order."""
    pieces, problems = dataset.split_results(events)
    return count_pieces(pieces, device), {
        "pieces": {m: sum(p.mode == m for p in pieces) for m in MODES},
        "problems": problems,
    }


def train(
    inputs: list[str],
    out: str | Path,
    *,
    workers: int = 0,
    shard_size: int = 256,
    device: str = "cpu",
    engine: str = "local",
    address: str | None = None,
    style: str = "chorale",
) -> MarkovComposer:
    """Train on MIDI files, folders or builtin:CORPUS names, and ABC tunes (builtin:folk-abc, .abc files);
    resumable shard by shard. `style` is the model's default style (`orchestrion.markov.arrange.STYLES`).

    `device="cuda"` counts on the GPU (same counts); reading MIDI, not counting, is what takes the time: it
    runs on `workers` processes (0 = all cores) of `engine` (local, or ray: a private Ray, or the cluster at
    `address`). Each shard's counts are kept in `out/shards/` until the model is written, so an interrupted
    run picks up where it stopped. The result does not depend on the workers, the engine or interruptions.
    """
    from orchestrion.markov.arrange import STYLES

    if style not in STYLES:
        raise BadInput(f"unknown style {style!r}: use {' or '.join(STYLES)}")
    out = Path(out)
    paths = sorted(dataset.input_files(inputs), key=str)
    if not paths:
        raise BadInput(f"no MIDI or ABC files found in {' '.join(inputs)}")
    shard_dir = out / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    parts: list[Counts] = []
    pieces = {m: 0 for m in MODES}
    problems: list[str] = []
    shards = [paths[lo : lo + shard_size] for lo in range(0, len(paths), shard_size)]
    finished = dataset.finished_shards(shards, shard_dir)
    todo = [path for n, shard in enumerate(shards) if n not in finished for path in shard]  # one stream for all
    with closing(dataset.events_of(todo, workers=workers, engine=engine, address=address)) as events:
        for n, shard in enumerate(shards):
            counts_path, meta_path = dataset.shard_paths(shard_dir, n)
            if n in finished:
                counts, meta = load_counts(counts_path), finished[n]
            else:
                counts, meta = _shard_counts(islice(events, len(shard)), device)
                meta["fingerprint"] = dataset.shard_fingerprint(shard)
                save_counts(counts, counts_path)
                write_atomic(meta_path, json.dumps(meta))
            parts.append(counts)
            pieces = {m: pieces[m] + meta["pieces"][m] for m in MODES}
            problems.extend(meta["problems"])
    if sum(pieces.values()) == 0:
        raise BadInput(f"no usable notes in {len(paths)} file(s) of {' '.join(inputs)}: nothing to learn from")
    counts = merge_counts(*parts)
    config = MarkovConfig(
        style=style,
        pieces=pieces,
        transitions=int(sum(counts[chain_name(m, line, ORDERS[line])][1].sum() for m in MODES for line in LINES)),
        sources=list(inputs),
    )
    composer = MarkovComposer(counts, config)
    composer.save(out)
    write_atomic(out / "report.json", json.dumps(dataset.training_report(paths, pieces, problems), indent=1) + "\n")
    shutil.rmtree(shard_dir)
    composer.problems = problems
    return composer
