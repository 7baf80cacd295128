"""GPT generation speed: orchestrion's KV-cached loop vs transformers' `model.generate()`, side by side.

Same weights, same sampling settings (temperature 1, top-k 50, no end token, the same number of new
tokens), batch 1 and 8, in one run; then the time to the first chosen bar of a `builtin:chorales`
stream and to the whole 4-bar piece, for 1, 2, 4 and the default number of candidates per bar.

    .venv/bin/python benchmarks/gpt_generate.py [--model builtin:chorales] [--tokens 256] [--repeats 3]
    .venv/bin/python benchmarks/gpt_generate.py --validity 100   # the validity checks of the shipped models
    .venv/bin/python benchmarks/gpt_generate.py --critic 8       # quality and time of the critic's N

Without a shipped model it times a randomly initialised model of the `small` preset's shape over the mmm
vocabulary (speed does not depend on the weights). `--shape seed` times the reference size (6 x 512).
transformers runs at the machine's default thread count and, for a like-for-like view, at one thread too.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def load(model_ref: str, shape: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    from orchestrion.mmm import codec as mmm

    try:
        from tokenizers import Tokenizer

        from orchestrion.registry import resolve_model_dir

        directory = resolve_model_dir(model_ref)
        model = GPT2LMHeadModel.from_pretrained(directory).eval()
        return model, Tokenizer.from_file(str(directory / "tokenizer.json")), model_ref
    except Exception as exc:  # no shipped model yet: time the same shape with random weights
        from tokenizers import Tokenizer
        from tokenizers.models import WordLevel
        from tokenizers.pre_tokenizers import WhitespaceSplit

        print(f"({model_ref} not loadable: {exc}; timing a random model of the '{shape}' preset shape)")
        vocab = {t: i for i, t in enumerate(mmm.vocabulary())}
        tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
        tokenizer.pre_tokenizer = WhitespaceSplit()
        layers, heads, width, context = {"small": (4, 4, 192, 512), "seed": (6, 8, 512, 2048)}[shape]
        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=len(vocab),
            n_positions=context,
            n_embd=width,
            n_layer=layers,
            n_head=heads,
            bos_token_id=2,
            eos_token_id=3,
            pad_token_id=0,
        )
        return GPT2LMHeadModel(config).eval(), tokenizer, f"random {shape}-shape model"


def time_ours(model, batch: int, tokens: int, repeats: int) -> float:
    from orchestrion.core.sampling import SamplingConfig
    from orchestrion.gpt.decoding import generate_tokens

    best = []
    for r in range(repeats):
        prompt = torch.full((batch, 1), 2, dtype=torch.long)
        start = time.perf_counter()
        n = sum(1 for _ in generate_tokens(model, prompt, SamplingConfig(seed=r, top_k=50), max_new_tokens=tokens))
        best.append(batch * n / (time.perf_counter() - start))
    return statistics.median(best)


def time_hf(model, batch: int, tokens: int, repeats: int, threads: int | None) -> float:
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    rates = []
    try:
        for r in range(repeats):
            prompt = torch.full((batch, 1), 2, dtype=torch.long)
            torch.manual_seed(r)
            start = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(
                    prompt,
                    do_sample=True,
                    top_k=50,
                    temperature=1.0,
                    max_new_tokens=tokens,
                    min_new_tokens=tokens,
                    pad_token_id=0,
                    attention_mask=torch.ones_like(prompt),
                )
            rates.append(batch * (out.shape[1] - 1) / (time.perf_counter() - start))
    finally:
        torch.set_num_threads(before)
    return statistics.median(rates)


def first_bar_ms(model, tokenizer, repeats: int, candidates: int | None = None) -> tuple[float, float, float]:
    """Median ms to the first chosen bar of a 4-bar SATB stream, to the whole piece, and its CPU time (the
    process's own: what the piece costs whatever else the machine runs)."""
    from orchestrion.mmm.sampler import sample_mmm
    from orchestrion.requests import ComposeRequest

    firsts, wholes, cpu = [], [], []
    for r in range(repeats):
        request = ComposeRequest(
            model="builtin:chorales", bars=4, seed=r, instruments=["SOPRANO", "ALTO", "TENOR", "BASS"],
            candidates=candidates,
        )  # fmt: skip
        start, started = time.perf_counter(), time.process_time()
        first = None
        for event in sample_mmm(model, tokenizer, request, token_events=False):
            if event.kind == "bar" and first is None:
                first = time.perf_counter() - start
        wholes.append(time.perf_counter() - start)
        cpu.append(time.process_time() - started)
        firsts.append(first)
    return 1000 * statistics.median(firsts), 1000 * statistics.median(wholes), 1000 * statistics.median(cpu)


def critic_table(model_ref: str, pieces: int, candidates: list[int]) -> None:
    """The harmony critic's N: quality measures and time of `pieces` 4-bar chorales for each N (and N = 1
    without the voice rules, the raw model), side by side."""
    import math

    import numpy as np

    from orchestrion.evaluation import polyphonic
    from orchestrion.mmm.codec import decode
    from orchestrion.mmm.sampler import SearchSettings, sample_mmm
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest

    composer = load_composer(model_ref)
    names = ["clash_rate", "parallel_rate", "voices_sounding", "voice_polyphony", "range_ok", "final_tonic",
             "in_key", "chord_likeness", "duration_entropy", "stepwise_share"]  # fmt: skip
    print(f"{model_ref}: {pieces} pieces of 4 bars per setting (seeds 0..{pieces - 1}), medians of seconds")
    print(f"{'setting':14} {'s/piece':>8} {'cpu s':>6} " + " ".join(f"{n[:12]:>12}" for n in names))
    for n, rules in [(1, False), *[(c, True) for c in candidates]]:
        rows, times, cpu = [], [], []
        for seed in range(pieces):
            request = composer.validate(ComposeRequest(model=model_ref, bars=4, seed=seed))
            start, started = time.perf_counter(), time.process_time()
            settings = SearchSettings(candidates=n, rules=rules)
            piece = next(e for e in sample_mmm(composer.model, composer.tokenizer, request, settings=settings,
                                               token_events=False) if e.kind == "piece")  # fmt: skip
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - started)
            score, _ = decode(piece.tokens)
            rows.append({name: polyphonic.POLYPHONIC_METRICS[name](score) for name in names})
        means = [float(np.nanmean([r[name] for r in rows])) for name in names]
        label = f"N={n}" + ("" if rules else " no rules")
        cells = " ".join(f"{m:>12.3f}" if not math.isnan(m) else f"{'-':>12}" for m in means)
        print(f"{label:14} {statistics.median(times):>8.2f} {statistics.median(cpu):>6.2f} {cells}")


def validity(samples: int, chorales_ref: str = "builtin:chorales", folk_ref: str = "builtin:folk") -> None:
    """The done-when checks: N chorales decode to 4-track, exactly-N-bar MIDI; N folk tunes compile."""
    from orchestrion.abc.sampler import sample_abc
    from orchestrion.errors import ModelNotFound
    from orchestrion.mmm import codec as mmm
    from orchestrion.mmm.sampler import sample_mmm
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest

    chorales = load_composer(chorales_ref)
    ok = traps = 0
    start = time.perf_counter()
    for first in range(0, samples, 25):
        request = ComposeRequest(
            model="builtin:chorales",
            bars=4,
            seed=first,
            num_samples=min(25, samples - first),
            instruments=["SOPRANO", "ALTO", "TENOR", "BASS"],
            candidates=1,
        )
        for event in sample_mmm(chorales.model, chorales.tokenizer, request, token_events=False):
            if event.kind == "piece":
                score, repairs = mmm.decode(event.tokens)
                bars_ok = all(t.count("BAR_START") == 4 for t in _tracks(event.tokens)) and score.end() <= 4 * 16
                ok += len(_tracks(event.tokens)) == 4 and len(score.tracks) == 4 and bars_ok and not repairs
                traps += event.report["repetition_traps"]
    print(
        f"{chorales_ref}: {ok}/{samples} samples decode to 4-track, exactly-4-bar MIDI without repairs; "
        f"repetition traps broken: {traps} ({time.perf_counter() - start:.0f} s)"
    )
    try:
        folk = load_composer(folk_ref)
    except ModelNotFound as exc:
        print(f"{folk_ref}: {exc}")
        return
    first_try = valid = traps = retries = 0
    start = time.perf_counter()
    for first in range(0, samples, 25):
        request = ComposeRequest(model="builtin:folk", seed=first, num_samples=min(25, samples - first))
        for event in sample_abc(folk.model, folk.tokenizer, request, token_events=False):
            if event.kind == "tune":
                valid += event.valid
                first_try += event.valid and event.report["retries"] == 0
                traps += event.report["repetition_traps"]
                retries += event.report["retries"]
    print(
        f"{folk_ref}: {first_try}/{samples} compile with abc2midi at the first try, {valid}/{samples} after "
        f"retries ({retries} retries); repetition traps broken: {traps} ({time.perf_counter() - start:.0f} s)"
    )


def _tracks(tokens: list[str]) -> list[list[str]]:
    from orchestrion.mmm.grammar import track_spans

    return track_spans(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin:chorales")
    parser.add_argument("--shape", default="small", choices=["small", "seed"])
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--validity",
        type=int,
        default=0,
        metavar="N",
        help="instead of timing: sample N pieces from builtin:chorales and builtin:folk and check them",
    )
    parser.add_argument("--chorales", default="builtin:chorales", help="mmm model for --validity and --critic")
    parser.add_argument(
        "--critic",
        type=int,
        default=0,
        metavar="PIECES",
        help="instead of timing: quality and time of PIECES 4-bar chorales for each number of candidates",
    )
    parser.add_argument("--candidates", default="1,2,4,8", help="the N values of --critic")
    parser.add_argument("--folk", default="builtin:folk", help="ABC model for --validity")
    args = parser.parse_args()
    if args.validity:
        validity(args.validity, args.chorales, args.folk)
        return
    if args.critic:
        critic_table(args.chorales, args.critic, [int(c) for c in args.candidates.split(",")])
        return
    model, tokenizer, name = load(args.model, args.shape)
    tokens = min(args.tokens, model.config.n_positions - 1)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model: {name}, {params / 1e6:.2f} M parameters; {tokens} new tokens; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads by default"
    )
    print(f"{'batch':>5} {'ours tok/s':>11} {'HF tok/s':>10} {'ratio':>6} {'HF 1-thread':>12} {'ratio':>6}")
    for batch in (1, 8):
        ours = time_ours(model, batch, tokens, args.repeats)
        hf = time_hf(model, batch, tokens, args.repeats, None)
        hf1 = time_hf(model, batch, tokens, args.repeats, 1)
        print(f"{batch:>5} {ours:>11.0f} {hf:>10.0f} {ours / hf:>5.1f}x {hf1:>12.0f} {ours / hf1:>5.1f}x")
    for candidates in (1, 2, 4, None):
        first, whole, cpu = first_bar_ms(model, tokenizer, max(args.repeats, 3), candidates)
        label = f"N={candidates}" if candidates else "default N"
        print(
            f"stream, 4 bars x 4 voices, best-of-{label}: first chosen bar after {first:.0f} ms "
            f"(target < 300 ms), whole piece {whole:.0f} ms (target < 2000 ms; {cpu:.0f} ms of CPU)"
        )


if __name__ == "__main__":
    main()
