"""Crashes: `kill -9` at random moments during `encode` and `train`, then resume (issue 10).

Every command here is killed several times in a row at random progress points (a seeded RNG; set
ORCHESTRION_CRASH_SEED to draw other points), re-run after each kill, and finally left to finish:

- encode mmm / abc / audio: the final dataset is byte-identical to an uninterrupted run's, no worker outlives
  its killed parent, and after every kill a dataset the loader accepts is whole (the loader refuses a partial
  one with BadInput);
- train gpt / sashimi: after every kill the checkpoint `checkpoint_dir` picks is whole and loadable, the next
  run resumes at its step, and the finished run's metrics.jsonl equals the uninterrupted run's;
- save_checkpoint: a crash at every one of its file operations (and SIGKILL while it saves in a loop) leaves
  a checkpoint that loads whole: the new one or the previous one.

The default suite kills each command twice; the many-kill variants are marked slow.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from orchestrion.errors import BadInput

SEED = int(os.environ.get("ORCHESTRION_CRASH_SEED", "10"))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TIMEOUT = 300


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrion", *args]


# ------------------------------------------------------------------------------------ the killer


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) for every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2 :].split()
        table[int(stat.parent.name)] = (int(fields[1]), fields[0])
    return table


def _descendants(pid: int) -> list[int]:
    table = _processes()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in table.items() if ppid == parent]
        found += children
        frontier += children
    return found


def _alive(pids: list[int]) -> list[int]:
    table = _processes()
    return [p for p in pids if p in table and table[p][1] not in ("Z", "X")]  # zombies have exited


@dataclass
class Kill:
    target: float  # the progress point drawn
    progress: float  # progress seen just before the kill
    seconds: float  # since the process started
    family: int  # child processes killed with it (they must leave by themselves)
    landed: bool = True  # False: the run had already finished (allowed only with allow_miss)


def kill_repeatedly(
    first: list[str],
    again: list[str],
    kills: int,
    target: Callable[[int, float], float],
    progress: Callable[[], float],
    *,
    rng: random.Random,
    jitter: float,
    after_kill: Callable[[int, Kill], None],
    logs: Path,
    finish: bool = True,
    allow_miss: bool = False,
    overshoot: float = float("inf"),
) -> list[Kill]:
    """Run `first`, SIGKILL it once `progress()` reaches `target(0, progress at its start)` (plus a random
    0..jitter s, cut short when progress reaches target + overshoot), check with `after_kill`, run `again` up
    to `target(1, ...)`, and so on, `kills` times; finally run `again` to its end.

    Child processes are not killed by us: like after a real `kill -9`, they must notice and leave.
    With `allow_miss`, a run that ends before its kill point (a fast machine) is no failure: the command is
    simply run again, as after a kill that came too late.
    """
    done_kills: list[Kill] = []
    logs.mkdir(parents=True, exist_ok=True)
    for i in range(kills):
        kill_at = target(i, progress())
        with open(logs / f"run-{i}.log", "wb") as log:
            proc = subprocess.Popen(first if i == 0 else again, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        started = time.monotonic()
        try:
            while proc.poll() is None and progress() < kill_at:
                assert time.monotonic() - started < TIMEOUT, f"run {i} made no progress to {kill_at}"
                time.sleep(0.005)
            until = time.monotonic() + rng.uniform(0, jitter)
            while time.monotonic() < until and progress() < kill_at + overshoot:
                time.sleep(0.005)
            seen = progress()
            family = _descendants(proc.pid)
            landed = proc.poll() is None
            assert landed or (allow_miss and proc.returncode == 0), (
                f"run {i} ended (rc {proc.returncode}) before the kill at progress {kill_at}: "
                + (logs / f"run-{i}.log").read_text(errors="replace")[-2000:]
            )
            if landed:
                os.kill(proc.pid, signal.SIGKILL)
                landed = proc.wait(timeout=30) == -signal.SIGKILL  # (or it ended just before)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        kill = Kill(
            target=kill_at,
            progress=seen,
            seconds=round(time.monotonic() - started, 2),
            family=len(family),
            landed=landed,
        )
        deadline = time.monotonic() + 60  # pool workers poll for their parent every 0.5 s (slow start-ups here)
        while _alive(family) and time.monotonic() < deadline:
            time.sleep(0.05)
        orphans = _alive(family)
        for pid in orphans:  # fail, but leave no process behind
            os.kill(pid, signal.SIGKILL)
        assert not orphans, f"orphaned child processes after kill {i}: {orphans}"
        done_kills.append(kill)
        if os.environ.get("ORCHESTRION_CRASH_LOG"):  # for BENCHMARKS.md: where the kills landed
            with open(os.environ["ORCHESTRION_CRASH_LOG"], "a") as f:
                test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
                f.write(json.dumps({"test": test, "run": i, **kill.__dict__}) + "\n")
        after_kill(i, kill)
    if not finish:
        return done_kills
    with open(logs / "final.log", "wb") as log:
        done = subprocess.run(again, env=ENV, stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    assert done.returncode == 0, (logs / "final.log").read_text(errors="replace")[-3000:]
    return done_kills


def _somewhere_ahead(rng: random.Random, total: float, share: float) -> Callable[[int, float], float]:
    """Kill points for a job of `total` progress units: each run is killed at a random point in the first
    `share` of the work it has left (so a kill never lands before the run has done something)."""
    return lambda i, start: start + 1 + rng.uniform(0, max(0.0, share * (total - start) - 1))


# ------------------------------------------------------------------------------------ datasets


def dataset_bytes(root: Path, skip: tuple[str, ...] = (".cache", "cache")) -> dict[str, bytes]:
    """Every file of a dataset that must be deterministic (not the encoders' caches, not run.log)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in skip and p.name != "run.log"
    }


def _load_token_dataset(root: Path) -> None:
    from orchestrion.core.shards import TokenDataset

    data = TokenDataset(root)
    for split in data.meta["splits"]:
        s = data.split(split)
        if len(s):
            s[len(s) - 1]


def _load_audio_dataset(root: Path) -> None:
    from orchestrion.sashimi.dataset import AudioDataset

    data = AudioDataset(root)
    for split in ("train", "validation", "test"):
        data.split(split)


def _whole_or_refused(out: Path, reference: dict[str, bytes], load: Callable[[Path], None]) -> str:
    """After a kill: the loader refuses the dataset (BadInput), or it accepts it and it is the whole one."""
    try:
        load(out)
    except BadInput:
        return "refused"
    assert dataset_bytes(out) == reference, "the loader accepted a dataset that is not whole"
    return "whole"


def _files_under(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def _midi_copies(chorale_files: list[Path], folder: Path, copies: int) -> Path:
    """Many small encoding tasks: `copies` copies of each chorale."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        for path in chorale_files:
            shutil.copy(path, folder / f"{i:02d}-{path.name}")
    return folder


@pytest.fixture(scope="module")
def midi_folder(chorale_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _midi_copies(chorale_files, tmp_path_factory.mktemp("crash-midi"), 12)  # 48 files, 24 chunks


def _kill_encode_until_done(
    kind: str,
    args: list[str],
    out: Path,
    reference: dict[str, bytes],
    loader: Callable[[Path], object],
    kills: int,
    total: float,
    progress: Callable[[], float],
    rng: random.Random,
    *,
    jitter: float,
    logs: Path,
) -> list[Kill]:
    """Kill `orchestrion encode KIND ... --out OUT` `kills` times at random progress points, rerunning it after
    each kill, then let it finish. After every kill the dataset is whole or refused by `loader`; at least one
    kill left a partial dataset that the loader refused; the finished dataset equals `reference` byte for byte."""
    seen: list[str] = []
    command = _cli("encode", kind, *args, "--out", str(out))
    kills_done = kill_repeatedly(
        command,
        command,
        kills,
        _somewhere_ahead(rng, total, 0.35),
        progress,
        rng=rng,
        jitter=jitter,
        logs=logs,
        allow_miss=True,
        after_kill=lambda i, k: seen.append(_whole_or_refused(out, reference, loader)),
    )
    assert dataset_bytes(out) == reference
    assert "refused" in seen
    return kills_done


def _encode_mmm_with_kills(midi_folder: Path, tmp_path: Path, kills: int) -> list[Kill]:
    rng = random.Random(SEED)
    args = [str(midi_folder), "--bars", "4", "--hop", "2", "--transpose", "-2:3", "--workers", "2", "--chunk", "2"]
    whole = tmp_path / "whole"
    subprocess.run(
        _cli("encode", "mmm", *args, "--out", str(whole)), env=ENV, check=True, capture_output=True, timeout=TIMEOUT
    )
    reference = dataset_bytes(whole)
    out = tmp_path / "killed"

    def progress() -> float:  # chunks cached, then dataset files written
        return _files_under(out)

    kills_done = _kill_encode_until_done(
        "mmm",
        args,
        out,
        reference,
        _load_token_dataset,
        kills,
        _files_under(whole),
        progress,
        rng,
        jitter=0.05,
        logs=tmp_path / "logs",
    )
    log = [json.loads(line) for line in (out / "run.log").read_text().splitlines()]
    assert log[-1]["encoded_now"] < log[-1]["files"]  # finished work was kept
    return kills_done


def test_encode_mmm_survives_random_kills(midi_folder: Path, tmp_path: Path) -> None:
    _encode_mmm_with_kills(midi_folder, tmp_path, kills=2)


@pytest.mark.slow
def test_encode_mmm_survives_many_random_kills(chorale_files: list[Path], tmp_path: Path) -> None:
    kills = _encode_mmm_with_kills(_midi_copies(chorale_files, tmp_path / "midi", 40), tmp_path, kills=5)
    assert sum(k.landed for k in kills) >= 3
    assert any(k.family for k in kills)  # the pool's workers were running (and left by themselves)


def _abc_tunes(folder: Path, per_source: int) -> Path:
    """Tunes from two of music21's ABC collections."""
    from orchestrion.abc import text as abc
    from orchestrion.core.corpora import music21_corpus_dir

    folder.mkdir(parents=True, exist_ok=True)
    for source in ("essenFolksong", "oneills1850"):
        path = sorted((music21_corpus_dir() / source).glob("*.abc"))[0]
        tunes = abc.split_tunes(path.read_text(encoding="utf-8", errors="replace"))[:per_source]
        (folder / f"{source}.abc").write_text("\n".join(t.abc for t in tunes))
    return folder


def _encode_abc(folder: Path, out: Path) -> Path:
    """The uninterrupted run."""
    subprocess.run(
        _cli("encode", "abc", str(folder), "--workers", "2", "--out", str(out)),
        env=ENV,
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    return out


@pytest.fixture(scope="module")
def abc_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _abc_tunes(tmp_path_factory.mktemp("crash-abc"), 60)


@pytest.fixture(scope="module")
def abc_whole(abc_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("abc2midi") is None:
        pytest.skip("abcmidi is not installed")
    return _encode_abc(abc_folder, tmp_path_factory.mktemp("crash-abc-whole"))


def _encode_abc_with_kills(abc_folder: Path, whole: Path, tmp_path: Path, kills: int) -> list[Kill]:
    rng = random.Random(SEED + 1)
    args = [str(abc_folder), "--workers", "2"]
    reference = dataset_bytes(whole)
    out = tmp_path / "killed"

    def progress() -> float:  # chunks of compiled tunes (the engine's store, cache/), then files written
        return _files_under(out)

    total = _files_under(whole)
    kills_done = _kill_encode_until_done(
        "abc",
        args,
        out,
        reference,
        _load_token_dataset,
        kills,
        total,
        progress,
        rng,
        jitter=0.05,
        logs=tmp_path / "logs",
    )
    return kills_done


def test_encode_abc_survives_random_kills(abc_folder: Path, abc_whole: Path, tmp_path: Path) -> None:
    _encode_abc_with_kills(abc_folder, abc_whole, tmp_path, kills=2)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("abc2midi") is None, reason="abcmidi is not installed")
def test_encode_abc_survives_many_random_kills(tmp_path: Path) -> None:
    folder = _abc_tunes(tmp_path / "abc", 200)
    kills = _encode_abc_with_kills(folder, _encode_abc(folder, tmp_path / "whole"), tmp_path, kills=5)
    assert sum(k.landed for k in kills) >= 3


def test_killed_rerun_over_a_finished_dataset_never_looks_whole(
    abc_folder: Path, abc_whole: Path, tmp_path: Path
) -> None:
    """A finished dataset re-encoded in place from other inputs and killed half-way: its old dataset.json must
    not vouch for the new, partial files."""
    rng = random.Random(SEED + 2)
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(abc_folder / "oneills1850.abc", other / "oneills1850.abc")
    out = tmp_path / "data"
    shutil.copytree(abc_whole, out)
    new = tmp_path / "new"
    subprocess.run(
        _cli("encode", "abc", str(other), "--out", str(new), "--workers", "1"),
        env=ENV,
        check=True,
        capture_output=True,
        timeout=TIMEOUT,
    )
    reference = dataset_bytes(new)

    tokenizer = out / "tokenizers" / "bpe-256.json"

    def progress() -> float:  # killed once the rerun has rewritten its first tokenizer (shards come next)
        return float(tokenizer.stat().st_mtime_ns > started)

    started = tokenizer.stat().st_mtime_ns
    seen: list[str] = []
    command = _cli("encode", "abc", str(other), "--out", str(out), "--workers", "1")
    kill_repeatedly(
        command,
        command,
        1,
        lambda i, start: 1.0,
        progress,
        rng=rng,
        jitter=0.0,
        logs=tmp_path / "logs",
        after_kill=lambda i, k: seen.append(_whole_or_refused(out, reference, _load_token_dataset)),
    )
    assert seen[0] == "refused"
    assert dataset_bytes(out) == reference


def _write_audio(folder: Path, files: int) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rate = 16000
    t = np.arange(rate) / rate
    for i in range(files):
        sf.write(folder / f"t{i:02d}.wav", 0.5 * np.sin(2 * np.pi * (110 + 7 * i) * t), rate)
    return folder


def _encode_audio_with_kills(tmp_path: Path, kills: int, files: int) -> list[Kill]:
    rng = random.Random(SEED + 3)
    wavs = _write_audio(tmp_path / "wav", files)
    args = [str(wavs), "--chunk-seconds", "0.5", "--workers", "2"]
    whole = tmp_path / "whole"
    subprocess.run(
        _cli("encode", "audio", *args, "--out", str(whole)), env=ENV, check=True, capture_output=True, timeout=TIMEOUT
    )
    reference = dataset_bytes(whole)
    out = tmp_path / "killed"

    def progress() -> float:
        return len(list((out / "shards").glob("*.idx.npy"))) if (out / "shards").is_dir() else 0

    kills_done = _kill_encode_until_done(
        "audio",
        args,
        out,
        reference,
        _load_audio_dataset,
        kills,
        files,
        progress,
        rng,
        jitter=0.02,
        logs=tmp_path / "logs",
    )
    return kills_done


def test_encode_audio_survives_random_kills(tmp_path: Path) -> None:
    _encode_audio_with_kills(tmp_path, kills=2, files=60)


@pytest.mark.slow
def test_encode_audio_survives_many_random_kills(tmp_path: Path) -> None:
    kills = _encode_audio_with_kills(tmp_path, kills=5, files=200)
    assert sum(k.landed for k in kills) >= 3


def test_loaders_refuse_a_dataset_with_a_missing_or_cut_shard(tmp_path: Path) -> None:
    from orchestrion.sashimi.dataset import encode_audio
    from orchestrion.testing.datasets import make_token_dataset

    tokens = make_token_dataset(tmp_path / "tokens")
    _load_token_dataset(tokens)
    shard = tokens / "shards" / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(BadInput, match="does not match its index"):
        _load_token_dataset(tokens)
    shard.unlink()
    with pytest.raises(BadInput, match="incomplete"):
        _load_token_dataset(tokens)

    audio = tmp_path / "audio"
    encode_audio([str(_write_audio(tmp_path / "wav", 3))], audio, chunk_seconds=0.5)
    _load_audio_dataset(audio)
    cut = next((audio / "shards").glob("*.u8"))
    cut.write_bytes(cut.read_bytes()[:100])
    with pytest.raises(BadInput, match="missing or damaged"):
        _load_audio_dataset(audio)


# ------------------------------------------------------------------------------------ training


def _checkpoint_step(out: Path) -> int:
    from orchestrion.core.training import checkpoint_dir

    try:
        return int(json.loads((checkpoint_dir(out) / "train_state.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0  # none yet, or swapped under our feet: the next poll sees it


def _check_whole_checkpoint(out: Path, reference: Path) -> int:
    """The checkpoint the loader picks is whole: its weights have the reference's tensors, the optimizer
    state loads, train_state.json parses. Returns its step."""
    import torch
    from safetensors.torch import load_file

    from orchestrion.core.training import checkpoint_dir

    directory = checkpoint_dir(out)
    state = json.loads((directory / "train_state.json").read_text())
    weights, expected = load_file(directory / "model.safetensors"), load_file(reference / "model.safetensors")
    assert {k: v.shape for k, v in weights.items()} == {k: v.shape for k, v in expected.items()}
    assert all(torch.isfinite(v).all() for v in weights.values())
    optimizer = torch.load(directory / "optimizer.pt", weights_only=True)
    assert optimizer["state"], "optimizer state is empty"
    return int(state["step"])


def _train_with_kills(
    first: list[str],
    again: list[str],
    whole: Path,
    out: Path,
    tmp_path: Path,
    *,
    kills: int,
    every: int,
    steps: int,
    seed: int,
) -> list[Kill]:
    rng = random.Random(seed)
    reference_checkpoint = whole / "checkpoint"
    # Kill i lands between checkpoint points[i] and the next one; points are two checkpoints apart, so that
    # every resumed run trains past the checkpoint it resumed from before its own kill, and the last kill
    # leaves a checkpoint to go before the end.
    last = steps // every - 2
    assert last >= 2 * kills - 1, "too few checkpoints for that many kills"
    points = [every * (a + i) for i, a in enumerate(sorted(rng.sample(range(1, last - kills + 2), kills)))]
    steps_at_kill: list[int] = []

    def after_kill(i: int, kill: Kill) -> None:
        step = _check_whole_checkpoint(out, reference_checkpoint)
        assert step % every == 0 and kill.target <= step <= kill.target + every, (step, kill)
        steps_at_kill.append(step)

    kills_done = kill_repeatedly(
        first,
        again,
        kills,
        lambda i, start: float(points[i]),
        lambda: _checkpoint_step(out),
        rng=rng,
        jitter=0.5,
        overshoot=every,
        after_kill=after_kill,
        logs=tmp_path / "logs",
    )
    # Each resumed run started at the checkpoint the loader picked after the kill before it.
    for i, step in enumerate(steps_at_kill):
        log = (tmp_path / "logs" / (f"run-{i + 1}.log" if i + 1 < kills else "final.log")).read_text(errors="replace")
        assert f"resuming at step {step} from" in log, log[-2000:]
    a = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert set(ra) == set(rb), ra["step"]
        for key in {"train_loss", "val_loss"} & set(ra):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5), (ra["step"], key)
    assert _check_whole_checkpoint(out, reference_checkpoint) == steps
    from safetensors.torch import load_file

    weights, expected = (
        load_file(out / "checkpoint" / "model.safetensors"),
        load_file(whole / "checkpoint" / "model.safetensors"),
    )
    for name, tensor in expected.items():  # the same model as if the run had never stopped
        assert np.allclose(weights[name].numpy(), tensor.numpy(), rtol=1e-4, atol=1e-5), name
    assert not (out / "checkpoint.old").exists() and not (out / "checkpoint.tmp").exists()
    return kills_done


@pytest.fixture(scope="module")
def token_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from orchestrion.testing.datasets import make_token_dataset

    return make_token_dataset(tmp_path_factory.mktemp("crash-tokens") / "data")


def _train_gpt_with_kills(token_data: Path, tmp_path: Path, kills: int, steps: int) -> None:
    args = [str(token_data), "--preset", "tiny", "--steps", str(steps)]
    whole = tmp_path / "whole"
    done = subprocess.run(
        _cli("train", "gpt", *args, "--out", str(whole)), env=ENV, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "killed"
    command = _cli("train", "gpt", *args, "--out", str(out))
    _train_with_kills(
        command, [*command, "--resume"], whole, out, tmp_path, kills=kills, every=10, steps=steps, seed=SEED + 4
    )
    card = json.loads((out / "model_card.json").read_text())
    assert card["steps"] == steps and len(card["commands"]) == kills + 1


def test_train_gpt_survives_random_kills(token_data: Path, tmp_path: Path) -> None:
    _train_gpt_with_kills(token_data, tmp_path, kills=2, steps=50)


@pytest.mark.slow
def test_train_gpt_survives_many_random_kills(token_data: Path, tmp_path: Path) -> None:
    _train_gpt_with_kills(token_data, tmp_path, kills=5, steps=120)


@pytest.fixture(scope="module")
def audio_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from orchestrion.sashimi.dataset import encode_audio

    root = tmp_path_factory.mktemp("crash-audio")
    encode_audio([str(_write_audio(root / "wav", 4))], root / "data", chunk_seconds=1.0)
    return root / "data"


# The CLI's settings checkpoint every 25 steps; the first run is started from Python with a checkpoint every
# 4 steps and a log every 3 (so that checkpoints fall between log steps), and every resume is the real
# `orchestrion train sashimi --resume`, which reads the settings back from sashimi_training.json.
SASHIMI_FIRST = """
import sys
from orchestrion.sashimi.training import SashimiTraining, train_sashimi
settings = SashimiTraining(layers=1, seq_len=256, eval_windows=2)
settings.train.update(steps=int(sys.argv[3]), batch_size=2, warmup_steps=2, eval_every=8, eval_batches=1,
                      checkpoint_every=4, log_every=3)
train_sashimi(sys.argv[1], sys.argv[2], settings)
"""


def _train_sashimi_with_kills(audio_data: Path, tmp_path: Path, kills: int, steps: int) -> None:
    first = [sys.executable, "-c", textwrap.dedent(SASHIMI_FIRST)]
    whole = tmp_path / "whole"
    done = subprocess.run(
        [*first, str(audio_data), str(whole), str(steps)], env=ENV, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "killed"
    again = _cli("train", "sashimi", str(audio_data), "--out", str(out), "--resume")
    _train_with_kills(
        [*first, str(audio_data), str(out), str(steps)],
        again,
        whole,
        out,
        tmp_path,
        kills=kills,
        every=4,
        steps=steps,
        seed=SEED + 5,
    )
    assert (
        json.loads((out / "config.json").read_text())["metrics"]
        == json.loads((whole / "config.json").read_text())["metrics"]
    )


def test_train_sashimi_survives_random_kills(audio_data: Path, tmp_path: Path) -> None:
    _train_sashimi_with_kills(audio_data, tmp_path, kills=2, steps=20)


@pytest.mark.slow
def test_train_sashimi_survives_many_random_kills(audio_data: Path, tmp_path: Path) -> None:
    _train_sashimi_with_kills(audio_data, tmp_path, kills=5, steps=44)


# ------------------------------------------------------------------------------------ save_checkpoint


class _Crash(BaseException):
    """Stands for `kill -9`: nothing catches it, nothing cleans up after it."""


class _CrashAt:
    """Counts save_checkpoint's file operations and crashes at the n-th: a write is left half done, a
    directory removal half done, a rename or mkdir not done at all."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, crash_at: int | None = None):
        import safetensors.torch
        import torch

        self.calls, self.crash_at = 0, crash_at
        real_save_model, real_torch_save = safetensors.torch.save_model, torch.save
        real_rmtree, real_write_text = shutil.rmtree, Path.write_text
        real_rename, real_replace, real_mkdir = Path.rename, Path.replace, Path.mkdir

        def write(path: Path, produce: Callable[[Path], None]) -> None:
            produce(path)
            if self._crash_now():
                data = Path(path).read_bytes()
                Path(path).write_bytes(data[: len(data) // 2])
                raise _Crash

        def removal(path: str | Path, ignore_errors: bool = False) -> None:
            files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).exists() else []
            if files and self._crash_now():
                files[0].unlink()
                raise _Crash
            real_rmtree(path, ignore_errors=ignore_errors)

        def before(real: Callable) -> Callable:
            def op(*args: object, **kwargs: object) -> object:
                if self._crash_now():
                    raise _Crash
                return real(*args, **kwargs)

            return op

        monkeypatch.setattr(
            safetensors.torch, "save_model", lambda model, path: write(path, lambda p: real_save_model(model, str(p)))
        )
        monkeypatch.setattr(torch, "save", lambda obj, path: write(path, lambda p: real_torch_save(obj, p)))
        monkeypatch.setattr(
            Path, "write_text", lambda self_, text, *a, **k: write(self_, lambda p: real_write_text(p, text, *a, **k))
        )
        monkeypatch.setattr(shutil, "rmtree", removal)
        monkeypatch.setattr(Path, "rename", before(real_rename))
        monkeypatch.setattr(Path, "replace", before(real_replace))
        monkeypatch.setattr(Path, "mkdir", before(real_mkdir))

    def _crash_now(self) -> bool:
        self.calls += 1
        return self.calls == self.crash_at


def _tiny_training():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(2, 8)).sum().backward()
    optimizer.step()
    return model, optimizer


def _save(out: Path, step: int) -> None:
    """A checkpoint whose every weight equals its step, so that a mixed-up one shows."""
    import torch

    from orchestrion.core.training import save_checkpoint

    model, optimizer = _tiny_training()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(step)
    save_checkpoint(model, optimizer, {"step": step}, out)


def _load(out: Path) -> int:
    """Load what a resume would load; every weight must match the step it claims."""
    from orchestrion.core.training import checkpoint_dir, load_checkpoint

    model, optimizer = _tiny_training()
    state = load_checkpoint(model, optimizer, checkpoint_dir(out))
    assert all(bool((p == state["step"]).all()) for p in model.parameters()), "weights of another step"
    return int(state["step"])


def _save_crashing_at(monkeypatch: pytest.MonkeyPatch, out: Path, step: int, crash_at: int | None) -> bool:
    with monkeypatch.context() as patch:
        counter = _CrashAt(patch, crash_at)
        try:
            _save(out, step)
        except _Crash:
            return True
    assert crash_at is None or counter.calls < crash_at
    return False


def test_a_crash_at_any_point_of_save_checkpoint_leaves_a_whole_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Two saves in a row are each cut at every one of their file operations (and the second one also when the
    # first was cut between its two renames): the loader always gets the newest whole checkpoint.
    cases = 0
    first = 1
    while True:
        base = tmp_path / f"case-{first}"
        _save(base, 1)
        if not _save_crashing_at(monkeypatch, base, 2, first):
            break
        after_first = _load(base)
        assert after_first in (1, 2)
        second = 1
        while True:
            out = tmp_path / f"case-{first}-{second}"
            shutil.copytree(base, out)
            crashed = _save_crashing_at(monkeypatch, out, 3, second)
            assert _load(out) in ((after_first, 3) if crashed else (3,))
            cases += 1
            if not crashed:
                break
            second += 1
        _save(out, 4)  # and a later, uninterrupted save cleans up after them all
        assert _load(out) == 4
        assert sorted(p.name for p in out.iterdir()) == ["checkpoint"]
        first += 1
    assert first > 10 and cases > 100  # save_checkpoint has a dozen or more crash points


SAVER = """
import sys
from pathlib import Path
import torch
from orchestrion.core.training import checkpoint_dir, load_checkpoint, save_checkpoint
out = Path(sys.argv[1])
model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
model(torch.ones(2, 256)).sum().backward()
optimizer.step()
step = load_checkpoint(model, optimizer, checkpoint_dir(out))["step"] if len(sys.argv) > 2 else 0
while True:
    step += 1
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(step)
    save_checkpoint(model, optimizer, {"step": step}, out)
"""


def _kill_while_saving(tmp_path: Path, kills: int) -> list[int]:
    import torch

    from orchestrion.core.training import checkpoint_dir, load_checkpoint

    rng = random.Random(SEED + 6)
    out = tmp_path / "out"
    command = [sys.executable, "-c", textwrap.dedent(SAVER), str(out)]
    steps: list[int] = []

    def after_kill(i: int, kill: Kill) -> None:
        model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.Linear(256, 256))
        state = load_checkpoint(model, None, checkpoint_dir(out))
        assert all(bool((p == state["step"]).all()) for p in model.parameters()), "weights of another step"
        assert state["step"] > (steps[-1] if steps else 0)  # each run saved at least once before its kill
        steps.append(state["step"])

    saved = 0

    def progress() -> float:
        nonlocal saved
        saved = max(saved, _checkpoint_step(out))
        return saved

    # The saver spends nearly all its time saving, so a random moment is most often in the middle of a save.
    kill_repeatedly(
        command,
        [*command, "--resume"],
        kills,
        lambda i, start: start + 1,  # once it has saved again: kills land while it saves, not while it starts
        progress,
        rng=rng,
        jitter=0.5,
        after_kill=after_kill,
        logs=tmp_path / "logs",
        finish=False,
    )
    return steps


def test_sigkill_while_saving_checkpoints_in_a_loop(tmp_path: Path) -> None:
    steps = _kill_while_saving(tmp_path, kills=2)
    assert len(steps) == 2


@pytest.mark.slow
def test_sigkill_while_saving_checkpoints_in_a_loop_many_times(tmp_path: Path) -> None:
    steps = _kill_while_saving(tmp_path, kills=10)
    assert len(steps) == 10
