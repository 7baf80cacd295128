"""Plagiarism check for generated tunes: how much of a tune is a copy of a training tune.

A tune becomes a sequence of note events, each the pitch interval from the previous note and the note's
duration, so a transposed copy has exactly the same events as the original. Two figures per tune:

- the longest run of consecutive events it shares with any one training tune, and
- the share of its 8-event n-grams that occur anywhere in training.

The index is built once: every training n-gram is hashed (64-bit polynomial hash, vectorised with numpy)
and sorted, so a lookup is a binary search; runs are extended only from where a match starts, so the
work is proportional to what actually matches. Saved as .npz (allow_pickle=False).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrion.core.abcmidi import compile_notes
from orchestrion.core.files import atomic_path
from orchestrion.errors import BadInput

N = 8  # notes per n-gram
DURATION_UNIT = 20  # ticks at abc2midi's 480 per quarter: 1/24 quarter, exact for 32nds and triplets
MAX_POSTINGS = 64  # matches of one n-gram extended at most; a copy matches at many rarer n-grams anyway
_BASE = np.uint64(0x9E3779B97F4A7C15)


def events_from_notes(notes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(track, time, pitch, duration) notes -> int64 events (interval, duration) of the melody.

    The melody is the first track with notes, and the highest note where several start together
    (abc2midi puts chord symbols and accompaniment on later tracks).
    """
    if not notes:
        return np.zeros(0, dtype=np.int64)
    first = min(t for t, *_ in notes)
    top: dict[int, tuple[int, int]] = {}
    for track, time, pitch, duration in notes:
        if track == first and (time not in top or pitch > top[time][0]):
            top[time] = (pitch, duration)
    melody = [top[t] for t in sorted(top)]
    pitch = np.array([p for p, _ in melody], dtype=np.int64)
    dur = np.array([d for _, d in melody], dtype=np.int64)
    interval = np.clip(np.diff(pitch), -63, 63)
    dq = np.clip(np.rint(dur[1:] / DURATION_UNIT), 0, 4095).astype(np.int64)
    return (interval + 64) * 4096 + dq


def events_from_abc(abc_text: str, *, timeout: float = 10) -> np.ndarray:
    """Compile a tune with abc2midi and return its melody events; BadInput when it does not compile."""
    validity, notes = compile_notes(abc_text, timeout=timeout)
    if notes is None:
        raise BadInput("abc2midi could not compile the tune: " + "; ".join(validity.messages[:3]))
    return events_from_notes(notes)


def ngram_hashes(events: np.ndarray, n: int = N) -> np.ndarray:
    """uint64 hash of every n-event window (empty when the tune is shorter than n)."""
    events = np.asarray(events, dtype=np.int64)
    if len(events) < n:
        return np.zeros(0, dtype=np.uint64)
    windows = np.lib.stride_tricks.sliding_window_view(events.astype(np.uint64), n)
    powers = np.array([_BASE ** np.uint64(k) for k in range(n - 1, -1, -1)], dtype=np.uint64)
    with np.errstate(over="ignore"):
        return (windows * powers).sum(axis=1, dtype=np.uint64)


@dataclass
class NoveltyReport:
    """The plagiarism figures of one tune against the training index."""

    notes: int
    longest_run: int  # events shared in a row with one training tune (0 when under N)
    ngram_share: float  # share of the tune's N-grams found in training
    nearest: str | None  # id of the training tune holding the longest run
    copied: bool

    def to_json(self) -> dict:
        return dict(self.__dict__)


class NoveltyIndex:
    """N-gram index of a training corpus; `check(events)` says how much of a tune it already holds."""

    def __init__(
        self,
        events: np.ndarray,
        starts: np.ndarray,
        ids: list[str],
        hashes: np.ndarray,
        positions: np.ndarray,
        *,
        max_share: float = 0.5,
        max_run: int = 24,
    ):
        self.events, self.starts, self.ids = events, starts, ids
        self.hashes, self.positions = hashes, positions
        self.max_share, self.max_run = max_share, max_run

    @classmethod
    def build(cls, tunes: list[np.ndarray], ids: list[str], **thresholds) -> NoveltyIndex:
        if len(tunes) != len(ids):
            raise ValueError("one id per tune")
        lengths = np.array([len(t) for t in tunes], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        events = np.concatenate([np.asarray(t, dtype=np.int64) for t in tunes]) if tunes else np.zeros(0, np.int64)
        all_hashes, all_pos = [], []
        for k, tune in enumerate(tunes):
            h = ngram_hashes(tune)
            all_hashes.append(h)
            all_pos.append(starts[k] + np.arange(len(h), dtype=np.int64))
        hashes = np.concatenate(all_hashes) if all_hashes else np.zeros(0, np.uint64)
        positions = np.concatenate(all_pos) if all_pos else np.zeros(0, np.int64)
        order = np.argsort(hashes, kind="stable")
        return cls(events, starts, list(ids), hashes[order], positions[order], **thresholds)

    def save(self, path: Path) -> None:
        path = Path(path)
        meta = {"ids": self.ids, "n": N, "max_share": self.max_share, "max_run": self.max_run}
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no .npz to the name
            np.savez(
                f,
                events=self.events,
                starts=self.starts,
                hashes=self.hashes,
                positions=self.positions,
                meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
            )

    @classmethod
    def load(cls, path: Path) -> NoveltyIndex:
        path = Path(path)
        if not path.is_file():
            raise BadInput("no novelty index here; 'orchestrion encode abc' writes one as novelty.npz", path)
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode("utf-8"))
            return cls(
                z["events"],
                z["starts"],
                meta["ids"],
                z["hashes"],
                z["positions"],
                max_share=meta["max_share"],
                max_run=meta["max_run"],
            )

    def _tune_at(self, position: int) -> int:
        return int(np.searchsorted(self.starts, position, side="right") - 1)

    def check(self, events: np.ndarray, *, exclude: str | None = None) -> NoveltyReport:
        """Longest shared run and n-gram share of a tune's events; `exclude` skips one training tune by id."""
        q = np.asarray(events, dtype=np.int64)
        h = ngram_hashes(q)
        if len(h) == 0:
            return NoveltyReport(len(q), 0, 0.0, None, False)
        skip = self.ids.index(exclude) if exclude is not None and exclude in self.ids else -1
        lo = np.searchsorted(self.hashes, h, side="left")
        hi = np.searchsorted(self.hashes, h, side="right")
        found = hi > lo
        best, best_tune = 0, None
        for i in np.flatnonzero(found):
            for p in self.positions[lo[i] : min(hi[i], lo[i] + MAX_POSTINGS)]:
                tune = self._tune_at(int(p))
                if tune == skip:
                    continue
                start, end = int(self.starts[tune]), int(self.starts[tune + 1])
                # A match that continues one starting a note earlier was already measured from there.
                if i > 0 and p > start and self.events[p - 1] == q[i - 1]:
                    continue
                length = 0
                limit = min(len(q) - i, end - p)
                while length < limit and self.events[p + length] == q[i + length]:
                    length += 1
                if length > best:
                    best, best_tune = length, tune
        if skip >= 0:  # n-grams found only in the excluded tune do not count
            own = set(ngram_hashes(self.events[self.starts[skip] : self.starts[skip + 1]]).tolist())
            found = np.array(
                [
                    bool(f) and (int(x) not in own or self._elsewhere(int(x), skip))
                    for f, x in zip(found, h, strict=True)
                ],
                dtype=bool,
            )
        share = float(found.mean())
        run_limit = min(self.max_run, max(N, int(0.8 * len(q))))
        copied = share >= self.max_share or best >= run_limit
        return NoveltyReport(
            len(q), best, round(share, 4), self.ids[best_tune] if best_tune is not None else None, copied
        )

    def _elsewhere(self, hash_value: int, skip: int) -> bool:
        lo = np.searchsorted(self.hashes, np.uint64(hash_value), side="left")
        hi = np.searchsorted(self.hashes, np.uint64(hash_value), side="right")
        return any(self._tune_at(int(p)) != skip for p in self.positions[lo:hi])

    def check_abc(self, abc_text: str) -> NoveltyReport:
        return self.check(events_from_abc(abc_text))
