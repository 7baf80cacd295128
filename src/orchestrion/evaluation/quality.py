"""The music-quality table of a report: each measure on generated pieces against the same measure on real ones.

Which measures apply is decided by what the pieces hold, never by the model's kind:

- a score of several voices: the polyphonic measures (clashes, parallels, voices, ranges, cadence, key,
  chords, held notes, rhythm, melodic steps and leaps: `orchestrion.evaluation.polyphonic`);
- a score of one voice: the melodic ones among them;
- ABC text: bar lengths (our parser and abc2midi), final tonic, repeats, title and rhythm fields
  (`orchestrion.evaluation.abc_metrics`);
- audio: spectral flatness, harmonicity, onset rate, dynamics and the share of samples judged tonal
  (`orchestrion.core.audio_analysis`).

Each row of the table reads `{"generated": mean, "real": {"mean": m, "std": s}, "verdict": v}`, where v is
"within" when the mean of the n generated pieces lies where the mean of n real pieces would (m +- 2 s /
sqrt(n), two standard errors), else "above" or "below". A per-piece spread would be too lenient for a mean:
half the real tunes compiling without an abc2midi warning (0.47 +- 0.50) would make 2% look "within". The real pieces are held-out
pieces cut to the samples' length (their last N bars), so that endings are compared with endings and four
bars with four bars.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from orchestrion.evaluation import polyphonic

# Measures that need two voices or more; the rest of POLYPHONIC_METRICS also apply to a single line.
PART_WRITING = ("clash_rate", "parallel_rate", "voices_sounding", "voice_polyphony", "chord_likeness")
# Which way is better, for the plain-language verdict ("clashes more than the data" reads as bad).
HIGHER_IS_WORSE = {"clash_rate", "parallel_rate", "voice_polyphony", "longest_held", "leap_share",
                   "wrong_bar_share", "spectral_flatness"}  # fmt: skip
EPSILON = 1e-9


@dataclass(frozen=True)
class Row:
    """One measure: the generated pieces' mean, the real pieces' mean and spread, and how they compare."""

    generated: float
    real_mean: float
    real_std: float
    samples: int
    real_pieces: int

    @property
    def margin(self) -> float:
        """How far from the real mean a mean of `samples` real pieces would commonly fall: 2 standard errors."""
        return 2.0 * self.real_std / math.sqrt(max(self.samples, 1))

    @property
    def verdict(self) -> str:
        if math.isnan(self.generated) or math.isnan(self.real_mean):
            return "n/a"
        if self.generated > self.real_mean + self.margin + EPSILON:
            return "above"
        if self.generated < self.real_mean - self.margin - EPSILON:
            return "below"
        return "within"

    def to_json(self) -> dict:
        return {
            "generated": _number(self.generated),
            "real": {"mean": _number(self.real_mean), "std": _number(self.real_std)},
            "verdict": self.verdict,
            "samples": self.samples,
            "real_pieces": self.real_pieces,
        }


def _number(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def _mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    finite = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if len(finite) == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(finite.std()), len(finite)


def compare(name: str, generated: Sequence[float], real: Sequence[float]) -> Row:
    g, _, n = _mean_std(generated)
    m, s, k = _mean_std(real)
    return Row(g, m, s, n, k)


# ------------------------------------------------------------------------------------------ measures


def score_measures(scores: Sequence[object], real: Sequence[object]) -> dict[str, Callable[[object], float]]:
    """The polyphonic measures that apply to these scores (ranges from the real pieces' voices)."""
    voices = max((sum(1 for t in s.tracks if len(t.notes) and not t.is_drum) for s in [*scores, *real]), default=0)
    measures = dict(polyphonic.POLYPHONIC_METRICS)
    if voices < 2:
        for name in PART_WRITING:
            measures.pop(name)
    ranges = polyphonic.ranges_from(real) if real else polyphonic.SATB_RANGES
    measures["range_ok"] = lambda score: polyphonic.range_ok(score, ranges)
    return measures


def abc_measures() -> dict[str, Callable[[str], float]]:
    from orchestrion.evaluation import abc_metrics as m

    def field(letter: str, tune: str) -> str:
        return next((line[2:].strip() for line in tune.splitlines() if line.startswith(f"{letter}:")), "")

    return {
        "bar_length_ok": lambda t: float(m.bar_length_ok(t)) if m.parses(t) else 0.0,
        "bar_length_ok_abc2midi": lambda t: float(m.bar_length_ok(t, source="abc2midi")),
        "wrong_bar_share": lambda t: m.wrong_bar_share(t) if m.parses(t) else 1.0,
        "final_tonic": m.final_tonic,
        "repeat_structure": lambda t: float(m.repeat_structure(t)),
        "strains": lambda t: float(m.strains(t)),
        "stepwise": m.stepwise_share,
        "repeated_notes": m.repeated_note_share,
        "leaps": m.leap_share,
        "pitch_range": m.pitch_range,
        "title_ok": lambda t: float(m.title_ok(field("T", t))) if field("T", t) else math.nan,
        "rhythm_ok": lambda t: float(m.rhythm_ok(field("R", t))) if field("R", t) else math.nan,
    }


def audio_measures(sample_rate: int) -> dict[str, Callable[[np.ndarray], float]]:
    from orchestrion.core import audio_analysis as a

    return {
        "spectral_flatness": lambda x: a.spectral_flatness(x, sample_rate),
        "harmonicity": lambda x: a.harmonicity(x, sample_rate),
        "onset_rate": lambda x: a.onset_rate(x, sample_rate),
        "dynamics": lambda x: a.dynamics(x, sample_rate),
        "tonal": lambda x: float(a.classify(x, sample_rate).label == "tonal"),
    }


def _apply(fn: Callable, items: Sequence[object]) -> list[float]:
    out = []
    for item in items:
        try:
            out.append(float(fn(item)))
        except Exception:  # a measure that cannot read one piece leaves it out rather than failing the report
            out.append(math.nan)
    return out


def quality_table(
    *,
    scores: Sequence[object] = (),
    real_scores: Sequence[object] = (),
    tunes: Sequence[str] = (),
    real_tunes: Sequence[str] = (),
    audio: Sequence[np.ndarray] = (),
    real_audio: Sequence[np.ndarray] = (),
    sample_rate: int = 16000,
) -> dict[str, Row]:
    """Every measure that applies to what was generated, against the real pieces of the same kind."""
    table: dict[str, Row] = {}
    if tunes and real_tunes:
        for name, fn in abc_measures().items():
            table[name] = compare(name, _apply(fn, tunes), _apply(fn, real_tunes))
    if scores and real_scores:
        for name, fn in score_measures(scores, real_scores).items():
            if name not in table:
                table[name] = compare(name, _apply(fn, scores), _apply(fn, real_scores))
    if len(audio) and len(real_audio):
        for name, fn in audio_measures(sample_rate).items():
            table[name] = compare(name, _apply(fn, audio), _apply(fn, real_audio))
    return table


def summary(table: dict[str, Row]) -> dict:
    """The plain verdict: on how many measures the pieces are like the data, and the furthest measure."""
    judged = {name: row for name, row in table.items() if row.verdict != "n/a"}
    within = [name for name, row in judged.items() if row.verdict == "within"]
    furthest, distance = None, -1.0
    for name, row in judged.items():
        spread = max(row.margin, abs(row.real_mean) * 0.05, 1e-6)
        d = abs(row.generated - row.real_mean) / spread
        if row.verdict != "within" and d > distance:
            furthest, distance = name, d
    text = f"like the data on {len(within)} of {len(judged)} measures"
    if furthest is not None:
        row = judged[furthest]
        text += (f"; furthest: {furthest} {row.generated:.3g} against {row.real_mean:.3g} "
                 f"+- {row.real_std:.2g} in the data")  # fmt: skip
    return {"within": len(within), "measures": len(judged), "furthest": furthest, "text": text}


# ------------------------------------------------------------------------------------- real windows


def last_bars(score: object, bars: int) -> object:
    """The last `bars` bars of a score (bar length from its first time signature, 4/4 without one),
    moved to start at 0: a real ending to set beside a generated piece of that many bars."""
    tpq = score.ticks_per_quarter
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        bar = int(round(tpq * 4 * ts.numerator / ts.denominator))
    else:
        bar = 4 * tpq
    start = max(0, (math.ceil(score.end() / bar) - bars) * bar)
    return score.clip(start, score.end() + 1).shift_time(-start)
