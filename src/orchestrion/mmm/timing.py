"""Bar positions: the time step of every mmm token in its window, a feature a model can read beside it.

    TYPE_TOKENS                 "POS=0" .. "POS=64": the feature's tokens (added to a model's vocabulary)
    token_types(ids, vocab)     the POS token id of every token of one or more mmm sequences (vectorised)
    BarClock                    the same, token by token, for a sampler (one state per row)

mmm writes a window track after track, so the alto's bar 3 is far in the sequence from the soprano's bar
3, and a small model has to learn to find it. With the bar-position feature every token also gets the
embedding of a POS=k token, k = 16 * (its bar in the track) + (the step in the bar where it stands, before
its own TIME_DELTA moves time on), 0..63; the track headers, TRACK_END and PIECE_END get POS=64. The same
moment of every voice then shares an input feature. It rides on GPT-2's own `token_type_ids` (embedded
with the word table), so such a model is still a plain `GPT2LMHeadModel`; its config.json says
`"token_types": "bar-steps"`, and everything that runs it (training, the samplers, the likelihood) passes
`token_type_ids`. Measured on the chorales: docs/gpt.md.

A token's feature depends only on it and the tokens before it, so it can be computed while sampling.
"""

from __future__ import annotations

import numpy as np

STEPS_PER_BAR = 16
HEADER = 64  # the feature of the track headers and the ends
TYPE_TOKENS = [f"POS={k}" for k in range(HEADER + 1)]
TOKEN_TYPES = "bar-steps"  # what config.json's "token_types" says for a model that reads the feature


def _deltas(vocab: dict[str, int]) -> np.ndarray:
    delta = np.zeros(max(vocab.values()) + 1, np.int64)
    for token, i in vocab.items():
        if token.startswith("TIME_DELTA="):
            delta[i] = int(token.partition("=")[2])
    return delta


def token_types(ids: np.ndarray, vocab: dict[str, int]) -> np.ndarray:
    """The POS token id (in `vocab`) of every token of `ids`, mmm sequences laid end to end."""
    ids = np.asarray(ids, np.int64)
    index = np.arange(len(ids))
    delta = _deltas(vocab)[ids]
    track_start = ids == vocab["TRACK_START"]
    bar_start = ids == vocab["BAR_START"]
    bars = np.cumsum(bar_start)
    last_track = np.maximum.accumulate(np.where(track_start, index, 0))
    bar_in_track = bars - bars[last_track]  # BAR_STARTs since the track began, this one included
    before = np.cumsum(delta) - delta  # steps before each token (its own TIME_DELTA not yet)
    last_bar = np.maximum.accumulate(np.where(bar_start, index, 0))
    position = STEPS_PER_BAR * (bar_in_track - 1) + before - before[last_bar]
    header = (bar_in_track == 0) | (ids == vocab["TRACK_END"]) | (ids == vocab["PIECE_END"])
    position = np.where(header, HEADER, np.clip(position, 0, HEADER - 1))
    return np.asarray([vocab[t] for t in TYPE_TOKENS], np.int64)[position]


class BarClock:
    """`token_types` token by token: `feed(row, token_id)` returns the token's POS id (one state per row)."""

    def __init__(self, vocab: dict[str, int], rows: int):
        self.delta = _deltas(vocab)
        self.type_ids = np.asarray([vocab[t] for t in TYPE_TOKENS], np.int64)
        self.track_start, self.bar_start = vocab["TRACK_START"], vocab["BAR_START"]
        self.ends = {vocab["TRACK_END"], vocab["PIECE_END"]}
        self.bar = [0] * rows  # BAR_STARTs since the track began
        self.step = [0] * rows

    def feed(self, row: int, token: int) -> int:
        if token == self.track_start:
            self.bar[row], self.step[row] = 0, 0
        elif token == self.bar_start:
            self.bar[row], self.step[row] = self.bar[row] + 1, 0
        if self.bar[row] == 0 or token in self.ends:
            position = HEADER
        else:
            position = min(max(STEPS_PER_BAR * (self.bar[row] - 1) + self.step[row], 0), HEADER - 1)
        self.step[row] += int(self.delta[token]) if token < len(self.delta) else 0
        return int(self.type_ids[position])

    def keep(self, row: int) -> None:
        """Every row takes row `row`'s clock (best-of-N)."""
        self.bar = [self.bar[row]] * len(self.bar)
        self.step = [self.step[row]] * len(self.step)
