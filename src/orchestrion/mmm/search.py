"""Best-of-N decoding at bar level: N candidates for each free bar, the critic keeps one, all go on from it.

    best_of_n(model, units, n=..., ...) -> Iterator[Choice]

A window is a list of `Unit`s in sequence order: forced tokens (structure, given bars), each optionally
followed by a free cell that is sampled until its BAR_END. The N candidates of a cell are the rows of one
batch over a shared key/value cache (`orchestrion.gpt.decoding.KVDecoder`): they start from the same
state, a row that closes its bar waits (fed padding, which no state keeps), and the critic's choice is
copied to every row (cache, grammar and rules state) before the next unit. N = 1 is plain sampling under
the same constraints. Forced tokens go through the model as one block, not token by token.

    for each unit:
        feed unit.forced as one block
        sample N rows until each has sampled BAR_END      # processors: grammar, voice rules, filters
        w = argmax critic(row) ; every row := row w        # cache, ids, processor states
        yield Choice(cell, tokens of row w, terms)

Deterministic for a given `generator` seed. Rows never reorder anything but the choice, so N candidates
cost one batched forward per step (about 2.6x one row at N = 8 on a CPU, not 8x). The rows are the same up
to the cell (`KVDecoder.common`), so their attention reads that prefix once for all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from orchestrion.core.sampling import LogitsProcessor
from orchestrion.errors import InvalidRequest
from orchestrion.gpt.decoding import KVDecoder, decode_threads, sample_next
from orchestrion.mmm.timing import BarClock


@dataclass
class Unit:
    """Tokens to feed as they are, then (when `cell` is set) a bar to sample until its BAR_END."""

    forced: list[int]
    cell: tuple[int, int] | None = None  # (track, bar of the window)
    draw: int = 0  # tokens drawn from the model before the cell, the same for every row (a DENSITY)


@dataclass
class Choice:
    """The candidate kept for a cell: its tokens, its critic terms and score, and the candidates' scores."""

    cell: tuple[int, int]
    tokens: list[int]
    terms: dict = field(default_factory=dict)
    scores: list[float] = field(default_factory=list)


def best_of_n(
    model: torch.nn.Module,
    units: Sequence[Unit],
    *,
    n: int,
    processors: Sequence[LogitsProcessor],
    stateful: Sequence[object],
    judge: Callable[[int, tuple[int, int], list[int], float], tuple[float, dict]],
    bar_end: int,
    pad: int,
    generator: torch.Generator,
    reserve: int = 4,
    max_cap: int = 96,
    on_cap: Callable[[int], None] | None = None,
    clock: BarClock | None = None,
) -> Iterator[Choice]:
    """Run the units (module docstring); `judge(row, cell, tokens, logprob)` scores a candidate.

    `stateful` are the processors with per-row state and a `keep(row, length)` method (the grammar, the
    voice rules). Before each cell, the context left (less the forced tokens still to come and `reserve`
    tokens per cell to close a bar) is shared among the cells left, at most `max_cap` each, and
    `on_cap(cap)` hands the grammar that budget: no bar can starve the ones after it. With a `clock`
    (`orchestrion.mmm.timing.BarClock`), every token goes in with its bar position as token_type_ids.
    """

    def feed(tokens: torch.Tensor) -> torch.Tensor:  # (N, T) -> logits (N, V)
        if clock is None:
            return decoder.forward(tokens)
        types = [[clock.feed(r, int(t)) for t in row] for r, row in enumerate(tokens.tolist())]
        return decoder.forward(tokens, torch.tensor(types, dtype=torch.long, device=tokens.device))

    context = int(model.config.n_positions)
    forced_after = np.cumsum([len(u.forced) for u in units][::-1])[::-1]  # forced tokens from unit i on
    cells_after = np.cumsum([u.cell is not None for u in units][::-1])[::-1]
    if forced_after[0] + reserve * cells_after[0] >= context:
        raise InvalidRequest(
            "bars", f"one window ({forced_after[0]} given tokens) does not fit the model's context of {context}"
        )
    device = next(model.parameters()).device
    ids = torch.zeros(n, context, dtype=torch.long, device=device)  # (N, context)
    length = 0
    logits: torch.Tensor | None = None
    with torch.inference_mode(), decode_threads(model, n):
        decoder = KVDecoder(model, n, context)
        for u, unit in enumerate(units):
            if unit.forced:
                block = torch.tensor(unit.forced, dtype=torch.long, device=device).expand(n, -1)
                ids[:, length : length + block.shape[1]] = block
                logits = feed(block)  # (N, V)
                length += block.shape[1]
            if logits is None:
                raise InvalidRequest("prompt", "a window must start with a forced token")
            drawn = []
            for _ in range(unit.draw):  # one draw (row 0's) for every row: the model's own choice, not the critic's
                scores = logits.float()
                for processor in processors:
                    scores = processor(ids[:, :length], scores)
                token = sample_next(scores, generator)[:1].expand(n)  # (N,)
                ids[:, length] = token
                logits = feed(token[:, None])
                length += 1
                drawn.append(int(token[0]))
            if unit.cell is None:
                continue
            decoder.common = length  # every row has had the same tokens since the last choice
            left = int(cells_after[u])
            later = int(forced_after[u + 1]) if u + 1 < len(units) else 0
            cap = min(max_cap, (context - length - later - reserve * left) // left)
            if cap < 4:
                raise InvalidRequest("bars", f"the tracks of one window do not fit the model's context of {context}")
            if on_cap is not None:
                on_cap(cap)
            active = torch.ones(n, dtype=torch.bool, device=device)
            sizes = torch.zeros(n, dtype=torch.long, device=device)
            logprob = torch.zeros(n, dtype=torch.float64, device=device)
            after = logits.clone()  # each row's logits once its bar is closed
            step = 0
            while bool(active.any()):
                if length + step >= context:
                    raise InvalidRequest("bars", f"a window ran past the model's context of {context} tokens")
                scores = logits.float()
                for processor in processors:
                    scores = processor(ids[:, : length + step], scores)
                token = sample_next(scores, generator)  # (N,)
                lp = torch.log_softmax(logits.float(), dim=-1).gather(1, token[:, None]).squeeze(1)
                token = torch.where(active, token, pad)
                logprob += torch.where(active, lp, 0).double()
                ids[:, length + step] = token
                sizes += active.long()
                closed = active & (token == bar_end)
                active &= ~closed
                logits = feed(token[:, None])
                after[closed] = logits[closed]
                step += 1
            judged = [
                judge(r, unit.cell, ids[r, length : length + int(sizes[r])].tolist(), float(logprob[r]))
                for r in range(n)
            ]
            best = max(range(n), key=lambda r: judged[r][0])  # the first of equals: deterministic
            end = length + int(sizes[best])
            ids[:, :end] = ids[best, :end].clone()
            decoder.keep(best, end)
            for processor in stateful:
                processor.keep(best, end)
            if clock is not None:
                clock.keep(best)
            logits = after[best].expand(n, -1).clone()
            yield Choice(unit.cell, drawn + ids[best, length:end].tolist(), judged[best][1], [s for s, _ in judged])
            length = end
