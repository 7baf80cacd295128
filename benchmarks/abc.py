"""ABC pipeline figures, each against a peer on the same tunes in one run.

1. Tokens per tune: our ABC BPE (pieces split at newlines only) vs a stock GPT-2-style byte-level BPE
   (GPT-2's regex pre-split), both trained on the same train tunes at the same vocabulary size, measured
   on held-out tunes. Fewer tokens = more music per context window.
2. Validity check per tune: `abcmidi.validate` (abc2midi) vs parsing the tune with music21's ABC reader
   (the other way to check a generated tune in this stack).
3. Novelty check per tune: our n-gram index vs a brute-force scan of every training tune.
4. Decoding speed: `sample_abc` (forced header, body grammar with bar lengths, form and tonic) vs the same
   model sampled with no constraint at all, in tokens per second, and the seconds a whole tune takes
   (abc2midi check and retries included), over reels, jigs, hornpipes and polkas.

    .venv/bin/python benchmarks/abc.py [--tunes 2000] [--vocab 2048] [--checks 100] [--sampling 24]
    .venv/bin/python benchmarks/abc.py --only-sampling       # just the decoding speed
    .venv/bin/python benchmarks/abc.py --only-sampling --model DIR --caps 96,32   # another model; caps compared
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def corpus(n: int) -> tuple[list[str], list[str]]:
    from orchestrion.abc import text as abc
    from orchestrion.abc.dataset import split_of
    from orchestrion.core import corpora

    records = corpora.folk_tunes()
    step = max(1, len(records) // n)
    texts = [abc.spaceless(abc.clean(r["abc"]).abc) for r in records[::step][:n]]
    train = [t for t in texts if split_of(t) == "train"]
    held = [t for t in texts if split_of(t) == "validation"] or train[:50]
    return train, held


def stock_bpe(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's regex pre-split
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def bench_tokens(train: list[str], held: list[str], vocab: int) -> None:
    from orchestrion.abc.dataset import make_tokenizer

    ours = make_tokenizer(train, vocab)
    peer = stock_bpe(train, vocab)
    chars = np.mean([len(t) for t in held])
    ours_n = np.mean([len(e.ids) for e in ours.encode_batch(held)])
    peer_n = np.mean([len(e.ids) for e in peer.encode_batch(held)])
    print(f"tokens per tune (vocab {vocab}, {len(train)} train / {len(held)} held-out tunes, {chars:.1f} chars/tune)")
    print(f"  ours (ABC BPE)     {ours_n:8.1f}  ({chars / ours_n:.2f}x fewer than characters)")
    print(f"  peer (GPT-2 style) {peer_n:8.1f}  ({chars / peer_n:.2f}x fewer than characters)")
    print(f"  ratio peer/ours    {peer_n / ours_n:8.2f}x")


def bench_validity(tunes: list[str]) -> None:
    from music21 import converter

    from orchestrion.core import abcmidi

    t0 = time.perf_counter()
    ours = [abcmidi.validate(t).status for t in tunes]
    ours_s = (time.perf_counter() - t0) / len(tunes)
    t0 = time.perf_counter()
    peer_ok = 0
    for t in tunes:
        try:
            converter.parse(t, format="abc")
            peer_ok += 1
        except Exception:  # music21 raises many types on bad ABC; any failure counts as invalid
            pass
    peer_s = (time.perf_counter() - t0) / len(tunes)
    print(f"validity check per tune ({len(tunes)} tunes)")
    print(f"  ours (abc2midi)    {1000 * ours_s:8.2f} ms  ({sum(s != 'errors' for s in ours)} compile)")
    print(f"  peer (music21)     {1000 * peer_s:8.2f} ms  ({peer_ok} parse)")
    print(f"  ratio peer/ours    {peer_s / ours_s:8.2f}x")


def bench_novelty(train: list[str], queries: int) -> None:
    from orchestrion.core.novelty import N, NoveltyIndex, events_from_abc, ngram_hashes

    events = []
    for t in train:
        try:
            events.append(events_from_abc(t))
        except Exception:  # tunes abc2midi cannot compile are not in the index
            continue
    ids = [str(i) for i in range(len(events))]
    t0 = time.perf_counter()
    index = NoveltyIndex.build(events, ids)
    build_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    picks = [events[i] for i in rng.choice(len(events), size=min(queries, len(events)), replace=False)]
    t0 = time.perf_counter()
    ours = [index.check(q).ngram_share for q in picks]
    ours_s = (time.perf_counter() - t0) / len(picks)
    sets = [set(ngram_hashes(e).tolist()) for e in events]
    t0 = time.perf_counter()
    peer = []
    for q in picks:  # brute force: every training tune's n-gram set, scanned per query
        h = ngram_hashes(q).tolist()
        peer.append(float(np.mean([any(x in s for s in sets) for x in h])) if h else 0.0)
    peer_s = (time.perf_counter() - t0) / len(picks)
    assert np.allclose(ours, peer), "the index and the brute-force scan disagree"
    print(f"novelty check per tune ({len(events)} training tunes, {N}-grams, index built in {build_s:.2f} s)")
    print(f"  ours (index)       {1000 * ours_s:8.2f} ms")
    print(f"  peer (brute force) {1000 * peer_s:8.2f} ms")
    print(f"  ratio peer/ours    {peer_s / ours_s:8.2f}x")


def bench_sampling(tunes: int, model_ref: str = "builtin:folk", caps: tuple[int, ...] = ()) -> None:
    """Decoding speed: `sample_abc` (header, body grammar, meter) vs the same model sampled unconstrained.

    `caps`: values of `orchestrion.abc.grammar.MAX_CHECKED` (tokens checked per step once some fit) to
    compare, taken in turn for each tune so that the machine's load hits them alike.
    """
    import torch

    from orchestrion.abc import grammar
    from orchestrion.abc.sampler import sample_abc
    from orchestrion.core.sampling import SamplingConfig, build_processors
    from orchestrion.gpt.decoding import generate_tokens
    from orchestrion.registry import load_composer
    from orchestrion.requests import ComposeRequest

    composer = load_composer(model_ref)
    model, tokenizer = composer.model, composer.tokenizer
    eos, bos = tokenizer.token_to_id("</s>"), tokenizer.token_to_id("<s>")
    rhythms = ("reel", "jig", "hornpipe", "polka")
    caps = caps or (grammar.MAX_CHECKED,)
    ours = {cap: [0, 0.0, []] for cap in caps}  # tokens, seconds, seconds per whole tune
    peer_tokens, peer_s = 0, 0.0
    for i in range(tunes):
        request = composer.validate(ComposeRequest(model=model_ref, rhythm=rhythms[i % 4], seed=i))
        n = 0
        for cap in caps:
            grammar.MAX_CHECKED = cap
            start = time.perf_counter()
            next(e for e in sample_abc(model, tokenizer, request, token_events=False) if e.kind == "tune")
            ours[cap][2].append(time.perf_counter() - start)
            start = time.perf_counter()
            done = next(e for e in sample_abc(model, tokenizer, request, token_events=False, check=False)
                        if e.kind == "tune")  # fmt: skip
            ours[cap][1] += time.perf_counter() - start
            n = len(tokenizer.encode(done.text, add_special_tokens=False).ids)
            ours[cap][0] += n
        config = SamplingConfig.from_request(request)
        start = time.perf_counter()
        steps = generate_tokens(model, torch.tensor([[bos]]), config, build_processors(config), [eos], n,
                                torch.Generator().manual_seed(i))  # fmt: skip
        peer_tokens += sum(1 for _ in steps)
        peer_s += time.perf_counter() - start
    peer = peer_tokens / peer_s
    print(f"ABC decoding speed ({tunes} tunes of {', '.join(rhythms)}, {model_ref}, batch 1)")
    for cap, (tokens, seconds, per_tune) in ours.items():
        rate = tokens / seconds
        print(f"  ours (header + body grammar, MAX_CHECKED {cap:3}) {rate:8.0f} tokens/s  ({rate / peer:.2f}x the peer); "
              f"seconds per tune, abc2midi check and retries included: median {statistics.median(per_tune):.2f}, "
              f"max {max(per_tune):.2f}")  # fmt: skip
    print(f"  peer (unconstrained)                  {peer:8.0f} tokens/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunes", type=int, default=2000)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--sampling", type=int, default=24, help="tunes for the decoding speed (0: skip)")
    parser.add_argument("--only-sampling", action="store_true", help="only the decoding speed")
    parser.add_argument("--model", default="builtin:folk", help="the model for the decoding speed")
    parser.add_argument("--caps", default="", help="MAX_CHECKED values to compare, e.g. 96,32")
    args = parser.parse_args()
    if args.sampling:
        bench_sampling(args.sampling, args.model, tuple(int(c) for c in args.caps.split(",") if c))
    if args.only_sampling:
        return
    train, held = corpus(args.tunes)
    bench_tokens(train, held, args.vocab)
    bench_validity(held[: args.checks])
    bench_novelty(train, args.checks)


if __name__ == "__main__":
    main()
