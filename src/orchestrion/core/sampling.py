"""The logits processors every token model shares, and the chain a `SamplingConfig` builds from them.

Processors follow transformers' `LogitsProcessor` convention, `processor(input_ids (B, T), scores (B, V))
-> scores`: each does one thing, checks its arguments when built (a temperature of 0 is an `InvalidRequest`
naming the field) and never modifies its inputs, so they also run inside `model.generate(logits_processor=...)`.

    Temperature, TopK, TopP, RepetitionPenalty    the usual filters
    RepetitionTrap                                bans the token that would repeat a phrase once more after it
                                                  came `repeats` times in a row (a loop a small model falls into)
    SamplingConfig                                how to sample; `from_request` reads the shared request fields
    build_processors(config, constraints)         the chain: constraints first (grammar masks, the trap), then
                                                  penalty, temperature, top-k, top-p

A processor holds no randomness: the draw is made by the loop that runs the chain
(`orchestrion.gpt.decoding.generate_tokens`) with a generator seeded from the request, so the same seed gives
the same tokens. Constraints that know an encoding live with it (`orchestrion.mmm.grammar`,
`orchestrion.abc.grammar`); the drivers that put it all together are `orchestrion.mmm.sampler` and
`orchestrion.abc.sampler`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from orchestrion.errors import InvalidRequest

if TYPE_CHECKING:
    from orchestrion.requests import ComposeRequest

NEG_INF = float("-inf")


class LogitsProcessor(Protocol):
    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor: ...


# ------------------------------------------------------------------------------------- processors


class Temperature:
    """Divide the logits by `temperature`: below 1 sharpens, above 1 flattens."""

    def __init__(self, temperature: float):
        if not isinstance(temperature, int | float) or not math.isfinite(temperature) or temperature <= 0:
            raise InvalidRequest(
                "temperature",
                f"must be a positive number, got {temperature!r}; for the most likely token every time use "
                "top_k=1 instead of a temperature of 0",
            )
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores if self.temperature == 1.0 else scores / self.temperature


class TopK:
    """Keep the `k` most likely tokens of each row (ties at the k-th value are kept too)."""

    def __init__(self, k: int):
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidRequest("top_k", f"must be a whole number >= 1, got {k!r} (0 in a request means 'off')")
        self.k = k

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.k >= scores.shape[-1]:
            return scores
        kth = torch.topk(scores, self.k, dim=-1).values[..., -1:]  # (B, 1)
        return scores.masked_fill(scores < kth, NEG_INF)


class TopP:
    """Nucleus sampling: keep the smallest set of most likely tokens whose probability reaches `p`."""

    def __init__(self, p: float, min_tokens_to_keep: int = 1):
        if not isinstance(p, int | float) or not 0 < p <= 1:
            raise InvalidRequest("top_p", f"must be in (0, 1], got {p!r} (1 keeps every token)")
        self.p = float(p)
        self.min_keep = max(1, int(min_tokens_to_keep))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.p >= 1.0:
            return scores
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)  # (B, V)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the mass before it already reaches p; the first min_keep always stay.
        drop = (cumulative - sorted_scores.softmax(dim=-1)) >= self.p
        drop[..., : self.min_keep] = False
        return scores.masked_fill(drop.scatter(-1, order, drop), NEG_INF)


class RepetitionPenalty:
    """CTRL's penalty on every token already in the sequence: divide positive logits, multiply negative ones."""

    def __init__(self, penalty: float, window: int | None = None):
        if not isinstance(penalty, int | float) or not math.isfinite(penalty) or penalty <= 0:
            raise InvalidRequest("repetition_penalty", f"must be a positive number, got {penalty!r} (1 is off)")
        self.penalty = float(penalty)
        self.window = window  # only the last `window` tokens count (music repeats on purpose at long range)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.penalty == 1.0 or input_ids.shape[-1] == 0:
            return scores
        ids = input_ids if self.window is None else input_ids[:, -self.window :]
        seen = torch.gather(scores, 1, ids)  # (B, T)
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return scores.scatter(1, ids, seen)


# ----------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample; `from_request` reads the shared ComposeRequest fields."""

    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    repetition_penalty: float = 1.0  # 1 = off
    repetition_window: int | None = 64
    max_new_tokens: int | None = None  # None: as many as the grammar needs
    seed: int = 0
    num_samples: int = 1
    trap_repeats: int = 4  # a phrase repeated this many times in a row is a trap
    trap_min_tokens: int = 12  # ... when the repeated stretch is at least this long
    abc_retries: int = 4

    def __post_init__(self) -> None:
        # Build the processors once to check every argument with its own message.
        build_processors(self)
        if self.num_samples < 1:
            raise InvalidRequest("num_samples", f"must be at least 1, got {self.num_samples}")
        if self.trap_repeats < 2:
            raise InvalidRequest("trap_repeats", f"must be at least 2, got {self.trap_repeats}")

    @classmethod
    def from_request(cls, request: ComposeRequest, **overrides: object) -> SamplingConfig:
        values = {
            "temperature": request.temperature,
            "top_k": request.top_k,
            "top_p": request.top_p,
            "repetition_penalty": request.repetition_penalty,
            "max_new_tokens": request.max_tokens,
            "seed": request.seed if request.seed is not None else 0,
            "num_samples": request.num_samples,
        }
        values.update(overrides)
        return cls(**values)


def build_processors(config: SamplingConfig, constraints: Sequence[LogitsProcessor] = ()) -> list[LogitsProcessor]:
    """The chain: constraints (grammar masks, trap breaker) first, then penalty, temperature, top-k, top-p.

    Constraints go first so that the filters below see only the tokens that are allowed at all.
    """
    chain: list[LogitsProcessor] = list(constraints)
    if config.repetition_penalty != 1.0 or not isinstance(config.repetition_penalty, int | float):
        chain.append(RepetitionPenalty(config.repetition_penalty, config.repetition_window))
    temperature = Temperature(config.temperature)
    if temperature.temperature != 1.0:
        chain.append(temperature)
    if config.top_k != 0:
        if not isinstance(config.top_k, int) or config.top_k < 0:
            raise InvalidRequest("top_k", f"must be a whole number >= 0 (0 is off), got {config.top_k!r}")
        chain.append(TopK(config.top_k))
    top_p = TopP(config.top_p)
    if top_p.p < 1.0:
        chain.append(top_p)
    return chain


# ---------------------------------------------------------------------------------- repetition trap


def n_prompt_done(prompt_len: int | None, position: int, total: int) -> bool:
    """True when `position` lies after the prompt (a stop token inside a prompt does not end a row)."""
    return prompt_len is not None and position >= prompt_len


class RepetitionTrap:
    """Break loops: when the last tokens repeat one phrase `repeats` times in a row, ban its continuation.

    A phrase is any period p (1..max_period tokens): the trap fires when the last (repeats - 1) * p
    tokens (and at least `min_tokens`) each equal the token p before them, i.e. the phrase has come
    `repeats` times; the token that would start repetition number repeats + 1 is then banned, unless it
    is the only one allowed (a forced token). Run lengths per period are kept incrementally, so a step
    costs one vectorised comparison per row. `fired` counts the breaks per row.
    """

    def __init__(
        self,
        batch_size: int,
        repeats: int = 4,
        min_tokens: int = 12,
        max_period: int = 256,
        skip_prompt: bool = True,
        stop_ids: Sequence[int] = (),
    ):
        if repeats < 2:
            raise InvalidRequest("trap_repeats", f"a trap needs at least 2 repeats, got {repeats}")
        self.repeats, self.min_tokens, self.max_period = repeats, min_tokens, max_period
        self.periods = np.arange(1, max_period + 1)
        self.runs = np.zeros((batch_size, max_period), np.int64)  # (B, P): positions equal to p back
        self.history: list[list[int]] = [[] for _ in range(batch_size)]
        self.fired = [0] * batch_size
        self.seen = 0
        self.skip_prompt = skip_prompt
        self.prompt_len: int | None = None
        self.stop_ids = set(stop_ids)  # a row that has ended is left alone (the loop pads it with a stop id)
        self.done = [False] * batch_size

    def _advance(self, input_ids: torch.Tensor) -> None:
        new = input_ids[:, self.seen :].tolist()
        if self.prompt_len is None:
            self.prompt_len = input_ids.shape[1]
        for row, tokens in enumerate(new):
            hist, runs = self.history[row], self.runs[row]
            for token in tokens:
                if self.done[row]:
                    break
                if token in self.stop_ids and n_prompt_done(self.prompt_len, len(hist), input_ids.shape[1]):
                    self.done[row] = True
                n = len(hist)
                back = np.full(self.max_period, -1, np.int64)  # back[p - 1] = the token p positions ago
                k = min(n, self.max_period)
                if k:
                    back[:k] = hist[n - 1 : n - 1 - k : -1] if n - 1 - k >= 0 else hist[n - 1 :: -1]
                runs[:] = np.where(back == token, runs + 1, 0)
                hist.append(token)
        self.seen = input_ids.shape[1]

    def banned(self, row: int) -> list[int]:
        """Tokens that would extend a trap in `row` now."""
        if self.done[row]:
            return []
        runs, hist = self.runs[row], self.history[row]
        need = np.maximum((self.repeats - 1) * self.periods, self.min_tokens)
        hits = np.flatnonzero(runs >= need)
        out = []
        for i in hits:
            p = int(self.periods[i])
            # The trap must lie in generated tokens: a repeating prompt is the user's business.
            if self.skip_prompt and len(hist) - need[i] - p < (self.prompt_len or 0):
                continue
            out.append(hist[len(hist) - p])
        return sorted(set(out))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._advance(input_ids)
        out = scores
        for row in range(scores.shape[0]):
            ban = self.banned(row)
            if not ban:
                continue
            allowed = torch.isfinite(out[row])
            keep = allowed.clone()
            keep[ban] = False
            if bool(keep.any()) and bool((allowed & ~keep).any()):
                if out is scores:
                    out = scores.clone()
                out[row] = out[row].masked_fill(~keep, NEG_INF)
                self.fired[row] += 1
        return out
