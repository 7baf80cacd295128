"""Likelihood of a GPT model on held-out music: loss, perplexity, bits per token / character / byte, accuracy@k.

The data is a token dataset made with the model's tokenizer (its ids are read as they are), a token dataset
made with another tokenizer (its text is tokenised again, the model's way, by the encoding's `token_ids`),
or pieces as text (`texts`: the ABC tunes of a folder). Bits per character compare across tokenizers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from orchestrion.core.shards import TokenDataset
from orchestrion.errors import BadInput


def gpt_likelihood(
    composer,
    dataset_root: str | Path | None = None,
    *,
    windows: int = 32,
    context: int = 512,
    split: str = "validation",
    texts: list[str] | None = None,
) -> dict:
    """Loss (nats/token), perplexity, bits per token/character/byte and accuracy@1/3/5/10 on fixed windows.

    `texts` (instead of a dataset): pieces to tokenise with the model's own tokenizer. `retokenised` in the
    result says when the model's tokenizer made the ids; `window_starts` (where the dataset's own baselines
    score) is given only when the ids are the dataset's.
    """
    import torch

    retokenised = texts is not None
    if texts is not None:
        ids = _tokenised(composer, texts, "--data")
    else:
        ids, retokenised = _dataset_ids(composer, Path(dataset_root), split)
    length = min(context, composer.context)
    if len(ids) < length + 1:
        length = len(ids) - 1
    if length < 2:
        raise BadInput(f"the {split} split is too short to measure", dataset_root)
    starts = np.linspace(0, len(ids) - length - 1, min(windows, len(ids) - length)).astype(np.int64)
    model = composer.model.eval()
    types = None
    if getattr(model.config, "token_types", None):  # a feature beside each token (mmm: bar positions)
        types = torch.from_numpy(composer.encoding.token_types(ids, composer.tokenizer.get_vocab()))
    nll, total, chars, nbytes = 0.0, 0, 0, 0
    hits = dict.fromkeys((1, 3, 5, 10), 0)
    with torch.no_grad():
        for start in starts:
            w = torch.from_numpy(ids[start : start + length + 1])[None]
            t = types[None, start : start + length] if types is not None else None
            logits = model(input_ids=w[:, :-1], token_type_ids=t, use_cache=False).logits.float()[0]
            target = w[0, 1:]
            nll += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            top = logits.topk(10, dim=-1).indices
            for k in hits:
                hits[k] += int((top[:, :k] == target[:, None]).any(-1).sum())
            total += len(target)
            text = composer.tokenizer.decode(target.tolist(), skip_special_tokens=False)
            chars += len(text)
            nbytes += len(text.encode())
    loss = nll / total
    bits = nll / math.log(2)
    where = {} if retokenised else {"window_starts": [int(x) for x in starts]}  # the baselines score the same
    return {
        "split": split if texts is None else "all",
        "windows": len(starts),
        **where,
        "retokenised": retokenised,
        "window_length": int(length),
        "tokens": total,
        "loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_token": loss / math.log(2),
        "bits_per_character": bits / max(chars, 1),
        "bits_per_byte": bits / max(nbytes, 1),
        **{f"accuracy@{k}": hits[k] / total for k in hits},
    }


def composer_types(composer) -> bool:
    return bool(getattr(composer.model.config, "token_types", None))


def _dataset_ids(composer, root: Path, split: str) -> tuple[np.ndarray, bool]:
    """The split's ids in the model's vocabulary: the dataset's own (renumbered by token text) when it was
    made with the model's tokenizer; else its text tokenised again the model's way (True), since another
    tokenizer's pieces, even where the model knows each of them, are not how the model reads the text."""
    from tokenizers import Tokenizer

    dataset = TokenDataset(root)
    if dataset.encoding != composer.encoding.name:
        raise BadInput(f"the dataset is {dataset.encoding!r} but the model reads {composer.encoding.name!r}", root)
    vocab = Tokenizer.from_file(str(dataset.tokenizer_path)).get_vocab()
    features = set(getattr(composer.encoding, "type_tokens", list)()) if composer_types(composer) else set()
    # a feature's tokens are never in the data; a dataset made with the model's own tokenizer file has them
    if set(vocab) - features == set(composer.tokenizer.get_vocab()) - features:
        id_map = np.full(max(vocab.values()) + 1, -1, dtype=np.int64)
        for token, i in vocab.items():
            id_map[i] = composer.tokenizer.token_to_id(token)
        return id_map[dataset.split(split).concatenated().astype(np.int64)], False
    meta = json.loads((root / "dataset.json").read_text())
    files = sorted((root / "text").glob(f"{split}-*.txt"))
    if not files:
        raise BadInput(
            f"the dataset was made with another tokenizer and has no text/{split}-*.txt to tokenise again", root
        )
    texts = [composer.encoding.text_of(line, meta) for f in files for line in f.read_text().splitlines() if line]
    return _tokenised(composer, [t for t in texts if t], root), True


def _tokenised(composer, texts: list[str], where: str | Path) -> np.ndarray:
    """Pieces as text -> the model's token ids, one sequence after another (the encoding's `token_ids`)."""
    to_ids = getattr(composer.encoding, "token_ids", None)
    if to_ids is None:
        raise BadInput(f"a {composer.encoding.name!r} model reads only token datasets made with its tokenizer", where)
    sequences = [to_ids(text, composer.tokenizer) for text in texts]
    sequences = [s for s in sequences if s]
    if not sequences:
        raise BadInput("no piece could be tokenised", where)
    return np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
