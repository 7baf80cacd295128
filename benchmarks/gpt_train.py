"""Training throughput of the GPT composer: our loop vs a plain Hugging Face training step, same batches.

    .venv/bin/python benchmarks/gpt_train.py [--preset seed] [--batch 1] [--context 1024] [--steps 3]

Both sides train the same GPT2LMHeadModel (the preset's shape, the mmm vocabulary) on the same windows:
ours through `orchestrion.core.training.train` with `GPTTask`; the peer is the textbook transformers step
(`model(input_ids, labels=input_ids).loss.backward()`, AdamW, clip, step), as in transformers'
`run_clm_no_trainer` example. Tokens/s counts optimizer steps only, after one warm-up step on each side.
Model FLOPs utilisation = 6 * parameters * tokens/s over the CPU's peak (given with --peak-gflops; the
default assumes 2 cores x 2.6 GHz x 32 fp32 FLOP/cycle: two 256-bit FMA pipes, as on AMD Zen 4).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch


def synthetic_dataset(root: Path, tokens: int = 200_000) -> Path:
    """An mmm-vocabulary dataset of random ids (throughput does not depend on the values)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from orchestrion.core.shards import ShardWriter, write_dataset_json
    from orchestrion.mmm.vocabulary import SPECIAL_TOKENS, vocabulary

    vocab = vocabulary()
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    root.mkdir(parents=True, exist_ok=True)
    tok.save(str(root / "tokenizer.json"))
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", tokens), ("validation", tokens // 10)):
        writer = ShardWriter(root, split, 0)
        for _ in range(n // 2000):
            writer.add(rng.integers(0, len(vocab), 2000), "synthetic")
        info = writer.close()
        splits[split] = {"shards": [info["name"]], "sequences": info["sequences"], "tokens": info["tokens"]}
    write_dataset_json(
        root, {"encoding": "mmm", "vocab_size": len(vocab), "special_tokens": SPECIAL_TOKENS, "splits": splits}
    )
    return root


def peer_tokens_per_second(model, task, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    model.train()

    def step(i: int) -> int:
        x = task.batch("train", i, 0)["input_ids"]
        loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return x.shape[0] * (x.shape[1] - 1)

    step(0)
    start, tokens = time.perf_counter(), 0
    for i in range(1, steps + 1):
        tokens += step(i)
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="seed")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peak-gflops", type=float, default=2 * 2.6 * 32)
    args = parser.parse_args()

    from orchestrion.core.shards import TokenDataset
    from orchestrion.core.training import train
    from orchestrion.gpt.model import build_model, preset
    from orchestrion.gpt.training import GPTTask

    with tempfile.TemporaryDirectory() as tmp:
        data = TokenDataset(synthetic_dataset(Path(tmp) / "data"))
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(data.tokenizer_path))
        config = preset(args.preset)
        config = replace(
            config,
            context=args.context,
            dropout=0.0,
            train=replace(
                config.train,
                steps=args.steps + 1,
                batch_size=args.batch,
                warmup_steps=1,
                eval_every=10**9,
                checkpoint_every=10**9,
                log_every=1,
                eval_batches=1,
            ),
        )
        task = GPTTask(data, config.context, args.batch, align=0.0)
        # Rounds alternate the two sides so that a busy machine slows both alike; the median is reported.
        ours_runs, peer_runs = [], []
        for r in range(args.rounds):
            model = build_model(config, tok, data.meta, "mmm")
            params = sum(p.numel() for p in model.parameters())
            peer_runs.append(peer_tokens_per_second(model, task, args.steps))
            model = build_model(config, tok, data.meta, "mmm")
            out = Path(tmp) / f"ours-{r}"
            train(model, task, config.train, out, quiet=True)
            records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            ours_runs.append(float(np.mean([x["tokens_per_second"] for x in records[1:]])))  # step 1: warm-up
        ours, peer = float(np.median(ours_runs)), float(np.median(peer_runs))

    peak = args.peak_gflops * 1e9
    print(
        f"preset {args.preset}: {params / 1e6:.1f}M parameters, micro-batch {args.batch} x {args.context} tokens, "
        f"{torch.get_num_threads()} threads, median of {args.rounds} alternating rounds of {args.steps} timed steps"
    )
    for name, tps in (("orchestrion.core.training", ours), ("transformers step (peer)", peer)):
        print(
            f"  {name:26s} {tps:10,.0f} tokens/s   MFU {6 * params * tps / peak:6.1%} "
            f"(6 x N x tokens/s over {args.peak_gflops:.0f} GFLOP/s peak)"
        )
    print(f"ratio ours/peer: {ours / peer:.2f}x")


if __name__ == "__main__":
    main()
