"""`orchestrion train gpt`: GPT-2 on a token dataset, or fine-tuned from a model, exported with a model card.

    GPTTask       windows of `context + 1` tokens from a split's sequences laid end to end, each step's drawn
                  with a generator seeded by (seed, split, step, index): a step sees the same data whatever
                  happened before it (a resume after `kill -9`, DDP ranks)
    train_gpt     the command: builds the model (`orchestrion.gpt.model`) or loads `init` and adds the
                  dataset's new tokens, trains with the shared loop (`orchestrion.core.training`), exports
    export        `save_pretrained` (safetensors) + tokenizer.json + model_card.{md,json}

Beside the export, the output directory holds what a resume needs: checkpoint/ (the shared loop's),
commands.jsonl (every invocation, for the model card) and data_fingerprint.json (a resume must see the
very data it started on: re-encoding a dataset renumbers its tokens). The dataset's encoding (looked up in
`orchestrion.registry.ENCODINGS`) adds what config.json learns from the data, e.g. the usual line-up.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from orchestrion.core.files import write_atomic
from orchestrion.core.shards import TokenDataset
from orchestrion.core.training import TrainResult, checkpoint_dir, train
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.gpt.model import build_model, preset, vocab_union
from orchestrion.registry import encoding_for, resolve_model_dir

# ------------------------------------------------------------------------------------ the data task


class GPTTask:
    """Windows of `context + 1` tokens from a split's sequences laid end to end.

    Window starts are drawn from a generator seeded with (seed, split, step, index), so that a step
    always sees the same data, whatever happened before it (resume after kill -9, DDP ranks).
    `id_map` renumbers dataset ids into the model's vocabulary (fine-tuning from another vocabulary).
    """

    SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}

    def __init__(
        self,
        dataset,
        context: int,
        batch_size: int,
        seed: int = 0,
        align: float = 0.5,
        id_map: np.ndarray | None = None,
        separator: int | None = None,
        types=None,
    ):
        self.context, self.batch_size, self.seed, self.align = context, batch_size, seed, align
        self.types: dict[str, np.ndarray] = {}  # with `types` (ids -> ids): each token's token_type_id
        self.data: dict[str, np.ndarray] = {}
        self.starts: dict[str, np.ndarray] = {}
        for name in ("train", "validation"):
            split = dataset.split(name)
            if split.tokens == 0:
                raise BadInput(f"the {name!r} split has no tokens", dataset.root)
            seqs = [split[i].astype(np.int64) for i in range(len(split))]
            if id_map is not None:  # into the model's numbering first: `separator` is a model id
                seqs = [id_map[s] for s in seqs]
            if separator is not None:  # keep pieces apart when the encoding has no end-of-piece token of its own
                seqs = [np.append(s, separator) if len(s) and s[-1] != separator else s for s in seqs]
            lengths = np.array([len(s) for s in seqs], dtype=np.int64)
            ids = np.concatenate(seqs)
            if len(ids) < context + 1:  # a tiny split: repeat it so that a whole window fits
                ids = np.resize(ids, context + 1)
            self.data[name] = ids
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            self.starts[name] = starts[starts <= len(ids) - context - 1]
            if types is not None:
                self.types[name] = types(ids)

    def batch(self, split: str, step: int, index: int) -> dict[str, torch.Tensor]:
        ids = self.data[split]
        rng = np.random.default_rng([self.seed, self.SPLIT_CODES[split], step, index])
        starts = rng.integers(0, len(ids) - self.context, size=self.batch_size)
        aligned = rng.random(self.batch_size) < self.align
        if len(self.starts[split]):
            starts = np.where(aligned, rng.choice(self.starts[split], size=self.batch_size), starts)
        windows = np.stack([ids[s : s + self.context + 1] for s in starts])  # (B, L+1)
        if split in self.types:
            types = np.stack([self.types[split][s : s + self.context + 1] for s in starts])  # (B, L+1)
            return {"input_ids": torch.from_numpy(windows), "token_type_ids": torch.from_numpy(types)}
        return {"input_ids": torch.from_numpy(windows)}

    def loss(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        x = batch["input_ids"]  # (B, L+1)
        types = batch.get("token_type_ids")
        types = types[:, :-1] if types is not None else None
        logits = model(input_ids=x[:, :-1], token_type_ids=types, use_cache=False).logits  # (B, L, V)
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())

    def tokens(self, batch: dict) -> int:
        return int(batch["input_ids"][:, 1:].numel())


def train_gpt(
    data: str | Path,
    out: str | Path,
    *,
    preset_name: str = "small",
    resume: bool = False,
    init: str | None = None,
    steps: int | None = None,
    command: str | None = None,
    quiet: bool = False,
) -> TrainResult:
    """`orchestrion train gpt`: train (or fine-tune with `init`) on a token dataset and export to `out`."""
    from tokenizers import Tokenizer

    out = Path(out)
    dataset = TokenDataset(data)
    config = preset(preset_name)
    if steps is not None:
        if steps < 1:
            raise InvalidRequest("steps", "must be at least 1")
        config = replace(
            config,
            train=replace(config.train, steps=steps, warmup_steps=min(config.train.warmup_steps, max(1, steps // 10))),
        )
    data_tok = Tokenizer.from_file(str(dataset.tokenizer_path))
    id_map, added = None, []
    if init is not None:
        from transformers import GPT2LMHeadModel

        init_dir = resolve_model_dir(init)
        model = GPT2LMHeadModel.from_pretrained(init_dir, use_safetensors=True)  # never a pickled .bin
        init_encoding = getattr(model.config, "encoding", None)
        if init_encoding and init_encoding != dataset.encoding:
            raise BadInput(f"cannot fine-tune a {init_encoding} model on a {dataset.encoding} dataset", data)
        tokenizer, id_map, added = vocab_union(Tokenizer.from_file(str(init_dir / "tokenizer.json")), data_tok)
        if added:
            model.resize_token_embeddings(tokenizer.get_vocab_size())
        model.config.composer, model.config.encoding = "gpt", dataset.encoding
        # Fine-tuning: the model's own shape, a gentler learning rate.
        config = replace(
            config,
            n_positions=model.config.n_positions,
            context=min(config.context, model.config.n_positions),
            train=replace(config.train, lr=config.train.lr / 3, min_lr=config.train.min_lr / 3),
        )
    else:
        model, tokenizer = _fresh_model(config, dataset, data_tok)
    types = None
    if getattr(model.config, "token_types", None):  # a feature beside each token (mmm: bar positions)
        encoding = encoding_for(dataset.encoding)
        if _add_type_tokens(tokenizer, encoding, model.config.token_types):
            model.resize_token_embeddings(tokenizer.get_vocab_size())
        vocab = tokenizer.get_vocab()
        types = lambda ids: encoding.token_types(ids, vocab)  # noqa: E731 (model ids -> their type ids)
    eos = model.config.eos_token_id
    task = GPTTask(
        dataset,
        config.context,
        config.train.batch_size,
        seed=config.train.seed,
        align=config.align,
        id_map=id_map,
        separator=eos,
        types=types,
    )
    if resume and not (checkpoint_dir(out) / "train_state.json").is_file():
        raise BadInput("nothing to resume (no checkpoint); run without --resume first", out)
    _check_same_data(dataset, out, resume)
    main_rank = int(os.environ.get("RANK", 0)) == 0
    history = out / "commands.jsonl"  # every invocation (first run and resumes), for the model card
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        with open(history, "a") as f:
            f.write(
                json.dumps(
                    {"command": command, "resume": resume, "date": datetime.now(UTC).isoformat(timespec="seconds")}
                )
                + "\n"
            )
    result = train(model, task, config.train, out, resume=resume, quiet=quiet)
    if main_rank:
        for name, value in encoding_for(dataset.encoding).data_defaults(dataset, data_tok).items():
            setattr(model.config, name, value)
        commands = [json.loads(line)["command"] for line in history.read_text().splitlines() if line.strip()]
        export(
            model,
            tokenizer,
            out,
            card={
                "data": str(Path(data).resolve()),
                "encoding": dataset.encoding,
                "preset": preset_name,
                "init": init,
                "added_tokens": len(added),
                "command": command,
                "commands": commands,
                "steps": result.steps,
                "train_loss": result.train_loss,
                "val_loss": result.val_loss,
                "best_val_loss": result.best_val_loss,
                "tokens_per_second": round(result.tokens_per_second, 1),
                "parameters": sum(p.numel() for p in model.parameters()),
                "dataset_tokens": {k: int(len(v)) for k, v in task.data.items()},
                "config": config.to_dict(),
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
    return result


def _fresh_model(config, dataset, tokenizer):
    """A new model of `config`'s shape for the dataset's tokenizer (plus the feature's tokens, if any)."""
    if config.token_types:  # the feature's tokens join the vocabulary before the model is built
        _add_type_tokens(tokenizer, encoding_for(dataset.encoding), config.token_types)
    model = build_model(config, tokenizer, dataset.meta, dataset.encoding)
    model.config.token_types = config.token_types
    return model, tokenizer


def export_checkpoint(run: str | Path, out: str | Path, *, preset_name: str, data: str | Path | None = None) -> dict:
    """Export the latest checkpoint of a `train gpt` run (`run`/checkpoint) to `out` as `train_gpt` exports
    its end: weights, tokenizer, config.json with what the data gives, model card; returns the card.

    For a run still going (ship a checkpoint now, a later one again later); `data` defaults to the run's
    data_fingerprint.json. Only runs trained afresh (no `--init`) are rebuilt this way."""
    from tokenizers import Tokenizer

    from orchestrion.core.training import LOSS_CURVE, load_checkpoint, plot_loss_curve

    run, out = Path(run), Path(out)
    data = data or json.loads((run / "data_fingerprint.json").read_text())["data"]
    dataset = TokenDataset(data)
    config = preset(preset_name)
    data_tok = Tokenizer.from_file(str(dataset.tokenizer_path))
    model, tokenizer = _fresh_model(config, dataset, Tokenizer.from_file(str(dataset.tokenizer_path)))
    state = load_checkpoint(model, None, checkpoint_dir(run))
    for name, value in encoding_for(dataset.encoding).data_defaults(dataset, data_tok).items():
        setattr(model.config, name, value)
    history = run / "commands.jsonl"
    commands = [json.loads(line)["command"] for line in history.read_text().splitlines() if line.strip()]
    step = int(state["step"])
    out.mkdir(parents=True, exist_ok=True)
    records = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("step", 0) <= step]
    write_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    plot_loss_curve(records, out / LOSS_CURVE)
    card = {
        "data": str(Path(data).resolve()),
        "encoding": dataset.encoding,
        "preset": preset_name,
        "init": None,
        "added_tokens": 0,
        "command": commands[-1] if commands else None,
        "commands": commands,
        "steps": step,
        "of_steps": int(state["config"]["steps"]),
        "train_loss": state.get("train_loss"),
        "val_loss": state.get("val_loss"),
        "best_val_loss": state.get("best_val_loss"),
        "tokens_per_second": round(float(np.mean([r["tokens_per_second"] for r in records[-20:]] or [0])), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "dataset_tokens": {k: int(dataset.split(k).tokens) for k in ("train", "validation")},
        "config": config.to_dict(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    export(model, tokenizer, out, card)
    return card


def _add_type_tokens(tokenizer, encoding, kind: str) -> bool:
    """Add the tokens of an encoding's token-type feature `kind` to a tokenizer; True when any were missing."""
    from tokenizers import AddedToken

    if kind != getattr(encoding, "token_types_kind", None):
        raise InvalidRequest("preset", f"the {encoding.name} encoding has no token feature {kind!r}")
    missing = [t for t in encoding.type_tokens() if tokenizer.token_to_id(t) is None]
    tokenizer.add_tokens([AddedToken(t, single_word=False, normalized=False) for t in missing])
    return bool(missing)


def _data_fingerprint(dataset) -> dict:
    digest = hashlib.sha256(dataset.tokenizer_path.read_bytes())
    for split in ("train", "validation"):
        digest.update(np.ascontiguousarray(dataset.split(split).concatenated()[:1_000_000]).tobytes())
    return {"data": str(dataset.root.resolve()), "sha256": digest.hexdigest()[:16]}


def _check_same_data(dataset, out: Path, resume: bool) -> None:
    """A resume must see the very data (and tokenizer) the checkpoint was trained on: re-encoding a dataset
    renumbers its tokens, and the model would silently start over on scrambled embeddings."""
    if int(os.environ.get("RANK", 0)) != 0:
        return
    path = out / "data_fingerprint.json"
    now = _data_fingerprint(dataset)
    if resume and path.is_file():
        before = json.loads(path.read_text())
        if before.get("sha256") != now["sha256"]:
            raise BadInput(
                f"the dataset changed since this run started (tokenizer or tokens differ from "
                f"{before.get('data')}); resume with the same data, or train afresh in a new --out",
                out,
            )
        return
    write_atomic(path, json.dumps(now) + "\n")  # read back by every --resume: never half written


def export(model, tokenizer, out: str | Path, card: dict) -> Path:
    """save_pretrained (safetensors) + tokenizer.json + model_card.{md,json} into `out`."""
    out = Path(out)
    model = model.module if hasattr(model, "module") else model
    model.to("cpu").eval()
    model.save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))
    write_atomic(out / "model_card.json", json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    write_atomic(out / "model_card.md", _card_markdown(card))
    return out


def _card_markdown(card: dict) -> str:
    cfg = card.get("config", {})
    lines = [
        f"# GPT-2 composer ({card.get('encoding')})",
        "",
        f"- data: `{card.get('data')}` (train tokens {card.get('dataset_tokens', {}).get('train')}, "
        f"validation tokens {card.get('dataset_tokens', {}).get('validation')})",
        f"- command: `{card.get('command')}`",
        *(f"  - run {i + 1}: `{c}`" for i, c in enumerate(card.get("commands") or []) if len(card["commands"]) > 1),
        f"- preset: {card.get('preset')} ({cfg.get('n_layer')} layers, {cfg.get('n_head')} heads, "
        f"{cfg.get('n_embd')} wide, context {cfg.get('n_positions')}); {card.get('parameters'):,} parameters",
        f"- init: {card.get('init') or 'random'}; tokens added to the vocabulary: {card.get('added_tokens')}",
        f"- steps: {card.get('steps')}" + (f" (of a {card['of_steps']}-step run)" if card.get("of_steps") else ""),
        f"- validation loss: {card.get('val_loss'):.4f} nats/token (best {card.get('best_val_loss'):.4f}); "
        f"train loss {card.get('train_loss'):.4f}",
        f"- training throughput: {card.get('tokens_per_second')} tokens/s",
        f"- date: {card.get('date')}",
        "",
        "Loads with `GPT2LMHeadModel.from_pretrained(dir)` and "
        "`PreTrainedTokenizerFast(tokenizer_file=dir/'tokenizer.json')`.",
        "",
    ]
    return "\n".join(lines)
