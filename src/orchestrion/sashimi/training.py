"""`orchestrion train sashimi`, and the SaShiMi likelihood table.

`train_sashimi` trains on an audio dataset (`orchestrion.sashimi.dataset`: 16 kHz 8-bit shards) with the
shared loop (`orchestrion.core.training`) and exports the model with `SashimiComposer.save`, plus
metrics.md. Its own settings (`SashimiTraining`: layers, window, the loop's settings) are saved as
sashimi_training.json and read back by every `--resume`.

`evaluate` gives the reference's table on one split: loss (nats/sample), bits per byte (one 8-bit sample
is one byte), accuracy and accuracy@3/5/10, over fixed, evenly spread windows, so the same call gives the
same figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from orchestrion.core.files import write_atomic
from orchestrion.core.training import TrainConfig, train
from orchestrion.errors import BadInput
from orchestrion.sashimi.composer import SashimiComposer
from orchestrion.sashimi.dataset import AudioDataset, AudioTask
from orchestrion.sashimi.model import Sashimi, SashimiConfig

# -------------------------------------------------------------------------------------------- metrics


@torch.no_grad()
def evaluate(
    model: Sashimi,
    data: str | Path,
    split: str = "validation",
    *,
    seq_len: int = 4096,
    windows: int = 32,
    batch_size: int = 8,
) -> dict:
    """The reference's table on one split: loss (nats/sample), bits per byte, accuracy, accuracy@3/5/10.

    Over up to `windows` fixed, evenly spread windows of the split (the same ones every call). One 8-bit
    sample is one byte, so bits per byte is the loss in bits.
    """
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
    return {
        "loss": loss,
        "bpb": loss / math.log(2),
        "accuracy": hits[1] / total,
        **{f"accuracy@{k}": hits[k] / total for k in (3, 5, 10)},
    }


def metric_table(metrics: dict[str, dict]) -> str:
    """Markdown table in the reference's layout: one row per split/metric."""
    lines = ["| metric | value |", "|---|---|"]
    for split, values in metrics.items():
        for name in ("accuracy", "accuracy@10", "accuracy@3", "accuracy@5", "bpb", "loss"):
            if name in values:
                lines.append(f"| final/{'val' if split == 'validation' else split}/{name} | {values[name]:.4f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- training


@dataclass
class SashimiTraining:
    """What `orchestrion train sashimi` needs beyond the shared loop's TrainConfig; saved for --resume."""

    layers: int = 2
    seq_len: int = 4096  # training window, a multiple of 16 (0.26 s at 16 kHz)
    eval_windows: int = 32
    train: dict = field(
        default_factory=lambda: {
            "steps": 2000,
            "batch_size": 4,
            "lr": 2e-3,
            "min_lr": 1e-4,
            "warmup_steps": 30,
            "weight_decay": 0.0,  # the reference trains without regularisation
            "eval_every": 100,
            "eval_batches": 4,
            "checkpoint_every": 25,
            "log_every": 10,
        }
    )


def train_sashimi(
    data: str | Path,
    out: str | Path,
    settings: SashimiTraining | None = None,
    *,
    resume: bool = False,
    steps: int | None = None,
) -> dict:
    """Train on an audio dataset with the shared loop, export the model to `out`, return the metric table."""
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
        raise BadInput(
            f"layers must be >= 1 and the window a multiple of 16 (got {settings.layers}, {settings.seq_len})"
        )
    dataset = AudioDataset(data)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(saved, json.dumps(asdict(settings), indent=2) + "\n")  # read back by every --resume
    config = SashimiConfig(n_layers=settings.layers, quantization=dataset.quantization, sample_rate=dataset.sample_rate)
    train_config = TrainConfig.from_dict(settings.train)
    torch.manual_seed(train_config.seed)
    model = Sashimi(config)
    task = AudioTask(dataset, settings.seq_len, train_config.batch_size, seed=train_config.seed)
    result = train(model, task, train_config, out, resume=resume)
    model.cpu()
    metrics = {
        split: evaluate(model, data, split, seq_len=settings.seq_len, windows=settings.eval_windows)
        for split in ("validation", "test")
    }
    card = {
        "metrics": metrics,
        "training": {
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "data": str(data),
            "data_hours": dataset.meta.get("hours"),
            "parameters": sum(p.numel() for p in model.parameters()),
            "samples_per_second": round(result.tokens_per_second),
        },
    }
    SashimiComposer(model, card).save(out)
    write_atomic(out / "metrics.md", metric_table(metrics) + "\n")
    return card
