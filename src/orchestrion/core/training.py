"""The shared torch training loop, used by every neural model family (GPT, SaShiMi).

A family gives the loop a `TrainTask` (deterministic batches, a loss, a token count); the loop does the
rest: AdamW with linear warm-up and cosine decay, gradient accumulation, autocast, evaluation on the
validation split, checkpoints that survive `kill -9`, resume at the same step with the same data order,
metrics.jsonl + loss_curve.png, and DDP when started under `torchrun`.

Under DDP, `batch_size` stays the *global* micro-batch: every rank builds the same micro-batch and trains on
its own rows of it (`_shard`), so a run on N processes trains on exactly the windows a single process
would, and its loss curve matches the single-process one to float rounding (tests/system/test_scale.py).

Checkpoint layout (under out_dir/checkpoint/, every file written whole by `orchestrion.core.files`):

    model.safetensors    safetensors.torch.save_model (handles tied weights)
    optimizer.pt         optimizer state_dict, loaded back with torch.load(weights_only=True)
    train_state.json     step, config, best validation loss, seeds, the losses since the last log

A whole checkpoint is first written to checkpoint.tmp/ and then swapped in (the previous one moves to
checkpoint.old/ for the instant between the two renames), so that a run killed at any point resumes from
a whole checkpoint: the new one or the previous one (tests/system/test_crash.py kills it at every point).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import torch

from orchestrion.core.files import atomic_path, write_atomic
from orchestrion.errors import BadInput

CHECKPOINT = "checkpoint"
METRICS = "metrics.jsonl"
LOSS_CURVE = "loss_curve.png"


@dataclass
class TrainConfig:
    """How to train; JSON round trip with `to_dict`/`from_dict`."""

    steps: int = 1000
    batch_size: int = 8  # micro-batch size, over all DDP ranks together (each takes batch_size / world rows)
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    eval_batches: int = 20
    checkpoint_every: int = 200
    keep_best: bool = False  # also keep the weights of the best validation loss so far in best/ (long runs)
    log_every: int = 10
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (autocast where the hardware has it)
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise BadInput(f"unknown training settings: {', '.join(sorted(unknown))}")
        return cls(**data)


class TrainTask(Protocol):
    """What a model family gives the loop."""

    def batch(self, split: str, step: int, index: int) -> dict[str, torch.Tensor]:
        """Deterministic in (split, step, index); index = micro-batch index (the same on every DDP rank)."""
        ...

    def loss(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        """A scalar: the mean loss per token."""
        ...

    def tokens(self, batch: dict) -> int:
        """Tokens in the batch, for tokens/s."""
        ...


@dataclass
class TrainResult:
    steps: int
    train_loss: float
    best_val_loss: float
    val_loss: float
    tokens_per_second: float
    seconds: float


# ------------------------------------------------------------------------------------ small helpers


def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warm-up to `lr`, then cosine decay to `min_lr` at the last step."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1 + math.cos(math.pi * progress))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device("cuda", local_rank)
        return torch.device("cpu")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for plain fp32. `auto` = bf16 on a GPU that has it, else fp32."""
    if name not in ("auto", "fp32", "bf16", "fp16"):
        raise BadInput(f"unknown precision {name!r}: use auto, fp32, bf16 or fp16")
    if name == "fp32":
        return None
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None  # CPU autocast is slower than fp32 on most CPUs and changes results
    if name == "fp16" and device.type != "cuda":
        raise BadInput("fp16 autocast needs a CUDA device; use bf16 or fp32 on the CPU")
    return torch.bfloat16 if name == "bf16" else torch.float16


def _batch_to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


# ----------------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    started_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_name: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return _Dist()
    import torch.distributed as dist

    started = False
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device_name in ("auto", "cuda") else "gloo"
        dist.init_process_group(backend=backend)
        started = True
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(), started_here=started)


def _shard(batch: dict, dist_info: _Dist) -> dict:
    """This rank's rows of a global micro-batch (contiguous blocks, rank 0 first).

    Slicing one batch, rather than drawing a batch per rank, is what keeps the world size out of the
    result: DDP averages the ranks' gradients, and the mean of equal-sized blocks' mean losses is the
    whole batch's mean loss.
    """
    if dist_info.world <= 1:
        return batch
    shard = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            rows = value.shape[0] // dist_info.world
            assert rows * dist_info.world == value.shape[0], "batch_size was checked to split evenly"
            value = value[dist_info.rank * rows : (dist_info.rank + 1) * rows]
        shard[key] = value
    return shard


def _mean_across(value: float, dist_info: _Dist, device: torch.device) -> float:
    if dist_info.world <= 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist_info.world


# ----------------------------------------------------------------------------------- checkpoints


CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "train_state.json")


def _is_whole(directory: Path) -> bool:
    return all((directory / name).is_file() for name in CHECKPOINT_FILES)


def checkpoint_dir(out_dir: str | Path) -> Path:
    """The checkpoint to resume from; falls back to the previous one when a swap was interrupted."""
    out_dir = Path(out_dir)
    current, old = out_dir / CHECKPOINT, out_dir / f"{CHECKPOINT}.old"
    if _is_whole(current):
        return current
    if _is_whole(old):
        return old
    return current


def _discard(directory: Path) -> None:
    """Remove a directory so that a kill half-way never leaves part of it under its own name: a half-deleted
    checkpoint.old that still held train_state.json would look whole to `checkpoint_dir`."""
    if not directory.exists():
        return
    trash = directory.with_name(f"{directory.name}.trash")
    shutil.rmtree(trash, ignore_errors=True)
    directory.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def save_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict, out_dir: Path) -> Path:
    """Write a whole checkpoint to checkpoint.tmp/, then swap it in; at every instant `checkpoint_dir`
    finds a whole checkpoint (the new one or the previous one), whenever a kill lands."""
    from safetensors.torch import save_model

    tmp_dir = out_dir / f"{CHECKPOINT}.tmp"
    _discard(tmp_dir)
    tmp_dir.mkdir(parents=True)
    with atomic_path(tmp_dir / "model.safetensors") as weights:
        save_model(_unwrap(model), str(weights))
    with atomic_path(tmp_dir / "optimizer.pt") as opt_tmp:
        torch.save(optimizer.state_dict(), opt_tmp)
    # Written last: its presence marks a whole checkpoint.
    write_atomic(tmp_dir / "train_state.json", json.dumps(state, indent=2, sort_keys=True) + "\n")
    final, old = out_dir / CHECKPOINT, out_dir / f"{CHECKPOINT}.old"
    if _is_whole(final):
        _discard(old)
        final.rename(old)
    else:
        # An earlier swap was cut between its two renames: checkpoint.old is the last whole checkpoint and
        # stays until the new one has its final name.
        _discard(final)
    tmp_dir.rename(final)
    _discard(old)
    return final


BEST = "best"


def save_best(model: torch.nn.Module, state: dict, out_dir: Path) -> Path:
    """The weights of the best validation loss so far: best/model.safetensors and best/state.json.

    A long run on a small corpus overfits at some point; its last checkpoint is then worse than an earlier
    one. Each file is written whole (`core.files`): the weights first, then their step.
    """
    from safetensors.torch import save_model

    best = out_dir / BEST
    with atomic_path(best / "model.safetensors") as weights:
        save_model(_unwrap(model), str(weights))
    write_atomic(best / "state.json", json.dumps(state) + "\n")
    return best


def load_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, directory: Path) -> dict:
    """Load weights (and optimizer state) in place; returns train_state.json."""
    from safetensors.torch import load_model

    state_path = directory / "train_state.json"
    if not state_path.is_file():
        raise BadInput("no checkpoint to resume from (no train_state.json); train without --resume first", directory)
    state = json.loads(state_path.read_text())
    load_model(_unwrap(model), str(directory / "model.safetensors"))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True, map_location="cpu"))
    return state


# --------------------------------------------------------------------------------------- metrics


def _read_metrics(path: Path, up_to_step: int) -> list[dict]:
    """The metric records of a run up to the checkpoint's step, to continue them on resume."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by kill -9
        if record.get("step", 0) <= up_to_step:
            records.append(record)
    return records


def plot_loss_curve(records: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    train = [(r["step"], r["train_loss"]) for r in records if r.get("train_loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=True), label="train")
    if val:
        ax.plot(*zip(*val, strict=True), marker="o", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    task: TrainTask,
    config: TrainConfig,
    device: torch.device,
    autocast: torch.dtype | None,
    dist_info: _Dist | None = None,
) -> float:
    """Mean loss over the first `eval_batches` validation batches (the same batches every time)."""
    dist_info = dist_info or _Dist()
    model.eval()
    losses = []
    for i in range(config.eval_batches):  # every rank its rows of every batch: the same mean as one process
        batch = _batch_to(_shard(task.batch("validation", 0, i), dist_info), device)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            losses.append(float(task.loss(model, batch)))
    model.train()
    local = sum(losses) / max(1, len(losses))
    return _mean_across(local, dist_info, device)


# ------------------------------------------------------------------------------------------ train


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # Weight decay on matrices only: decaying biases, norms and (tied) embeddings' 1-D params hurts.
    decay, no_decay = [], []
    seen: set[int] = set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8)


def train(
    model: torch.nn.Module,
    task: TrainTask,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    extra_eval: Callable[[torch.nn.Module], dict] | None = None,
    quiet: bool = False,
) -> TrainResult:
    """Train `model` on `task` for `config.steps` optimizer steps, checkpointing under `out_dir`."""
    out_dir = Path(out_dir)
    dist_info = _init_distributed(config.device)
    if config.batch_size % dist_info.world:
        raise BadInput(
            f"batch_size {config.batch_size} does not split evenly across {dist_info.world} processes: "
            f"use a multiple of {dist_info.world} (it is the micro-batch of all ranks together)"
        )
    device = resolve_device(config.device)
    autocast = resolve_precision(config.precision, device)
    if dist_info.main:
        out_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    optimizer = _optimizer(model, config)

    start_step, best_val, state = 0, math.inf, {}
    if resume:
        resume_from = checkpoint_dir(out_dir)
        state = load_checkpoint(model, optimizer, resume_from)
        best = state.get("best_val_loss")  # None until the first evaluation
        start_step, best_val = int(state["step"]), math.inf if best is None else float(best)
        saved = TrainConfig.from_dict(state["config"])
        if (saved.batch_size, saved.grad_accum, saved.seed) != (config.batch_size, config.grad_accum, config.seed):
            raise BadInput("resume with the same batch size, gradient accumulation and seed as the first run", out_dir)
        if dist_info.main and not quiet:
            print(f"resuming at step {start_step} from {resume_from}", file=sys.stderr, flush=True)
    train_model: torch.nn.Module = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    records = _read_metrics(out_dir / METRICS, start_step) if dist_info.main else []
    if dist_info.main:  # rewrite, dropping records past the checkpoint that the killed run had logged
        write_atomic(out_dir / METRICS, "".join(json.dumps(r) + "\n" for r in records))
    metrics_file = open(out_dir / METRICS, "a") if dist_info.main else None  # closed in the finally below

    progress = None
    if dist_info.main and not quiet:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("loss {task.fields[loss]:.3f}  {task.fields[tps]:,.0f} tok/s"),
        )
        progress.start()
        bar = progress.add_task("train", total=config.steps, completed=start_step, loss=float("nan"), tps=0.0)

    val_loss, train_loss = math.nan, math.nan
    # tokens/s counts the optimizer steps only (not evaluation, checkpoints or start-up).
    run_tokens, run_start, compute_seconds = 0, time.perf_counter(), 0.0
    window_loss, window_count, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
    # A checkpoint between two log steps carries the losses summed since the last log, so that the first
    # record after a resume averages the same steps as an uninterrupted run's.
    window_loss = float(state.get("log_window", {}).get("loss", 0.0))
    window_count = int(state.get("log_window", {}).get("steps", 0))
    model.train()
    try:
        for step in range(start_step, config.steps):
            # A per-step seed makes dropout (and anything else random in the model) replay exactly on resume.
            # The rank term gives each rank's rows their own dropout masks (rank 0 keeps a lone process's seed).
            torch.manual_seed(config.seed * 1_000_003 + step + dist_info.rank * 2**40)
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_start = time.perf_counter()
            step_loss = 0.0
            for micro in range(config.grad_accum):
                batch = _batch_to(_shard(task.batch("train", step, micro), dist_info), device)
                last = micro == config.grad_accum - 1
                sync = train_model.no_sync() if (dist_info.world > 1 and not last) else nullcontext()
                with sync:
                    with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                        loss = task.loss(train_model, batch) / config.grad_accum
                    loss.backward()
                step_loss += float(loss.detach())
                window_tokens += task.tokens(batch) * dist_info.world
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            compute_seconds += time.perf_counter() - step_start
            window_loss += step_loss
            window_count += 1
            done = step + 1

            record: dict = {}
            if done % config.log_every == 0 or done == config.steps:
                elapsed = time.perf_counter() - window_start
                train_loss = _mean_across(window_loss / window_count, dist_info, device)
                tps = window_tokens / max(elapsed, 1e-9)
                record = {"step": done, "train_loss": train_loss, "lr": lr, "tokens_per_second": tps}
                run_tokens += window_tokens
                window_loss, window_count, window_tokens, window_start = 0.0, 0, 0, time.perf_counter()
                if progress is not None:
                    progress.update(bar, completed=done, loss=train_loss, tps=tps)
            if done % config.eval_every == 0 or done == config.steps:
                val_loss = evaluate(model, task, config, device, autocast, dist_info)
                if config.keep_best and dist_info.main and val_loss < best_val:
                    save_best(model, {"step": done, "val_loss": val_loss}, out_dir)
                best_val = min(best_val, val_loss)
                record = {"step": done, **record, "val_loss": val_loss}
                if extra_eval is not None and dist_info.main:
                    record.update(extra_eval(model))
            if record and metrics_file is not None:
                records.append(record)
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
            if progress is not None:
                progress.update(bar, completed=done)
            checkpoint_now = done % config.checkpoint_every == 0 or done == config.steps
            # Every rank's mean of the losses since the last log (a collective, so on every rank): each rank
            # takes it back on resume, and the next record averages what an uninterrupted run's would.
            window_mean = _mean_across(window_loss, dist_info, device) if checkpoint_now and window_count else 0.0
            if checkpoint_now and dist_info.main:
                state = {
                    "step": done,
                    "config": config.to_dict(),
                    "best_val_loss": best_val if math.isfinite(best_val) else None,
                    "val_loss": val_loss if math.isfinite(val_loss) else None,
                    "train_loss": train_loss if math.isfinite(train_loss) else None,
                    "seeds": {"torch": config.seed * 1_000_003 + done, "data": config.seed},
                    "world_size": dist_info.world,
                    "log_window": {"loss": window_mean, "steps": window_count},
                }
                save_checkpoint(model, optimizer, state, out_dir)
    finally:
        if progress is not None:
            progress.stop()
        if metrics_file is not None:
            metrics_file.close()
    seconds = time.perf_counter() - run_start
    run_tokens += window_tokens
    if start_step >= config.steps:  # resumed at (or past) the last step: nothing to train, still report
        val_loss = evaluate(model, task, config, device, autocast, dist_info)
        best_val = min(best_val, val_loss)
        train_loss = float(state.get("train_loss") or math.nan)
    if dist_info.main and records:
        plot_loss_curve(records, out_dir / LOSS_CURVE)
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.barrier()
        if dist_info.started_here:
            dist.destroy_process_group()
    return TrainResult(
        steps=config.steps,
        train_loss=train_loss,
        best_val_loss=best_val,
        val_loss=val_loss,
        tokens_per_second=run_tokens / max(compute_seconds, 1e-9),
        seconds=seconds,
    )
