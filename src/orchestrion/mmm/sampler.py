"""`sample_mmm`: mmm pieces from a GPT-2 under the grammar, as a stream of events.

    sample_mmm(model, tokenizer, request, prompt_tokens=None) -> Iterator[MMMEvent]
        mmm tokens under `orchestrion.mmm.grammar.MMMGrammar` (exactly the requested bars and tracks,
        instruments and DENSITY forced, given tracks kept token for token, FILL bars filled in; a
        harmonisation longer than 4 bars is composed window by window around the whole melody). Yields
        `MMMEvent`s: every token as it comes (kind "token"), every bar as soon as it closes (kind "bar"),
        and one "piece" event per sample with its whole token list and the report (trap count, ...).

`model` is a `transformers.GPT2LMHeadModel`, `tokenizer` a `tokenizers.Tokenizer`. The `request.num_samples`
pieces are one batch, deterministic in `request.seed`. The plan comes from `mmm_plan`, the loop from
`orchestrion.gpt.decoding`, the filters and the repetition trap from `orchestrion.core.sampling`;
`orchestrion.mmm.encoding` turns the events into the composer's stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch

from orchestrion.core.music import load_midi
from orchestrion.core.sampling import RepetitionTrap, SamplingConfig, build_processors
from orchestrion.errors import InvalidRequest
from orchestrion.gpt.decoding import Report, generate_tokens
from orchestrion.mmm.codec import encode
from orchestrion.mmm.grammar import MMMGrammar, MMMIds, MMMPlan, mmm_plan, split_bars, track_spans

if TYPE_CHECKING:
    from orchestrion.requests import ComposeRequest


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

    `prompt_tokens` is an encoded prompt (`orchestrion.mmm.codec.encode`); when None and
    `request.prompt` names a MIDI file, that file is encoded. A harmonisation longer than `window_bars`
    (the length the models are trained on) is composed window by window around the given tracks, which
    are kept whole, note for note.
    """
    config = config or SamplingConfig.from_request(request)
    if prompt_tokens is None and request.prompt:
        prompt_tokens = encode(load_midi(request.prompt))
    plan = mmm_plan(request, prompt_tokens, default_tracks=default_tracks)
    if plan.mode == "harmonise" and plan.bars > window_bars:
        yield from _harmonise_windows(model, tokenizer, plan, config, window_bars, token_events)
    else:
        yield from _sample_plan(model, tokenizer, plan, config, token_events, fill_bars=len(request.fill_bars or []))


def _harmonise_windows(
    model: torch.nn.Module, tokenizer: object, plan: MMMPlan, config: SamplingConfig, window: int, token_events: bool
) -> Iterator[MMMEvent]:
    """Compose the free tracks `window` bars at a time; the kept tracks come back whole and untouched."""
    kept = track_spans(plan.prompt)
    heads = [split_bars(t) for t in kept]  # (header, bars) per kept track
    bars, free = plan.bars, plan.tracks - plan.kept
    composed: list[list[tuple[list[str], list[str]]]] = [[] for _ in range(config.num_samples)]  # per row: windows
    report = [Report() for _ in range(config.num_samples)]
    for w, start in enumerate(range(0, bars, window)):
        stop = min(start + window, bars)
        prompt = ["PIECE_START"]
        for header, track_bars in heads:
            prompt += [*header, *[tok for bar in track_bars[start:stop] for tok in bar], "TRACK_END"]
        sub = replace(plan, prompt=prompt, bars=stop - start)
        sub_config = SamplingConfig(**{**config.__dict__, "seed": config.seed + 104729 * w})
        for event in _sample_plan(model, tokenizer, sub, sub_config, token_events):
            if event.kind == "bar":
                event.bar += start
                yield event
            elif event.kind == "token":
                yield event
            elif event.kind == "piece":
                tracks = track_spans(event.tokens)[plan.kept :]
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
        report[row].extra = {"mode": "harmonise", "bars": bars, "tracks": plan.tracks, "windows": len(windows[0:])}
        yield MMMEvent("piece", row, tokens=tokens, report=report[row].to_dict())


def _sample_plan(
    model: torch.nn.Module,
    tokenizer: object,
    plan: MMMPlan,
    config: SamplingConfig,
    token_events: bool,
    fill_bars: int = 0,
) -> Iterator[MMMEvent]:
    """One batch under the grammar for a plan made by `grammar.mmm_plan`."""
    vocab = tokenizer.get_vocab()
    ids = MMMIds.from_vocab(vocab)
    names = {i: t for t, i in vocab.items()}

    def to_ids(tokens: list[str]) -> list[int]:
        missing = sorted({t for t in tokens if t not in vocab})
        if missing:
            raise InvalidRequest("prompt", f"tokens not in the model's vocabulary: {', '.join(missing[:5])}")
        return [vocab[t] for t in tokens]

    B = config.num_samples
    prompt = to_ids(plan.prompt)
    forced = {k: to_ids(v) for k, v in plan.forced.items()}
    bars, tracks = plan.bars, plan.tracks
    context = int(model.config.n_positions)
    free = context - len(prompt) - sum(len(v) for v in forced.values())
    composed_bars = bars * (tracks - plan.kept) if plan.mode != "fill" else fill_bars * tracks
    structure = MMMGrammar.budget(bars, tracks - plan.kept) if plan.mode != "fill" else composed_bars * 24 + 1
    if config.max_new_tokens is not None:
        free = min(free, config.max_new_tokens)
    bar_cap = (free - structure) // max(composed_bars, 1)
    if bar_cap < 4:
        raise InvalidRequest(
            "bars",
            f"{bars} bars of {tracks} tracks do not fit the model's context of {context} tokens "
            f"(with a prompt of {len(prompt)}); ask for fewer bars or tracks",
        )
    bar_cap = min(bar_cap, 96)
    grammar = MMMGrammar(
        ids,
        B,
        bars=bars,
        tracks=tracks,
        instruments=[None] * plan.kept + plan.instruments[plan.kept :],
        densities=[None] * plan.kept + plan.densities[plan.kept :],
        forced_tracks=forced,
        bar_cap=bar_cap,
    )
    trap = RepetitionTrap(B, config.trap_repeats, config.trap_min_tokens, stop_ids=[ids["PIECE_END"]])
    processors = build_processors(config, [grammar, trap])
    prompt_ids = torch.tensor([prompt] * B, dtype=torch.long)
    max_new = min(context - len(prompt), structure + composed_bars * bar_cap + sum(len(v) for v in forced.values()))
    sequences = [list(plan.prompt) for _ in range(B)]
    bar_tokens: list[list[str]] = [[] for _ in range(B)]
    track_of = [plan.kept] * B if plan.mode == "harmonise" else [0] * B
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
                yield MMMEvent(
                    "bar", r, track=track_of[r], bar=bar_of[r], instrument=inst_of[r], tokens=list(bar_tokens[r])
                )
            if token == "PIECE_END":
                report = Report(
                    traps=trap.fired[r],
                    tokens=len(sequences[r]) - len(prompt),
                    extra={"mode": plan.mode, "bars": bars, "tracks": tracks, "prompt_repairs": grammar.repairs[r]},
                )
                yield MMMEvent("piece", r, tokens=sequences[r], report=report.to_dict())
    for r in range(B):
        if sequences[r][-1] != "PIECE_END":  # cannot happen under the grammar's budget; say so loudly if it does
            raise InvalidRequest("max_tokens", f"sample {r} did not finish within {max_new} tokens")
