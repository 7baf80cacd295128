"""The mmm grammar as a logits processor, and cutting token sequences into tracks and bars.

`MMMGrammar` is a `LogitsProcessor` (see `orchestrion.core.sampling`): called with the whole sequence so far
(prompt included) and the next-token scores, it returns scores with the disallowed tokens at -inf. State
is kept per row and advanced incrementally from the tokens it has not seen yet, so a prompt is parsed by
the same state machine that constrains the continuation.

It makes every sample decodable by `orchestrion.mmm.codec.decode` without a single repair (the grammar is
in `orchestrion.mmm.vocabulary`): exactly `bars` bars in each of `tracks` tracks, the requested INST= and
DENSITY= tokens, NOTE_OFF only for a sounding note after its start, TIME_DELTA never past the bar line,
every note closed by the end of its track, FILL bars filled in, PIECE_END only when all that is done.
A per-bar token cap, set from the token budget, guarantees that the piece ends inside the context.

`keep(row, length)` copies one row's state to every row (best-of-N, `orchestrion.mmm.search`).
`track_spans` and `split_bars` cut a token sequence into tracks and bars.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from orchestrion.errors import InvalidRequest

NEG_INF = float("-inf")
STEPS_PER_BAR = 16


# ------------------------------------------------------------------------------------------ mmm


@dataclass
class MMMIds:
    """Token ids of the mmm vocabulary, looked up by name in a tokenizer's vocabulary."""

    vocab: dict[str, int]
    size: int = 0
    note_on: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # by pitch, -1 where missing
    note_off: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    delta: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # by steps 0..16 (0 unused)
    kind: dict[int, tuple[str, int]] = field(default_factory=dict)  # id -> (name, value)

    @classmethod
    def from_vocab(cls, vocab: dict[str, int]) -> MMMIds:
        for name in ("PIECE_START", "PIECE_END", "TRACK_START", "TRACK_END", "BAR_START", "BAR_END"):
            if name not in vocab:
                raise InvalidRequest("model", f"the tokenizer has no {name} token: it is not an mmm model")
        ids = cls(vocab=vocab, size=max(vocab.values()) + 1)
        ids.note_on = np.full(128, -1, np.int64)
        ids.note_off = np.full(128, -1, np.int64)
        ids.delta = np.full(STEPS_PER_BAR + 1, -1, np.int64)
        for token, i in vocab.items():
            name, _, value = token.partition("=")
            ids.kind[i] = (name, int(value) if value.isdigit() else -1)
            if name == "NOTE_ON" and value.isdigit() and int(value) < 128:
                ids.note_on[int(value)] = i
            elif name == "NOTE_OFF" and value.isdigit() and int(value) < 128:
                ids.note_off[int(value)] = i
            elif name == "TIME_DELTA" and value.isdigit() and 1 <= int(value) <= STEPS_PER_BAR:
                ids.delta[int(value)] = i
        return ids

    def __getitem__(self, token: str) -> int:
        if token not in self.vocab:
            field_name = "density" if token.startswith("DENSITY=") else "instruments"
            known = ", ".join(t for t in self.vocab if t.startswith(token.partition("=")[0] + "="))[:300]
            raise InvalidRequest(field_name, f"{token} is not in the model's vocabulary (it has: {known})")
        return self.vocab[token]

    def prefixed(self, prefix: str) -> list[int]:
        return sorted(i for t, i in self.vocab.items() if t.startswith(prefix))


# Phases of the piece-level state machine.
START, TRACKS, INST, DENSITY, BARS, BODY, FILLS, FILL_BODY, DONE = range(9)


@dataclass
class _Fill:
    track: int
    bar: int
    held: dict[int, int]  # notes sounding when the bar began: pitch -> start step
    close: set[int] = field(default_factory=set)  # held notes the rest of the track never closes
    open: set[int] = field(default_factory=set)  # pitches closed later without an opening: the fill opens them


@dataclass
class _Row:
    phase: int = START
    track: int = 0
    bar: int = -1
    t: int = 0
    body: int = 0  # tokens in the current bar body
    sounding: dict[int, int] = field(default_factory=dict)  # pitch -> absolute start step
    step_kind: str = ""  # "", "off" or "on": what the current time step has had (canonical order)
    step_pitch: int = -1
    prev_delta: bool = False
    fills: list[_Fill] = field(default_factory=list)
    fill_index: int = 0
    fill_opened: set[int] = field(default_factory=set)

    def copy(self) -> _Row:
        """A deep copy, field by field (`copy.deepcopy` costs several times more, once per row and cell)."""
        fills = [replace(f, held=dict(f.held), close=set(f.close), open=set(f.open)) for f in self.fills]
        return replace(self, sounding=dict(self.sounding), fills=fills, fill_opened=set(self.fill_opened))


class MMMGrammar:
    """The mmm grammar as a logits mask (see the module docstring); one state machine per batch row.

    `instruments[k]` / `densities[k]` (token strings such as "INST=ALTO", "DENSITY=3", or None for free)
    are forced for track k. `bar_cap` bounds the tokens of one bar body (closing then takes at most polyphony + 3). `close_bars`
    lists (track, bar) cells that must end with every note closed, as a track's last bar does: the cells
    that a given bar follows (a window composed between given bars).
    """

    def __init__(
        self,
        ids: MMMIds,
        batch_size: int,
        *,
        bars: int,
        tracks: int,
        instruments: Sequence[str | None] = (),
        densities: Sequence[str | None] = (),
        bar_cap: int = 64,
        polyphony: int = 8,
        close_bars: set[tuple[int, int]] | frozenset = frozenset(),
    ):
        if bars < 1 or tracks < 1:
            raise InvalidRequest("bars", "a piece needs at least one bar and one track")
        self.ids, self.bars, self.tracks = ids, bars, tracks
        self.instruments = [ids[t] if t else None for t in instruments] + [None] * tracks
        self.densities = [ids[t] if t else None for t in densities] + [None] * tracks
        self.bar_cap, self.polyphony = bar_cap, polyphony
        self.close_bars = set(close_bars)
        self.rows = [_Row() for _ in range(batch_size)]
        self.seen = 0
        self.inst_ids = [i for i in ids.prefixed("INST=")]
        self.density_ids = [i for i in ids.prefixed("DENSITY=")]
        self.repairs = [0] * batch_size  # prompt tokens that did not fit the grammar

    @staticmethod
    def budget(bars: int, tracks: int, polyphony: int = 8) -> int:
        """Tokens a piece needs beyond its bar bodies' free events: structure plus closing reserves."""
        # Per bar: BAR_START, BAR_END and at most 2 events to close it once the cap is hit; the last bar
        # of a track also closes every sounding note, one time step and one NOTE_OFF each at worst.
        return 2 + tracks * (4 + bars * 5 + 2 * polyphony + 2)

    # --------------------------------------------------------------------------------- state update

    def _advance(self, row: _Row, token: int, r: int) -> None:
        name, value = self.ids.kind.get(token, ("?", -1))
        if name == "PIECE_START":
            row.phase = TRACKS
        elif name == "TRACK_START":
            row.phase, row.bar, row.sounding = INST, -1, {}
        elif name == "INST":
            row.phase = DENSITY
        elif name == "DENSITY":
            row.phase = BARS
        elif name == "BAR_START":
            row.phase, row.bar, row.t, row.body = BODY, row.bar + 1, 0, 0
            row.step_kind, row.prev_delta = "", False
        elif name == "BAR_END":
            row.phase = BARS
        elif name == "TRACK_END":
            claimed: set[int] = set()
            for fill in row.fills:  # held notes that nothing later closes: the first fill holding one must
                if fill.track == row.track:
                    fill.close |= (set(fill.held) & set(row.sounding)) - claimed
                    claimed |= fill.close
            row.phase, row.track, row.sounding = TRACKS, row.track + 1, {}
        elif name == "FILL_IN":
            row.fills.append(_Fill(row.track, row.bar, dict(row.sounding)))
        elif name == "FILL_START":
            fill = row.fills[row.fill_index]
            row.phase, row.t, row.body, row.step_kind, row.prev_delta = FILL_BODY, 0, 0, "", False
            row.bar = fill.bar
            row.sounding, row.fill_opened = dict(fill.held), set()
        elif name == "FILL_END":
            row.phase, row.fill_index = FILLS, row.fill_index + 1
        elif name == "PIECE_END":
            row.phase = DONE
        elif name == "TIME_DELTA":
            row.t = min(row.t + value, STEPS_PER_BAR)
            row.step_kind, row.prev_delta, row.body = "", True, row.body + 1
        elif name in ("NOTE_ON", "NOTE_OFF"):
            now = row.bar * STEPS_PER_BAR + row.t
            if name == "NOTE_ON":
                row.sounding[value] = now
                if row.phase == FILL_BODY:
                    row.fill_opened.add(value)
            elif value in row.sounding:
                del row.sounding[value]
            else:  # a prompt's note closed whose opening was moved into a fill
                for fill in reversed(row.fills):
                    if fill.track == row.track:
                        fill.open.add(value)
                        break
                else:
                    self.repairs[r] += 1
            row.step_kind, row.step_pitch, row.prev_delta, row.body = name[5:].lower(), value, False, row.body + 1

    # ------------------------------------------------------------------------------------ allowed

    def allowed(self, row: _Row) -> list[int] | np.ndarray:
        ids = self.ids
        if row.phase == START:
            return [ids["PIECE_START"]]
        if row.phase == TRACKS:
            if row.track < self.tracks:
                return [ids["TRACK_START"]]
            row.phase = FILLS
        if row.phase == FILLS:
            if row.fill_index < len(row.fills):
                return [ids["FILL_START"]]
            return [ids["PIECE_END"]]
        if row.phase == INST:
            forced = self.instruments[row.track]
            return [forced] if forced is not None else self.inst_ids
        if row.phase == DENSITY:
            forced = self.densities[row.track]
            return [forced] if forced is not None else self.density_ids
        if row.phase == BARS:
            return [ids["BAR_START"] if row.bar + 1 < self.bars else ids["TRACK_END"]]
        if row.phase == BODY:
            return self._body(row)
        if row.phase == FILL_BODY:
            return self._fill_body(row)
        return [ids["PIECE_END"]]

    def _body(self, row: _Row) -> list[int] | np.ndarray:
        ids, t = self.ids, row.t
        last_bar = row.bar + 1 >= self.bars or (row.track, row.bar) in self.close_bars
        closing = row.body >= self.bar_cap
        now = row.bar * STEPS_PER_BAR + t
        closable = sorted(p for p, s in row.sounding.items() if s < now) if t > 0 else []
        if row.step_kind == "on":
            closable = []
        elif row.step_kind == "off":
            closable = [p for p in closable if p > row.step_pitch]
        if t >= STEPS_PER_BAR and last_bar and closable:
            closable = closable[:1]  # no later step in this track: close in rising order so all can close
        out = [int(ids.note_off[p]) for p in closable]
        bar_end_ok = not row.prev_delta and (not last_bar or not row.sounding)
        if bar_end_ok:
            if closing:  # over the cap: end the bar now (sounding notes carry over to the next)
                return [ids["BAR_END"]]
            out.append(ids["BAR_END"])
        parts = [np.asarray(out, np.int64)]
        may_open = t < STEPS_PER_BAR and len(row.sounding) < self.polyphony
        if may_open and (not closing or (row.prev_delta and not closable)):
            low = row.step_pitch if row.step_kind == "on" else -1
            ons = ids.note_on[low + 1 :]
            if row.sounding:
                ons = np.delete(ons, [p - low - 1 for p in row.sounding if p > low])
            parts.append(ons)
        need_time = closing and not bar_end_ok and not closable and not row.prev_delta
        if not row.prev_delta and (not closing or need_time):
            room = STEPS_PER_BAR - t
            top = room if row.sounding else room - 1  # a delta to the bar line must be followed by a NOTE_OFF
            parts.append(ids.delta[1 : top + 1])
        allowed = np.concatenate(parts)
        return allowed[allowed >= 0]

    def _fill_body(self, row: _Row) -> list[int]:
        ids, t = self.ids, row.t
        fill = row.fills[row.fill_index]
        now = row.bar * STEPS_PER_BAR + t
        closing = row.body >= self.bar_cap
        to_open = fill.open - set(row.sounding)
        held_left = fill.close & set(row.sounding)
        out: list[int] = []
        for p, s in sorted(row.sounding.items()):
            if t > 0 and s < now and p not in fill.open and (p in row.fill_opened or p in fill.close):
                out.append(int(ids.note_off[p]))
        extra = [p for p in row.sounding if p in row.fill_opened and p not in fill.open]
        if not to_open and not held_left and not extra:
            out.append(ids["FILL_END"])
        if t < STEPS_PER_BAR:
            # Notes the fill owes are always allowed; others only while they leave room for those.
            out.extend(int(ids.note_on[p]) for p in sorted(to_open))
            if not closing and len(row.sounding) + len(to_open) < self.polyphony + len(fill.held):
                out.extend(int(ids.note_on[p]) for p in range(128) if p not in row.sounding and p not in to_open)
        if not row.prev_delta or closing:
            # Openings still owed need a step before the bar line; closings need time after the openings.
            limit = STEPS_PER_BAR - 1 if to_open else STEPS_PER_BAR
            if not closing or (not out and t < limit) or (held_left and t == 0):
                out.extend(int(ids.delta[d]) for d in range(1, limit - t + 1))
        return [i for i in out if i >= 0]

    # ------------------------------------------------------------------------------------ processor

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        new = input_ids[:, self.seen :].tolist()
        self.seen = input_ids.shape[1]
        mask = np.ones(scores.shape, dtype=bool)
        for r, (row, tokens) in enumerate(zip(self.rows, new, strict=True)):
            for token in tokens:
                self._advance(row, token, r)
            allowed = self.allowed(row)
            assert len(allowed), f"grammar dead end in phase {row.phase}"  # an internal invariant
            mask[r, allowed] = False
        return scores.masked_fill(torch.from_numpy(mask).to(scores.device), NEG_INF)

    def finished(self, row: int) -> bool:
        return self.rows[row].phase == DONE

    def keep(self, row: int, length: int) -> None:
        """Every row takes row `row`'s state, `length` tokens in (best-of-N: the chosen candidate goes on)."""
        self.rows = [self.rows[row].copy() for _ in self.rows]
        self.repairs = [self.repairs[row]] * len(self.rows)
        self.seen = length


# ------------------------------------------------------------------------------------ conditioning


def track_spans(tokens: list[str]) -> list[list[str]]:
    """The TRACK_START ... TRACK_END runs of an mmm sequence."""
    spans, current = [], None
    for token in tokens:
        if token == "TRACK_START":
            current = [token]
        elif current is not None:
            current.append(token)
            if token == "TRACK_END":
                spans.append(current)
                current = None
    return spans


def split_bars(track: list[str]) -> tuple[list[str], list[list[str]]]:
    """A track's header (TRACK_START INST= DENSITY=) and its bars, each BAR_START ... BAR_END."""
    header, bars, current = [], [], None
    for token in track:
        if token == "BAR_START":
            current = [token]
        elif current is not None:
            current.append(token)
            if token == "BAR_END":
                bars.append(current)
                current = None
        elif token != "TRACK_END":
            header.append(token)
    return header, bars
