"""Chorale voices by construction: a logits processor over a window's free bars, and a pull towards a key.

    VOICE_RANGES       the range of each chorale voice (MIDI pitches, inclusive), measured on Bach's chorales
    TrackSpec          what the processor knows of one track of a window: its range and which rules hold
    VoiceConstraints   the processor: (input_ids (B, T), scores (B, V)) -> scores, banned tokens at -inf,
                       and notes outside the key's scale lowered by `key_strength` (a pull, not a ban)

A window is `bars` bars on the 16th-note grid, steps 0 .. 16 * bars (a beat every 4 steps). Tracks come one
after another (mmm's order), so when track k is written the tracks before it are known for the whole
window. In the cells (track, bar) the processor is told are free, a track whose `TrackSpec` asks for them
keeps these rules, each a ban on NOTE_ON, TIME_DELTA or BAR_END tokens:

- monophonic: no NOTE_ON while the track's note sounds;
- range: NOTE_ON only inside (low, high); no melodic leap wider than `max_leap` semitones;
- consonant beats: on a beat no pitch a semitone (or a major seventh, minor ninth ...) from a pitch of a
  track written before it; a note sounding into such a beat must end there (no TIME_DELTA or BAR_END over it);
- no parallels: no NOTE_ON that moves in parallel fifths or octaves with an earlier track, as
  `orchestrion.evaluation.polyphonic.parallel_rate` counts them (union of the two voices' onsets);
- no crossing (unless allowed): never above a higher voice nor below a lower one that is already written;
- legato: no time passes while the voice rests (a note ends where the next begins), so it sounds on every
  beat;
- cadence: in the piece's last bar, from `CADENCE_STEP` on, only the tonic triad (the bass and the
  soprano: the tonic), held to the end (no NOTE_ON after it, no NOTE_OFF before the bar line), and in the
  beat before it the dominant seventh chord (the bass: the dominant; the soprano: the leading tone, the
  second or the fifth): a perfect cadence, V(7)-I;
- opening (`opening=True`, a piece composed from its start): the first beat is the tonic triad.

The rules only ban; when they would ban every token the grammar allows, they give way level by level
(parallels and leaps first, then clashes, crossing and the cadence's chords, last the one line, the range
and the rhythm of the rules) and the step is counted in `relaxed`. `keep(row, length)` copies one row's state to all (best-of-N selection), and
`lines(row)` gives the critic what a row has written: pitch and onset grids (tracks x steps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from orchestrion.core.music import Key
from orchestrion.mmm.grammar import MMMIds

STEPS_PER_BAR = 16
BEAT = 4  # steps per quarter-note beat
CADENCE_STEP = 8  # the final chord holds the last half of the last bar
HARD, HARMONY, STYLE = range(3)  # what gives way last .. first when the rules leave nothing to choose
# The 1.5th to 98.5th percentile of each voice's pitches over the 409 chorales of the built-in corpus
# (`polyphonic.ranges_from(scores, 1.5, 98.5)`): 97% of Bach's notes lie inside.
VOICE_RANGES = {"SOPRANO": (62, 78), "ALTO": (57, 71), "TENOR": (52, 66), "BASS": (41, 60)}
VOICE_ORDER = ("SOPRANO", "ALTO", "TENOR", "BASS")
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 9, 10, 11)  # natural minor with the raised 6th and 7th (the metrics' in_key)
MINOR_PULL = (0, 2, 3, 5, 7, 8, 11)  # what the key pull favours in minor: harmonic minor, the leading tone


@dataclass(frozen=True)
class TrackSpec:
    """One track of a window as the rules see it."""

    low: int = 0
    high: int = 127
    voice: int | None = None  # order among the chorale voices (0 soprano .. 3 bass)
    crossing: bool = False  # may it cross the voices above and below it?
    monophonic: bool = False
    harmony: bool = False  # consonant beats, no parallels, sounding on beats, cadence, crossing
    drums: bool = False

    @classmethod
    def for_instrument(cls, instrument: str, crossing: bool = False) -> TrackSpec:
        """A chorale voice gets its range and every rule; another instrument none (its range is free)."""
        name = instrument.removeprefix("INST=")
        if name in VOICE_RANGES:
            low, high = VOICE_RANGES[name]
            return cls(low, high, VOICE_ORDER.index(name), crossing, monophonic=True, harmony=True)
        return cls(drums=name == "DRUMS")


def dominant_chord(key: Key, part: str) -> np.ndarray:
    """(12,) bool: pitch classes of the dominant seventh chord before the final one, for the `part` "bass"
    (its root), "soprano" (the leading tone, the second or the fifth: a melody that leads home) or "inner"."""
    degrees = {"bass": (7,), "soprano": (11, 2, 7), "inner": (7, 11, 2, 5)}[part]
    ok = np.zeros(12, bool)
    ok[[(key.tonic + d) % 12 for d in degrees]] = True
    return ok


def tonic_triad(key: Key, part: str) -> np.ndarray:
    """(12,) bool: pitch classes of the final chord for the `part`: the tonic for the bass and the soprano,
    the triad for the inner voices (in minor with the Picardy third too)."""
    ok = np.zeros(12, bool)
    ok[key.tonic] = True
    if part == "inner":
        ok[[(key.tonic + 4) % 12, (key.tonic + 7) % 12]] = True
        if key.mode == "minor":
            ok[(key.tonic + 3) % 12] = True
    return ok


@dataclass
class _Line:
    """One row's view of the window: what every track has written, and where the current one stands."""

    pitch: np.ndarray  # (T, S) the pitch each track sounds at each step, -1 where it rests
    onset: np.ndarray  # (T, S) bool: a note of the track starts at the step
    track: int = -1
    bar: int = -1
    t: int = 0
    in_bar: bool = False
    sounding: dict[int, int] = field(default_factory=dict)  # pitch -> start step (current track)
    last: tuple[int, int, int] | None = None  # (start, end, pitch) of the current track's last closed note
    conflict: np.ndarray | None = None  # (S, 128) bool: pitch p may not sound at step y (current track)
    prev_onset: np.ndarray | None = None  # (T, S) last onset of each track strictly before the step

    def copy(self) -> _Line:
        """A deep copy of what changes in place (the grids, the sounding notes); `conflict` and `prev_onset`
        are only ever replaced, never changed, so rows may share them."""
        return replace(self, pitch=self.pitch.copy(), onset=self.onset.copy(), sounding=dict(self.sounding))


class VoiceConstraints:
    """The chorale rules of the module docstring as a logits processor, one state per batch row."""

    def __init__(
        self,
        ids: MMMIds,
        batch_size: int,
        *,
        bars: int,
        tracks: Sequence[TrackSpec],
        free: set[tuple[int, int]],
        key: Key | None = None,
        final_bar: int | None = None,
        max_leap: int = 12,
        key_strength: float = 0.0,
        opening: bool = False,
    ):
        self.ids, self.bars, self.tracks, self.free = ids, bars, list(tracks), set(free)
        self.key, self.final_bar, self.max_leap, self.opening = key, final_bar, max_leap, opening
        self.steps = bars * STEPS_PER_BAR + 1  # the last step is the bar line that ends the window
        shape = (len(self.tracks), self.steps)
        self.rows = [_Line(np.full(shape, -1, np.int64), np.zeros(shape, bool)) for _ in range(batch_size)]
        self.seen = 0
        self.relaxed = [0] * batch_size
        self.kept_relaxed = 0  # every row's count at the last keep(): a candidate's own give-ways are the rest
        self.pitches = np.arange(128)
        self.on_ids = ids.note_on
        self.off_ids = ids.note_off
        self.delta_ids = ids.delta  # by steps, index 0 unused (-1)
        self.bar_end = ids["BAR_END"]
        self.key_bias = None  # (V,) added to the scores of rows in a free cell
        if key is not None and key_strength:
            scale = MINOR_PULL if key.mode == "minor" else MAJOR_SCALE
            outside = ~np.isin((self.pitches - key.tonic) % 12, scale) & (ids.note_on >= 0)
            self.key_bias = np.zeros(ids.size, np.float32)
            self.key_bias[ids.note_on[outside]] = -key_strength

    # ------------------------------------------------------------------------------------ state

    def _advance(self, line: _Line, token: int) -> None:
        name, value = self.ids.kind.get(token, ("?", -1))
        if name == "TRACK_START":
            line.track, line.bar, line.sounding, line.last = line.track + 1, -1, {}, None
            if line.track < len(self.tracks):
                self._prepare(line)
        elif name == "BAR_START":
            line.bar, line.t, line.in_bar = line.bar + 1, 0, True
        elif name == "BAR_END":
            line.in_bar = False
        elif name == "TIME_DELTA":
            line.t = min(line.t + value, STEPS_PER_BAR)
        elif name in ("NOTE_ON", "NOTE_OFF") and 0 <= line.track < len(self.tracks) and line.bar >= 0:
            now = min(line.bar * STEPS_PER_BAR + line.t, self.steps - 1)
            if name == "NOTE_ON":
                line.sounding[value] = now
            elif value in line.sounding:
                start = line.sounding.pop(value)
                row = line.pitch[line.track]
                row[start:now] = np.maximum(row[start:now], value)  # a chord's top line, as the metrics read it
                line.onset[line.track, start] = True
                if line.last is None or start >= line.last[0]:
                    line.last = (start, now, value)

    def _prepare(self, line: _Line) -> None:
        """At the start of a track: what the tracks written before it forbid it, step by step."""
        k, spec = line.track, self.tracks[line.track]
        line.conflict = np.zeros((self.steps, 128), bool)
        if not spec.harmony:
            return
        steps = np.arange(self.steps)
        beats = steps % BEAT == 0
        clash = np.zeros(self.steps, np.int64)  # 12-bit masks of the pitch classes that clash on each beat
        ceiling = np.full(self.steps, 127)
        floor = np.zeros(self.steps, np.int64)
        for j in range(k):
            other = self.tracks[j]
            if other.drums:
                continue
            u = line.pitch[j]
            on = (u >= 0) & beats
            clash[on] |= (1 << ((u[on] + 1) % 12)) | (1 << ((u[on] - 1) % 12))
            if not spec.crossing and spec.voice is not None and other.voice is not None:
                if other.voice < spec.voice:
                    ceiling = np.where(u >= 0, np.minimum(ceiling, u), ceiling)
                elif other.voice > spec.voice:
                    floor = np.where(u >= 0, np.maximum(floor, u), floor)
        pc = self.pitches % 12
        line.conflict = ((clash[:, None] >> pc[None, :]) & 1).astype(bool)  # (S, 128)
        line.conflict |= (self.pitches[None, :] > ceiling[:, None]) | (self.pitches[None, :] < floor[:, None])
        if spec.voice == 3 or (spec.voice is None and self._lowest(k)):
            part = "bass"
        elif spec.voice == 0 or (spec.voice is None and k == 0):
            part = "soprano"
        else:
            part = "inner"
        if self.key is not None and self.opening:
            opening = "bass" if part == "bass" else "inner"  # the tonic triad, its root in the bass
            line.conflict[:BEAT, :] |= ~tonic_triad(self.key, opening)[pc][None, :]
        if self.final_bar is not None and self.key is not None:
            cadence = self.final_bar * STEPS_PER_BAR + CADENCE_STEP
            line.conflict[cadence - BEAT : cadence, :] |= ~dominant_chord(self.key, part)[pc][None, :]
            line.conflict[cadence:, :] |= ~tonic_triad(self.key, part)[pc][None, :]
        index = np.where(line.onset, steps[None, :], -1)
        last = np.maximum.accumulate(index, axis=1)  # last onset at or before each step
        line.prev_onset = np.concatenate([np.full((len(self.tracks), 1), -1), last[:, :-1]], axis=1)

    def _lowest(self, k: int) -> bool:
        return all(not t.harmony for t in self.tracks[k + 1 :])

    # ---------------------------------------------------------------------------------------- bans

    def _in_free_cell(self, line: _Line) -> bool:
        return line.in_bar and 0 <= line.track < len(self.tracks) and (line.track, line.bar) in self.free

    def _banned(self, line: _Line) -> list[tuple[int, np.ndarray]]:
        """(level, token ids) the rules forbid next for this row; nothing outside a free cell of a ruled track.

        Levels say what gives way first when the rules leave nothing the grammar allows: STYLE (parallels,
        leaps), then HARMONY (clashes, crossing, the cadence's chords), then HARD (one line, range, time)."""
        if not self._in_free_cell(line):
            return []
        spec = self.tracks[line.track]
        if not (spec.monophonic or spec.harmony or spec.low > 0 or spec.high < 127):
            return []
        x = line.bar * STEPS_PER_BAR + line.t
        bar_line = (line.bar + 1) * STEPS_PER_BAR
        out: list[tuple[int, np.ndarray]] = []
        if spec.harmony and self._holding(line, x):  # the final chord is held to the end: no new note, no end
            out.append((HARD, self.on_ids))
            if x < bar_line:
                out.append((HARD, self.off_ids[list(line.sounding)]))
            return out
        if spec.harmony and self.final_bar is not None and self.key is not None and line.bar == self.final_bar:
            # Time may run up to the final chord or, once a note sounds there, to the end; never past the
            # final chord's start into the held part (where nothing may happen but the end).
            cadence = self.final_bar * STEPS_PER_BAR + CADENCE_STEP
            d = np.arange(STEPS_PER_BAR + 1)
            out.append((HARD, self.delta_ids[~((x + d == bar_line) | ((x < cadence) & (x + d <= cadence)))]))
        if line.sounding:
            if spec.monophonic:
                out.append((HARD, self.on_ids))
            if spec.harmony:
                p = max(line.sounding)
                ahead = np.flatnonzero(line.conflict[x:, p])
                first = x + int(ahead[0]) if len(ahead) else self.steps + STEPS_PER_BAR
                # TIME_DELTA=d keeps the note over [x, x + d); BAR_END carries it to the next bar line.
                out.append((HARMONY, self.delta_ids[min(first - x + 1, STEPS_PER_BAR + 1) :]))
                if first <= bar_line and line.bar + 1 < self.bars:
                    out.append((HARMONY, np.array([self.bar_end])))
            if spec.monophonic:
                return out
        elif spec.harmony and x < bar_line:  # a voice sings legato: a note ends where the next begins
            out.append((HARD, self.delta_ids))
            out.append((HARD, np.array([self.bar_end])))
        out.append((HARD, self.on_ids[(self.pitches < spec.low) | (self.pitches > spec.high)]))
        if spec.harmony:
            out.append((HARMONY, self.on_ids[line.conflict[min(x, self.steps - 1)]]))
            out.append((STYLE, self.on_ids[self._parallels(line, x)]))
        if line.last is not None and spec.monophonic:
            out.append((STYLE, self.on_ids[np.abs(self.pitches - line.last[2]) > self.max_leap]))
        return out

    def _holding(self, line: _Line, x: int) -> bool:
        """In the piece's last bar, after the final chord has begun."""
        return (
            self.final_bar is not None
            and self.key is not None
            and line.bar == self.final_bar
            and x > self.final_bar * STEPS_PER_BAR + CADENCE_STEP
        )

    def _parallels(self, line: _Line, x: int) -> np.ndarray:
        """(128,) bool: a NOTE_ON now would move in parallel fifths or octaves with an earlier track."""
        banned = np.zeros(128, bool)
        last = line.last
        if last is None or line.prev_onset is None:
            return banned
        for j in range(line.track):
            if self.tracks[j].drums:
                continue
            now = line.pitch[j, x]
            m = max(int(line.prev_onset[j, x]), last[0])  # the moment before: the latest onset of either
            if now < 0 or m < 0:
                continue
            before = line.pitch[j, m]
            mine = last[2] if last[0] <= m < last[1] else -1
            if before < 0 or mine < 0 or now == before:
                continue
            interval = abs(before - mine) % 12
            if interval not in (0, 7):
                continue
            moves = np.sign(self.pitches - mine) == np.sign(now - before)
            banned |= moves & (self.pitches != mine) & (np.abs(now - self.pitches) % 12 == interval)
        return banned

    # ----------------------------------------------------------------------------------- processor

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        new = input_ids[:, self.seen :].tolist()
        self.seen = input_ids.shape[1]
        mask = np.zeros(scores.shape, dtype=bool)
        pulled = []
        finite = None
        for r, (line, tokens) in enumerate(zip(self.rows, new, strict=True)):
            for token in tokens:
                self._advance(line, token)
            banned = self._banned(line)
            if banned:
                if finite is None:
                    finite = torch.isfinite(scores).cpu().numpy()
                for _, ids in banned:
                    mask[r, ids[ids >= 0]] = True
                if not (finite[r] & ~mask[r]).any():  # give way level by level until something is left
                    levels = np.zeros((3, scores.shape[1]), bool)
                    for level, ids in banned:
                        levels[level, ids[ids >= 0]] = True
                    for keep in (2, 1, 0):
                        mask[r] = levels[:keep].any(axis=0)
                        if (finite[r] & ~mask[r]).any():
                            break
                    self.relaxed[r] += 1
            if self.key_bias is not None and self._in_free_cell(line) and not self.tracks[line.track].drums:
                pulled.append(r)
        if pulled:
            width = min(len(self.key_bias), scores.shape[1])  # tokens added to a vocabulary are no notes
            bias = np.zeros(scores.shape, dtype=np.float32)
            bias[pulled, :width] = self.key_bias[:width]
            scores = scores + torch.from_numpy(bias).to(scores.device)
        if not mask.any():
            return scores
        return scores.masked_fill(torch.from_numpy(mask).to(scores.device), float("-inf"))

    def keep(self, row: int, length: int) -> None:
        """Every row takes row `row`'s state, `length` tokens in (best-of-N: the chosen candidate goes on)."""
        self.rows = [self.rows[row].copy() for _ in self.rows]
        self.relaxed = [self.relaxed[row]] * len(self.rows)
        self.kept_relaxed = self.relaxed[row]
        self.seen = length

    def lines(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(pitch, onset) grids (tracks x steps) of a row, the current track's sounding notes up to now."""
        line = self.rows[row]
        pitch, onset = line.pitch.copy(), line.onset.copy()
        if 0 <= line.track < len(self.tracks):
            now = min(max(line.bar, 0) * STEPS_PER_BAR + line.t, self.steps - 1)
            for p, start in line.sounding.items():
                pitch[line.track, start : max(now, start + 1)] = np.maximum(
                    pitch[line.track, start : max(now, start + 1)], p
                )
                onset[line.track, start] = True
        return pitch, onset
