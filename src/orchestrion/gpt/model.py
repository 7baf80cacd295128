"""The GPT composer's model: a Hugging Face GPT-2, its shape and presets, built or extended for a tokenizer.

    GPTConfig, PRESETS, preset()   a GPT-2 shape (layers, heads, width, context) with its training settings;
                                   presets by name: "seed" (the reference size, for a GPU), "small" (the
                                   shipped models, on a CPU), "chorale" (small, with mmm's bar positions)
                                   and "tiny" (tests)
    build_model                    a fresh `GPT2LMHeadModel` for a tokenizer (bos/eos/pad from dataset.json)
    vocab_union                    fine-tuning on data with new tokens: they join the model's tokenizer
    MODEL_FILES                    what a shipped model directory holds

A model directory (written by `orchestrion.gpt.training`) loads with plain transformers:

    GPT2LMHeadModel.from_pretrained(dir)
    PreTrainedTokenizerFast(tokenizer_file=str(dir / "tokenizer.json"))

and its config.json carries two extra fields, "composer": "gpt" and "encoding": "mmm" | "abc", which
`orchestrion.registry` and `orchestrion.gpt.composer` route on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from orchestrion.core.training import TrainConfig
from orchestrion.errors import InvalidRequest

# Files a shipped/exported model needs (the checkpoint/ folder with optimizer state is left out of builtins).
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "model_card.md",
    "model_card.json",
    "loss_curve.png",
    "metrics.jsonl",
)


@dataclass
class GPTConfig:
    """A GPT-2 shape plus the training settings that go with it."""

    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 512
    n_positions: int = 2048  # the model's maximum context
    context: int = 1024  # training window length (<= n_positions)
    dropout: float = 0.1
    align: float = 0.5  # share of training windows that start at a sequence start (generation starts there)
    token_types: str | None = None  # a feature the encoding gives every token (mmm: "bar-steps"), or None
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {**asdict(self), "train": self.train.to_dict()}


def _cpu_preset(
    layers: int,
    width: int,
    context: int,
    dropout: float = 0.1,
    steps: int = 4000,
    eval_every: int = 250,
    keep_best: bool = False,
    eval_batches: int | None = None,
    checkpoint_every: int = 50,
) -> GPTConfig:
    """A GPT for one CPU thread: about 2,048 tokens a step (batch x window)."""
    return GPTConfig(
        layers,
        max(2, width // 64),
        width,
        context,
        context,
        dropout,
        train=TrainConfig(
            steps=steps,
            batch_size=max(1, 2048 // context),
            lr=2e-3 if width <= 128 else 1e-3,
            min_lr=1e-4,
            warmup_steps=100,
            eval_every=eval_every,
            eval_batches=eval_batches or 48 * 256 // context,
            checkpoint_every=checkpoint_every,
            keep_best=keep_best,
            weight_decay=0.1,
        ),
    )


PRESETS: dict[str, GPTConfig] = {
    # The reference size (6 layers, 8 heads, 512 wide, 2048 context): for a GPU.
    "seed": GPTConfig(
        6,
        8,
        512,
        2048,
        1024,
        0.1,
        train=TrainConfig(steps=20_000, batch_size=16, lr=3e-4, warmup_steps=500, eval_every=500, checkpoint_every=500),
    ),
    # Sized for a CPU shared with other work (the shipped models use it: ~0.9M parameters + embeddings, 3-4 MB).
    # The training window is the whole context: positions never trained on would derail generation there.
    "small": GPTConfig(
        4,
        4,
        128,
        512,
        512,
        0.1,
        train=TrainConfig(
            steps=800,
            batch_size=4,
            lr=2e-3,
            min_lr=2e-4,
            warmup_steps=40,
            eval_every=100,
            eval_batches=8,
            checkpoint_every=25,
            weight_decay=0.05,
        ),
    ),
    # The folk sweep (1 CPU thread; docs/folk-training.md): folk-{layers}x{width}-c{training window}, dropout 0.1.
    **{
        f"folk-{L}x{D}-c{C}": _cpu_preset(L, D, C)
        for L, D, C in ((4, 128, 256), (4, 256, 256), (6, 256, 256), (4, 384, 256), (4, 256, 512), (6, 192, 256))
    },
    # The long run of builtin:folk (docs/folk-training.md): folk-symbol vocabulary, 384-token window (98.7% of reels fit
    # whole, against 86% at 256), ~10 passes over the 1.86M training tokens, best validation weights kept.
    "folk-long": _cpu_preset(
        4, 256, 384, dropout=0.1, steps=10_000, eval_every=200, keep_best=True, checkpoint_every=200
    ),
    # The same on the BPE 2,048 dataset (a tune is 2.3x fewer tokens: 25 passes, so more dropout).
    "folk-long-bpe": _cpu_preset(
        4, 256, 256, dropout=0.2, steps=10_000, eval_every=200, keep_best=True, checkpoint_every=200
    ),
    # The many-passes probe (a 1/16 subset of the train split, docs/folk-training.md): evaluated every 50 steps.
    "folk-4x256-c256-probe": _cpu_preset(4, 256, 256, eval_every=50, keep_best=True, eval_batches=16),
    # For tests and smoke runs: seconds on a CPU.
    "tiny": GPTConfig(
        2,
        2,
        64,
        256,
        64,
        0.0,
        train=TrainConfig(
            steps=40,
            batch_size=4,
            lr=3e-3,
            min_lr=3e-4,
            warmup_steps=5,
            eval_every=20,
            eval_batches=2,
            checkpoint_every=10,
            log_every=5,
        ),
    ),
}


# `small` reading mmm's bar positions beside each token (orchestrion.mmm.timing): the shipped chorale model.
PRESETS["chorale"] = replace(PRESETS["small"], token_types="bar-steps")


def preset(name: str) -> GPTConfig:
    if name not in PRESETS:
        raise InvalidRequest("preset", f"unknown GPT preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


# ------------------------------------------------------------------------------------------- train


def special_id(meta: dict, tokenizer, *roles: str) -> int | None:
    """The id of a special token named in dataset.json (`special_tokens`: role -> token or id)."""
    specials = meta.get("special_tokens") or {}
    for role in roles:
        value = specials.get(role)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and tokenizer.token_to_id(value) is not None:
            return tokenizer.token_to_id(value)
    return None


def build_model(config: GPTConfig, tokenizer, meta: dict, encoding: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    bos = special_id(meta, tokenizer, "bos", "start", "piece_start")
    eos = special_id(meta, tokenizer, "eos", "end", "piece_end")
    pad = special_id(meta, tokenizer, "pad")
    hf = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(),
        n_positions=config.n_positions,
        n_embd=config.n_embd,
        n_layer=config.n_layer,
        n_head=config.n_head,
        resid_pdrop=config.dropout,
        embd_pdrop=config.dropout,
        attn_pdrop=config.dropout,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    # Extra attributes travel in config.json; plain transformers ignores them, orchestrion routes on them.
    hf.composer = "gpt"
    hf.encoding = encoding
    torch.manual_seed(config.train.seed)
    return GPT2LMHeadModel(hf)


def vocab_union(model_tok, data_tok):
    """Add the dataset's tokens that the model lacks to its tokenizer.

    Returns the tokenizer, the id map (dataset id -> model id, an int64 array) and the tokens added.
    """
    from tokenizers import AddedToken

    model_vocab = model_tok.get_vocab(with_added_tokens=True)
    data_vocab = data_tok.get_vocab(with_added_tokens=True)
    new = sorted((t for t in data_vocab if t not in model_vocab), key=data_vocab.get)
    if new:
        model_tok.add_tokens([AddedToken(t, single_word=False, normalized=False) for t in new])
    id_map = np.zeros(max(data_vocab.values()) + 1, dtype=np.int64)
    for token, i in data_vocab.items():
        id_map[i] = model_tok.token_to_id(token)
    return model_tok, id_map, new
