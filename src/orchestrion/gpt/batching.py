"""Concurrent streams of one GPT model share their decoding steps: one batched forward for all of them.

    forward_rows(decoders, ids)   one step of several KVDecoders (ids (B_i, 1) each) as one forward
    StepBatcher                   coalesces the one-token steps of every KVDecoder over one model
    share_steps(model)            install a model's StepBatcher (what `GPTComposer.share_steps` calls)

A server composes many pieces at once, each stream on its own thread with its own `KVDecoder` (its own
key/value cache, length and number of rows). Once a model has a batcher, a one-token step of any decoder
over it goes through `StepBatcher.step`: the thread that finds no batch running takes every step waiting
(itself included), runs them as one `forward_rows` and hands each decoder its logits; steps that arrive
meanwhile wait for the next batch. Streams join and leave between steps, and no batch waits for a stream
that is busy elsewhere (running its grammar, or paced to its listener).

    for each layer:                                    N = the rows of all decoders
        h = layer_norm(x)                              (N, C)     one matmul for all rows
        q, k, v = split(h @ W_qkv)                     per decoder: its rows, its cache, its length
        att = softmax(q k^T) v                         per decoder (a prefix common to its rows read once)
        x = x + att @ W_proj ; x = x + mlp(x)          (N, C)     one matmul each for all rows

Same seed, same piece: a row gets the same bits in a batch as alone. Every one-token step runs through
`forward_rows`, alone as a batch of one decoder, and its matmuls always see at least `MIN_ROWS` rows:
MKL's sgemm gives a row the same bits for any number of rows from 4 on (not from 1 to 3), and the
attention of a decoder is the same computation in both cases. `tests/gpt/test_batching.py` checks it on
the built-in models; on a GPU the rows agree to rounding only (cuBLAS picks kernels by shape).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from orchestrion.errors import InvalidRequest

if TYPE_CHECKING:
    from orchestrion.gpt.decoding import KVDecoder

MIN_ROWS = 4  # matmuls of fewer rows take another path through the BLAS, with other rounding
MAX_ROWS = 4096  # rows in one batched step; steps past it wait for the next one
COMMON_MIN = 128  # a common prefix of rows read once from this length on (shorter: n copies cost less)
LINGER = 0.004  # seconds a batch waits for the decoders that stepped lately and are not waiting yet
RECENT = 0.05  # a decoder that stepped this recently is counted on for the next batch


def forward_rows(
    decoders: Sequence[KVDecoder], ids: Sequence[torch.Tensor], types: Sequence[torch.Tensor | None] | None = None
) -> list[torch.Tensor]:
    """One step of each decoder (all over the same model): ids[i] (B_i, 1) -> logits (B_i, V), caches extended.
    `types[i]` (B_i, 1) or None: token_type_ids, embedded with the word table (a model with `token_types`)."""
    d0 = decoders[0]
    rows = [int(t.shape[0]) for t in ids]
    for d, t in zip(decoders, ids, strict=True):
        if t.dim() != 2 or t.shape[1] != 1:
            raise ValueError(f"forward_rows takes one token per row, not {tuple(t.shape)}")
        if d.length + 1 > d.max_len:
            raise InvalidRequest("max_tokens", f"the sequence would pass the cache length of {d.max_len}")
    C, H, D, N = d0.wte.shape[1], d0.n_head, d0.head_dim, sum(rows)
    types = types if types is not None else [None] * len(ids)
    x = [
        d.wte[t[:, 0]] + d.wpe[d.length] + (d.wte[u[:, 0]] if u is not None else 0)
        for d, t, u in zip(decoders, ids, types, strict=True)
    ]
    pad = [x[0].new_zeros(MIN_ROWS - N, C)] if N < MIN_ROWS else []  # rows that only fill the matmuls
    x = torch.cat(x + pad) if len(x) + len(pad) > 1 else x[0]  # (P, C), P = max(N, MIN_ROWS)
    for layer, (l1w, l1b, aw, ab, pw, pb, l2w, l2b, fw, fb, mw, mb, scale) in enumerate(d0.blocks):
        h = torch.layer_norm(x, (C,), l1w, l1b, d0.eps)  # the aten op: F.layer_norm adds Python checks a step
        qkv = torch.addmm(ab, h, aw)  # (P, 3C): Conv1D, x @ W + b
        parts, r = [], 0
        for d, n in zip(decoders, rows, strict=True):
            q, k, v = qkv[r : r + n].view(n, 1, 3, H, D).permute(2, 0, 3, 1, 4)  # each (n, H, 1, D)
            end = d.length + 1
            cache_k, cache_v = d.layers[layer]  # (B, H, Tmax, D) each
            cache_k[:n, :, d.length : end] = k
            cache_v[:n, :, d.length : end] = v
            d.common = min(d.common, d.length)  # a length set back: what follows may differ by row
            if n > 1 and d.common >= COMMON_MIN:
                parts.append(_attend_shared(q, cache_k, cache_v, d.common, end, scale))
            else:
                keys, values = cache_k[:n, :, :end], cache_v[:n, :, :end]  # (n, H, end, D)
                weights = torch.softmax((q @ keys.transpose(-1, -2)) * scale, dim=-1)  # (n, H, 1, end)
                parts.append((weights @ values).transpose(1, 2).reshape(n, C))  # (n, C)
            r += n
        att = torch.cat(parts + pad) if len(parts) + len(pad) > 1 else parts[0]  # (P, C)
        x = x + torch.addmm(pb, att, pw)
        h = torch.layer_norm(x, (C,), l2w, l2b, d0.eps)
        x = x + torch.addmm(mb, F.gelu(torch.addmm(fb, h, fw), approximate=d0.approximate), mw)
    for d in decoders:
        d.length += 1
    logits = torch.layer_norm(x, (C,), *d0.ln_f, d0.eps) @ d0.lm_head.T  # (P, V)
    if d0.lm_bias is not None:
        logits = logits + d0.lm_bias
    return [logits[:N]] if len(rows) == 1 else list(logits[:N].split(rows))


def _attend_shared(
    q: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, shared: int, end: int, scale: float
) -> torch.Tensor:
    """Attention of n rows whose first `shared` cached positions are the same (best-of-N candidates after
    their common prefix): q (n, H, 1, D) -> (n, C). The prefix is read once, from row 0, as one matmul of
    all n rows per head, instead of n matrix-vector products over n copies of it; the rows' own positions
    (shared .. end) as before. One softmax over both parts."""
    n, H, _, D = q.shape
    qh = q.view(n, H, D).transpose(0, 1)  # (H, n, D)
    front = (qh @ cache_k[0, :, :shared].transpose(-1, -2)).transpose(0, 1)  # (n, H, shared)
    own = (q @ cache_k[:n, :, shared:end].transpose(-1, -2)).view(n, H, end - shared)  # (n, H, end - shared)
    weights = torch.softmax(torch.cat([front, own], dim=-1) * scale, dim=-1)  # (n, H, end)
    out = (weights[..., :shared].transpose(0, 1) @ cache_v[0, :, :shared]).transpose(0, 1)  # (n, H, D)
    out = out + (weights[..., shared:].unsqueeze(2) @ cache_v[:n, :, shared:end]).view(n, H, D)
    return out.reshape(n, H * D)  # (n, C)


class StepsCancelled(Exception):
    """Raised in a stream's thread whose `stop_event` is set: its client left, its steps end."""


@dataclass
class _Step:
    decoder: KVDecoder
    ids: torch.Tensor
    types: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    error: BaseException | None = None
    done: bool = False
    lead: bool = False  # this step's thread runs the next batch
    wake: threading.Event = field(default_factory=threading.Event)  # set when done, or made the lead


@dataclass
class StepStats:
    """How the steps were shared: batched forwards run, steps (one decoder's) and rows they held."""

    batches: int = 0
    steps: int = 0
    rows: int = 0
    largest: int = 0  # the most decoders in one batch
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, steps: int, rows: int) -> None:
        with self.lock:
            self.batches += 1
            self.steps += steps
            self.rows += rows
            self.largest = max(self.largest, steps)

    def to_json(self) -> dict:
        with self.lock:
            return {
                "batches": self.batches,
                "steps": self.steps,
                "rows": self.rows,
                "largest": self.largest,
                "steps_per_batch": round(self.steps / self.batches, 2) if self.batches else 0.0,
            }


class StepBatcher:
    """Runs the one-token steps of concurrent decoders over one model together (module docstring).

    No thread of its own: the thread that finds no batch running leads, and runs the next batch for all;
    when a batch ends, its steps' threads are woken one by one (each waits on its own event: waking all
    of them to find out whose step it was cost 50 streams more than the forward) and the lead passes to
    the first step still waiting. Before it starts, the lead waits up to `linger` seconds for the decoders
    that stepped in the last `RECENT` seconds and are not waiting yet (they are running their grammar
    between two steps): one batch of all of them costs little more than a batch of a few.
    """

    def __init__(self, model: torch.nn.Module, max_rows: int = MAX_ROWS, linger: float = LINGER):
        self.model = model
        self.max_rows = max_rows
        self.linger = linger
        self.stats = StepStats()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # only the lead waits on it, while it gathers
        self._waiting: list[_Step] = []
        self._busy = False
        self._seen: dict[int, float] = {}  # id(decoder) -> when it last asked for a step

    def step(self, decoder: KVDecoder, ids: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """`decoder.forward(ids, types)` for ids (B, 1), run in the next batch."""
        stop = getattr(threading.current_thread(), "stop_event", None)
        if stop is not None and stop.is_set():  # a server's stream whose client left: no more steps
            raise StepsCancelled("the stream was stopped")
        mine = _Step(decoder, ids, types)
        with self._lock:
            self._waiting.append(mine)
            self._seen[id(decoder)] = time.monotonic()
            if self._busy:
                self._arrived.notify()
            else:
                self._busy = mine.lead = True
        while not mine.done:
            if not mine.lead:
                mine.wake.wait()
                mine.wake.clear()
                continue
            mine.lead = False
            with self._lock:
                self._gather()
                batch = self._take()
            try:
                self._run(batch)
            finally:
                with self._lock:
                    if self._waiting:  # the lead passes on; the batcher stays busy
                        self._waiting[0].lead = True
                        self._waiting[0].wake.set()
                    else:
                        self._busy = False
                for step in batch:
                    step.wake.set()
        if mine.error is not None:
            raise mine.error
        assert mine.logits is not None
        return mine.logits

    def _gather(self) -> None:
        """Wait (lock held, released while waiting) for the recently seen decoders to ask for their step."""
        now = time.monotonic()
        self._seen = {k: t for k, t in self._seen.items() if now - t < RECENT}
        deadline = now + self.linger
        while len(self._waiting) < len(self._seen) and (left := deadline - time.monotonic()) > 0:
            self._arrived.wait(left)

    def _take(self) -> list[_Step]:
        batch, rows = [], 0
        while self._waiting and (not batch or rows + self._waiting[0].ids.shape[0] <= self.max_rows):
            step = self._waiting.pop(0)
            batch.append(step)
            rows += int(step.ids.shape[0])
        return batch

    def _run(self, batch: list[_Step]) -> None:
        from orchestrion.gpt.decoding import decode_threads

        ready = []
        for step in batch:  # a decoder whose cache is full fails alone; the others go on
            if step.decoder.length + 1 > step.decoder.max_len:
                step.error = InvalidRequest(
                    "max_tokens", f"the sequence would pass the cache length of {step.decoder.max_len}"
                )
            else:
                ready.append(step)
        try:
            if ready:
                rows = sum(int(s.ids.shape[0]) for s in ready)
                with torch.inference_mode(), decode_threads(self.model, rows):
                    logits = forward_rows([s.decoder for s in ready], [s.ids for s in ready], [s.types for s in ready])
                for step, out in zip(ready, logits, strict=True):
                    step.logits = out
                self.stats.add(len(ready), rows)
        except BaseException as exc:  # handed to every stream of the batch, each ends with it
            for step in ready:
                step.error = exc
        finally:
            for step in batch:
                step.done = True


def share_steps(model: torch.nn.Module) -> StepBatcher:
    """The model's StepBatcher, installed on first call: decoders built from then on share their steps.

    On a CPU the process keeps one intra-op thread from then on: how MKL splits a matmul's rows over threads
    depends on the rows of the whole batch, and with it the rounding of each row; a server gets its
    parallelism from its concurrent streams instead.
    """
    from orchestrion.gpt.decoding import SHARED_STEPS

    if next(model.parameters()).device.type == "cpu":
        torch.set_num_threads(1)
    batcher = SHARED_STEPS.get(model)
    if batcher is None:
        batcher = SHARED_STEPS[model] = StepBatcher(model)
    return batcher
