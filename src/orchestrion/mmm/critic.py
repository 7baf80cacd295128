"""The harmony critic: scores a candidate bar of one voice against the voices written before it.

    Critic(weights).score(pitch, onset, track, bar, ...) -> (score, terms)

Best-of-N decoding (`orchestrion.mmm.search`) samples N candidates for every bar of every track and keeps
the one the critic scores highest. The terms are the quality measures of
`orchestrion.evaluation.polyphonic`, taken on the one bar and counted, so that the critic and the quality
report agree on what good means:

| term | what it counts in the bar | measure |
|---|---|---|
| `clash` | beats where the voice is a semitone (or a seventh, a ninth) from an earlier voice | clash_rate |
| `parallel` | onsets of the voice that move in parallel fifths or octaves with an earlier voice | parallel_rate |
| `silent` | beats where the voice rests | voices_sounding |
| `chord` | beats whose pitch classes (this voice and the ones above) fit no triad or seventh chord | chord_likeness |
| `dissonant` | with one voice above: beats on a second, seventh or tritone from it | clash_rate |
| `leap` | melodic tritones, sevenths and leaps over an octave | leap_share |
| `step` | steps of at most a tone (a reward) | stepwise_share |
| `repeat` | notes that repeat the note before | longest_held |
| `out_of_key` | notes outside the key's scale | in_key |
| `cadence` | the last bar: a final chord without its third, a soprano not ending on the tonic, no dominant before it | final_tonic |
| `lm` | the model's log-probability of the bar, plus `token_nats` per token (a reward) | likelihood |

`pitch` and `onset` are the grids `VoiceConstraints.lines` gives: (tracks, steps), the pitch each track
sounds at each 16th (-1 at rests) and where its notes start. The weights are in nats of model
log-probability per unit; the defaults are the setting measured best (docs/sampling.md). `lm` adds
`token_nats` (about the model's loss per token) for every token, so that a bar of eighths and a bar of
half notes are judged by how much more or less likely they are than usual, not by their length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from orchestrion.core.music import Key
from orchestrion.mmm.voices import BEAT, CADENCE_STEP, MAJOR_SCALE, MINOR_SCALE, STEPS_PER_BAR

CHORDS = ((0, 4, 7), (0, 3, 7), (0, 3, 6), (0, 4, 8), (0, 4, 7, 10), (0, 3, 7, 10), (0, 3, 6, 10), (0, 3, 6, 9))


def _chord_table() -> np.ndarray:
    """(4096,) bool: a 12-bit pitch-class set lies inside some triad or seventh chord (any root)."""
    templates = [sum(1 << ((p + r) % 12) for p in chord) for chord in CHORDS for r in range(12)]
    masks = np.arange(4096)
    return ((masks[:, None] & ~np.array(templates)[None, :]) == 0).any(axis=1)


INSIDE_CHORD = _chord_table()
CLASSES = np.array([bin(m).count("1") for m in range(4096)])


@dataclass(frozen=True)
class CriticWeights:
    """What one unit of each term is worth, in nats of the model's log-probability."""

    clash: float = 3.0
    parallel: float = 3.0
    silent: float = 2.0
    chord: float = 1.5
    dissonant: float = 0.7
    leap: float = 1.5
    step: float = 0.2
    repeat: float = 0.0  # measured: 0.3 made voices restless (longest held 2.4 beats, Bach 3.9)
    out_of_key: float = 1.0
    cadence: float = 2.0
    lm: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


class Critic:
    """Scores candidate bars (see the module docstring); higher is better."""

    def __init__(self, weights: CriticWeights | None = None, key: Key | None = None, token_nats: float = 0.95):
        self.weights = weights or CriticWeights()
        self.key, self.token_nats = key, token_nats
        self.scale = None
        if key is not None:
            scale = np.zeros(12, bool)
            scale[list(MINOR_SCALE if key.mode == "minor" else MAJOR_SCALE)] = True
            self.scale = np.roll(scale, key.tonic)

    def terms(
        self,
        pitch: np.ndarray,
        onset: np.ndarray,
        track: int,
        bar: int,
        *,
        voices: Sequence[bool],
        final: bool = False,
    ) -> dict[str, float]:
        """The counts of the module docstring for `track`'s bar `bar`; `voices[j]`: track j is a harmony voice."""
        a, b = bar * STEPS_PER_BAR, (bar + 1) * STEPS_PER_BAR
        mine = pitch[track]
        above = [j for j in range(track) if voices[j]]
        beats = np.arange(a, b, BEAT)
        sounding = mine[beats] >= 0
        names = ("clash", "parallel", "silent", "chord", "dissonant", "leap", "step", "repeat", "out_of_key")
        out = dict.fromkeys(names, 0.0)
        out["cadence"] = 0.0
        out["silent"] = float((~sounding).sum())
        if above:
            others = pitch[above][:, beats]  # (A, beats)
            diff = (mine[beats][None, :] - others) % 12
            present = (others >= 0) & sounding[None, :]
            out["clash"] = float((((diff == 1) | (diff == 11)) & present).any(axis=0).sum())
            masks = np.zeros(len(beats), np.int64)
            for row in [*pitch[above][:, beats], mine[beats]]:
                masks |= np.where(row >= 0, 1 << (row % 12), 0)
            if len(above) == 1:
                out["dissonant"] = float((np.isin(diff[0], (2, 6, 10)) & present[0]).sum())
            elif len(above) == 2:
                out["chord"] = float((~INSIDE_CHORD[masks] & (masks > 0)).sum())
            else:
                out["chord"] = float(((~INSIDE_CHORD[masks] | (CLASSES[masks] < 3)) & (masks > 0)).sum())
            out["parallel"] = float(self._parallels(pitch, onset, track, above, a, b))
        starts = np.flatnonzero(onset[track, a:b]) + a
        if len(starts):
            earlier = np.flatnonzero(onset[track, :a])
            line = pitch[track, np.concatenate([earlier[-1:], starts])]
            steps = np.diff(line[line >= 0])
            out["repeat"] = float((steps == 0).sum())
            steps = steps[steps != 0]
            out["leap"] = float((np.isin(np.abs(steps), (6, 10, 11)) | (np.abs(steps) > 12)).sum())
            out["step"] = float((np.abs(steps) <= 2).sum())
            if self.scale is not None:
                out["out_of_key"] = float((~self.scale[pitch[track, starts] % 12]).sum())
        if final and self.key is not None:
            out["cadence"] = self._cadence(pitch, track, above, bar)
        return out

    def _parallels(self, pitch: np.ndarray, onset: np.ndarray, track: int, above: list[int], a: int, b: int) -> int:
        """Parallel fifths and octaves into the track's onsets in [a, b), as `parallel_rate` counts them."""
        count = 0
        steps = np.arange(pitch.shape[1])
        index = np.where(onset, steps[None, :], -1)
        last = np.maximum.accumulate(index, axis=1)
        for x in np.flatnonzero(onset[track, a:b]) + a:
            if x == 0:
                continue
            p = pitch[track, x]
            for j in above:
                m = max(last[j, x - 1], last[track, x - 1])
                if m < 0:
                    continue
                now, before, mine = pitch[j, x], pitch[j, m], pitch[track, m]
                if min(now, before, mine, p) < 0 or now == before or p == mine:
                    continue
                same_way = np.sign(now - before) == np.sign(p - mine)
                interval = abs(before - mine) % 12
                count += bool(same_way and interval in (0, 7) and abs(now - p) % 12 == interval)
        return count

    def _cadence(self, pitch: np.ndarray, track: int, above: list[int], bar: int) -> float:
        """Faults of the final cadence that this voice can still mend (the rules already force the triad)."""
        end = (bar + 1) * STEPS_PER_BAR - 1
        tonic = self.key.tonic
        faults = 0.0
        if not above:  # the soprano ends on the tonic
            faults += float(pitch[track, end] % 12 != tonic)
        elif track == max(above) + 1 and len(above) >= 3:  # the bass: the final chord has its third ...
            chord = {int(p) % 12 for p in pitch[[*above, track], end] if p >= 0}
            faults += float(not chord & {(tonic + 3) % 12, (tonic + 4) % 12})
            before = (bar * STEPS_PER_BAR + CADENCE_STEP) - 1  # ... and comes from the dominant
            faults += 0.5 * float(pitch[track, before] < 0 or pitch[track, before] % 12 != (tonic + 7) % 12)
        return faults

    def score(
        self,
        pitch: np.ndarray,
        onset: np.ndarray,
        track: int,
        bar: int,
        *,
        voices: Sequence[bool],
        logprob: float,
        tokens: int = 0,
        final: bool = False,
    ) -> tuple[float, dict[str, float]]:
        """The candidate's score (higher is better) and its terms; `lm` is the bar's log-probability (nats)
        plus `token_nats` for each of its `tokens`."""
        terms = self.terms(pitch, onset, track, bar, voices=voices, final=final)
        terms["lm"] = logprob + self.token_nats * tokens
        w = self.weights
        penalty = sum(getattr(w, name) * value for name, value in terms.items() if name not in ("lm", "step"))
        return w.lm * terms["lm"] + w.step * terms["step"] - penalty, terms
