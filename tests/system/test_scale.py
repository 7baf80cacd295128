"""Scale: `encode mmm --engine ray` against a real Ray cluster, and DDP under torchrun matching one process.

The Ray cluster is started by the test (`ray start --head` on 127.0.0.1, two CPUs, its own temp dir and
auth token) and torn down by killing exactly the processes it started: `ray stop --force` would also
stop any other Ray on the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrion.testing.local_ray import LocalRayCluster

BIN = Path(sys.executable).parent
ENCODE_ARGS = ["--bars", "4", "--hop", "2", "--transpose", "-2:3", "--chunk", "2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dataset_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a dataset that must be deterministic (not the cache, not run.log)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] != ".cache" and p.name != "run.log"
    }


def encode_cli(inputs: Path, out: Path, *extra: str) -> list[str]:
    return [str(BIN / "orchestrion"), "encode", "mmm", str(inputs), "--out", str(out), *ENCODE_ARGS, *extra]


# ------------------------------------------------------------------------------------------- ray


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """(address, environment for drivers) of a two-CPU Ray cluster on 127.0.0.1."""
    if not (BIN / "ray").exists():
        pytest.skip("ray is not installed (it is in the dev extra)")
    cluster = LocalRayCluster(cpus=2, timeout=180)
    cluster.env["OMP_NUM_THREADS"] = "1"
    cluster.start()
    try:
        yield cluster.address, cluster.env
    finally:
        left = cluster.stop()
        assert not left, f"Ray processes left running: {left}"


@pytest.fixture(scope="module")
def chorales(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from orchestrion.core.corpora import corpus_files

    root = tmp_path_factory.mktemp("chorales")
    for path in corpus_files("bach-chorales", limit=12):
        shutil.copy(path, root / path.name)
    (root / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06" + bytes(64))  # goes to the manifest either way
    return root


@pytest.fixture(scope="module")
def local_dataset(chorales: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local")
    subprocess.run(encode_cli(chorales, out, "--workers", "1"), check=True, capture_output=True, timeout=300)
    return out


def test_ray_cluster_encode_is_byte_identical_to_local(
    ray_cluster: tuple[str, dict], chorales: Path, local_dataset: Path, tmp_path: Path
) -> None:
    address, env = ray_cluster
    out = tmp_path / "ray"
    run = subprocess.run(encode_cli(chorales, out, "--engine", "ray", "--address", address),
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    ours = dataset_bytes(out)
    assert ours == dataset_bytes(local_dataset)
    assert json.loads(ours["stats.json"])["files"] == {"total": 13, "ok": 11, "skipped": 2, "failed": 0}
    log = json.loads((out / "run.log").read_text().splitlines()[-1])
    assert log["engine"] == "ray" and log["workers"] == 2  # "all cores" = the cluster's two CPUs


def test_ray_driver_killed_then_local_resume_is_byte_identical(
    ray_cluster: tuple[str, dict], chorales: Path, tmp_path: Path
) -> None:
    # Many small tasks, so that the kill lands in the middle of the encoding.
    big = tmp_path / "big"
    big.mkdir()
    for i in range(6):
        for path in chorales.glob("bwv*.mid"):
            shutil.copy(path, big / f"{i}-{path.name}")
    files = len(list(big.glob("*.mid")))
    address, env = ray_cluster
    killed = tmp_path / "killed"
    driver = subprocess.Popen(encode_cli(big, killed, "--engine", "ray", "--address", address), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        if len(list(killed.glob(".cache/*/*.npz"))) >= 6:
            break
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    time.sleep(1)  # Ray ends a dead driver's tasks; a chunk still landing now would be the same bytes anyway
    assert not (killed / "dataset.json").exists(), "the run finished before it could be killed"
    assert 0 < len(list(killed.glob(".cache/*/*.npz"))) < files // 2  # chunks of 2 files: not all done

    subprocess.run(encode_cli(big, killed, "--workers", "1"), check=True, capture_output=True, timeout=300)
    whole = tmp_path / "whole"
    subprocess.run(encode_cli(big, whole, "--workers", "2"), check=True, capture_output=True, timeout=300)
    assert dataset_bytes(killed) == dataset_bytes(whole)
    log = json.loads((killed / "run.log").read_text().splitlines()[-1])
    assert log["engine"] == "local" and 0 < log["encoded_now"] < files  # the Ray run's chunks were kept


# A driver whose idea of the cache folder differs from the workers' (the engine's `_chunk_path` is patched;
# workers import the module afresh and keep the real one): what several machines without a shared file system do.
UNSHARED_DRIVER = """
import sys
from orchestrion.core import engine
from orchestrion.mmm import dataset as pipeline
from orchestrion.mmm import vocabulary as mmm

real = engine._chunk_path
engine._chunk_path = lambda cache, keys: real(cache / "not-shared", keys)
config = pipeline.PipelineConfig(options=mmm.MMMOptions(bars=4, hop=2), engine="ray", address=sys.argv[3],
                                 progress=False)
pipeline.encode_mmm_dataset([sys.argv[1]], sys.argv[2], config)
"""


def test_ray_chunks_the_driver_cannot_see_are_an_error(
    ray_cluster: tuple[str, dict], chorales: Path, tmp_path: Path
) -> None:
    address, env = ray_cluster
    run = subprocess.run([sys.executable, "-c", UNSHARED_DRIVER, str(chorales), str(tmp_path / "out"), address],
                         env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode != 0
    assert "BadInput" in run.stderr and "file system that every node mounts at the same path" in run.stderr
    assert not (tmp_path / "out" / "dataset.json").exists()


# -------------------------------------------------------------------------------------- torchrun

# Run as a script (by python, or by torchrun on every rank): the tiny preset with two micro-batches per
# step, so that DDP's no_sync accumulation is exercised too, and a loss logged at every step.
# Arguments: DATA OUT STEPS [RESUME 0|1] [CRASH_AT_STEP] (a crash exits before that step's batch).
TRAIN_SCRIPT = """
import sys
from dataclasses import replace

from orchestrion.gpt import model as gpt_model
from orchestrion.gpt import training as gpt

data, out, steps, resume, crash_at = (sys.argv[1:] + ["0", "-1"])[:5]
tiny = gpt_model.PRESETS["tiny"]
gpt_model.PRESETS["tiny"] = replace(tiny, train=replace(tiny.train, batch_size=4, grad_accum=2, log_every=1,
                                                  eval_every=10, eval_batches=2, checkpoint_every=10))
real_batch = gpt.GPTTask.batch


def batch(self, split, step, index):
    if split == "train" and step == int(crash_at):
        raise SystemExit(3)
    return real_batch(self, split, step, index)


gpt.GPTTask.batch = batch
gpt.train_gpt(data, out, preset_name="tiny", steps=int(steps), resume=resume == "1", quiet=True)
"""
STEPS = 20
# Measured here: the two curves agree to 1e-7 relative at every step (float32 rounding: gloo sums the ranks'
# gradients in another order than one process's mean over the same rows, and Adam carries it from step to
# step), the final weights to 1e-5. 1e-5 leaves 100x for other BLAS builds and thread counts, and is still
# far below one step's change in loss (~1e-2): a rank training on other windows would miss by that much.
LOSS_RTOL = 1e-5


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _train(tmp_path: Path, data: Path, out: str, *args: str, nproc: int = 1) -> subprocess.CompletedProcess:
    script = tmp_path / "train_tiny.py"
    script.write_text(TRAIN_SCRIPT)
    launcher = [sys.executable]
    if nproc > 1:
        launcher = [str(BIN / "torchrun"), "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
                    "--master_port", str(free_port())]  # fmt: skip
    return subprocess.run([*launcher, str(script), str(data), str(tmp_path / out), str(STEPS), *args],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)  # fmt: skip


def test_torchrun_two_processes_match_one_process_at_the_same_global_batch(tmp_path: Path) -> None:
    from orchestrion.testing.datasets import make_token_dataset

    data = make_token_dataset(tmp_path / "data")
    one = _train(tmp_path, data, "one")
    assert one.returncode == 0, one.stderr[-3000:]
    two = _train(tmp_path, data, "two", nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]

    single, ddp = _metrics(tmp_path / "one"), _metrics(tmp_path / "two")
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == list(range(1, STEPS + 1))
    single_loss = [r["train_loss"] for r in single]
    assert [r["train_loss"] for r in ddp] == pytest.approx(single_loss, rel=LOSS_RTOL)
    assert single_loss[-1] < single_loss[0] - 0.5  # it learns: the curves compared are not flat
    val = [(a["val_loss"], b["val_loss"]) for a, b in zip(single, ddp, strict=True) if "val_loss" in a]
    assert len(val) == 2 and all(b == pytest.approx(a, rel=LOSS_RTOL) for a, b in val)

    state = json.loads((tmp_path / "two" / "checkpoint" / "train_state.json").read_text())
    assert state["step"] == STEPS and state["world_size"] == 2
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel

    assert GPT2LMHeadModel.from_pretrained(tmp_path / "two").config.composer == "gpt"  # rank 0 exported it
    w1 = load_file(tmp_path / "one" / "checkpoint" / "model.safetensors")
    w2 = load_file(tmp_path / "two" / "checkpoint" / "model.safetensors")
    assert w1.keys() == w2.keys()
    assert all((w1[k] - w2[k]).abs().max() < 1e-4 for k in w1)


@pytest.mark.slow
def test_a_one_process_run_resumed_on_two_processes_continues_the_same_curve(tmp_path: Path) -> None:
    """Batches are global, so a checkpoint may move to another world size and train on the same data."""
    from orchestrion.testing.datasets import make_token_dataset

    data = make_token_dataset(tmp_path / "data")
    whole = _train(tmp_path, data, "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    crashed = _train(tmp_path, data, "moved", "0", "13")  # exits before step 13: the checkpoint is at 10
    assert crashed.returncode == 3
    assert json.loads((tmp_path / "moved" / "checkpoint" / "train_state.json").read_text())["step"] == 10
    resumed = _train(tmp_path, data, "moved", "1", nproc=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = _metrics(tmp_path / "whole"), _metrics(tmp_path / "moved")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [r["train_loss"] for r in got] == pytest.approx([r["train_loss"] for r in expected], rel=LOSS_RTOL)
    assert got[-1]["val_loss"] == pytest.approx(expected[-1]["val_loss"], rel=LOSS_RTOL)
    assert json.loads((tmp_path / "moved" / "checkpoint" / "train_state.json").read_text())["world_size"] == 2
