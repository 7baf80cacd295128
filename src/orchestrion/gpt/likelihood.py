"""Likelihood of a GPT model on a token dataset: loss, perplexity, bits per token / character / byte, accuracy@k."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from orchestrion.core.shards import TokenDataset
from orchestrion.errors import BadInput


def gpt_likelihood(
    composer, dataset_root: str | Path, *, windows: int = 32, context: int = 512, split: str = "validation"
) -> dict:
    """Loss (nats/token), perplexity, bits per token/character/byte and accuracy@1/3/5/10 on fixed windows."""
    import torch
    from tokenizers import Tokenizer

    dataset = TokenDataset(dataset_root)
    if dataset.encoding != composer.encoding.name:
        raise BadInput(
            f"the dataset is {dataset.encoding!r} but the model reads {composer.encoding.name!r}", dataset_root
        )
    data_tok = Tokenizer.from_file(str(dataset.tokenizer_path))
    model_tok = composer.tokenizer
    # Renumber dataset ids into the model's vocabulary by token text (they are usually the same tokenizer).
    vocab = data_tok.get_vocab()
    id_map = np.full(max(vocab.values()) + 1, -1, dtype=np.int64)
    for token, i in vocab.items():
        j = model_tok.token_to_id(token)
        id_map[i] = -1 if j is None else j
    ids = id_map[dataset.split(split).concatenated().astype(np.int64)]
    if (ids < 0).any():
        raise BadInput(
            f"{int((ids < 0).sum())} tokens of the {split} split are not in the model's vocabulary", dataset_root
        )
    length = min(context, composer.context)
    if len(ids) < length + 1:
        length = len(ids) - 1
    if length < 2:
        raise BadInput(f"the {split} split is too short to measure", dataset_root)
    starts = np.linspace(0, len(ids) - length - 1, min(windows, len(ids) - length)).astype(np.int64)
    model = composer.model.eval()
    nll, total, chars, nbytes = 0.0, 0, 0, 0
    hits = dict.fromkeys((1, 3, 5, 10), 0)
    with torch.no_grad():
        for start in starts:
            w = torch.from_numpy(ids[start : start + length + 1])[None]
            logits = model(input_ids=w[:, :-1], use_cache=False).logits.float()[0]
            target = w[0, 1:]
            nll += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            top = logits.topk(10, dim=-1).indices
            for k in hits:
                hits[k] += int((top[:, :k] == target[:, None]).any(-1).sum())
            total += len(target)
            text = model_tok.decode(target.tolist(), skip_special_tokens=False)
            chars += len(text)
            nbytes += len(text.encode())
    loss = nll / total
    bits = nll / math.log(2)
    return {
        "split": split,
        "windows": len(starts),
        "window_starts": [int(x) for x in starts],  # where each window starts in the split: baselines use the same
        "window_length": int(length),
        "tokens": total,
        "loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_token": loss / math.log(2),
        "bits_per_character": bits / max(chars, 1),
        "bits_per_byte": bits / max(nbytes, 1),
        **{f"accuracy@{k}": hits[k] / total for k in hits},
    }
