"""The GPT composer: Hugging Face GPT-2 over mmm tokens or spaceless ABC text.

One file, top to bottom: the config and presets, the training task (random windows of a dataset split,
deterministic in (seed, step, index)), `train_gpt` (the body of `orchestrion train gpt`, fine-tuning
included), the export (a plain `save_pretrained` directory plus tokenizer.json and a model card), and the
`GPTComposer` that streams music through `orchestrion.sampling`.

A model directory written here loads with plain transformers:

    GPT2LMHeadModel.from_pretrained(dir)
    PreTrainedTokenizerFast(tokenizer_file=str(dir / "tokenizer.json"))

and its config.json carries two extra fields, "composer": "gpt" and "encoding": "mmm" | "abc".
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from orchestrion.composers.base import (
    Chunk,
    Composer,
    Measure,
    Note,
    Piece,
    TextChunk,
    Voice,
    score_from_measures,
)
from orchestrion.errors import BadInput, InvalidRequest, OrchestrionError
from orchestrion.requests import ComposeRequest
from orchestrion.training import TrainConfig, TrainResult, checkpoint_dir, load_checkpoint, train

# Files a shipped/exported model needs (the checkpoint/ folder with optimizer state is left out of builtins).
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "model_card.md", "model_card.json", "loss_curve.png", "metrics.jsonl")


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
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {**asdict(self), "train": self.train.to_dict()}


PRESETS: dict[str, GPTConfig] = {
    # The reference size (6 layers, 8 heads, 512 wide, 2048 context): for a GPU.
    "seed": GPTConfig(6, 8, 512, 2048, 1024, 0.1, train=TrainConfig(steps=20_000, batch_size=16, lr=3e-4,
                                                                   warmup_steps=500, eval_every=500,
                                                                   checkpoint_every=500)),
    # Sized for a CPU shared with other work (the shipped models use it: ~0.9M parameters + embeddings, 3-4 MB).
    # The training window is the whole context: positions never trained on would derail generation there.
    "small": GPTConfig(4, 4, 128, 512, 512, 0.1, train=TrainConfig(steps=800, batch_size=4, lr=2e-3,
                                                                  min_lr=2e-4, warmup_steps=40, eval_every=100,
                                                                  eval_batches=8, checkpoint_every=25,
                                                                  weight_decay=0.05)),
    # For tests and smoke runs: seconds on a CPU.
    "tiny": GPTConfig(2, 2, 64, 256, 64, 0.0, train=TrainConfig(steps=40, batch_size=4, lr=3e-3, min_lr=3e-4,
                                                               warmup_steps=5, eval_every=20, eval_batches=2,
                                                               checkpoint_every=10, log_every=5)),
}


def preset(name: str) -> GPTConfig:
    if name not in PRESETS:
        raise InvalidRequest("preset", f"unknown GPT preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


# ------------------------------------------------------------------------------------ the data task


def _special_id(meta: dict, tokenizer, *roles: str) -> int | None:
    """The id of a special token named in dataset.json (`special_tokens`: role -> token or id)."""
    specials = meta.get("special_tokens") or {}
    for role in roles:
        value = specials.get(role)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and tokenizer.token_to_id(value) is not None:
            return tokenizer.token_to_id(value)
    return None


class GPTTask:
    """Windows of `context + 1` tokens from a split's sequences laid end to end.

    Window starts are drawn from a generator seeded with (seed, split, step, index), so that a step
    always sees the same data, whatever happened before it (resume after kill -9, DDP ranks).
    `id_map` renumbers dataset ids into the model's vocabulary (fine-tuning from another vocabulary).
    """

    SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}

    def __init__(self, dataset, context: int, batch_size: int, seed: int = 0, align: float = 0.5,
                 id_map: np.ndarray | None = None, separator: int | None = None):
        self.context, self.batch_size, self.seed, self.align = context, batch_size, seed, align
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

    def batch(self, split: str, step: int, index: int) -> dict[str, torch.Tensor]:
        ids = self.data[split]
        rng = np.random.default_rng([self.seed, self.SPLIT_CODES[split], step, index])
        starts = rng.integers(0, len(ids) - self.context, size=self.batch_size)
        aligned = rng.random(self.batch_size) < self.align
        if len(self.starts[split]):
            starts = np.where(aligned, rng.choice(self.starts[split], size=self.batch_size), starts)
        windows = np.stack([ids[s : s + self.context + 1] for s in starts])  # (B, L+1)
        return {"input_ids": torch.from_numpy(windows)}

    def loss(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        x = batch["input_ids"]  # (B, L+1)
        logits = model(input_ids=x[:, :-1], use_cache=False).logits  # (B, L, V)
        return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())

    def tokens(self, batch: dict) -> int:
        return int(batch["input_ids"][:, 1:].numel())


# ------------------------------------------------------------------------------------------- train


def build_model(config: GPTConfig, tokenizer, meta: dict, encoding: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    bos = _special_id(meta, tokenizer, "bos", "start", "piece_start")
    eos = _special_id(meta, tokenizer, "eos", "end", "piece_end")
    pad = _special_id(meta, tokenizer, "pad")
    hf = GPT2Config(
        vocab_size=tokenizer.get_vocab_size(), n_positions=config.n_positions, n_embd=config.n_embd,
        n_layer=config.n_layer, n_head=config.n_head, resid_pdrop=config.dropout, embd_pdrop=config.dropout,
        attn_pdrop=config.dropout, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
    )
    # Extra attributes travel in config.json; plain transformers ignores them, orchestrion routes on them.
    hf.composer = "gpt"
    hf.encoding = encoding
    torch.manual_seed(config.train.seed)
    return GPT2LMHeadModel(hf)


def _vocab_union(model_tok, data_tok):
    """Add the dataset's tokens that the model lacks; return (tokenizer, id map dataset -> model)."""
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

    from orchestrion.datasets import TokenDataset

    out = Path(out)
    dataset = TokenDataset(data)
    config = preset(preset_name)
    if steps is not None:
        if steps < 1:
            raise InvalidRequest("steps", "must be at least 1")
        config = replace(config, train=replace(config.train, steps=steps,
                                               warmup_steps=min(config.train.warmup_steps, max(1, steps // 10))))
    data_tok = Tokenizer.from_file(str(dataset.tokenizer_path))
    id_map, added = None, []
    if init is not None:
        from transformers import GPT2LMHeadModel

        from orchestrion.composers import resolve_model_dir

        init_dir = resolve_model_dir(init)
        model = GPT2LMHeadModel.from_pretrained(init_dir, use_safetensors=True)  # never a pickled .bin
        init_encoding = getattr(model.config, "encoding", None)
        if init_encoding and init_encoding != dataset.encoding:
            raise BadInput(f"cannot fine-tune a {init_encoding} model on a {dataset.encoding} dataset", data)
        tokenizer, id_map, added = _vocab_union(Tokenizer.from_file(str(init_dir / "tokenizer.json")), data_tok)
        if added:
            model.resize_token_embeddings(tokenizer.get_vocab_size())
        model.config.composer, model.config.encoding = "gpt", dataset.encoding
        # Fine-tuning: the model's own shape, a gentler learning rate.
        config = replace(config, n_positions=model.config.n_positions,
                         context=min(config.context, model.config.n_positions),
                         train=replace(config.train, lr=config.train.lr / 3, min_lr=config.train.min_lr / 3))
    else:
        tokenizer = data_tok
        model = build_model(config, tokenizer, dataset.meta, dataset.encoding)
    eos = model.config.eos_token_id
    task = GPTTask(dataset, config.context, config.train.batch_size, seed=config.train.seed, align=config.align,
                   id_map=id_map, separator=eos)
    if resume and not (checkpoint_dir(out) / "train_state.json").is_file():
        raise BadInput("nothing to resume (no checkpoint); run without --resume first", out)
    _check_same_data(dataset, out, resume)
    main_rank = int(os.environ.get("RANK", 0)) == 0
    history = out / "commands.jsonl"  # every invocation (first run and resumes), for the model card
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        with open(history, "a") as f:
            f.write(json.dumps({"command": command, "resume": resume,
                                "date": datetime.now(UTC).isoformat(timespec="seconds")}) + "\n")
    result = train(model, task, config.train, out, resume=resume, quiet=quiet)
    if main_rank:
        if dataset.encoding == "mmm":
            model.config.default_instruments = typical_layout(dataset, data_tok)
        else:
            model.config.default_headers = typical_headers(dataset)
        commands = [json.loads(line)["command"] for line in history.read_text().splitlines() if line.strip()]
        export(model, tokenizer, out, card={
            "data": str(Path(data).resolve()), "encoding": dataset.encoding, "preset": preset_name,
            "init": init, "added_tokens": len(added), "command": command, "commands": commands,
            "steps": result.steps,
            "train_loss": result.train_loss, "val_loss": result.val_loss, "best_val_loss": result.best_val_loss,
            "tokens_per_second": round(result.tokens_per_second, 1),
            "parameters": sum(p.numel() for p in model.parameters()),
            "dataset_tokens": {k: int(len(v)) for k, v in task.data.items()},
            "config": config.to_dict(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
        })
    return result


def _data_fingerprint(dataset) -> dict:
    import hashlib

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
            raise BadInput(f"the dataset changed since this run started (tokenizer or tokens differ from "
                           f"{before.get('data')}); resume with the same data, or train afresh in a new --out", out)
        return
    from orchestrion.datasets import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(now) + "\n")  # read back by every --resume: never half written


def typical_layout(dataset, tokenizer, limit: int = 5000) -> list[str]:
    """The most common instrument line-up of the training data (e.g. SOPRANO ALTO TENOR BASS).

    Stored in config.json as `default_instruments`: what the composer asks for when a request names none.
    """
    from collections import Counter

    vocab = tokenizer.get_vocab()
    inst = np.zeros(max(vocab.values()) + 1, dtype=bool)
    names = {i: t.removeprefix("INST=") for t, i in vocab.items() if t.startswith("INST=")}
    inst[list(names)] = True
    split = dataset.split("train")
    step = max(1, len(split) // limit)
    layouts = Counter()
    for i in range(0, len(split), step):
        ids = split[i].astype(np.int64)
        layouts[tuple(names[int(t)] for t in ids[inst[ids]])] += 1
    return list(layouts.most_common(1)[0][0]) if layouts else []


def typical_headers(dataset, limit: int = 5000, top: int = 8) -> dict[str, list]:
    """The most common meters and keys of an ABC dataset's tunes, with their counts.

    Stored in config.json as `default_headers`: when a request names no meter or key, the composer draws
    them from this distribution with the request's seed (a weak model then never has to invent a header).
    """
    from collections import Counter

    from orchestrion.codecs import abc as abccodec
    from orchestrion.music import parse_key

    meters: Counter = Counter()
    keys: Counter = Counter()
    split = dataset.split("train")
    files = sorted((dataset.root / "text").glob("train-*.txt"))
    lines = [line for f in files for line in f.read_text().splitlines()][:: max(1, len(split) // limit)]
    for line in lines:
        head = abccodec.header(abccodec.unescape_newlines(line))
        if head["meter"] and head["meter"] != "none":
            meters[head["meter"]] += 1
        key = head["key"]
        tonic, minor = key.removesuffix("m"), key.endswith("m") and not key.endswith("dim")
        if tonic and len(tonic) <= 2 and tonic[0] in "ABCDEFG" and tonic[1:] in ("", "b", "#"):
            name = f"{tonic} {'minor' if minor else 'major'}"
            try:
                if parse_key(name).name.split()[0] == tonic:  # only keys that spell back the same way
                    keys[name] += 1
            except BadInput:
                continue
    return {"meter": [list(x) for x in meters.most_common(top)], "key": [list(x) for x in keys.most_common(top)]}


def export(model, tokenizer, out: str | Path, card: dict) -> Path:
    """save_pretrained (safetensors) + tokenizer.json + model_card.{md,json} into `out`."""
    out = Path(out)
    model = model.module if hasattr(model, "module") else model
    model.to("cpu").eval()
    model.save_pretrained(out)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    (out / "model_card.md").write_text(_card_markdown(card))
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
        f"- steps: {card.get('steps')}",
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


def resume_weights(model: torch.nn.Module, out: str | Path) -> dict:
    """Load the last checkpoint's weights into `model` (no optimizer); returns its train_state."""
    return load_checkpoint(model, None, checkpoint_dir(out))


def ship(model_dir: str | Path, builtin_dir: str | Path) -> Path:
    """Copy the files a shipped model needs (no optimizer state) into `builtin_dir`."""
    model_dir, builtin_dir = Path(model_dir), Path(builtin_dir)
    builtin_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, builtin_dir / name)
    return builtin_dir


# ---------------------------------------------------------------------------------------- composer


class GPTComposer(Composer):
    """Composes with a GPT-2 checkpoint: mmm (multi-track MIDI) or ABC (folk tunes)."""

    kind = "gpt"

    def __init__(self, model, tokenizer, encoding: str, directory: Path | None = None):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer  # a `tokenizers.Tokenizer`
        self.encoding = encoding
        self.directory = directory
        self.card: dict = {}
        if directory is not None and (directory / "model_card.json").is_file():
            self.card = json.loads((directory / "model_card.json").read_text())

    @classmethod
    def load(cls, directory: str | Path) -> GPTComposer:
        from tokenizers import Tokenizer
        from transformers import GPT2LMHeadModel

        directory = Path(directory)
        if not (directory / "tokenizer.json").is_file():
            raise BadInput("a GPT model directory needs tokenizer.json next to config.json", directory)
        from transformers.utils import logging as hf_logging

        # A model of a few MB loads in milliseconds: transformers' per-weight progress bar is only noise
        # in the CLI, the demo and the server log.
        hf_logging.disable_progress_bar()
        model = GPT2LMHeadModel.from_pretrained(directory, use_safetensors=True)  # never a pickled .bin
        encoding = getattr(model.config, "encoding", None) or "abc"
        if encoding not in ("mmm", "abc"):
            raise BadInput(f"config.json has encoding {encoding!r}; expected 'mmm' or 'abc'", directory / "config.json")
        return cls(model, Tokenizer.from_file(str(directory / "tokenizer.json")), encoding, directory)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)
        self.tokenizer.save(str(directory / "tokenizer.json"))
        if self.card:
            (directory / "model_card.json").write_text(json.dumps(self.card, indent=2, sort_keys=True) + "\n")
        return directory

    @property
    def context(self) -> int:
        return int(self.model.config.n_positions)

    def options(self) -> dict:
        return {
            **super().options(),
            "encoding": self.encoding,
            "context": self.context,
            "vocab_size": int(self.model.config.vocab_size),
            "val_loss": self.card.get("val_loss"),
        }

    def validate(self, request: ComposeRequest) -> ComposeRequest:
        request = request.with_seed()
        default = getattr(self.model.config, "default_instruments", None)
        if (self.encoding == "mmm" and default and request.instruments is None and request.prompt is None
                and (request.density is None or len(request.density) == len(default))):
            request = request.model_copy(update={"instruments": list(default)})  # recorded, so replays match
        headers = getattr(self.model.config, "default_headers", None)
        if self.encoding == "abc" and headers and request.prompt is None and request.variations_of is None:
            rng = np.random.default_rng(request.seed)
            update = {}
            for field_name in ("meter", "key"):
                choices = headers.get(field_name) or []
                if getattr(request, field_name) is None and choices:
                    weights = np.array([c for _, c in choices], dtype=float)
                    update[field_name] = choices[int(rng.choice(len(choices), p=weights / weights.sum()))][0]
            request = request.model_copy(update=update) if update else request
        if request.max_tokens is not None and request.max_tokens > 64 * self.context:
            raise InvalidRequest("max_tokens", f"at most {64 * self.context} for this model")
        return request

    # Streaming. mmm is generated track by track (the order the model was trained on), so a bar of *all*
    # tracks closes only when the last track's bar does: the stream yields a TextChunk of tokens for every
    # bar of every track as it closes, and the Measures (all voices, bar by bar) once the piece is decoded.
    # ABC yields a TextChunk per bar as its bar line comes, then the whole checked tune (complete=True); a
    # tune abc2midi rejects is sampled again and the stream starts over from its X: line.

    def stream(self, request: ComposeRequest) -> Iterator[Chunk]:
        yield from self._chunks(self.validate(request), {})

    def compose(self, request: ComposeRequest) -> Piece:
        request = self.validate(request)
        report: dict = {}
        measures: list[Measure] = []
        tunes: list[str] = []
        for chunk in self._chunks(request, report):
            if isinstance(chunk, Measure):
                measures.append(chunk)
            elif isinstance(chunk, TextChunk) and chunk.complete:
                tunes.append(chunk.text)
        piece = Piece(provenance=self.provenance(request), report=report,
                      score=score_from_measures(measures) if measures else None,
                      abc="\n".join(tunes) if tunes else None)
        if piece.abc is not None:  # notes for .mid / .wav output; a tune abc2midi cannot compile has none
            try:
                piece.score = _abc_score(piece.abc)
            except OrchestrionError:
                piece.score = None
        return piece

    def _chunks(self, request: ComposeRequest, report: dict) -> Iterator[Chunk]:
        from orchestrion import sampling

        single = request.model_copy(update={"num_samples": 1})  # a batch is made piece by piece (generate.py)
        if self.encoding == "mmm":
            yield from self._mmm_chunks(sampling, single, report)
        else:
            yield from self._abc_chunks(sampling, single, report)

    def _mmm_chunks(self, sampling, request: ComposeRequest, report: dict) -> Iterator[Chunk]:
        from orchestrion.codecs import mmm

        index = 0
        for event in sampling.sample_mmm(self.model, self.tokenizer, request, token_events=False):
            if event.kind == "bar":
                yield TextChunk(index, f"{event.instrument} bar {event.bar}: {' '.join(event.tokens)}")
                index += 1
            elif event.kind == "piece":
                report.update(event.report)
                score, repairs = mmm.decode(event.tokens, tempo=request.tempo)
                report["decode_repairs"] = repairs
                report["tokens_text"] = " ".join(event.tokens)
                yield from measures_from_score(score, bars=int(event.report.get("bars") or request.bars or 4),
                                               tempo=request.tempo)

    def _abc_chunks(self, sampling, request: ComposeRequest, report: dict) -> Iterator[Chunk]:
        index, pending = 0, ""
        for event in sampling.sample_abc(self.model, self.tokenizer, request):
            if event.kind == "token":
                pending += event.text
                cut = pending.rfind("|")
                if cut >= 0:
                    yield TextChunk(index, pending[: cut + 1])
                    index += 1
                    pending = pending[cut + 1 :]
            elif event.kind == "tune":
                report.update(event.report)
                report["valid"] = event.valid
                yield TextChunk(index, event.text, complete=True)
                index, pending = index + 1, ""


def measures_from_score(score, *, bars: int, tempo: float = 120.0) -> list[Measure]:
    """Cut a 4/4 score into `bars` Measures of all its tracks (notes belong to the bar they start in)."""
    tpq = score.ticks_per_quarter
    voices = [Voice(program=int(t.program), is_drum=bool(t.is_drum), name=t.name) for t in score.tracks]
    per_bar: list[list[Note]] = [[] for _ in range(bars)]
    for v, track in enumerate(score.tracks):
        arr = track.notes.numpy()
        for start, duration, pitch, velocity in zip(arr["time"], arr["duration"], arr["pitch"], arr["velocity"],
                                                    strict=True):
            quarter = float(start) / tpq
            bar = int(quarter // 4)
            if 0 <= bar < bars:
                per_bar[bar].append(Note(v, int(pitch), quarter, float(duration) / tpq, int(velocity) or 80))
    return [Measure(i, notes, voices, tempo=tempo) for i, notes in enumerate(per_bar)]


def _abc_score(abc_text: str):
    """The MIDI abc2midi makes of a tune, as a Score (for .mid / .wav output of ABC pieces)."""
    import tempfile

    from orchestrion.abcmidi import abc_to_midi
    from orchestrion.music import load_midi

    with tempfile.TemporaryDirectory() as tmp:
        return load_midi(abc_to_midi(abc_text, Path(tmp) / "tune.mid"))
