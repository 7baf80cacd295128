"""The shared training loop on a toy regression task: schedule, checkpoints, resume, metrics."""

from __future__ import annotations

import json
import math

import pytest
import torch

from orchestrion.core.training import TrainConfig, checkpoint_dir, load_checkpoint, lr_at, train
from orchestrion.errors import BadInput


class ToyTask:
    """y = x @ w_true + noise, batches drawn from a generator seeded by (split, step, index)."""

    def __init__(self, crash_at: int | None = None):
        self.crash_at = crash_at
        self.w_true = torch.linspace(-1, 1, 8)
        self.seen: list[tuple[str, int, int]] = []

    def batch(self, split: str, step: int, index: int) -> dict[str, torch.Tensor]:
        if split == "train" and step == self.crash_at:
            raise KeyboardInterrupt("simulated crash")
        self.seen.append((split, step, index))
        g = torch.Generator().manual_seed(hash((split, step, index)) % 2**31)
        x = torch.randn(16, 8, generator=g)
        return {"x": x, "y": x @ self.w_true + 0.01 * torch.randn(16, generator=g)}

    def loss(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        return torch.nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])

    def tokens(self, batch: dict) -> int:
        return int(batch["x"].shape[0])


def toy_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.1), torch.nn.Linear(16, 1))


CONFIG = TrainConfig(
    steps=12,
    batch_size=16,
    grad_accum=2,
    lr=3e-2,
    min_lr=3e-3,
    warmup_steps=3,
    eval_every=4,
    eval_batches=2,
    checkpoint_every=3,
    log_every=1,
    seed=7,
)


def test_config_json_round_trip() -> None:
    assert TrainConfig.from_dict(json.loads(json.dumps(CONFIG.to_dict()))) == CONFIG
    with pytest.raises(BadInput, match="unknown training settings: nope"):
        TrainConfig.from_dict({"nope": 1})


def test_lr_warms_up_then_decays_to_min_lr() -> None:
    lrs = [lr_at(s, CONFIG) for s in range(CONFIG.steps)]
    assert lrs[0] == pytest.approx(CONFIG.lr / 3)
    assert lrs[2] == pytest.approx(CONFIG.lr)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    assert lr_at(CONFIG.steps, CONFIG) == pytest.approx(CONFIG.min_lr)


def test_train_writes_checkpoint_metrics_and_curve(tmp_path) -> None:
    task = ToyTask()
    result = train(toy_model(), task, CONFIG, tmp_path, quiet=True)
    assert result.steps == 12 and result.tokens_per_second > 0
    ckpt = tmp_path / "checkpoint"
    assert {p.name for p in ckpt.iterdir()} == {"model.safetensors", "optimizer.pt", "train_state.json"}
    state = json.loads((ckpt / "train_state.json").read_text())
    assert state["step"] == 12 and TrainConfig.from_dict(state["config"]) == CONFIG
    assert state["best_val_loss"] == pytest.approx(min(result.best_val_loss, state["best_val_loss"]))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 13))
    assert [r["step"] for r in records if "val_loss" in r] == [4, 8, 12]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert records[-1]["val_loss"] < records[3]["val_loss"]
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Gradient accumulation asks for micro-batches 0 and 1 of every step.
    assert ("train", 5, 0) in task.seen and ("train", 5, 1) in task.seen
    # The optimizer state loads back with weights_only=True (no pickle).
    model = toy_model()
    opt = torch.optim.AdamW(model.parameters())
    assert load_checkpoint(model, None, ckpt)["step"] == 12
    assert "state" in torch.load(ckpt / "optimizer.pt", weights_only=True)
    del opt


def test_resume_after_a_crash_continues_identically(tmp_path) -> None:
    whole = train(toy_model(), ToyTask(), CONFIG, tmp_path / "whole", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        train(toy_model(), ToyTask(crash_at=8), CONFIG, tmp_path / "cut", quiet=True)
    assert json.loads((checkpoint_dir(tmp_path / "cut") / "train_state.json").read_text())["step"] == 6
    task = ToyTask()
    resumed = train(toy_model(), task, CONFIG, tmp_path / "cut", resume=True, quiet=True)
    assert min(s for split, s, _ in task.seen if split == "train") == 6
    a = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["train_loss"] == pytest.approx(rb["train_loss"], rel=1e-6)
    assert resumed.val_loss == pytest.approx(whole.val_loss, rel=1e-6)


def test_resume_from_a_checkpoint_made_before_the_first_evaluation(tmp_path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train(toy_model(), ToyTask(crash_at=3), CONFIG, tmp_path, quiet=True)
    assert json.loads((tmp_path / "checkpoint" / "train_state.json").read_text())["best_val_loss"] is None
    result = train(toy_model(), ToyTask(), CONFIG, tmp_path, resume=True, quiet=True)
    assert math.isfinite(result.best_val_loss)


def test_interrupted_checkpoint_swap_falls_back_to_the_previous(tmp_path) -> None:
    train(toy_model(), ToyTask(), CONFIG, tmp_path, quiet=True)
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")  # killed between the two renames
    assert checkpoint_dir(tmp_path).name == "checkpoint.old"
    result = train(
        toy_model(), ToyTask(), TrainConfig(**{**CONFIG.to_dict(), "steps": 14}), tmp_path, resume=True, quiet=True
    )
    assert result.steps == 14 and math.isfinite(result.val_loss)
    again = train(
        toy_model(),
        ToyTask(crash_at=13),
        TrainConfig(**{**CONFIG.to_dict(), "steps": 14}),
        tmp_path,
        resume=True,
        quiet=True,
    )  # nothing left to train: evaluates and reports, never asks for data
    assert again.val_loss == pytest.approx(result.val_loss, rel=1e-6)


def test_resume_without_checkpoint_and_bad_precision_are_clear_errors(tmp_path) -> None:
    with pytest.raises(BadInput, match="no checkpoint"):
        train(toy_model(), ToyTask(), CONFIG, tmp_path, resume=True, quiet=True)
    with pytest.raises(BadInput, match="precision"):
        train(toy_model(), ToyTask(), TrainConfig(precision="fp8"), tmp_path, quiet=True)
    with pytest.raises(BadInput, match="same batch size"):
        train(toy_model(), ToyTask(), CONFIG, tmp_path / "a", quiet=True)
        train(
            toy_model(),
            ToyTask(),
            TrainConfig(**{**CONFIG.to_dict(), "grad_accum": 1}),
            tmp_path / "a",
            resume=True,
            quiet=True,
        )


def test_keep_best_keeps_the_weights_of_the_lowest_validation_loss(tmp_path) -> None:
    from safetensors.torch import load_file

    config = TrainConfig(**{**CONFIG.to_dict(), "keep_best": True, "eval_every": 2})
    train(toy_model(), ToyTask(), config, tmp_path, quiet=True)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [(r["val_loss"], r["step"]) for r in records if "val_loss" in r]
    best = json.loads((tmp_path / "best" / "state.json").read_text())
    assert (best["val_loss"], best["step"]) == min(evals)
    assert set(load_file(tmp_path / "best" / "model.safetensors")) == set(toy_model().state_dict())
    # Off by default: a plain run writes no best/.
    train(toy_model(), ToyTask(), CONFIG, tmp_path / "plain", quiet=True)
    assert not (tmp_path / "plain" / "best").exists()
