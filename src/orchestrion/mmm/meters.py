"""Meters on the mmm step grid: which stretches of a piece become 4/4 bars, and where windows start.

The token format has one bar length, 4/4 (16 steps). A meter whose bars tile 4/4 (2/4, 2/2, 4/2, 8/4, 1/4:
`orchestrion.core.music.tiles_four_four`) is regrouped into 4/4 bars: two bars of 2/4 make one, a bar of
4/2 makes two. Consecutive such segments form one *run* of 4/4 bars as long as each segment begins on a bar
line of the run (a lone 2/4 bar inside 4/4 music moves the bar lines by half a bar, so a new run begins
after it). Other meters (3/4, 6/8, 3/2) are left out and reported per segment, as is any stretch that holds
notes but is not encoded (a run shorter than a window, the part bar at the end of a run).

    meter_segments(score, total) -> [(num, den, start, end)]   in steps, one per meter in force
    runs(meters) -> [Run], reports                             the 4/4 stretches and the meters left out
    window_starts(notes, options) -> (starts, bars, left out, regrouped)   what `orchestrion.mmm.codec` encodes
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.core.music import tiles_four_four
from orchestrion.errors import BadInput
from orchestrion.mmm.vocabulary import STEPS_PER_BAR, STEPS_PER_QUARTER

if TYPE_CHECKING:
    import symusic

    from orchestrion.mmm.codec import Notes
    from orchestrion.mmm.vocabulary import MMMOptions


def to_steps(ticks: np.ndarray, tpq: int) -> np.ndarray:
    """Ticks to steps, rounding half up in integers, so that the grid never depends on float rounding."""
    return (2 * ticks.astype(np.int64) * STEPS_PER_QUARTER + tpq) // (2 * tpq)


def meter_segments(score: symusic.Score, total: int) -> list[tuple[int, int, int, int]]:
    """(numerator, denominator, start, end) in steps of each meter in force; the last ends at `total`.

    Of several signatures at one step the last in the file wins (symusic keeps file order), and a signature
    that restates the meter in force starts no new segment. A piece without one is in 4/4.
    """
    ts = score.time_signatures.numpy()
    steps = to_steps(ts["time"], int(score.tpq)).tolist()
    changes = sorted(zip(steps, ts["numerator"].tolist(), ts["denominator"].tolist(), strict=True), key=lambda c: c[0])
    dedup: list[list[int]] = []
    for t, num, den in changes:
        if dedup and dedup[-1][0] == t:
            dedup[-1] = [t, num, den]
            if len(dedup) > 1 and dedup[-2][1:] == dedup[-1][1:]:
                dedup.pop()
        elif not dedup or dedup[-1][1:] != [num, den]:
            dedup.append([t, num, den])
    if not dedup or dedup[0][0] > 0:
        dedup.insert(0, [0, 4, 4])
    meters = []
    for i, (t, num, den) in enumerate(dedup):
        stop = dedup[i + 1][0] if i + 1 < len(dedup) else max(total, t)
        if stop > t:
            meters.append((num, den, t, stop))
    return meters


@dataclass
class Run:
    """A stretch of the piece read as 4/4 bars from `start` (steps); `meters` names what was regrouped."""

    start: int
    end: int
    meters: list[str]


def runs(meters: list[tuple[int, int, int, int]]) -> tuple[list[Run], list[str]]:
    """The runs of 4/4 bars of a piece, and a line for each segment left out (a meter that does not tile)."""
    found: list[Run] = []
    left_out = []
    current: Run | None = None
    for num, den, a, b in meters:
        if not tiles_four_four(num, den):
            bars = (b - a) * den / (STEPS_PER_BAR * num) if num > 0 and den > 0 else 0
            left_out.append(f"{num}/{den} at step {a} ({bars:.3g} bars of it): its bars do not regroup into 4/4 bars")
            current = None
            continue
        if current is not None and current.end == a and (a - current.start) % STEPS_PER_BAR == 0:
            current.end = b
        else:
            current = Run(a, b, [])
            found.append(current)
        if (num, den) != (4, 4):
            current.meters.append(f"{num}/{den}")
    return found, left_out


def _holds_notes(notes: Notes, a: int, b: int) -> bool:
    return bool(np.any((notes.start < b) & (notes.end > a)))


def window_starts(notes: Notes, options: MMMOptions) -> tuple[np.ndarray, int, list[str], list[str]]:
    """Window starts (steps, ascending), the window length in bars, what was left out and what regrouped."""
    last_bar = -(
        -max(int(notes.end.max()) if len(notes.end) else 0, notes.meters[-1][3] if notes.meters else 0) // STEPS_PER_BAR
    )
    if last_bar > options.max_bars:
        raise BadInput(f"the piece is {last_bar} bars long, over the limit of {options.max_bars}")
    found, skipped = runs(notes.meters)
    if options.bars is None:
        whole = len(found) == 1 and not skipped and found[0].start == 0
        if not whole:
            odd = sorted({f"{n}/{d}" for n, d, _, _ in notes.meters if not tiles_four_four(n, d)})
            why = ", ".join(odd) or "meters whose bars do not line up with 4/4 bars"
            raise BadInput(f"only 4/4 (or meters that regroup into 4/4 bars) can be encoded; the piece has {why}")
        total = int(notes.end.max()) if len(notes.end) else 0
        regrouped = [f"{', '.join(sorted(set(found[0].meters)))} regrouped into 4/4 bars"] if found[0].meters else []
        return np.zeros(1, np.int64), max(1, -(-total // STEPS_PER_BAR)), [], regrouped
    bars, hop = options.bars, options.hop or options.bars
    starts, regrouped = [], []
    for i, run in enumerate(found):
        last = i == len(found) - 1
        n_bars = -(-(run.end - run.start) // STEPS_PER_BAR) if last else (run.end - run.start) // STEPS_PER_BAR
        if run.meters:
            regrouped.append(f"{', '.join(sorted(set(run.meters)))} from step {run.start} regrouped into 4/4 bars")
        tail = run.start + n_bars * STEPS_PER_BAR
        if not last and tail < run.end and _holds_notes(notes, tail, run.end):
            skipped.append(f"the {run.end - tail} steps from step {tail} do not fill a 4/4 bar")
        if n_bars < bars:
            skipped.append(f"4/4 segment at step {run.start} is {n_bars} bars, under {bars}")
            continue
        first = list(range(0, n_bars - bars + 1, hop))
        if first[-1] != n_bars - bars:  # a last window flush with the end, so the tail is not lost
            first.append(n_bars - bars)
        starts.extend(run.start + STEPS_PER_BAR * j for j in first)
    return np.array(starts, np.int64), bars, skipped, regrouped
