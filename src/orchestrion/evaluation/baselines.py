"""The baselines a model's likelihood is read against, on the same held-out data.

A model that does not beat these has not learned the music:

- token data (mmm, ABC): a unigram and a bigram of the tokens, fitted on the train split (the bigram
  interpolated with the unigram by Witten-Bell, so no token has probability 0), scored on exactly the
  validation windows the model was scored on; in bits per token and bits per character;
- audio (8-bit mu-law): the histogram of the classes (a unigram), and the previous sample (the distribution
  of the step from one class to the next), fitted on the train split, in bits per byte.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def _witten_bell_bigram(train: np.ndarray, size: int) -> tuple[np.ndarray, object]:
    """Unigram probabilities (add-one) and a function giving P(b | a) for arrays a, b."""
    unigram = (np.bincount(train, minlength=size) + 1.0) / (len(train) + size)
    pairs = train[:-1] * size + train[1:]
    keys, counts = np.unique(pairs, return_counts=True)
    states, first = np.unique(keys // size, return_index=True)
    totals = np.add.reduceat(counts, first).astype(np.float64)
    distinct = np.diff(np.r_[first, len(keys)]).astype(np.float64)
    total_of = np.zeros(size)
    types_of = np.zeros(size)
    total_of[states], types_of[states] = totals, distinct

    def prob(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        query = a * size + b
        at = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
        n = np.where(keys[at] == query, counts[at], 0).astype(np.float64)
        t, d = total_of[a], types_of[a]
        return np.where(t > 0, (n + d * unigram[b]) / np.maximum(t + d, 1e-12), unigram[b])

    return unigram, prob


def token_baselines(dataset_root: str | Path, starts: list[int], length: int, split: str = "validation") -> dict:
    """Unigram and bigram bits per token and per character on the windows a model was scored on."""
    from tokenizers import Tokenizer

    from orchestrion.core.shards import TokenDataset

    dataset = TokenDataset(dataset_root)
    tokenizer = Tokenizer.from_file(str(dataset.tokenizer_path))
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    train = dataset.split("train").concatenated().astype(np.int64)
    held = dataset.split(split).concatenated().astype(np.int64)
    unigram, bigram = _witten_bell_bigram(train, size)
    uni_bits = bi_bits = 0.0
    tokens = chars = 0
    for start in starts:
        window = held[start : start + length + 1]
        previous, target = window[:-1], window[1:]
        uni_bits -= float(np.log2(unigram[target]).sum())
        bi_bits -= float(np.log2(bigram(previous, target)).sum())
        tokens += len(target)
        chars += len(tokenizer.decode(target.tolist(), skip_special_tokens=False))
    if tokens == 0:
        return {"skipped": "no windows to score"}
    return {
        "unigram": {"bits_per_token": uni_bits / tokens, "bits_per_character": uni_bits / max(chars, 1)},
        "bigram": {"bits_per_token": bi_bits / tokens, "bits_per_character": bi_bits / max(chars, 1)},
        "fitted_on": "train",
        "tokens": tokens,
    }


def audio_baselines(dataset_root: str | Path, *, windows: int = 32, seq_len: int = 16384,
                    split: str = "validation") -> dict:  # fmt: skip
    """Mu-law histogram and previous-sample baselines in bits per byte, on the windows `evaluate` reads."""
    from orchestrion.sashimi.dataset import AudioDataset

    dataset = AudioDataset(dataset_root)
    train = np.concatenate(dataset.split("train").windows(seq_len, 256)).astype(np.int64)
    held = np.concatenate(dataset.split(split).windows(seq_len, windows)).astype(np.int64)
    classes = 256
    histogram = (np.bincount(train, minlength=classes) + 1.0) / (len(train) + classes)
    steps = np.diff(train) + classes - 1  # 0 .. 2 * classes - 2
    step_p = (np.bincount(steps, minlength=2 * classes - 1) + 1.0) / (len(steps) + 2 * classes - 1)
    # P(x_t | x_{t-1}) is the step distribution renormalised over the classes reachable from x_{t-1}.
    reachable = np.array([step_p[classes - 1 - a : 2 * classes - 1 - a].sum() for a in range(classes)])
    previous, target = held[:-1], held[1:]
    prev_bits = -np.log2(step_p[target - previous + classes - 1] / reachable[previous])
    return {
        "mulaw_histogram": {"bits_per_byte": float(-np.log2(histogram[held]).mean())},
        "previous_sample": {"bits_per_byte": float(prev_bits.mean())},
        "fitted_on": "train",
        "samples": int(len(held)),
    }


def gain(model_bits: float, baseline_bits: float) -> float:
    """How much lower the model's bits are than the baseline's, as a share (0.3 = 30% below)."""
    return 1.0 - model_bits / baseline_bits if baseline_bits and not math.isnan(baseline_bits) else math.nan
