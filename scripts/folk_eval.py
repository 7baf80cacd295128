"""Held-out bits per token and per character of ABC token datasets: n-gram baselines and GPT checkpoints.

Every figure is over whole validation tunes, each scored from its start: the model is given `<s>` and
predicts every token after it, `</s>` included. Characters are the tune's text (spaceless ABC, newlines
included) plus one for its end, the same count for every vocabulary, so bits per character compare
vocabularies fairly.

    python scripts/folk_eval.py baselines DATA [DATA ...]
    python scripts/folk_eval.py model RUN_DIR DATA [--preset NAME]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np


def load_split(root: Path, split: str) -> tuple[list[np.ndarray], int, object]:
    """A split's sequences, its character count (text + one end per tune) and the dataset's tokenizer."""
    from tokenizers import Tokenizer

    from orchestrion.core.shards import TokenDataset

    ds = TokenDataset(root)
    tok = Tokenizer.from_file(str(ds.tokenizer_path))
    sp = ds.split(split)
    seqs = [np.asarray(sp[i], dtype=np.int64) for i in range(len(sp))]
    texts = [tok.decode(s[1:-1].tolist(), skip_special_tokens=True) for s in seqs]
    chars = sum(len(t) + 1 for t in texts)
    return seqs, chars, tok


def ngram_baselines(root: Path, orders=(1, 2, 3)) -> dict:
    train, train_chars, tok = load_split(root, "train")
    val, val_chars, _ = load_split(root, "validation")
    V = tok.get_vocab_size()
    bos = int(train[0][0])
    # counts[n][context tuple][next] for n = 1..max order
    counts = {n: defaultdict(Counter) for n in orders}
    for s in train:
        s = s.tolist()
        for i in range(1, len(s)):
            for n in orders:
                ctx = tuple(s[max(0, i - n + 1) : i])
                if len(ctx) == n - 1:
                    counts[n][ctx][s[i]] += 1
    totals = {n: {c: sum(d.values()) for c, d in counts[n].items()} for n in orders}
    types = {n: {c: len(d) for c, d in counts[n].items()} for n in orders}
    uni = counts[1][()]
    uni_total = totals[1][()]

    def p_add1_uni(w):
        return (uni[w] + 1) / (uni_total + V)

    def p_add1_bi(v, w):
        c = counts[2].get((v,))
        return ((c[w] if c else 0) + 1) / ((totals[2].get((v,), 0)) + V)

    def p_wb(ctx, w, n):
        if n == 1:
            return p_add1_uni(w)
        lower = p_wb(ctx[1:], w, n - 1)
        key = ctx[-(n - 1) :]
        c = counts[n].get(key)
        if not c:
            return lower
        t, total = types[n][key], totals[n][key]
        return (c[w] + t * lower) / (total + t)

    rows = {}
    models = {
        "unigram (add-one)": lambda ctx, w: p_add1_uni(w),
        "bigram (add-one)": lambda ctx, w: p_add1_bi(ctx[-1], w),
        "bigram (Witten-Bell)": lambda ctx, w: p_wb(ctx[-1:], w, 2),
        "trigram (Witten-Bell)": lambda ctx, w: p_wb(ctx[-2:], w, 3),
    }
    for name, p in models.items():
        nll, n_tok = 0.0, 0
        for s in val:
            s = s.tolist()
            for i in range(1, len(s)):
                ctx = tuple(s[max(0, i - 2) : i])
                if len(ctx) < 2:
                    ctx = (bos,) * (2 - len(ctx)) + ctx  # before the tune: <s> padding
                nll -= math.log2(p(ctx, s[i]))
                n_tok += 1
        rows[name] = {"bits_per_token": nll / n_tok, "bits_per_character": nll / val_chars, "tokens": n_tok}
    return {
        "data": str(root),
        "vocab_size": V,
        "train_tokens": sum(len(s) for s in train),
        "validation_tunes": len(val),
        "validation_tokens": sum(len(s) - 1 for s in val),
        "validation_characters": val_chars,
        "characters_per_token": val_chars / sum(len(s) - 1 for s in val),
        "baselines": rows,
    }


def model_likelihood(run_dir: Path, root: Path, *, preset: str | None = None, batch: int = 16) -> dict:
    """Whole-tune held-out likelihood of a trained (or checkpointed) GPT on a dataset's validation split."""
    import torch
    from transformers import GPT2LMHeadModel

    val, val_chars, _ = load_split(root, "validation")
    if preset:  # a run still training: its last checkpoint, built with its preset's shape
        from safetensors.torch import load_model
        from tokenizers import Tokenizer

        from orchestrion.core.shards import TokenDataset
        from orchestrion.core.training import checkpoint_dir
        from orchestrion.gpt.model import build_model
        from orchestrion.gpt.model import preset as get_preset

        ds = TokenDataset(root)
        model = build_model(get_preset(preset), Tokenizer.from_file(str(ds.tokenizer_path)), ds.meta, ds.encoding)
        ck = checkpoint_dir(run_dir)
        load_model(model, str(ck / "model.safetensors"))
        step = json.loads((ck / "train_state.json").read_text())["step"]
    else:
        model = GPT2LMHeadModel.from_pretrained(run_dir, use_safetensors=True)
        step = None
    model.eval()
    ctx = model.config.n_positions
    eos = int(val[0][-1])
    nll, n_tok = 0.0, 0
    order = sorted(range(len(val)), key=lambda i: len(val[i]))
    with torch.no_grad():
        for b in range(0, len(order), batch):
            seqs = [val[i] for i in order[b : b + batch]]
            long = [s for s in seqs if len(s) > ctx]
            short = [s for s in seqs if len(s) <= ctx]
            if short:
                L = max(len(s) for s in short)
                x = torch.full((len(short), L), eos, dtype=torch.long)
                mask = torch.zeros((len(short), L - 1), dtype=torch.bool)
                for r, s in enumerate(short):
                    x[r, : len(s)] = torch.from_numpy(s)
                    mask[r, : len(s) - 1] = True
                logits = model(input_ids=x[:, :-1]).logits.float()
                lp = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
                nll += float(lp[mask].sum())
                n_tok += int(mask.sum())
            for s in long:  # longer than the context: windows with half a context of history
                t = torch.from_numpy(s)
                done = 0  # targets scored so far (targets are s[1:])
                start = 0
                while done < len(s) - 1:
                    w = t[start : start + ctx + 1][None]
                    logits = model(input_ids=w[:, :-1]).logits.float()[0]
                    lp = torch.nn.functional.cross_entropy(logits, w[0, 1:], reduction="none")
                    first = done - start  # skip targets already scored
                    nll += float(lp[first:].sum())
                    done = start + lp.shape[0]
                    n_tok += lp.shape[0] - first
                    start = done - ctx // 2
    bits = nll / math.log(2)
    return {
        "run": str(run_dir),
        "step": step,
        "data": str(root),
        "tokens": n_tok,
        "loss_nats_per_token": nll / n_tok,
        "bits_per_token": bits / n_tok,
        "bits_per_character": bits / val_chars,
    }


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("baselines")
    b.add_argument("data", nargs="+", type=Path)
    m = sub.add_parser("model")
    m.add_argument("run", type=Path)
    m.add_argument("data", type=Path)
    m.add_argument("--preset", help="score the run's last checkpoint (a run still training), built with this preset")
    args = ap.parse_args(argv)
    if args.cmd == "baselines":
        for d in args.data:
            print(json.dumps(ngram_baselines(d), indent=1), flush=True)
    else:
        import torch

        torch.set_num_threads(1)
        print(json.dumps(model_likelihood(args.run, args.data, preset=args.preset)))


if __name__ == "__main__":
    main(sys.argv[1:])
