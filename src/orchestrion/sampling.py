"""Sampling from GPT-2 token models: processors, a fast KV-cached loop, and the mmm / ABC drivers.

What the GPT composer calls (everything else here is the machinery under it):

    sample_mmm(model, tokenizer, request, prompt_tokens=None) -> Iterator[MMMEvent]
        mmm tokens under the grammar of `orchestrion.grammar` (exactly the requested bars and tracks,
        instruments and DENSITY forced, given tracks kept token for token, FILL bars filled in; a
        harmonisation longer than 4 bars is composed window by window around the whole melody). Yields
        `MMMEvent`s: every token as it comes (kind "token"), every bar as soon as it closes (kind "bar"),
        and one "piece" event per sample with its whole token list and the report (trap count, ...).
    sample_abc(model, tokenizer, request, prompt_text=None) -> Iterator[ABCEvent]
        spaceless ABC tunes with a forced header (X:, T:, R:, M:, L:, K: from the request), continued
        from a prompt or varied from `request.variations_of`, the body held to abc2midi's syntax by
        `grammar_abc.abc_step`; every finished tune is compiled with
        abc2midi (`orchestrion.abcmidi.validate`) and resampled up to `SamplingConfig.abc_retries` times.

`model` is a `transformers.GPT2LMHeadModel`, `tokenizer` a `tokenizers.Tokenizer`. Both drivers are
deterministic in `request.seed`.

The loop, `generate_tokens`, runs its own incremental GPT-2 forward (`KVDecoder`) over the model's
weights with a preallocated key/value cache: on a CPU at batch 1 the per-step overhead of
`model.generate()` (cache objects, mask building, stopping criteria) costs more than the arithmetic of
a small model, so skipping it is where the speed comes from. `KVDecoder` is checked against the model's
own forward in the tests.

Processors follow transformers' `LogitsProcessor` convention, `processor(input_ids (B, T), scores (B, V))
-> scores`, check their arguments when built and never modify their inputs, so they also run inside
`model.generate(logits_processor=...)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

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


# ------------------------------------------------------------------------------------- the decoder


class KVDecoder:
    """GPT-2's forward pass, one step at a time, over a preallocated key/value cache.

    Uses the parameters of a `GPT2LMHeadModel` in place (no copy). `forward(ids)` appends T positions to
    the cache and returns the logits of the last one; `length` can be set back to drop cached positions.
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
            self.blocks.append((
                block.ln_1.weight, block.ln_1.bias, block.attn.c_attn.weight, block.attn.c_attn.bias,
                block.attn.c_proj.weight, block.attn.c_proj.bias, block.ln_2.weight, block.ln_2.bias,
                block.mlp.c_fc.weight, block.mlp.c_fc.bias, block.mlp.c_proj.weight, block.mlp.c_proj.bias, scale,
            ))
        shape = (len(self.blocks), batch_size, cfg.n_head, max_len, self.head_dim)
        self.k = torch.zeros(shape, device=self.device, dtype=self.dtype)  # (L, B, H, Tmax, D)
        self.v = torch.zeros(shape, device=self.device, dtype=self.dtype)
        self.batch_size, self.max_len, self.length = batch_size, max_len, 0

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, T) -> logits (B, V) of the last position; the T positions join the cache."""
        B, T = ids.shape
        start, end = self.length, self.length + T
        if end > self.max_len:
            raise InvalidRequest("max_tokens", f"the sequence would pass the cache length of {self.max_len}")
        C, H, D = self.wte.shape[1], self.n_head, self.head_dim
        x = self.wte[ids] + self.wpe[start:end]  # (B, T, C)
        mask = None
        if T > 1:  # a block of new positions sees the cache and, causally, itself
            mask = torch.ones(T, end, dtype=torch.bool, device=self.device).tril(diagonal=start)
        for layer, (l1w, l1b, aw, ab, pw, pb, l2w, l2b, fw, fb, mw, mb, scale) in enumerate(self.blocks):
            h = F.layer_norm(x, (C,), l1w, l1b, self.eps)
            qkv = torch.addmm(ab, h.view(B * T, C), aw).view(B, T, 3, H, D)  # Conv1D: x @ W + b
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
            self.k[layer, :B, :, start:end] = k
            self.v[layer, :B, :, start:end] = v
            keys, values = self.k[layer, :B, :, :end], self.v[layer, :B, :, :end]  # (B, H, end, D)
            if T == 1:  # one query: plain matmuls beat SDPA's kernel on these strided cache views
                weights = torch.softmax((q @ keys.transpose(-1, -2)) * scale, dim=-1)  # (B, H, 1, end)
                att = weights @ values  # (B, H, 1, D)
            else:
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
        return {"repetition_traps": self.traps, "retries": self.retries, "invalid": self.invalid,
                "tokens": self.tokens, **self.extra}


# ------------------------------------------------------------------------------------------- mmm


@dataclass
class MMMEvent:
    """What `sample_mmm` yields: a token, a closed bar of one track, or a finished piece."""

    kind: str  # "token" | "bar" | "piece"
    sample: int  # row of the batch (sample i of num_samples)
    token: str = ""
    track: int = -1
    bar: int = -1
    instrument: str = ""
    tokens: list[str] = field(default_factory=list)  # bar: its tokens; piece: the whole sequence
    report: dict = field(default_factory=dict)


def _split_tracks(tokens: list[str]) -> list[list[str]]:
    from orchestrion.grammar import track_spans

    return track_spans(tokens)


def _load_mmm_prompt(path: str) -> list[str]:
    from orchestrion.codecs import mmm
    from orchestrion.music import load_midi

    return mmm.encode(load_midi(path))


def sample_mmm(
    model: torch.nn.Module,
    tokenizer: object,
    request: ComposeRequest,
    prompt_tokens: list[str] | None = None,
    *,
    default_tracks: int = 4,
    window_bars: int = 4,
    config: SamplingConfig | None = None,
    token_events: bool = True,
) -> Iterator[MMMEvent]:
    """Sample `request.num_samples` mmm pieces as one batch under the grammar (see the module docstring).

    `prompt_tokens` is an encoded prompt (`orchestrion.codecs.mmm.encode`); when None and
    `request.prompt` names a MIDI file, that file is encoded. A harmonisation longer than `window_bars`
    (the length the models are trained on) is composed window by window around the given tracks, which
    are kept whole, note for note.
    """
    from orchestrion.grammar import mmm_plan

    config = config or SamplingConfig.from_request(request)
    if prompt_tokens is None and request.prompt:
        prompt_tokens = _load_mmm_prompt(request.prompt)
    plan = mmm_plan(request, prompt_tokens, default_tracks=default_tracks)
    if plan["mode"] == "harmonise" and plan["bars"] > window_bars:
        yield from _harmonise_windows(model, tokenizer, plan, config, window_bars, token_events)
    else:
        yield from _sample_plan(model, tokenizer, plan, config, token_events, fill_bars=len(request.fill_bars or []))


def _harmonise_windows(model: torch.nn.Module, tokenizer: object, plan: dict, config: SamplingConfig,
                       window: int, token_events: bool) -> Iterator[MMMEvent]:
    """Compose the free tracks `window` bars at a time; the kept tracks come back whole and untouched."""
    from orchestrion.grammar import split_bars

    kept = [t for t in _split_tracks(plan["prompt"])]
    heads = [split_bars(t) for t in kept]  # (header, bars) per kept track
    bars, free = plan["bars"], plan["tracks"] - plan["kept"]
    composed: list[list[tuple[list[str], list[str]]]] = [[] for _ in range(config.num_samples)]  # per row: windows
    report = [Report() for _ in range(config.num_samples)]
    for w, start in enumerate(range(0, bars, window)):
        stop = min(start + window, bars)
        prompt = ["PIECE_START"]
        for header, track_bars in heads:
            prompt += [*header, *[tok for bar in track_bars[start:stop] for tok in bar], "TRACK_END"]
        sub = {**plan, "prompt": prompt, "bars": stop - start}
        sub_config = SamplingConfig(**{**config.__dict__, "seed": config.seed + 104729 * w})
        for event in _sample_plan(model, tokenizer, sub, sub_config, token_events):
            if event.kind == "bar":
                event.bar += start
                yield event
            elif event.kind == "token":
                yield event
            elif event.kind == "piece":
                tracks = _split_tracks(event.tokens)[plan["kept"] :]
                composed[event.sample].append([split_bars(t) for t in tracks])
                r = report[event.sample]
                r.traps += event.report["repetition_traps"]
                r.tokens += event.report["tokens"]
    for row, windows in enumerate(composed):
        tokens = ["PIECE_START", *[tok for t in kept for tok in t]]
        for k in range(free):
            header = windows[0][k][0]
            tokens += [*header, *[tok for win in windows for bar in win[k][1] for tok in bar], "TRACK_END"]
        tokens.append("PIECE_END")
        report[row].extra = {"mode": "harmonise", "bars": bars, "tracks": plan["tracks"], "windows": len(windows[0:])}
        yield MMMEvent("piece", row, tokens=tokens, report=report[row].to_dict())


def _sample_plan(model: torch.nn.Module, tokenizer: object, plan: dict, config: SamplingConfig,
                 token_events: bool, fill_bars: int = 0) -> Iterator[MMMEvent]:
    """One batch under the grammar for a plan made by `grammar.mmm_plan`."""
    from orchestrion.grammar import MMMGrammar, MMMIds, RepetitionTrap

    vocab = tokenizer.get_vocab()
    ids = MMMIds.from_vocab(vocab)
    names = {i: t for t, i in vocab.items()}

    def to_ids(tokens: list[str]) -> list[int]:
        missing = sorted({t for t in tokens if t not in vocab})
        if missing:
            raise InvalidRequest("prompt", f"tokens not in the model's vocabulary: {', '.join(missing[:5])}")
        return [vocab[t] for t in tokens]

    B = config.num_samples
    prompt = to_ids(plan["prompt"])
    forced = {k: to_ids(v) for k, v in plan["forced"].items()}
    bars, tracks = plan["bars"], plan["tracks"]
    context = int(model.config.n_positions)
    free = context - len(prompt) - sum(len(v) for v in forced.values())
    composed_bars = bars * (tracks - plan["kept"]) if plan["mode"] != "fill" else fill_bars * tracks
    structure = MMMGrammar.budget(bars, tracks - plan["kept"]) if plan["mode"] != "fill" else composed_bars * 24 + 1
    if config.max_new_tokens is not None:
        free = min(free, config.max_new_tokens)
    bar_cap = (free - structure) // max(composed_bars, 1)
    if bar_cap < 4:
        raise InvalidRequest(
            "bars", f"{bars} bars of {tracks} tracks do not fit the model's context of {context} tokens "
            f"(with a prompt of {len(prompt)}); ask for fewer bars or tracks")
    bar_cap = min(bar_cap, 96)
    grammar = MMMGrammar(ids, B, bars=bars, tracks=tracks, instruments=[None] * plan["kept"] + plan["instruments"][plan["kept"]:],
                         densities=[None] * plan["kept"] + plan["densities"][plan["kept"]:], forced_tracks=forced,
                         bar_cap=bar_cap)
    trap = RepetitionTrap(B, config.trap_repeats, config.trap_min_tokens, stop_ids=[ids["PIECE_END"]])
    processors = build_processors(config, [grammar, trap])
    prompt_ids = torch.tensor([prompt] * B, dtype=torch.long)
    max_new = min(context - len(prompt), structure + composed_bars * bar_cap + sum(len(v) for v in forced.values()))
    sequences = [list(plan["prompt"]) for _ in range(B)]
    bar_tokens: list[list[str]] = [[] for _ in range(B)]
    track_of = [plan["kept"]] * B if plan["mode"] == "harmonise" else [0] * B
    bar_of, inst_of = [-1] * B, [""] * B
    stop = [ids["PIECE_END"]]
    for step in generate_tokens(model, prompt_ids, config, processors, stop, max_new):
        for r, token_id in enumerate(step.tolist()):
            if token_id < 0:
                continue
            token = names[token_id]
            sequences[r].append(token)
            if token_events:
                yield MMMEvent("token", r, token=token)
            if token.startswith("INST="):
                inst_of[r] = token
            elif token == "BAR_START":
                bar_of[r] += 1
                bar_tokens[r] = []
            elif token == "TRACK_END":
                track_of[r] += 1
                bar_of[r] = -1
            bar_tokens[r].append(token)
            if token == "BAR_END":
                yield MMMEvent("bar", r, track=track_of[r], bar=bar_of[r], instrument=inst_of[r],
                               tokens=list(bar_tokens[r]))
            if token == "PIECE_END":
                report = Report(traps=trap.fired[r], tokens=len(sequences[r]) - len(prompt),
                                extra={"mode": plan["mode"], "bars": bars, "tracks": tracks,
                                       "prompt_repairs": grammar.repairs[r]})
                yield MMMEvent("piece", r, tokens=sequences[r], report=report.to_dict())
    for r in range(B):
        if sequences[r][-1] != "PIECE_END":  # cannot happen under the grammar's budget; say so loudly if it does
            raise InvalidRequest("max_tokens", f"sample {r} did not finish within {max_new} tokens")


# ------------------------------------------------------------------------------------------- abc


@dataclass
class ABCEvent:
    """What `sample_abc` yields: a token's text, a finished line, or a finished (checked) tune."""

    kind: str  # "token" | "line" | "tune"
    sample: int
    text: str = ""
    valid: bool = True
    report: dict = field(default_factory=dict)


def sample_abc(
    model: torch.nn.Module,
    tokenizer: object,
    request: ComposeRequest,
    prompt_text: str | None = None,
    *,
    config: SamplingConfig | None = None,
    token_events: bool = True,
    check: bool = True,
) -> Iterator[ABCEvent]:
    """Sample `request.num_samples` ABC tunes with a forced header; each is checked with abc2midi.

    A tune abc2midi reports errors for is sampled again (a new seed) up to `config.abc_retries` times;
    the last attempt is yielded with `valid=False` if none compiled. Events come as tokens, lines and
    tunes; each tune's report carries its retries and the repetition traps broken.
    """
    from orchestrion.grammar import RepetitionTrap
    from orchestrion.grammar_abc import ABCHeader

    config = config or SamplingConfig.from_request(request)
    if prompt_text is None and request.prompt:
        from pathlib import Path

        prompt_text = Path(request.prompt).read_text(errors="replace")
    from orchestrion.grammar_abc import abc_plan

    fields, body = abc_plan(request, prompt_text)
    vocab = tokenizer.get_vocab()
    eos = vocab.get("</s>", model.config.eos_token_id)
    bos = vocab.get("<s>", model.config.bos_token_id)
    if eos is None or bos is None:
        raise InvalidRequest("model", "the ABC tokenizer needs <s> and </s> tokens")
    context = int(model.config.n_positions)
    max_new = min(config.max_new_tokens or context - 1, context - 1)
    pending = list(range(config.num_samples))
    attempts = dict.fromkeys(pending, 0)
    traps = dict.fromkeys(pending, 0)
    from orchestrion.abcmidi import validate

    while pending:
        B = len(pending)
        header = ABCHeader(tokenizer, B, fields, eos, bos, body_prefix=body, max_tokens=max_new)
        header.start()
        trap = RepetitionTrap(B, config.trap_repeats, min_tokens=6, stop_ids=[eos])
        processors = build_processors(config, [header, trap])
        # Each (sample, attempt) has its own stream of random numbers, so a retry never repeats itself.
        seed = config.seed + 7919 * max(attempts[i] for i in pending) + pending[0]
        generator = torch.Generator().manual_seed(seed)
        texts = ["" for _ in range(B)]
        lines = ["" for _ in range(B)]
        prompt_ids = torch.full((B, 1), bos, dtype=torch.long)
        for step in generate_tokens(model, prompt_ids, config, processors, [eos], max_new, generator):
            for r, token in enumerate(step.tolist()):
                if token < 0 or token == eos:
                    continue
                piece = header.text[token]
                texts[r] += piece
                if token_events:
                    yield ABCEvent("token", pending[r], text=piece)
                lines[r] += piece
                if piece.endswith("\n"):
                    yield ABCEvent("line", pending[r], text=lines[r])
                    lines[r] = ""
        retry = []
        for r, i in enumerate(pending):
            traps[i] += trap.fired[r]
            tune = texts[r].strip("\n") + "\n"
            ok = validate(tune).status != "errors" if check else True
            if not ok and attempts[i] < config.abc_retries:
                attempts[i] += 1
                retry.append(i)
                continue
            report = Report(traps=traps[i], retries=attempts[i], invalid=int(not ok), tokens=len(texts[r]),
                            extra={"fields": {k: v for k, v in fields if v is not None}})
            yield ABCEvent("tune", i, text=tune, valid=ok, report=report.to_dict())
        pending = retry
