"""The GPT sampling loop: GPT-2 one step at a time over a key/value cache, with a processor chain.

    generate_tokens(model, prompt_ids (B, T), config, processors, stop_ids, ...) -> Iterator[(B,) ids]
    generate_all(...)      the same, collected: the new tokens of each row
    KVDecoder              GPT-2's forward, incremental, over the model's own weights
    Report                 what happened while sampling (traps broken, retries, tokens), for a piece's report

`model` is a `transformers.GPT2LMHeadModel`. The loop runs its own incremental GPT-2 forward (`KVDecoder`)
with a preallocated key/value cache: on a CPU at batch 1 the per-step overhead of `model.generate()` (cache
objects, mask building, stopping criteria) costs more than the arithmetic of a small model, so skipping it
is where the speed comes from. `KVDecoder` is checked against the model's own forward in the tests.

One-token steps run through `orchestrion.gpt.batching.forward_rows`; once a server has called
`batching.share_steps(model)`, the steps of concurrent streams over that model run as one batched forward
(`SHARED_STEPS`), each row with the bits it would have alone.

Each step runs the processors (`orchestrion.core.sampling`, plus an encoding's grammar) over the scores and
draws from the softmax with a generator seeded from `config.seed`; a row that has produced a stop token
yields -1 from then on. Small steps run on one thread, whatever the machine's load, so that the same seed
gives the same tokens. The drivers are `orchestrion.mmm.sampler` and `orchestrion.abc.sampler`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from orchestrion.core.sampling import LogitsProcessor, SamplingConfig, build_processors
from orchestrion.errors import InvalidRequest
from orchestrion.gpt.batching import forward_rows

# model -> its StepBatcher (orchestrion.gpt.batching.share_steps): the one-token steps of every KVDecoder
# built over that model then run together with those of the other streams.
SHARED_STEPS: weakref.WeakKeyDictionary[torch.nn.Module, object] = weakref.WeakKeyDictionary()

# ------------------------------------------------------------------------------------- the decoder


class KVDecoder:
    """GPT-2's forward pass, one step at a time, over a preallocated key/value cache.

    Uses the parameters of a `GPT2LMHeadModel` in place (no copy). `forward(ids)` appends T positions to
    the cache and returns the logits of the last one; `length` can be set back to drop cached positions.
    `common`: positions before it are the same in every row (after `keep`, or as a caller declares), and a
    one-token step of several rows reads them once (`orchestrion.gpt.batching.forward_rows`).
    """

    def __init__(self, model: torch.nn.Module, batch_size: int, max_len: int):
        cfg = model.config
        if max_len > cfg.n_positions:
            raise InvalidRequest("max_tokens", f"{max_len} positions exceed the model's context of {cfg.n_positions}")
        if cfg.activation_function not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu"):
            raise InvalidRequest("model", f"unsupported GPT-2 activation {cfg.activation_function!r}")
        tr = model.transformer
        self.model = model
        self.n_head = cfg.n_head
        self.head_dim = cfg.n_embd // cfg.n_head
        self.eps = cfg.layer_norm_epsilon
        self.approximate = "none" if cfg.activation_function == "gelu" else "tanh"
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.wte, self.wpe = tr.wte.weight, tr.wpe.weight
        self.ln_f = (tr.ln_f.weight, tr.ln_f.bias)
        self.lm_head = model.lm_head.weight  # (V, C), tied to wte in GPT-2
        self.lm_bias = getattr(model.lm_head, "bias", None)
        self.blocks = []
        for i, block in enumerate(tr.h):
            scale = self.head_dim**-0.5 if cfg.scale_attn_weights else 1.0
            if cfg.scale_attn_by_inverse_layer_idx:
                scale /= float(i + 1)
            self.blocks.append(
                (
                    block.ln_1.weight,
                    block.ln_1.bias,
                    block.attn.c_attn.weight,
                    block.attn.c_attn.bias,
                    block.attn.c_proj.weight,
                    block.attn.c_proj.bias,
                    block.ln_2.weight,
                    block.ln_2.bias,
                    block.mlp.c_fc.weight,
                    block.mlp.c_fc.bias,
                    block.mlp.c_proj.weight,
                    block.mlp.c_proj.bias,
                    scale,
                )
            )
        shape = (len(self.blocks), batch_size, cfg.n_head, max_len, self.head_dim)
        # Never read before written (attention reads positions < length only): no zeroing of 2 x 8 MiB a window.
        self.k = torch.empty(shape, device=self.device, dtype=self.dtype)  # (L, B, H, Tmax, D)
        self.v = torch.empty(shape, device=self.device, dtype=self.dtype)
        self.layers = [(self.k[i], self.v[i]) for i in range(len(self.blocks))]  # (B, H, Tmax, D) views
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0
        # Positions 0 .. common - 1 are the same in every row (set by `keep` and by a caller that fed every
        # row the same tokens): one-token steps then read that prefix once for all rows.
        self.common = 0
        batcher = SHARED_STEPS.get(model)
        self.shared: Callable[..., torch.Tensor] | None = batcher.step if batcher else None

    def keep(self, row: int, length: int) -> None:
        """Every row takes row `row`'s first `length` cached positions (best-of-N: the chosen row goes on)."""
        start = min(self.common, length)  # positions before it are the same in every row already
        for cache in (self.k, self.v):
            cache[:, : self.batch_size, :, start:length] = cache[:, row : row + 1, :, start:length].clone()
        self.length = self.common = length

    def forward(self, ids: torch.Tensor, types: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, T) -> logits (B, V) of the last position; the T positions join the cache. `types` (B, T):
        token_type_ids, embedded with the word table as GPT-2 does (a model whose config has `token_types`)."""
        B, T = ids.shape
        if T == 1:  # one token per row: shared with concurrent streams when the model has a batcher
            return self.shared(self, ids, types) if self.shared is not None else forward_rows([self], [ids], [types])[0]
        start, end = self.length, self.length + T
        self.common = min(self.common, start)
        if end > self.max_len:
            raise InvalidRequest("max_tokens", f"the sequence would pass the cache length of {self.max_len}")
        C, H, D = self.wte.shape[1], self.n_head, self.head_dim
        x = self.wte[ids] + self.wpe[start:end]  # (B, T, C)
        if types is not None:
            x = x + self.wte[types]
        # a block of new positions sees the cache and, causally, itself
        mask = torch.ones(T, end, dtype=torch.bool, device=self.device).tril(diagonal=start)
        for layer, (l1w, l1b, aw, ab, pw, pb, l2w, l2b, fw, fb, mw, mb, scale) in enumerate(self.blocks):
            h = F.layer_norm(x, (C,), l1w, l1b, self.eps)
            qkv = torch.addmm(ab, h.view(B * T, C), aw).view(B, T, 3, H, D)  # Conv1D: x @ W + b
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
            self.k[layer, :B, :, start:end] = k
            self.v[layer, :B, :, start:end] = v
            keys, values = self.k[layer, :B, :, :end], self.v[layer, :B, :, :end]  # (B, H, end, D)
            att = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=scale)  # (B, H, T, D)
            att = att.transpose(1, 2).reshape(B * T, C)
            x = x + torch.addmm(pb, att, pw).view(B, T, C)
            h = F.layer_norm(x, (C,), l2w, l2b, self.eps).view(B * T, C)
            h = F.gelu(torch.addmm(fb, h, fw), approximate=self.approximate)
            x = x + torch.addmm(mb, h, mw).view(B, T, C)
        self.length = end
        last = F.layer_norm(x[:, -1], (C,), *self.ln_f, self.eps)  # (B, C)
        logits = last @ self.lm_head.T  # (B, V)
        return logits if self.lm_bias is None else logits + self.lm_bias


def _forward_no_cache(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The model's own full forward, last position only: the reference the cached path must match."""
    return model(input_ids=ids, use_cache=False).logits[:, -1]


# ---------------------------------------------------------------------------------------- the loop


@contextmanager
def _decode_threads(model: torch.nn.Module, batch_size: int) -> Iterator[None]:
    """One intra-op thread while a decoding step is too small to share.

    A step of a small model is a few MFLOP: splitting it over threads costs more in synchronisation
    than it saves, and on a busy machine waiting threads slow it down many times over.
    """
    cfg = model.config
    flops = 24 * cfg.n_layer * cfg.n_embd**2 * batch_size  # about 2 x parameters x rows
    before = torch.get_num_threads()
    threads = before
    if next(model.parameters()).device.type == "cpu" and flops < 64e6:
        # Not tied to the machine's load: a thread count that changed from run to run could change the
        # last bits of a matmul, and with them a sampled token (same seed, same output).
        threads = 1
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if threads != before:
            torch.set_num_threads(before)


decode_threads = _decode_threads  # public name: other decoding loops (mmm's best-of-N) share the policy


def sample_next(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """scores (B, V) -> token ids (B,), drawn from softmax(scores)."""
    probs = torch.softmax(scores.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


def generate_tokens(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    config: SamplingConfig,
    processors: Sequence[LogitsProcessor] | None = None,
    stop_ids: Sequence[int] = (),
    max_new_tokens: int | None = None,
    generator: torch.Generator | None = None,
    *,
    use_cache: bool = True,
) -> Iterator[torch.Tensor]:
    """Sample up to `max_new_tokens` tokens after `prompt_ids` (B, T); yield each step's tokens (B,).

    A row that has produced one of `stop_ids` is finished: it yields -1 from then on, and the loop ends
    when every row is finished. `generator` defaults to one seeded with `config.seed`. `use_cache=False`
    runs the model's own forward over the whole sequence every step (the slow reference).
    """
    if prompt_ids.dim() != 2 or prompt_ids.shape[1] == 0:
        raise InvalidRequest("prompt", "the prompt must hold at least one token per row (a start token)")
    if processors is None:
        processors = build_processors(config)
    prompt_ids = prompt_ids.to(next(model.parameters()).device)
    if max_new_tokens is None:
        max_new_tokens = config.max_new_tokens
    context = int(model.config.n_positions)
    B, T = prompt_ids.shape
    if max_new_tokens is None:
        max_new_tokens = context - T
    max_new_tokens = min(max_new_tokens, context - T)
    if max_new_tokens <= 0:
        raise InvalidRequest("prompt", f"the prompt ({T} tokens) fills the model's context of {context}")
    if generator is None:
        generator = torch.Generator(device=prompt_ids.device).manual_seed(config.seed)
    stops = torch.tensor(sorted(set(stop_ids)), dtype=torch.long, device=prompt_ids.device)
    ids = torch.empty(B, T + max_new_tokens, dtype=torch.long, device=prompt_ids.device)  # (B, Tmax)
    ids[:, :T] = prompt_ids
    done = torch.zeros(B, dtype=torch.bool, device=prompt_ids.device)
    with torch.inference_mode(), _decode_threads(model, B):
        decoder = KVDecoder(model, B, T + max_new_tokens) if use_cache else None
        logits = decoder.forward(ids[:, :T]) if decoder else _forward_no_cache(model, ids[:, :T])
        for n in range(T, T + max_new_tokens):
            scores = logits.float()
            for processor in processors:
                scores = processor(ids[:, :n], scores)
            token = sample_next(scores, generator)  # (B,)
            if stops.numel():
                token = torch.where(done, stops[0], token)
            ids[:, n] = token
            yield torch.where(done, -1, token)
            if stops.numel():
                done = done | torch.isin(token, stops)
                if bool(done.all()):
                    return
            if n + 1 < T + max_new_tokens:
                step = ids[:, n : n + 1]
                logits = decoder.forward(step) if decoder else _forward_no_cache(model, ids[:, : n + 1])


def generate_all(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    config: SamplingConfig,
    processors: Sequence[LogitsProcessor] | None = None,
    stop_ids: Sequence[int] = (),
    max_new_tokens: int | None = None,
    **kwargs: object,
) -> list[list[int]]:
    """`generate_tokens` collected: the new tokens of each row, up to and including its stop token."""
    rows: list[list[int]] = [[] for _ in range(prompt_ids.shape[0])]
    for step in generate_tokens(model, prompt_ids, config, processors, stop_ids, max_new_tokens, **kwargs):
        for row, token in zip(rows, step.tolist(), strict=True):
            if token >= 0:
                row.append(token)
    return rows


@dataclass
class Report:
    """What happened while sampling: repetition traps broken, ABC retries, tokens made."""

    traps: int = 0
    retries: int = 0
    invalid: int = 0
    tokens: int = 0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "repetition_traps": self.traps,
            "retries": self.retries,
            "invalid": self.invalid,
            "tokens": self.tokens,
            **self.extra,
        }
