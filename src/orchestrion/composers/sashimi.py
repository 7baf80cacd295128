"""SaShiMi: a multi-scale U-Net of S4 blocks over raw 8-bit audio (Goel et al., "It's Raw!", 2022).

    classes (B, L) -> embedding (B, L, 64)
      -> DownPool x4 -> (B, L/4, 128) -> DownPool x4 -> (B, L/16, 256)
      -> n_layers x [S4 block, FF block] at 256
      -> UpPool x4 -> + skip -> n_layers x [S4, FF] at 128 -> + skip
      -> UpPool x4 -> + skip -> n_layers x [S4, FF] at 64 -> + skip
      -> LayerNorm -> linear -> logits (B, L, 256)

Pooling is causal: a coarse step summarises 4 fine steps and is shifted one coarse step later before
it is spread back (UpPool), so output t never sees input t' > t. Training runs every S4 layer as an FFT
convolution; sampling runs the same network one sample at a time in recurrent mode (`Sampler`), with
per-stage caches like the reference's `step()`: a stage's pooling buffer collects 4 inputs, the coarser
stage runs once per 4 fine steps, and its 4 outputs wait in a queue. Nothing in the past is recomputed.

The recurrent sampler lives in `sashimi_sampler.py` (compiled loop nests); training and evaluation here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from orchestrion.composers.base import AudioBlock, Composer, Piece
from orchestrion.composers.s4 import GELU_APPROX, S4D
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.requests import ComposeRequest

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
BLOCK_SECONDS = 0.25  # audio per streamed block
DEFAULT_SECONDS = 5.0
MAX_PROMPT_SECONDS = 8.0  # the tail of a longer prompt is what the model continues from


@dataclass
class SashimiConfig:
    d_model: int = 64
    n_layers: int = 2  # S4 + FF block pairs per stage (the reference: 8, and 2 for the ablation)
    pool: tuple[int, ...] = (4, 4)
    expand: int = 2
    ff: int = 2  # feed-forward expansion
    d_state: int = 64
    dropout: float = 0.0
    n_classes: int = 256
    quantization: str = "mulaw"
    sample_rate: int = 16000

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pool"] = list(self.pool)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> SashimiConfig:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if "pool" in data:
            data["pool"] = tuple(data["pool"])
        return cls(**data)

    @property
    def frame(self) -> int:
        """Sequence lengths must be multiples of this (the product of the pooling factors)."""
        return math.prod(self.pool)


# ------------------------------------------------------------------------------------ building blocks


class DownPool(nn.Module):
    """(B, L, H) -> (B, L/p, H*expand): each output summarises p consecutive inputs."""

    def __init__(self, d: int, expand: int, pool: int):
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(d * pool, d * expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, h = x.shape
        return self.linear(x.reshape(b, length // self.pool, self.pool * h))


class UpPool(nn.Module):
    """(B, L, H) -> (B, L*p, H/expand), shifted one coarse step right so that it stays causal."""

    def __init__(self, d: int, expand: int, pool: int):
        super().__init__()
        self.pool, self.d_out = pool, d // expand
        self.linear = nn.Linear(d, self.d_out * pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        x = self.linear(x)  # (B, L, p*H')
        x = F.pad(x[:, :-1], (0, 0, 1, 0))  # coarse step j feeds fine steps of block j+1
        return x.reshape(b, length * self.pool, self.d_out)


class FeedForward(nn.Module):
    def __init__(self, d: int, expand: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, d * expand), nn.Linear(d * expand, d)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.gelu(self.fc1(x), approximate=GELU_APPROX)))


class Residual(nn.Module):
    """Pre-norm residual: x + dropout(layer(norm(x)))."""

    def __init__(self, d: int, layer: nn.Module, dropout: float):
        super().__init__()
        self.norm, self.layer = nn.LayerNorm(d), layer
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.layer(self.norm(x)))


def _stage(d: int, config: SashimiConfig) -> list[nn.Module]:
    blocks: list[nn.Module] = []
    for _ in range(config.n_layers):
        blocks.append(Residual(d, S4D(d, config.d_state, dropout=config.dropout), config.dropout))
        blocks.append(Residual(d, FeedForward(d, config.ff, config.dropout), config.dropout))
    return blocks


# ---------------------------------------------------------------------------------------------- model


class Sashimi(nn.Module):
    def __init__(self, config: SashimiConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.embedding = nn.Embedding(config.n_classes, d)
        self.down = nn.ModuleList()
        for p in config.pool:
            self.down.append(DownPool(d, config.expand, p))
            d *= config.expand
        self.center = nn.ModuleList(_stage(d, config))
        self.up = nn.ModuleList()
        for p in reversed(config.pool):
            block = nn.ModuleList([UpPool(d, config.expand, p)])
            d //= config.expand
            block.extend(_stage(d, config))
            self.up.append(block)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) with L a multiple of config.frame -> logits (B, L, n_classes)."""
        if tokens.shape[1] % self.config.frame:
            raise ValueError(f"sequence length {tokens.shape[1]} is not a multiple of {self.config.frame}")
        x = self.embedding(tokens.long())  # (B, L, D)
        skips = [x]
        for pool in self.down:
            x = pool(x)
            skips.append(x)
        for layer in self.center:
            x = layer(x)
        x = x + skips.pop()
        for block in self.up:
            x = block[0](x) + skips.pop()  # UpPool plus the skip from the same scale
            h = x
            for layer in block[1:]:
                x = layer(x)
            x = x + h
        return self.head(self.norm(x))


# -------------------------------------------------------------------------------------------- metrics


@torch.no_grad()
def evaluate(model: Sashimi, data: str | Path, split: str = "validation", *, seq_len: int = 4096,
             windows: int = 32, batch_size: int = 8) -> dict:
    """The reference's table on one split: loss (nats/sample), bits per byte, accuracy, accuracy@3/5/10.

    Over up to `windows` fixed, evenly spread windows of the split (the same ones every call). One 8-bit
    sample is one byte, so bits per byte is the loss in bits.
    """
    from orchestrion.audio_dataset import AudioDataset

    seq_len -= seq_len % model.config.frame
    chunks = AudioDataset(data).split(split).windows(seq_len + 1, windows)
    if not chunks:
        raise BadInput(f"the {split} split holds no window of {seq_len + 1} samples", data)
    model.eval()
    device = next(model.parameters()).device
    total, nll, hits = 0, 0.0, {k: 0 for k in (1, 3, 5, 10)}
    for i in range(0, len(chunks), batch_size):
        w = torch.from_numpy(np.stack(chunks[i : i + batch_size]).astype(np.int64)).to(device)
        logits = model(w[:, :-1]).float()  # (B, L, C)
        target = w[:, 1:]
        nll += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="sum"))
        top = logits.topk(10, dim=-1).indices  # (B, L, 10)
        for k in hits:
            hits[k] += int((top[..., :k] == target.unsqueeze(-1)).any(-1).sum())
        total += target.numel()
    loss = nll / total
    return {"loss": loss, "bpb": loss / math.log(2), "accuracy": hits[1] / total,
            **{f"accuracy@{k}": hits[k] / total for k in (3, 5, 10)}}


def metric_table(metrics: dict[str, dict]) -> str:
    """Markdown table in the reference's layout: one row per split/metric."""
    lines = ["| metric | value |", "|---|---|"]
    for split, values in metrics.items():
        for name in ("accuracy", "accuracy@10", "accuracy@3", "accuracy@5", "bpb", "loss"):
            if name in values:
                lines.append(f"| final/{'val' if split == 'validation' else split}/{name} | {values[name]:.4f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- composer


class SashimiComposer(Composer):
    """Raw-audio composer: unconditional or prompt-continuing, streamed in 0.25 s blocks of 16 kHz audio."""

    kind = "sashimi"

    def __init__(self, model: Sashimi, card: dict | None = None):
        super().__init__()
        self.model = model.eval()
        self.config = model.config
        self.card = card or {}

    @classmethod
    def load(cls, directory: str | Path) -> SashimiComposer:
        from safetensors.torch import load_model

        directory = Path(directory)
        record = json.loads((directory / CONFIG).read_text())
        model = Sashimi(SashimiConfig.from_dict(record.get("config", {})))
        try:
            load_model(model, str(directory / WEIGHTS), device="cpu")
        except (OSError, RuntimeError) as exc:
            raise BadInput(f"cannot load the SaShiMi weights: {exc}", directory / WEIGHTS) from exc
        return cls(model, {k: v for k, v in record.items() if k not in ("composer", "config")})

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{WEIGHTS}.tmp"
        save_model(self.model, str(tmp))
        tmp.replace(directory / WEIGHTS)
        record = {"composer": self.kind, "config": self.config.to_dict(), **self.card}
        tmp = directory / f".{CONFIG}.tmp"
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        tmp.replace(directory / CONFIG)
        return directory

    def validate(self, request: ComposeRequest) -> ComposeRequest:
        request = request.with_seed()
        if request.seconds is None:
            request = request.model_copy(update={"seconds": DEFAULT_SECONDS})
        if request.prompt is not None and not Path(request.prompt).is_file():
            raise InvalidRequest("prompt", f"no such audio file: {request.prompt}")
        return request

    def options(self) -> dict:
        return {**super().options(), "output": "audio", "sample_rate": self.config.sample_rate,
                "n_layers": self.config.n_layers, "default_seconds": DEFAULT_SECONDS,
                "fields": ["seconds", "temperature", "top_p", "seed", "num_samples", "prompt"]}

    def _prompt(self, request: ComposeRequest, batch: int) -> np.ndarray | None:
        if request.prompt is None:
            return None
        from orchestrion.audio import load_audio
        from orchestrion.codecs import mulaw

        x = load_audio(request.prompt, self.config.sample_rate)[-int(MAX_PROMPT_SECONDS * self.config.sample_rate) :]
        return np.tile(mulaw.encode(x, self.config.quantization).astype(np.int64), (batch, 1))  # (B, P)

    def stream(self, request: ComposeRequest) -> Iterator[AudioBlock]:
        """Yield 0.25 s blocks. With num_samples B > 1 the B samples are made together, one batch, and
        block i of sample b has index i*B + b. A prompt is streamed first, then its continuation."""
        from orchestrion.codecs import mulaw
        from orchestrion.composers.sashimi_sampler import Sampler, choose

        request = self.validate(request)
        rate, batch = self.config.sample_rate, request.num_samples
        total = int(round(request.seconds * rate))
        block = int(BLOCK_SECONDS * rate)
        rng = np.random.default_rng(request.seed)
        sampler = Sampler(self.model, batch)
        prompt = self._prompt(request, batch)
        index, position = 0, 0
        if prompt is not None:
            logits = sampler.feed(prompt).copy()
            audio = mulaw.decode(prompt[0], self.config.quantization)
            for start in range(0, len(audio), block):
                for _ in range(batch):
                    yield AudioBlock(index, position, audio[start : start + block], rate)
                    index += 1
                position += len(audio[start : start + block])
        else:
            silence = mulaw.encode(np.zeros(batch), self.config.quantization).astype(np.int64)
            logits = sampler.step(silence).copy()
        for start in range(0, total, block):
            n = min(block, total - start)
            gumbel = rng.gumbel(size=(n, batch, self.config.n_classes)).astype(np.float32)
            out = np.empty((batch, n), dtype=np.int64)
            for t in range(n):
                out[:, t] = choose(logits, request.temperature, request.top_p, gumbel[t])
                logits = sampler.step(out[:, t])
            for row in out:
                yield AudioBlock(index, position, mulaw.decode(row, self.config.quantization), rate)
                index += 1
            position += n

    def compose_batch(self, request: ComposeRequest) -> list[Piece]:
        """All num_samples pieces of one batched run, each checked for long silence and runaway noise."""
        from orchestrion.audio import quality_report

        request = self.validate(request)
        batch = request.num_samples
        parts: list[list[np.ndarray]] = [[] for _ in range(batch)]
        prompt_samples = 0
        for chunk in self.stream(request):
            parts[chunk.index % batch].append(chunk.samples)
        if request.prompt is not None:
            prompt_samples = min(len(self._prompt(request, 1)[0]), int(MAX_PROMPT_SECONDS * self.config.sample_rate))
        pieces = []
        for b in range(batch):
            audio = np.concatenate(parts[b])
            report = quality_report(audio[prompt_samples:], self.config.sample_rate)
            report["prompt_seconds"] = round(prompt_samples / self.config.sample_rate, 3)
            report["sample"] = b
            pieces.append(Piece(provenance=self.provenance(request, batch_index=b), audio=audio,
                                sample_rate=self.config.sample_rate, report=report))
        return pieces

    def compose(self, request: ComposeRequest) -> Piece:
        """The first piece of `compose_batch` (a batch of one, as `orchestrion generate` asks for)."""
        return self.compose_batch(request)[0]


# ------------------------------------------------------------------------------------------- training


@dataclass
class SashimiTraining:
    """What `orchestrion train sashimi` needs beyond the shared loop's TrainConfig; saved for --resume."""

    layers: int = 2
    seq_len: int = 4096  # training window, a multiple of 16 (0.26 s at 16 kHz)
    eval_windows: int = 32
    train: dict = field(default_factory=lambda: {
        "steps": 2000, "batch_size": 4, "lr": 2e-3, "min_lr": 1e-4, "warmup_steps": 30,
        "weight_decay": 0.0,  # the reference trains without regularisation
        "eval_every": 100, "eval_batches": 4, "checkpoint_every": 25, "log_every": 10,
    })


def train_sashimi(data: str | Path, out: str | Path, settings: SashimiTraining | None = None, *,
                  resume: bool = False, steps: int | None = None) -> dict:
    """Train on an audio dataset with the shared loop, export the model to `out`, return the metric table."""
    from orchestrion.audio_dataset import AudioDataset, AudioTask
    from orchestrion.datasets import atomic_write_text
    from orchestrion.training import TrainConfig, train

    out = Path(out)
    saved = out / "sashimi_training.json"
    if resume:
        if not saved.is_file():
            raise BadInput("nothing to resume (no sashimi_training.json); train without --resume first", out)
        settings = SashimiTraining(**json.loads(saved.read_text()))
    settings = settings or SashimiTraining()
    if steps is not None:
        settings.train["steps"] = steps
    if settings.layers < 1 or settings.seq_len % 16:
        raise BadInput(f"layers must be >= 1 and the window a multiple of 16 (got {settings.layers}, {settings.seq_len})")
    dataset = AudioDataset(data)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, json.dumps(asdict(settings), indent=2) + "\n")  # read back by every --resume
    config = SashimiConfig(n_layers=settings.layers, quantization=dataset.quantization, sample_rate=dataset.sample_rate)
    train_config = TrainConfig.from_dict(settings.train)
    torch.manual_seed(train_config.seed)
    model = Sashimi(config)
    task = AudioTask(dataset, settings.seq_len, train_config.batch_size, seed=train_config.seed)
    result = train(model, task, train_config, out, resume=resume)
    model.cpu()
    metrics = {split: evaluate(model, data, split, seq_len=settings.seq_len, windows=settings.eval_windows)
               for split in ("validation", "test")}
    card = {
        "metrics": metrics,
        "training": {"steps": result.steps, "seconds": round(result.seconds, 1), "data": str(data),
                     "data_hours": dataset.meta.get("hours"), "parameters": sum(p.numel() for p in model.parameters()),
                     "samples_per_second": round(result.tokens_per_second)},
    }
    SashimiComposer(model, card).save(out)
    atomic_write_text(out / "metrics.md", metric_table(metrics) + "\n")
    return card
