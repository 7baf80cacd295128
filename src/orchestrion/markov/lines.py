"""Melodic lines of the Markov composer: a chain's sampling tables, and one voice drawn from them.

`Chain` keeps a chain's rows CSR-style, with cumulative weights restarting at every row and each row's
entries sorted heaviest first, so that a draw is a dict lookup and a bisection, top-k is the row's first k
entries and top-p the prefix a second bisection finds; `at_temperature` re-weighs a copy (counts ** 1/T).

`Line` draws one melodic voice measure by measure. Each event the chain proposes is kept with
probability a(e):

    0                    a tone sounding on a beat would clash (a semitone, mod 12) with the chord or with a
                         note another voice already put there (`Beats`); it would hold one pitch past the cap
                         (the run of one pitch, rests inside it included); or a row backed off to a lower
                         order would leap more than an octave from the last note; or it would move in
                         parallel fifths or octaves (unisons too) with a voice already placed
                         (`Beats.parallel`)
    1 / pull             it sounds on a beat outside the chord, or rests on a beat (`chord_pull`)
    penalty ** (-k / T)  its tone came k times among the voice's last `window` notes (repetition penalty)

so the line is drawn from p(e) a(e), normalised: after `tries` refused proposals the row is weighed
exactly (the same distribution, for the most likely entries), and when nothing in it can be kept the chord
tone nearest to the last note stands in. Lines stop at cadences (`harmony.phrase_end`): on beat 3 of a
phrase's last bar the line takes a chord tone (the bass its root) and holds it to the bar line; the last
bar is one note of the tonic triad (the tonic itself for the bass and, when the cap allows, the melody).
Notes may cross bar lines; each measure returns the notes that start in it.
"""

from __future__ import annotations

import copy
import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from orchestrion.errors import BadInput
from orchestrion.markov import events as ev
from orchestrion.markov.counts import MELODY_BOS, ORDERS, VOCAB, Counts, chain_name
from orchestrion.markov.harmony import phrase_end

NoteTuple = tuple[int, int, int, int, int]  # (voice, MIDI pitch, start step, steps, velocity)
BEAT = ev.STEPS_PER_QUARTER
BAR = ev.MEASURE_STEPS
EXACT_ENTRIES = 64  # the heaviest entries of a row weighed when proposals keep being refused

EVENT_TONE = [e // ev.N_DURATIONS for e in range(ev.N_MELODY_EVENTS)]
EVENT_STEPS = [ev.DURATIONS[e % ev.N_DURATIONS] for e in range(ev.N_MELODY_EVENTS)]
_DURATION_INDEX = {d: i for i, d in enumerate(ev.DURATIONS)}


def event_of(tone: int, steps: int) -> int:
    """The melody event nearest to a note of `steps` steps (for the chain's history)."""
    index = min(range(ev.N_DURATIONS), key=lambda i: abs(ev.DURATIONS[i] - steps))
    return tone * ev.N_DURATIONS + index


def _choose(items: list[int], weights: list[float], u: float) -> int:
    """The item at `u` (0-1) of the cumulative weights."""
    target, acc = u * sum(weights), 0.0
    for item, w in zip(items, weights, strict=True):
        acc += w
        if target < acc:
            return item
    return items[-1]


def adjacent(mask: int) -> int:
    """The pitch classes a semitone from those of `mask`."""
    return ((mask << 1) | (mask >> 11) | (mask >> 1) | (mask << 11)) & 0xFFF


NEIGHBOURS = [adjacent(1 << pc) for pc in range(12)]


class Chain:
    """One chain ready to sample, as CSR rows over one list of cumulative weights.

    `rows[k]` maps an order-k state to a row id; row r covers entries `lo[r]`..`hi[r]`-1 of `cols` and
    `cums` (cumulative weights restarting at every row, entries heaviest first) and weighs `totals[r]` in
    all. Row ids start at 1 so that `rows[2].get(s) or rows[1].get(b) or unigram` backs off in one
    expression. The rows depend on the counts only; `at_temperature` re-weighs a copy without rebuilding them.
    """

    def __init__(self, counts: Counts, mode: str, line: str):
        self.line, self.size, self.top = line, VOCAB[line], ORDERS[line]
        self.rows: list[dict[int, int]] = []
        cols, weights, firsts, lasts = [], [], [], []
        offset, next_id = 0, 1
        for order in range(self.top + 1):
            keys, values = counts.get(chain_name(mode, line, order), (np.zeros(0, np.uint32), np.zeros(0)))
            keys = keys.astype(np.int64)
            state, col = np.divmod(keys, self.size) if order else (np.zeros_like(keys), keys)
            heaviest = np.lexsort((col, -values, state))  # within each state (keys are sorted by state)
            state, col, values = state[heaviest], col[heaviest], values[heaviest]
            first = np.flatnonzero(np.r_[True, state[1:] != state[:-1]]) if len(keys) else np.zeros(0, np.int64)
            self.rows.append(dict(zip(state[first].tolist(), range(next_id, next_id + len(first)), strict=True)))
            firsts.append(first + offset)
            lasts.append(np.r_[first[1:], len(keys)].astype(np.int64)[: len(first)] + offset)
            cols.append(col)
            weights.append(values.astype(np.float64))
            offset, next_id = offset + len(keys), next_id + len(first)
        if not self.rows[0]:
            raise BadInput(f"the model has no {line} events for {mode} pieces: it was trained on no usable notes")
        self._first, self._last = np.concatenate(firsts), np.concatenate(lasts)  # (R,) row spans
        self._weights = np.concatenate(weights)  # (E,) counts
        self.cols: list[int] = np.concatenate(cols).tolist()
        self.lo: list[int] = [0, *self._first.tolist()]
        self.hi: list[int] = [0, *self._last.tolist()]
        self.unigram = self.rows[0][0]
        tones, counts = cols[0] // ev.N_DURATIONS, weights[0]  # the unigram: where the chain's register lies
        sounding = tones < ev.REST
        total = float(counts[sounding].sum())
        self._mean_tone = float((tones[sounding] * counts[sounding]).sum()) / total if total else 36.0
        self._weigh(1.0)

    def _weigh(self, temperature: float) -> None:
        weights = self._weights
        if temperature != 1.0:  # (w / row max) ** (1/T): no overflow at any temperature, the row max stays 1
            peak = np.repeat(np.maximum.reduceat(weights, self._first), self._last - self._first)
            weights = (weights / peak) ** (1.0 / temperature)
        cum = np.cumsum(weights)
        base = np.where(self._first > 0, cum[self._first - 1], 0.0)
        row_cum = cum - np.repeat(base, self._last - self._first)  # restarts at every row
        self.cums: list[float] = row_cum.tolist()
        self.totals: list[float] = [0.0, *row_cum[self._last - 1].tolist()]

    def at_temperature(self, temperature: float) -> Chain:
        chain = copy.copy(self)
        chain._weigh(temperature)
        return chain

    def draw(self, history: tuple[int, ...], u: float) -> int:
        """Next symbol after `history` (the last `top` symbols), backing off to shorter histories."""
        row = None
        for order in range(self.top, 0, -1):
            state = 0
            for s in history[self.top - order :]:
                state = state * self.size + s
            row = self.rows[order].get(state)
            if row is not None:
                break
        r = row or self.unigram
        hi = self.hi[r]
        i = bisect_right(self.cums, u * self.totals[r], self.lo[r], hi)
        return self.cols[i if i < hi else hi - 1]

    def mean_tone(self) -> float:
        """The average tone of the chain's events (rests left out): where its register lies."""
        return self._mean_tone


class Beats:
    """What the voices of a piece share: per beat, the chord's pitch classes and root and the pitch classes
    free of clashes; per step, the onsets of the voices placed so far (for parallel fifths and octaves).

    A pitch class is free on a beat when no chord tone and no note already placed there lies a semitone
    from it; chord tones always are (no chord of `harmony.QUALITIES` holds a semitone).
    """

    def __init__(self, beats: int):
        self.chord = [0] * beats  # 0 until the chord is known
        self.root = [0] * beats
        self.sounding = [0] * beats  # pitch classes of the notes placed
        self.free = [0xFFF] * beats
        self.onsets: dict[int, list[tuple[int, int]]] = {}  # step -> [(pitch before, pitch)] of moving voices
        self._last: dict[int, tuple[int, int]] = {}  # voice -> (top pitch, end) of its last onset

    def set_chord(self, beat: int, mask: int, root: int) -> None:
        self.chord[beat], self.root[beat] = mask, root
        self.free[beat] = ~adjacent(mask | self.sounding[beat]) & 0xFFF

    def place(self, first: int, last: int, pc: int) -> None:
        """A note of pitch class `pc` sounds on beats first..last-1."""
        taken, bit = ~NEIGHBOURS[pc], 1 << pc
        free, sounding = self.free, self.sounding
        for b in range(min(last, len(free)) - 1, first - 1, -1):
            free[b] &= taken
            sounding[b] |= bit

    def onset(self, voice: int, pitch: int, start: int, end: int) -> None:
        """A voice's (top) note from `start` to `end`; a move from the note it follows is kept at `start`."""
        before, until = self._last.get(voice, (-1, -1))
        if until == start and before >= 0 and before != pitch:
            self.onsets.setdefault(start, []).append((before, pitch))
        self._last[voice] = (pitch, end)

    def register(self, voice: int, notes: list[NoteTuple]) -> None:
        """The onsets of a chord voice's notes (its top line: the highest note of each onset)."""
        tops: dict[int, tuple[int, int]] = {}
        for _, pitch, start, steps, _ in notes:
            if start not in tops or pitch > tops[start][0]:
                tops[start] = (pitch, start + steps)
        for start in sorted(tops):
            self.onset(voice, tops[start][0], start, tops[start][1])

    def parallels(self, before: int, start: int) -> list[tuple[bool, int, int]] | None:
        """The moves a voice leaving `before` at `start` must not follow in parallel fifths or octaves, as
        (upwards, the other voice's new pitch, the interval class); None when there are none."""
        moves = self.onsets.get(start)
        if not moves or before < 0:
            return None
        found = [(p > b, p, i) for b, p in moves if (i := abs(before - b) % 12) == 0 or i == 7]
        return found or None

    def parallel(self, before: int, pitch: int, start: int) -> bool:
        """Would a voice moving from `before` to `pitch` at `start` move in parallel fifths or octaves
        (unisons too) with a voice already placed that moves there?"""
        moves = self.onsets.get(start)
        if not moves or before < 0 or pitch == before:
            return False
        up = pitch > before
        for b, p in moves:
            interval = abs(before - b) % 12
            if (interval == 0 or interval == 7) and (p > b) == up and abs(pitch - p) % 12 == interval:
                return True
        return False


@dataclass(frozen=True)
class LineRules:
    """How a line is drawn (from the request and the model's settings); see the module docstring."""

    cap: int  # steps one pitch may be held or repeated
    pull: float = 8.0
    tries: int = 6
    chord_pull: bool = True
    penalty: float = 1.0
    temperature: float = 1.0
    window: int = 4
    top_k: int = 0
    top_p: float = 1.0


class Line:
    """One melodic voice, drawn measure by measure (`measure(index)`, in order) against shared `Beats`."""

    def __init__(self, chain: Chain, rng: random.Random, voice: int, *, bass: bool, pitch_of: list[int],
                 velocity: int, beats: Beats, rules: LineRules, bars: int):  # fmt: skip
        self.chain, self.rng, self.voice, self.bass = chain, rng, voice, bass
        self.ties = False  # may a note last past the bar line (the lead's may: the next chords follow it)
        self.pitch_of, self.beats, self.rules, self.bars = pitch_of, beats, rules, bars
        self.pcbit = [1 << (p % 12) for p in pitch_of]
        self.accent = [velocity + (10 if p == 0 else 5 if p == 2 * BEAT else 0) for p in range(BAR)]
        pen = [rules.penalty ** (-k / rules.temperature) for k in range(rules.window + 1)]
        self.pen = [p / max(pen) for p in pen]  # at most 1 (a penalty under 1 favours repeats), as a(e) must be
        self.a = self.b = MELODY_BOS  # the chain's history
        self.pos = 0
        self.last = -1  # the last tone sounded
        self.pitch, self.end = -1, -1  # the last note's pitch and where it ends
        self.run_tone, self.run_start = -1, 0  # the pitch being held or repeated, since when
        self.recent: list[int] = []
        self.center = int(round(chain.mean_tone()))

    # ------------------------------------------------------------------------------------ acceptance

    def _acceptance(self, pos: int, room: int, order: int) -> Callable[[int], float]:
        """a(e) of the module docstring for the events that may start at `pos` (at most `room` steps long),
        with what does not depend on the event worked out once."""
        rules, beats, pcbit = self.rules, self.beats, self.pcbit
        free, tone_of, steps_of = beats.free, EVENT_TONE, EVENT_STEPS
        first = (pos + BEAT - 1) // BEAT
        chord = beats.chord[first] if first < len(free) and rules.chord_pull else 0
        outside = 1.0 / rules.pull
        allowed: dict[int, int] = {}  # last beat covered -> the pitch classes free on every beat covered
        last_tone, run_tone, run_left = self.last, self.run_tone, rules.cap - pos + self.run_start
        leaps = order < 2 and last_tone >= 0
        before, pitch_of = self.pitch, self.pitch_of
        # Parallels: a move from `before` up (or down) onto one of these pitch classes.
        parallels = beats.parallels(before, pos) if pos == self.end else None
        recent, pen, window = self.recent, self.pen, rules.window

        def accept(event: int) -> float:
            tone, steps = tone_of[event], steps_of[event]
            if steps > room:
                steps = room
            last = (pos + steps + BEAT - 1) // BEAT
            if tone == ev.REST:  # silent on a beat, like a tone outside the chord
                return outside if last > first and rules.chord_pull else 1.0
            if (leaps and abs(tone - last_tone) > 12) or (tone == run_tone and steps > run_left):
                return 0.0
            bit, f = pcbit[tone], 1.0
            if last > first:
                mask = allowed.get(last)
                if mask is None:
                    mask = 0xFFF
                    for b in range(first, last):
                        mask &= free[b]
                    allowed[last] = mask
                if not mask & bit:
                    return 0.0
                if chord and not chord & bit:
                    f = outside
            if parallels:
                pitch = pitch_of[tone]
                if pitch != before:
                    up = pitch > before
                    for upwards, p, interval in parallels:
                        if upwards == up and abs(pitch - p) % 12 == interval:
                            return 0.0
            return f * pen[min(recent.count(tone), window)]

        return accept

    def _draw(self, pos: int, room: int) -> tuple[int, int]:
        """(event, steps) of the next note or rest, at most `room` steps long."""
        chain, rules, random_ = self.chain, self.rules, self.rng.random
        r, order = chain.rows[2].get(self.a * chain.size + self.b), 2
        if r is None:
            r, order = chain.rows[1].get(self.b), 1
            if r is None:
                r, order = chain.unigram, 0
        cums, cols = chain.cums, chain.cols
        lo, hi, total = chain.lo[r], chain.hi[r], chain.totals[r]
        if rules.top_k and hi - lo > rules.top_k:
            hi = lo + rules.top_k
            total = cums[hi - 1]
        if rules.top_p < 1.0:
            hi = min(hi, bisect_left(cums, rules.top_p * total, lo, hi) + 1)
            total = cums[hi - 1]
        accept = self._acceptance(pos, room, order)
        first = None
        for _ in range(rules.tries):
            i = bisect_right(cums, random_() * total, lo, hi)
            event = cols[i if i < hi else hi - 1]
            first = event if first is None else first
            f = accept(event)
            if f >= 1.0 or (f > 0.0 and random_() < f):
                return event, min(EVENT_STEPS[event], room)
        weights, events = [], []
        previous = 0.0
        for i in range(lo, min(hi, lo + EXACT_ENTRIES)):
            w = (cums[i] - previous) * accept(cols[i])
            previous = cums[i]
            if w > 0.0:
                weights.append(w)
                events.append(cols[i])
        if any(EVENT_TONE[e] != ev.REST for e in events):  # a rest only where a note could have come
            event = _choose(events, weights, random_())
            return event, min(EVENT_STEPS[event], room)
        steps = min(EVENT_STEPS[first] if EVENT_TONE[first] != ev.REST else BEAT, room)
        return self._stand_in(pos, steps), steps

    def _stand_in(self, pos: int, steps: int) -> int:
        """The chord tone nearest to the last note (a chord tone never clashes), as an event."""
        beat = min((pos + BEAT - 1) // BEAT, len(self.beats.chord) - 1)
        wanted = self.beats.chord[beat] or 0xFFF
        tone = self._nearest(wanted, pos, steps)
        if tone < 0:
            here = self.last if self.last >= 0 else self.center
            tone = here + 2 if here + 2 < ev.N_TONES else here - 2
        return event_of(tone, steps)

    def _nearest(self, wanted: int, pos: int, steps: int) -> int:
        """The tone of a pitch class in `wanted` nearest to the last note that the hold cap allows, out of
        parallel fifths and octaves when one is (-1: none)."""
        here = self.last if self.last >= 0 else self.center
        tones = sorted(range(max(0, here - 12), min(ev.N_TONES, here + 13)), key=lambda t: (abs(t - here), t))
        allowed = [t for t in tones if self.pcbit[t] & wanted
                   and not (t == self.run_tone and pos + steps - self.run_start > self.rules.cap)]  # fmt: skip
        if pos == self.end:
            for tone in allowed:
                if not self.beats.parallel(self.pitch, self.pitch_of[tone], pos):
                    return tone
        return allowed[0] if allowed else -1

    # ------------------------------------------------------------------------------------- the notes

    def _sound(self, notes: list[NoteTuple], event: int, pos: int, steps: int) -> None:
        tone = EVENT_TONE[event]
        if tone != ev.REST:
            notes.append((self.voice, self.pitch_of[tone], pos, steps, self.accent[pos % BAR]))
            self.beats.place((pos + BEAT - 1) // BEAT, (pos + steps + BEAT - 1) // BEAT, self.pitch_of[tone] % 12)
            self.beats.onset(self.voice, self.pitch_of[tone], pos, pos + steps)
            self.pitch, self.end = self.pitch_of[tone], pos + steps
            if tone != self.run_tone:
                self.run_tone, self.run_start = tone, pos
            self.recent = [*self.recent[-(self.rules.window - 1) :], tone] if self.rules.window > 1 else [tone]
            self.last = tone
        self.a, self.b = self.b, event
        self.pos = pos + steps

    def _cadence(self, notes: list[NoteTuple], pos: int, until: int, final: bool) -> None:
        """Land on a chord tone at `pos` (the bass on the root; the melody's last note on the tonic when it
        can) and hold it to `until`, preferring the tones the chain would take next."""
        beats = self.beats
        beat = pos // BEAT
        root = 1 << beats.root[beat]
        wanted = root if self.bass or final else beats.chord[beat]
        steps = until - pos
        chain = self.chain
        r = chain.rows[2].get(self.a * chain.size + self.b) or chain.rows[1].get(self.b) or chain.unigram
        lo, hi = chain.lo[r], min(chain.hi[r], chain.lo[r] + EXACT_ENTRIES)
        if self.rules.top_k:
            hi = min(hi, lo + self.rules.top_k)
        if self.rules.top_p < 1.0:
            hi = min(hi, bisect_left(chain.cums, self.rules.top_p * chain.totals[r], lo, chain.hi[r]) + 1)
        weights: dict[int, float] = {}
        previous = 0.0
        for i in range(lo, hi):
            w, previous = chain.cums[i] - previous, chain.cums[i]
            tone = EVENT_TONE[chain.cols[i]]
            if tone == ev.REST or not self.pcbit[tone] & wanted or (self.last >= 0 and abs(tone - self.last) > 7):
                continue
            if tone == self.run_tone and until - self.run_start > self.rules.cap:
                continue
            if pos == self.end and beats.parallel(self.pitch, self.pitch_of[tone], pos):
                continue
            weights[tone] = weights.get(tone, 0.0) + w
        if weights:
            tone = _choose(list(weights), list(weights.values()), self.rng.random())
        else:
            tone = self._nearest(wanted, pos, steps)
            if tone < 0:  # the cap forbids the root: another chord tone
                tone = self._nearest(beats.chord[beat] or 0xFFF, pos, steps)
            if tone < 0:
                tone = self.last if self.last >= 0 else self.center
        self._sound(notes, event_of(tone, steps), pos, steps)

    def measure(self, index: int) -> list[NoteTuple]:
        """The notes that start in measure `index` (call in order from 0)."""
        start, end, bars = index * BAR, (index + 1) * BAR, self.bars
        kind = phrase_end(index, bars)
        cadence = until = None
        if kind == "final":
            cadence, until = (start if bars > 1 else start + 2 * BEAT), bars * BAR
        elif kind is not None:
            cadence, until = start + 2 * BEAT, end
        stop = cadence if cadence is not None else end if (index + 2 == bars or not self.ties) else 1 << 60
        notes: list[NoteTuple] = []
        while self.pos < end:
            pos = self.pos
            if cadence is not None and pos >= cadence:
                self._cadence(notes, pos, until, kind == "final")
                continue
            room = stop - pos
            if room < ev.DURATIONS[0]:  # a sliver before a cadence stays silent
                self.pos = stop
                continue
            event, steps = self._draw(pos, room)
            self._sound(notes, event, pos, steps)
        return notes
