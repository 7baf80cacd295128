"""Likelihood of held-out pieces under a Markov model's counts (Witten-Bell interpolation across orders)."""

from __future__ import annotations

import math

import numpy as np

from orchestrion.errors import BadInput
from orchestrion.markov import events as ev
from orchestrion.markov.counts import LINES, ORDERS, VOCAB, chain_name, transition_keys


def markov_likelihood(composer, scores: list) -> dict:
    """Log-likelihood per event of held-out pieces: high and low lines and beat chords, in their key's mode.

    Witten-Bell interpolation across orders (2, 1, 0, then add-one over the vocabulary) gives every event
    a probability, so a piece with a transition never seen in training still has a finite score.
    """
    tables: dict = {}

    def table(mode: str, line: str, order: int):
        key = (mode, line, order)
        if key not in tables:
            keys, counts = composer.counts.get(chain_name(mode, line, order), (np.zeros(0, np.uint32), np.zeros(0)))
            keys, counts = keys.astype(np.int64), counts.astype(np.float64)
            states = keys // VOCAB[line]
            uniq, first = np.unique(states, return_index=True)
            totals = np.add.reduceat(counts, first) if len(first) else np.zeros(0)
            distinct = np.diff(np.r_[first, len(keys)]).astype(np.float64)
            tables[key] = (keys, counts, uniq, totals, distinct)
        return tables[key]

    def lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if len(sorted_keys) == 0:
            return np.zeros(len(query))
        at = np.clip(np.searchsorted(sorted_keys, query), 0, len(sorted_keys) - 1)
        return np.where(sorted_keys[at] == query, values[at], 0.0)

    nll = dict.fromkeys(LINES, 0.0)
    unigram_nll = 0.0  # order 0 alone (add-one): the baseline the chains must beat
    events = dict.fromkeys(LINES, 0)
    pieces = 0
    for score in scores:
        try:
            piece = ev.encode(score)
        except BadInput:
            continue
        pieces += 1
        for line in LINES:
            seq = getattr(piece, line)
            if len(seq) == 0:
                continue
            keys = transition_keys([seq], line)
            size = VOCAB[line]
            k0, c0, *_ = table(piece.mode, line, 0)
            prob = (lookup(k0, c0, keys[0].astype(np.int64)) + 1.0) / (c0.sum() + size)
            unigram_nll += float(-np.log(prob).sum())
            for order in range(1, ORDERS[line] + 1):
                query = keys[order].astype(np.int64)
                ks, cs, states, totals, distinct = table(piece.mode, line, order)
                n = lookup(ks, cs, query)
                t = lookup(states, totals, query // size)
                d = lookup(states, distinct, query // size)
                prob = np.where(t > 0, (n + d * prob) / np.maximum(t + d, 1e-12), prob)
            nll[line] += float(-np.log(prob).sum())
            events[line] += len(prob)
    total = sum(events.values())
    if total == 0:
        raise BadInput("no held-out piece had notes the Markov model can read")
    out = {
        "pieces": pieces,
        "events": total,
        "log_likelihood_per_event": -sum(nll.values()) / total,
        "bits_per_event": sum(nll.values()) / total / math.log(2),
    }
    for line in LINES:
        if events[line]:
            out[f"bits_per_event_{line}"] = nll[line] / events[line] / math.log(2)
    out["perplexity"] = math.exp(sum(nll.values()) / total)
    out["baseline"] = {"unigram": {"bits_per_event": unigram_nll / total / math.log(2)}}
    return out
