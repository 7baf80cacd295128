"""Harmony for the Markov composer: chord symbols, their chain, and progressions planned in phrases.

Chord codes (`orchestrion.markov.events`) are the pitch classes sounding on a beat. Harmony reads each as a
**symbol**: a root (pitch class, the piece moved to tonic C) and a quality from `QUALITIES`, the template
that explains the code best (`symbols_of_codes`: root, third, fifth and seventh present count for it,
notes outside it against it, a root in the bass breaks ties). Codes no template explains (a single note, a
cluster) have no symbol. A model's first-order chord counts, mapped onto symbols, give a dense
`(N_SYMBOLS + 1)^2` matrix of per-beat transitions (the last row: how pieces begin), so every model
`train markov` made has a harmony chain, older ones too, and a model trained on melodies alone falls back on
`PRIOR`, a textbook progression chain.

A progression is drawn slot by slot (a slot is a beat or half a bar, by style) from that chain, `beats`
steps at a time, towards the phrase plan of `slot_target`: the first chord I; 4-bar phrases closing in turn
on a half cadence (V on the second half of the bar) and an authentic cadence (V then I); V-I into a final
bar of I. Each draw is conditioned on meeting the phrase's remaining targets, p(s | prev) x P(targets met |
s), with backward messages computed once per phrase (a few matrix-vector products on ~85 symbols), then
re-weighed by the repetition penalty and cut by top-k and top-p (`Progression`).
"""

from __future__ import annotations

import math
import random

import numpy as np

from orchestrion.markov import events as ev

QUALITIES = (
    ("major", (0, 4, 7)),
    ("minor", (0, 3, 7)),
    ("diminished", (0, 3, 6)),
    ("dominant 7th", (0, 4, 7, 10)),
    ("minor 7th", (0, 3, 7, 10)),
    ("half-diminished 7th", (0, 3, 6, 10)),
    ("diminished 7th", (0, 3, 6, 9)),
)  # no major 7th: its seventh sits a semitone from the root, the clash the composer keeps off the beats
N_QUALITIES = len(QUALITIES)
N_SYMBOLS = 1 + 12 * N_QUALITIES  # 0 = no chord
BOS = N_SYMBOLS  # matrix row of "before the piece"
MAJOR, MINOR, DOMINANT_7TH = 0, 1, 3


def symbol(root: int, quality: int) -> int:
    return 1 + (root % 12) * N_QUALITIES + quality


# Per symbol: its pitch classes, root first (root, third, fifth[, seventh]), and their 12-bit mask.
SYMBOL_PCS: list[tuple[int, ...]] = [()] + [
    tuple((root + i) % 12 for i in QUALITIES[q][1]) for root in range(12) for q in range(N_QUALITIES)
]
SYMBOL_MASK: list[int] = [sum(1 << pc for pc in pcs) for pcs in SYMBOL_PCS]
TONIC = {"major": (symbol(0, MAJOR),), "minor": (symbol(0, MINOR), symbol(0, MAJOR))}  # minor may end Picardy
DOMINANT = (symbol(7, MAJOR), symbol(7, DOMINANT_7TH))
_DIATONIC_ROOTS = (0, 2, 3, 4, 5, 7, 8, 9, 11)  # roots of major and harmonic-minor chords: ties go to them


_MASKS = np.asarray([*SYMBOL_MASK, 0], dtype=np.int64)  # per symbol and BOS
_CLASHES = np.asarray([((m << 1) | (m >> 11) | (m >> 1) | (m << 11)) & 0xFFF for m in _MASKS], dtype=np.int64)
FIT_OUTSIDE, FIT_CLASH = 0.3, 0.02  # weight of a chord per sounding note outside it, and per note it clashes with
# Per pitch class (in C): each chord's weight for a note of that class, softly (a clash weighs FIT_CLASH) and
# hard (a clash weighs 0); BOS weighs 0.
_SOFT = [np.where(_MASKS >> pc & 1, 1.0, np.where(_CLASHES >> pc & 1, FIT_CLASH, FIT_OUTSIDE)) for pc in range(12)]
_HARD = [np.where(_CLASHES >> pc & 1, 0.0, w) for pc, w in enumerate(_SOFT)]
_SOFT_ANY = [np.where(_CLASHES >> pc & 1, FIT_CLASH, 1.0) for pc in range(12)]  # without chord_pull
_HARD_ANY = [np.where(_CLASHES >> pc & 1, 0.0, 1.0) for pc in range(12)]
for _w in (*_SOFT, *_HARD, *_SOFT_ANY, *_HARD_ANY):
    _w[BOS] = 0.0
_FITS: dict[tuple[tuple[int, ...], int, bool], tuple[np.ndarray, np.ndarray] | None] = {}


def fit(sounding: list[int], tonic: int, pull: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
    """How well each chord fits the notes already sounding on its beats (pitch-class masks in the key), as
    (hard, soft) weights per symbol: the product over the notes of 1 for a chord tone, FIT_OUTSIDE for a
    note outside the chord (1 without `pull`), and for a note a semitone from a chord tone 0 (hard) or
    FIT_CLASH (soft). None when nothing sounds."""
    key = (tuple(sounding), tonic, pull)
    if key not in _FITS:
        hard = soft = None
        hards, softs = (_HARD, _SOFT) if pull else (_HARD_ANY, _SOFT_ANY)
        for mask in sounding:
            for pc in range(12):
                if mask >> pc & 1:
                    c = (pc - tonic) % 12  # the symbols are in C
                    hard = hards[c] if hard is None else hard * hards[c]
                    soft = softs[c] if soft is None else soft * softs[c]
        if len(_FITS) > 20_000:
            _FITS.clear()
        _FITS[key] = None if hard is None else (hard, soft)
    return _FITS[key]


def transpose_pcs(sym: int, shift: int) -> tuple[int, ...]:
    return tuple((pc + shift) % 12 for pc in SYMBOL_PCS[sym])


def transpose_mask(sym: int, shift: int) -> int:
    mask = SYMBOL_MASK[sym]
    shift %= 12
    return ((mask << shift) | (mask >> (12 - shift))) & 0xFFF


# ------------------------------------------------------------------------------------- reading codes


def _code_digits(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes -> (12-bit pitch-class masks, the lowest pitch class kept or -1)."""
    codes = np.asarray(codes, dtype=np.int64)
    size = np.zeros(len(codes), dtype=np.int64)
    for k in range(1, ev.MAX_CHORD_PCS + 1):
        size[codes >= ev.CHORD_OFFSETS[k]] = k
    value = codes - np.asarray(ev.CHORD_OFFSETS)[size]
    mask = np.zeros(len(codes), dtype=np.int64)
    bass = np.full(len(codes), -1, dtype=np.int64)
    for _ in range(ev.MAX_CHORD_PCS):  # lowest digit first: the last pitch class is the lowest
        has = size > 0
        digit = value % 12
        bass = np.where(has & (bass < 0), digit, bass)
        mask |= np.where(has, 1 << digit, 0)
        value //= 12
        size = size - has
    return mask, bass


def symbols_of_codes(codes: np.ndarray) -> np.ndarray:
    """Chord codes -> symbols (0 where no template explains the code), vectorised over the codes."""
    mask, bass = _code_digits(codes)
    if len(mask) == 0:
        return np.zeros(0, dtype=np.int64)
    n = N_SYMBOLS - 1
    roots = np.repeat(np.arange(12), N_QUALITIES)  # (S,)
    chord = np.asarray(SYMBOL_MASK[1:], dtype=np.int64)  # (S,)
    m = mask[:, None]
    has = [(m >> np.asarray([pcs[i] if len(pcs) > i else 12 for pcs in SYMBOL_PCS[1:]])) & 1 for i in range(4)]
    extra = _popcount(m & ~chord[None, :])  # (N, S) notes outside the chord
    covered = _popcount(m & chord[None, :])
    sevenths = np.asarray([len(pcs) == 4 for pcs in SYMBOL_PCS[1:]])
    score = 3.0 * has[0] + 2.0 * has[1] + has[2] + 1.5 * has[3] - 2.5 * extra - 0.6 * sevenths
    score = score + 0.5 * (bass[:, None] == roots[None, :]) + 0.3 * np.isin(roots, _DIATONIC_ROOTS)[None, :]
    ok = (covered >= 2) & ((has[0] + has[1]) > 0)
    score = np.where(ok, score, -np.inf)
    best = np.argmax(score, axis=1)
    found = np.take_along_axis(score, best[:, None], axis=1)[:, 0] >= 3.0
    assert n == score.shape[1]
    return np.where(found, best + 1, 0)


_POPCOUNT = np.asarray([bin(m).count("1") for m in range(4096)], dtype=np.int64)


def _popcount(x: np.ndarray) -> np.ndarray:
    return _POPCOUNT[x]


# ----------------------------------------------------------------------------------------- the chain

# A textbook chain in C (degree -> following degrees with weights), for models that never saw chords and to
# keep every plan reachable: major I ii iii IV V V7 vi vii°, minor i ii° III iv V V7 VI vii°.
_MAJOR_PRIOR = {
    (0, MAJOR): {(5, MAJOR): 3, (7, MAJOR): 3, (9, MINOR): 2, (2, MINOR): 2, (0, MAJOR): 2},
    (2, MINOR): {(7, MAJOR): 3, (7, DOMINANT_7TH): 3, (11, 2): 1, (2, MINOR): 1},
    (4, MINOR): {(9, MINOR): 2, (5, MAJOR): 2},
    (5, MAJOR): {(7, MAJOR): 3, (0, MAJOR): 2, (2, MINOR): 2, (7, DOMINANT_7TH): 1, (5, MAJOR): 1},
    (7, MAJOR): {(0, MAJOR): 4, (9, MINOR): 1, (7, DOMINANT_7TH): 1, (7, MAJOR): 1},
    (7, DOMINANT_7TH): {(0, MAJOR): 4, (9, MINOR): 1},
    (9, MINOR): {(2, MINOR): 2, (5, MAJOR): 2, (7, MAJOR): 1, (4, MINOR): 1},
    (11, 2): {(0, MAJOR): 2},
}
_MINOR_PRIOR = {
    (0, MINOR): {(5, MINOR): 3, (7, MAJOR): 3, (8, MAJOR): 2, (2, 2): 1, (0, MINOR): 2, (3, MAJOR): 1},
    (2, 2): {(7, MAJOR): 3, (7, DOMINANT_7TH): 2},
    (3, MAJOR): {(8, MAJOR): 2, (5, MINOR): 2},
    (5, MINOR): {(7, MAJOR): 3, (0, MINOR): 2, (2, 2): 1, (7, DOMINANT_7TH): 1},
    (7, MAJOR): {(0, MINOR): 4, (8, MAJOR): 1, (7, DOMINANT_7TH): 1, (7, MAJOR): 1},
    (7, DOMINANT_7TH): {(0, MINOR): 4, (8, MAJOR): 1},
    (8, MAJOR): {(5, MINOR): 2, (2, 2): 1, (7, MAJOR): 2},
    (11, 2): {(0, MINOR): 2},
}
PRIOR_WEIGHT = 0.5  # pseudo-counts per row: enough to reach any cadence, too few to be heard next to real counts


def prior_matrix(mode: str) -> np.ndarray:
    table = _MAJOR_PRIOR if mode == "major" else _MINOR_PRIOR
    prior = np.zeros((N_SYMBOLS + 1, N_SYMBOLS + 1))
    for (root, quality), moves in table.items():
        row = symbol(root, quality)
        total = sum(moves.values())
        for (r, q), weight in moves.items():
            prior[row, symbol(r, q)] = weight / total
    prior[BOS, TONIC[mode][0]] = 1.0
    return prior


def harmony_counts(keys: np.ndarray, counts: np.ndarray, vocab: int, bos: int) -> np.ndarray:
    """First-order chord counts (keys prev * vocab + next) -> per-beat symbol transition counts, (S+1, S+1)."""
    keys = np.asarray(keys, dtype=np.int64)
    prev, nxt = np.divmod(keys, vocab)
    codes = np.unique(np.concatenate([prev, nxt]))  # sorted; bos (the largest) maps to BOS
    symbols = symbols_of_codes(np.where(codes == bos, 0, codes))
    symbols[codes == bos] = BOS
    a, b = symbols[np.searchsorted(codes, prev)], symbols[np.searchsorted(codes, nxt)]
    keep = (a > 0) & (b > 0) & (b != BOS)
    matrix = np.zeros((N_SYMBOLS + 1, N_SYMBOLS + 1))
    np.add.at(matrix, (a[keep], b[keep]), np.asarray(counts, dtype=np.float64)[keep])
    return matrix


def slot_matrix(beat_counts: np.ndarray, mode: str, beats: int, temperature: float) -> np.ndarray:
    """Row-stochastic transitions from one slot of `beats` beats to the next, at `temperature`.

    The per-beat counts plus `PRIOR_WEIGHT` of the prior are normalised and raised to the `beats`-th power
    (the chord `beats` beats later, passing chords in between summed out). The temperature re-weighs the
    moves to other chords (p ** (1 / T)) but keeps the chance of holding the chord, so that it changes
    how adventurous the harmony is, not how fast it moves.
    """
    counts = beat_counts + PRIOR_WEIGHT * prior_matrix(mode)
    totals = counts.sum(axis=1, keepdims=True)
    step = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    matrix = np.linalg.matrix_power(step, beats) if beats > 1 else step.copy()
    matrix[:, BOS] = 0.0
    totals = matrix.sum(axis=1, keepdims=True)
    matrix = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    if temperature != 1.0:
        hold = np.diag(matrix).copy()
        moves = matrix.copy()
        np.fill_diagonal(moves, 0.0)
        peak = moves.max(axis=1, keepdims=True)
        moves = np.divide(moves, peak, out=np.zeros_like(moves), where=peak > 0) ** (1.0 / temperature)
        totals = moves.sum(axis=1, keepdims=True)
        moves = np.divide(moves, totals, out=np.zeros_like(moves), where=totals > 0)
        matrix = moves * (1.0 - hold)[:, None] + np.diag(hold)
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)


# ---------------------------------------------------------------------------------------- the plan


def final_bar_start(bars: int) -> int:
    """The bar in which the piece's closing chord is struck (the last; with one bar, that bar)."""
    return bars - 1


def phrase_end(bar: int, bars: int, phrase_bars: int = 4) -> str | None:
    """The cadence that closes at `bar`: "final", "half", "authentic" or None.

    Phrases are `phrase_bars` long; they close in turn on a half and an authentic cadence (an 8-bar period
    is two phrases), and the last bar closes the piece. A phrase that would leave fewer than two bars before
    the final one is merged into the last phrase.
    """
    if bar == bars - 1:
        return "final"
    if (bar + 1) % phrase_bars or bar >= bars - 2:
        return None
    return "half" if ((bar + 1) // phrase_bars) % 2 else "authentic"


def slot_target(bar: int, slot: int, slots: int, bars: int, phrase_bars: int = 4) -> str | None:
    """ "I", "V" or None: what the plan asks of one slot (`slots` per bar)."""
    second_half = slot >= slots // 2
    if bar == 0 and slot == 0:
        return "I"
    if bars == 1:
        return "I" if slot == slots - 1 else ("V" if slot == slots - 2 else None)
    if bar == bars - 1:
        return "I"
    if bar == bars - 2:
        return "V" if second_half else None
    kind = phrase_end(bar, bars, phrase_bars)
    if kind == "half":
        return "V" if second_half else None
    if kind == "authentic":
        return "I" if second_half else "V"
    return None


class Progression:
    """Draws the chord of each slot in order (`next()`), meeting the plan of `slot_target`.

    `matrix` is `slot_matrix(...)` at the request's temperature and `plan` the same at temperature 1, from
    which the backward messages come (at a low temperature they would see one path only and hold on to the
    chord nearest the cadence until it comes); the repetition penalty divides the weight of going back to
    a chord by `penalty` ** (times it sounded in the last bar's slots / temperature), and top-k / top-p
    cut the candidates after it, as for the melodies. Each phrase's backward messages are computed when
    its first slot is drawn, so streaming the first measure costs one phrase, not the piece.
    """

    def __init__(
        self,
        matrix: np.ndarray,
        plan: np.ndarray,
        mode: str,
        bars: int,
        slots: int,
        rng: random.Random,
        *,
        top_k: int = 0,
        top_p: float = 1.0,
        penalty: float = 1.0,
        temperature: float = 1.0,
        phrase_bars: int = 4,
    ):
        self.matrix, self.plan, self.bars, self.slots, self.rng = matrix, plan, bars, slots, rng
        self.phrase_bars = phrase_bars
        self.top_k, self.top_p = top_k, top_p
        self.log_penalty = math.log(penalty) / temperature if penalty != 1.0 else 0.0
        allowed = {"I": np.zeros(N_SYMBOLS + 1), "V": np.zeros(N_SYMBOLS + 1)}
        allowed["I"][list(TONIC[mode])] = 1.0
        allowed["V"][list(DOMINANT)] = 1.0
        self.allowed = allowed
        self.prev = BOS
        self.slot_index = 0
        self.targets: dict[int, str | None] = {}  # slot -> the plan's chord, for the phrases begun
        self.recent: list[int] = []
        self.beta: dict[int, np.ndarray] = {}

    def _phrase(self, first: int) -> None:
        """Backward messages for the slots of the phrase that starts at slot `first`."""
        bar = first // self.slots
        last_bar = bar
        while phrase_end(last_bar, self.bars, self.phrase_bars) is None:
            last_bar += 1
        end = (last_bar + 1) * self.slots
        beta = np.ones(N_SYMBOLS + 1)
        self.beta = {}
        for t in range(end - 1, first - 1, -1):
            target = self.targets[t] = slot_target(t // self.slots, t % self.slots, self.slots, self.bars,
                                                   self.phrase_bars)  # fmt: skip
            if t < end - 1:
                beta = self.plan @ beta
            if target is not None:
                beta = beta * self.allowed[target]
            peak = beta.max()
            beta = beta / peak if peak > 0 else beta
            self.beta[t] = beta

    def next(self, fit: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        """The next slot's chord; `fit` (hard and soft weights per symbol, see `fit`) re-weighs the
        candidates: chords that clash with a note sounding come only when no other chord can."""
        t = self.slot_index
        if t not in self.beta:
            self._phrase(t)
        target = self.targets[t]
        weights = self.matrix[self.prev] * self.beta[t]
        if fit is not None:
            fitted = weights * fit[0]
            weights = fitted if fitted.sum() > 0 else weights * fit[1]
        if target is None and self.log_penalty:
            for s in set(self.recent):
                if s != self.prev:  # holding is the chain's business, coming back the penalty's
                    weights[s] *= math.exp(-self.log_penalty * self.recent.count(s))
        if not weights.sum() > 0:  # no path the chain knows: take the plan's chord (or stay)
            weights = self.allowed[target].copy() if target is not None else self.beta[t].copy()
            if not weights.sum() > 0:
                weights[self.prev if self.prev != BOS else TONIC["major"][0]] = 1.0
        chosen = _draw(weights, self.rng.random(), self.top_k, self.top_p)
        self.prev = chosen
        self.recent = [*self.recent[-(self.slots - 1) :], chosen] if self.slots > 1 else [chosen]
        self.slot_index += 1
        return chosen


def _draw(weights: np.ndarray, u: float, top_k: int, top_p: float) -> int:
    """One index drawn in proportion to `weights`, among the `top_k` largest and the `top_p` nucleus."""
    if top_k or top_p < 1.0:
        order = np.argsort(-weights, kind="stable")
        sorted_w = weights[order]
        if top_k:
            sorted_w = sorted_w[:top_k]
        cum = np.cumsum(sorted_w)
        if top_p < 1.0:
            cut = int(np.searchsorted(cum, top_p * cum[-1])) + 1
            cum = cum[:cut]
        i = int(np.searchsorted(cum, u * cum[-1], side="right"))
        return int(order[min(i, len(cum) - 1)])
    cum = np.cumsum(weights)
    i = int(np.searchsorted(cum, u * cum[-1], side="right"))
    return min(i, len(cum) - 1)
