"""Tiny token datasets written the way the encoders write theirs, for tests and benchmarks.

`make_token_dataset` is mmm (the real vocabulary, WordLevel), `make_abc_dataset` spaceless ABC with the
ABC encoder's own BPE. Both take seconds and need no corpus.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrion.abc import text as abccodec
from orchestrion.abc.dataset import SPECIAL_TOKENS as ABC_SPECIAL_TOKENS
from orchestrion.abc.dataset import make_tokenizer
from orchestrion.core.shards import ShardWriter, write_dataset_json
from orchestrion.mmm.vocabulary import SPECIAL_TOKENS as MMM_SPECIAL_TOKENS
from orchestrion.mmm.vocabulary import vocabulary


def make_token_dataset(root: Path, sequences: int = 40, seed: int = 0, extra: tuple[str, ...] = ()) -> Path:
    """A tiny mmm dataset (the real mmm vocabulary, WordLevel), written the way the encoders write theirs.

    Each sequence is a 2-bar, 4-voice piece of quarter notes; `extra` tokens (new to the vocabulary) are put
    at the end of every bar, for the fine-tuning test.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = vocabulary() + list(extra)
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    root.mkdir(parents=True, exist_ok=True)
    tok.save(str(root / "tokenizer.json"))
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in (("train", sequences), ("validation", max(4, sequences // 10))):
        writer = ShardWriter(root, split, 0)
        for _ in range(count):
            words = ["PIECE_START"]
            for voice, low in (("SOPRANO", 67), ("ALTO", 60), ("TENOR", 55), ("BASS", 48)):
                words += ["TRACK_START", f"INST={voice}", "DENSITY=3"]
                for _bar in range(2):
                    base = low + int(rng.integers(0, 5))
                    words.append("BAR_START")
                    for step in (0, 2, 4, 5):
                        words += [f"NOTE_ON={base + step}", "TIME_DELTA=4", f"NOTE_OFF={base + step}"]
                    words += list(extra) + ["BAR_END"]
                words.append("TRACK_END")
            text = " ".join([*words, "PIECE_END"])
            writer.add(tok.encode(text).ids, text)
        info = writer.close()
        splits[split] = {"shards": [info["name"]], "sequences": info["sequences"], "tokens": info["tokens"]}
    write_dataset_json(
        root,
        {
            "encoding": "mmm",
            "vocab_size": tok.get_vocab_size(),
            "splits": splits,
            "special_tokens": MMM_SPECIAL_TOKENS,
            "options": {"bars": 2},
        },
    )
    return root


TUNES = [
    "X:1\nT:A\nM:6/8\nL:1/8\nK:G\n|:GAB c2d|edc BAG|GAB c2d|e2d d3:|\n",
    "X:2\nT:B\nM:4/4\nL:1/8\nK:D\n|:d2fd A2FA|d2fd e2ce|d2fd A2FA|G2E2 D4:|\n",
    "X:3\nT:C\nM:3/4\nL:1/4\nK:C\nC E G|c2 G|E C E|D3|C E G|c2 e|d B G|c3|]\n",
]


def make_abc_dataset(root: Path, copies: int = 20) -> Path:
    """A tiny spaceless-ABC dataset with the ABC encoder's own BPE tokenizer: <s> tune </s> per sequence."""
    texts = [abccodec.spaceless(t) for t in TUNES]
    tok = make_tokenizer(texts * 4, 300)
    root.mkdir(parents=True, exist_ok=True)
    tok.save(str(root / "tokenizer.json"))
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    splits = {}
    for split, n in (("train", copies), ("validation", 2)):
        writer = ShardWriter(root, split, 0)
        for i in range(n):
            text = texts[i % len(texts)]
            writer.add([bos, *tok.encode(text).ids, eos], abccodec.escape_newlines(text))
        info = writer.close()
        splits[split] = {"shards": [info["name"]], "sequences": info["sequences"], "tokens": info["tokens"]}
    write_dataset_json(
        root,
        {"encoding": "abc", "vocab_size": tok.get_vocab_size(), "splits": splits, "special_tokens": ABC_SPECIAL_TOKENS},
    )
    return root
