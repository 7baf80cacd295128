"""`sample_abc`: spaceless ABC tunes from a GPT-2, each checked with abc2midi, as a stream of events.

    sample_abc(model, tokenizer, request, prompt_text=None) -> Iterator[ABCEvent]
        spaceless ABC tunes with a forced header (X:, T:, R:, M:, L:, K: from the request, or written by
        the model within known values), continued from a prompt or varied from `request.variations_of`,
        the body held to `orchestrion.abc.body.BodyGrammar` (abc2midi's syntax, full bars, two strains for
        dance tunes, the tonic at the end); every finished tune is compiled with abc2midi
        (`orchestrion.core.abcmidi.validate`), checked for loops (`orchestrion.abc.loops`) and resampled
        up to `SamplingConfig.abc_retries` times.

Events: each token's text (kind "token"), each finished line ("line") and each checked tune ("tune", with
`valid` and its report: retries, repetition traps broken, tokens, `complete`: False when the grammar
could not be followed to its end (the token budget ran out, or nothing fitted), and `looped`: why the
music is degenerate (too few pitches, one bar over and over, a drone) or null; both are resampled too). Deterministic in `request.seed`: each
(sample, attempt) draws from its own seeded generator, so a retry never repeats itself.
`orchestrion.abc.encoding` turns the events into the composer's stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from orchestrion.abc.grammar import ABCHeader, abc_plan
from orchestrion.abc.loops import loop_reason
from orchestrion.core.abcmidi import validate
from orchestrion.core.sampling import RepetitionTrap, SamplingConfig, build_processors
from orchestrion.errors import InvalidRequest
from orchestrion.gpt.decoding import Report, generate_tokens

if TYPE_CHECKING:
    from orchestrion.requests import ComposeRequest


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

    A tune abc2midi reports errors for, that did not reach the end its grammar asks for, or that loops
    (`orchestrion.abc.loops.loop_reason`; a low temperature makes a small model drone), is sampled
    again (a new seed) up to `config.abc_retries` times; the last attempt is yielded with `valid=False` if
    none compiled. Events come as tokens, lines and
    tunes; each tune's report carries its retries and the repetition traps broken.
    """
    config = config or SamplingConfig.from_request(request)
    if prompt_text is None and request.prompt:
        prompt_text = Path(request.prompt).read_text(errors="replace")
    plan = abc_plan(request, prompt_text)
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
    while pending:
        B = len(pending)
        header = ABCHeader(
            tokenizer, B, plan.fields, eos, bos, body_prefix=plan.body, max_tokens=max_new, form=plan.form,
            seed=config.seed,
        )  # fmt: skip
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
            tune = header.tune_text(r, texts[r].strip("\n") + "\n")
            complete = header.complete(r)
            ok = validate(tune).status != "errors" if check else True
            looped = loop_reason(tune) if check and complete else None
            if (not ok or (check and not complete) or looped) and attempts[i] < config.abc_retries:
                attempts[i] += 1
                retry.append(i)
                continue
            report = Report(
                traps=traps[i],
                retries=attempts[i],
                invalid=int(not ok),
                tokens=len(texts[r]),
                extra={
                    "fields": {k: v for k, v in plan.fields if v is not None},
                    "complete": complete,
                    "looped": looped,
                },
            )
            yield ABCEvent("tune", i, text=tune, valid=ok, report=report.to_dict())
        pending = retry
