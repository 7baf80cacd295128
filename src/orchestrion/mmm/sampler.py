"""`sample_mmm`: mmm pieces of any length from a GPT-2, window by window, as a stream of events.

    sample_mmm(model, tokenizer, request, prompt_tokens=None) -> Iterator[MMMEvent]

1. `orchestrion.mmm.plan.plan_piece` turns the request (and its prompt) into a `PiecePlan`: the tracks,
   the notes known, the (track, bar) cells to compose, the key.
2. `orchestrion.mmm.windows.next_window` picks windows of 4 bars (the length the model was trained on),
   each starting 2 bars before the first cell left to compose, so every window is conditioned on the bars
   before it: 16, 32 or 64 bars, continuations, fills and long harmonisations all work the same way. A
   piece composed from nothing starts with a window of `SearchSettings.first_window` bars (1): its first
   measure is final, and streams out, after a quarter of the work of a 4-bar window; the next window
   (bars 0-3) composes bars 1-3 after it.
3. In a window, each track's given bars are forced and its free bars sampled (`orchestrion.mmm.search`,
   best-of-N at bar level) under the grammar (`grammar.MMMGrammar`), the chorale voice rules
   (`voices.VoiceConstraints`) and the sampling filters; the harmony critic (`critic.Critic`) keeps one
   candidate of each bar.

Events: "bar" (a bar of one track, as soon as it is chosen), "measures" (bars `bar` .. `bars` - 1 of every
track are final: `tokens` holds the piece so far), "piece" (the whole piece as one mmm sequence and the
report); with `token_events`, a "token" event for each token of a chosen bar. `request.num_samples` pieces
are made one after another; piece i is the piece of seed `request.seed + i`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from orchestrion.core.music import Key
from orchestrion.core.sampling import SamplingConfig, build_processors
from orchestrion.gpt.decoding import Report
from orchestrion.mmm.critic import Critic, CriticWeights
from orchestrion.mmm.grammar import MMMGrammar, MMMIds
from orchestrion.mmm.plan import plan_piece, prompt_of
from orchestrion.mmm.search import Choice, Unit, best_of_n
from orchestrion.mmm.timing import TOKEN_TYPES, BarClock
from orchestrion.mmm.vocabulary import DEFAULT_DENSITY_EDGES, STEPS_PER_BAR, VOICES
from orchestrion.mmm.voices import TrackSpec, VoiceConstraints
from orchestrion.mmm.windows import (
    WINDOW_BARS,
    PiecePlan,
    bar_tokens,
    density_token,
    known_key,
    next_window,
    piece_tokens,
    track_notes,
)

if TYPE_CHECKING:
    from orchestrion.requests import ComposeRequest

DEFAULT_CANDIDATES = 8  # best-of-N per bar; the measured trade-off is in docs/sampling.md
CLOSING_RESERVE = 4  # tokens a monophonic bar may need past its budget to close (delta, off, BAR_END)
MAX_BAR_TOKENS = 96
RELAXED_COST = 5.0  # the critic's price of a step where a voice rule had to give way


@dataclass
class MMMEvent:
    """What `sample_mmm` yields: a token, a chosen bar of one track, final measures, or a finished piece."""

    kind: str  # "token" | "bar" | "measures" | "piece"
    sample: int  # piece i of num_samples
    token: str = ""
    track: int = -1
    bar: int = -1  # "bar": the bar; "measures": the first final bar not given before
    instrument: str = ""
    tokens: list[str] = field(default_factory=list)  # bar: its tokens; measures, piece: the piece so far
    report: dict = field(default_factory=dict)
    bars: int = 0  # "measures": bars 0 .. bars - 1 are final


@dataclass(frozen=True)
class SearchSettings:
    """How a piece is searched: candidates per bar, the voice rules, the pull towards the key, the critic."""

    candidates: int = DEFAULT_CANDIDATES
    rules: bool = True
    crossing: bool = False
    key_strength: float = 2.0
    weights: CriticWeights = field(default_factory=CriticWeights)
    token_nats: float = 0.95  # about the chorale model's loss per token (the critic's length normalisation)
    first_window: int | None = 1  # bars of the first window of a piece composed from nothing (None: 4)
    first_candidates: int | None = None  # at most this many candidates in that first window (None: `candidates`)

    @classmethod
    def from_request(cls, request: ComposeRequest, **overrides: object) -> SearchSettings:
        values: dict = {}
        if getattr(request, "candidates", None):
            values["candidates"] = request.candidates
        if getattr(request, "crossing", None) is not None:
            values["crossing"] = request.crossing
        return cls(**{**values, **overrides})


def sample_mmm(
    model: torch.nn.Module,
    tokenizer: object,
    request: ComposeRequest,
    prompt_tokens: list[str] | None = None,
    *,
    default_tracks: int = 4,
    config: SamplingConfig | None = None,
    settings: SearchSettings | None = None,
    token_events: bool = True,
) -> Iterator[MMMEvent]:
    """Compose `request.num_samples` pieces (see the module docstring).

    `prompt_tokens` is an encoded prompt (`orchestrion.mmm.codec.encode`); when None and `request.prompt`
    names a MIDI file, that file is read. `settings` defaults to `SearchSettings.from_request(request)`.
    """
    config = config or SamplingConfig.from_request(request)
    settings = settings or SearchSettings.from_request(request)
    prompt = prompt_of(request, prompt_tokens)
    default = list(getattr(model.config, "default_instruments", None) or VOICES[:default_tracks])
    for sample in range(config.num_samples):
        seed = config.seed + sample
        plan = plan_piece(request, prompt, default_instruments=default, seed=seed)
        yield from _compose(
            model, tokenizer, plan, replace(config, seed=seed, num_samples=1), settings, sample, token_events
        )


def _compose(
    model: torch.nn.Module,
    tokenizer: object,
    plan: PiecePlan,
    config: SamplingConfig,
    settings: SearchSettings,
    sample: int,
    token_events: bool,
) -> Iterator[MMMEvent]:
    vocab = tokenizer.get_vocab()
    ids = MMMIds.from_vocab(vocab)
    names = {i: t for t, i in vocab.items()}
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(config.seed)
    specs = [_spec(track, plan, settings) for track in plan.tracks]
    critic = Critic(settings.weights, plan.key, settings.token_nats)
    report = Report(extra={"relaxed": 0})
    emitted = 0
    windows = 0
    while True:
        opening = settings.first_window is not None and bool(plan.todo.all())  # the one-bar first window
        if (window := next_window(plan.todo, first=settings.first_window)) is None:
            break
        start, end = window
        n = settings.candidates
        if opening and settings.first_candidates:
            n = min(n, settings.first_candidates)
        if plan.key_free and end == plan.bars and start >= WINDOW_BARS:
            # The last window of a long piece without a requested key cadences in the key the music is in.
            key = known_key(plan, start)
            if key is not None and (key.tonic, key.mode) != (plan.key.tonic, plan.key.mode):
                plan.key = Key(key.tonic, key.mode)
                critic = Critic(settings.weights, plan.key, settings.token_nats)
        chosen: dict[tuple[int, int], list[str]] = {}
        searched = _search_window(model, ids, plan, window, specs, critic, config, settings, n, generator, report)
        for choice in searched:
            tokens = [names[t] for t in choice.tokens]
            chosen[choice.cell] = tokens
            report.tokens += len(tokens)
            k, bar = choice.cell
            if token_events:
                for token in tokens:
                    yield MMMEvent("token", sample, token=token)
            body = tokens[tokens.index("BAR_START") :] if "BAR_START" in tokens else ["BAR_START", *tokens]
            yield MMMEvent("bar", sample, track=k, bar=start + bar, instrument=f"INST={plan.tracks[k].instrument}",
                           tokens=body)  # fmt: skip
        _apply(plan, start, end, chosen)
        windows += 1
        done = plan.done_bars()
        if done > emitted:
            yield MMMEvent(
                "measures",
                sample,
                bar=emitted,
                bars=done,
                tokens=piece_tokens(plan, done),
                report={"tempo": plan.tempo},
            )
            emitted = done
    report.extra.update(
        mode=plan.mode,
        bars=plan.bars,
        tracks=len(plan.tracks),
        windows=windows,
        candidates=settings.candidates,
        key=Key((plan.key.tonic - plan.shift) % 12, plan.key.mode).name,  # the key of the piece as written
        tempo=plan.tempo,
        shift=plan.shift,
        warnings=list(plan.warnings),
    )
    yield MMMEvent("piece", sample, tokens=piece_tokens(plan), report=report.to_dict())


def _search_window(
    model: torch.nn.Module,
    ids: MMMIds,
    plan: PiecePlan,
    window: tuple[int, int],
    specs: list[TrackSpec],
    critic: Critic,
    config: SamplingConfig,
    settings: SearchSettings,
    n: int,
    generator: torch.Generator,
    report: Report,
) -> Iterator[Choice]:
    """Best-of-`n` over one window: its units, the grammar and voice rules for it, the critic as judge."""
    start, end = window
    edges = tuple(getattr(model.config, "density_edges", None) or DEFAULT_DENSITY_EDGES)
    units, free, close = _units(plan, start, end, edges)
    final = plan.bars - 1 - start if start <= plan.bars - 1 < end else None
    grammar = MMMGrammar(ids, n, bars=end - start, tracks=len(plan.tracks), close_bars=close)
    rules = VoiceConstraints(
        ids,
        n,
        bars=end - start,
        tracks=specs,
        free=free,
        key=plan.key if settings.rules else None,
        final_bar=final if settings.rules else None,
        key_strength=settings.key_strength,
        opening=settings.rules and plan.mode == "compose" and start == 0,
    )
    voices = [not spec.drums for spec in specs]

    def judge(row: int, cell: tuple[int, int], tokens: list[int], logprob: float) -> tuple[float, dict]:
        k, bar = cell
        relaxed = rules.relaxed[row] - rules.kept_relaxed  # steps of this candidate where a rule gave way
        if not voices[k]:
            return logprob - RELAXED_COST * relaxed, {}
        pitch, onset = rules.lines(row)
        score, terms = critic.score(
            pitch, onset, k, bar, voices=voices, logprob=logprob, tokens=len(tokens), final=bar == final
        )
        return score - RELAXED_COST * relaxed, {**terms, "relaxed": relaxed}

    yield from best_of_n(
        model,
        [Unit([ids[t] for t in u.forced], u.cell, u.draw) for u in units],
        n=n,
        processors=build_processors(config, [grammar, rules]),
        stateful=[grammar, rules],
        judge=judge,
        bar_end=ids["BAR_END"],
        pad=ids.vocab.get("<pad>", 0),
        generator=generator,
        reserve=CLOSING_RESERVE,
        max_cap=MAX_BAR_TOKENS,
        on_cap=lambda cap: setattr(grammar, "bar_cap", cap),
        clock=BarClock(ids.vocab, n) if getattr(model.config, "token_types", None) == TOKEN_TYPES else None,
    )
    report.extra["relaxed"] += rules.relaxed[0]


def _spec(track, plan: PiecePlan, settings: SearchSettings) -> TrackSpec:
    if not settings.rules:
        return TrackSpec(drums=track.instrument == "DRUMS")
    spec = TrackSpec.for_instrument(track.instrument, settings.crossing)
    if not spec.harmony and plan.mode == "fill":  # a fill keeps the track's own range
        spec = replace(spec, low=track.low, high=track.high)
    return spec


def _units(plan: PiecePlan, start: int, end: int, edges: tuple[float, ...]) -> tuple[list, set, set]:
    """The window as units of token strings: forced runs, each maybe followed by a free cell."""
    units: list[Unit] = []
    free: set[tuple[int, int]] = set()
    close: set[tuple[int, int]] = set()
    pending = ["PIECE_START"]
    bars = end - start
    for k, track in enumerate(plan.tracks):
        todo = plan.todo[k, start:end]
        pending += ["TRACK_START", f"INST={track.instrument}"]
        density = track.density
        if density is None and track.kept:
            density = density_token(track.notes, start, bars, edges)
        elif density is None and (not todo[0] or len(track.notes)):
            density = _known_density(plan, k, edges)
            track.density = density
        if density is not None:
            pending.append(density)
        bodies = bar_tokens(track.notes, start, bars)
        for i in range(bars):
            if todo[i]:
                free.add((k, i))
                if i + 1 < bars and not todo[i + 1]:
                    close.add((k, i))
                if density is None and i == 0:  # the model draws the track's DENSITY; the critic does not pick it
                    units.append(Unit(pending, (k, i), draw=1))
                else:
                    units.append(Unit([*pending, "BAR_START"], (k, i)))
                pending = []
            else:
                pending += ["BAR_START", *bodies[i], "BAR_END"]
        pending.append("TRACK_END")
    return units, free, close


def _known_density(plan: PiecePlan, k: int, edges: tuple[float, ...]) -> str:
    """A track's DENSITY from its notes in the bars it has (the bins of the model's dataset)."""
    known = np.flatnonzero(~plan.todo[k])
    notes = plan.tracks[k].notes
    if not len(known) or not len(notes):
        return "DENSITY=0"
    bar_of = notes[:, 0] // STEPS_PER_BAR
    count = int(np.isin(bar_of, known).sum())
    return f"DENSITY={int(np.searchsorted(np.asarray(edges, float), count / len(known), side='right'))}"


def _apply(plan: PiecePlan, start: int, end: int, chosen: dict) -> None:
    """Put the chosen bars of a window into the plan: their notes, the sampled densities; cells done."""
    bars = end - start
    for k, track in enumerate(plan.tracks):
        todo = plan.todo[k, start:end]
        if not todo.any():
            continue
        bodies = bar_tokens(track.notes, start, bars)
        tokens: list[str] = []
        for i in range(bars):
            cell = chosen.get((k, i))
            if cell is None:
                tokens += ["BAR_START", *bodies[i], "BAR_END"]
                continue
            if track.density is None and any(t.startswith("DENSITY=") for t in cell):
                track.density = next(t for t in cell if t.startswith("DENSITY="))
            tokens += cell[cell.index("BAR_START") :] if "BAR_START" in cell else ["BAR_START", *cell]
        notes = track_notes(tokens, start)
        new = notes[np.isin(notes[:, 0] // STEPS_PER_BAR, np.flatnonzero(todo) + start)] if len(notes) else notes
        track.notes = np.concatenate([track.notes, new]) if len(track.notes) else new
        track.notes = track.notes[np.lexsort((track.notes[:, 2], track.notes[:, 0]))]
        plan.todo[k, start:end] = False
