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
from dataclasses import asdict, dataclass, field, fields
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


def read_records(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl (a line cut by kill -9 is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def learning_curve(
    records: list[dict], path: str | Path, *, baselines: dict[str, float] | None = None, title: str = ""
) -> Path:
    """Plot the two learning curves of a run's metrics.jsonl records: validation bits per byte (with
    horizontal `baselines`, name -> bits per byte) and the samples' flatness and harmonicity, with the
    share judged tonal, against the step. The quality targets are drawn as dotted lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from orchestrion.core.files import atomic_path

    evals = [r for r in records if r.get("val_loss") is not None]
    steps = [r["step"] for r in evals]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(steps, [r["val_loss"] / math.log(2) for r in evals], marker="o", label="validation")
    train = [(r["step"], r["train_loss"] / math.log(2)) for r in records if r.get("train_loss") is not None]
    if train:
        top.plot(*zip(*train, strict=True), alpha=0.4, label="train")
    for i, (name, value) in enumerate((baselines or {}).items()):
        top.axhline(value, color=f"C{i + 2}", linestyle="--", label=name)
    top.set_ylabel("bits per byte")
    top.grid(alpha=0.3)
    top.legend(fontsize=8)
    heard = [r for r in evals if r.get("sample_flatness") is not None]
    if heard:
        x = [r["step"] for r in heard]
        bottom.semilogy(x, [r["sample_flatness"] for r in heard], marker="o", label="sample flatness (median)")
        bottom.axhline(0.01, color="C0", linestyle=":", label="flatness target 0.01")
        right = bottom.twinx()
        right.plot(x, [r["sample_harmonicity"] for r in heard], marker="s", color="C1", label="harmonicity")
        right.plot(x, [r["sample_tonal"] for r in heard], marker="^", color="C2", label="share tonal")
        right.set_ylim(-0.05, 1.05)
        right.set_ylabel("harmonicity, share tonal")
        right.legend(loc="upper right", fontsize=8)
        bottom.legend(loc="upper left", fontsize=8)
    bottom.set_ylabel("spectral flatness")
    bottom.set_xlabel("step")
    bottom.grid(alpha=0.3)
    if title:
        top.set_title(title)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
    return path


def metric_table(metrics: dict[str, dict]) -> str:
    """Markdown table in the reference's layout: one row per split/metric."""
    lines = ["| metric | value |", "|---|---|"]
    for split, values in metrics.items():
        for name in ("accuracy", "accuracy@10", "accuracy@3", "accuracy@5", "bpb", "loss"):
            if name in values:
                lines.append(f"| final/{'val' if split == 'validation' else split}/{name} | {values[name]:.4f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- training


@torch.no_grad()
def sample_quality(model: Sashimi, *, count: int = 3, seconds: float = 2.0, seed: int = 0) -> dict:
    """What the model's samples sound like now: `count` unconditional samples of `seconds` (seeds fixed,
    temperature 1), each judged by `orchestrion.core.audio_analysis.classify`; the medians and the tonal share.

    The learning curve's second axis: bits per byte can fall while the samples stay noise.
    """
    from orchestrion.core.audio_analysis import classify
    from orchestrion.sashimi import mulaw
    from orchestrion.sashimi.sampler import Sampler

    was_training = model.training
    model.cpu().eval()
    config = model.config
    n = int(seconds * config.sample_rate)
    sampler = Sampler(model, count)
    sampler.step(mulaw.encode(np.zeros(count), config.quantization).astype(np.int64))
    gumbel = np.random.default_rng(seed).gumbel(size=(n, count, config.n_classes)).astype(np.float32)
    classes = sampler.sample(n, 1.0, 1.0, gumbel)
    verdicts = [classify(mulaw.decode(row, config.quantization), config.sample_rate) for row in classes]
    model.train(was_training)

    def median(values: list[float]) -> float | None:
        values = [v for v in values if not math.isnan(v)]
        return float(np.median(values)) if values else None

    return {
        "sample_flatness": median([v.flatness for v in verdicts]),
        "sample_harmonicity": median([v.harmonicity for v in verdicts]),
        "sample_tonal": sum(v.label == "tonal" for v in verdicts) / count,
        "sample_labels": [v.label for v in verdicts],
    }


@dataclass
class SashimiTraining:
    """What `orchestrion train sashimi` needs beyond the shared loop's TrainConfig; saved for --resume."""

    layers: int = 2
    seq_len: int = 4096  # training window, a multiple of 16 (0.26 s at 16 kHz)
    eval_windows: int = 32
    model: dict = field(default_factory=dict)  # more SashimiConfig fields (d_model, amplitude_input, ...)
    sample_count: int = 3  # at every evaluation, this many unconditional samples are judged (0: none) ...
    sample_seconds: float = 2.0  # ... of this length: the learning curve of flatness, harmonicity, verdict
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


# Named settings for `orchestrion train sashimi --preset NAME` (the command line's options override them).
PRESETS: dict[str, dict] = {
    # the reference's 2-layer SaShiMi, as the first builtin:piano was trained
    "reference": {"layers": 2, "model": {}},
    # the same network, told each class's amplitude on the way in and predicting a peak on the way out
    "piano": {"layers": 2, "model": {"amplitude_input": True, "amplitude_output": True}},
    # the piano network on one GPU (docs/sashimi.md, "A GPU recipe"): bf16 autocast, 4 s windows, batch 32,
    # 40,000 steps (~84 G samples, ~1,500 hours of 16 kHz audio seen); still 2 layers, so that it samples
    # faster than real time on one CPU core. Not yet run: no GPU has been lent to this project's piano work.
    "piano-gpu": {
        "layers": 2,
        "seq_len": 65536,
        "model": {"amplitude_input": True, "amplitude_output": True},
        "train": {
            "steps": 40000,
            "batch_size": 32,
            "lr": 2e-3,
            "min_lr": 1e-4,
            "warmup_steps": 500,
            "eval_every": 1000,
            "eval_batches": 8,
            "checkpoint_every": 500,
            "keep_best": True,
            "device": "cuda",
            "precision": "bf16",
        },
    },
}


def preset(name: str) -> SashimiTraining:
    """The SashimiTraining of a preset by name (a fresh copy)."""
    if name not in PRESETS:
        raise BadInput(f"unknown SaShiMi preset {name!r}; use one of: {', '.join(PRESETS)}")
    fields_ = json.loads(json.dumps(PRESETS[name]))
    settings = SashimiTraining(**{k: v for k, v in fields_.items() if k != "train"})
    settings.train.update(fields_.get("train", {}))
    return settings


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
    fixed = {"n_layers", "quantization", "sample_rate"}  # from --layers and the dataset
    unknown = set(settings.model) - ({f.name for f in fields(SashimiConfig)} - fixed)
    if unknown:
        raise BadInput(f"unknown or fixed model settings: {', '.join(sorted(unknown))}")
    if str(settings.train.get("device", "auto")).startswith("cuda") and not torch.cuda.is_available():
        raise BadInput("these settings train on a CUDA GPU and none is visible here; on the CPU use --preset piano")
    dataset = AudioDataset(data)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(saved, json.dumps(asdict(settings), indent=2) + "\n")  # read back by every --resume
    config = SashimiConfig.from_dict(
        {
            **settings.model,
            "n_layers": settings.layers,
            "quantization": dataset.quantization,
            "sample_rate": dataset.sample_rate,
        }
    )
    train_config = TrainConfig.from_dict(settings.train)
    torch.manual_seed(train_config.seed)
    model = Sashimi(config)
    task = AudioTask(dataset, settings.seq_len, train_config.batch_size, seed=train_config.seed)

    from orchestrion.sashimi import sampler  # noqa: F401  (loaded now: a long run keeps the code it began with)

    def listen(trained: Sashimi) -> dict:
        device = next(trained.parameters()).device
        quality = sample_quality(trained, count=settings.sample_count, seconds=settings.sample_seconds)
        trained.to(device)
        return quality

    result = train(model, task, train_config, out, resume=resume, extra_eval=listen if settings.sample_count else None)
    metrics = {  # on the training device (a GPU run's long windows would take minutes on the CPU)
        split: evaluate(model, data, split, seq_len=settings.seq_len, windows=settings.eval_windows)
        for split in ("validation", "test")
    }
    model.cpu()
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
    title = f"{out.name}: width {config.d_model}, {config.n_layers} layers per stage"
    learning_curve(read_records(out / "metrics.jsonl"), out / "learning_curve.png", title=title)
    return card
