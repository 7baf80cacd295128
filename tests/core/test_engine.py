"""The engine (orchestrion.core.engine): order, resume, time limits, failures, the store's round trip.

Workers import the function they run by name, so the functions under test live in a small module written to
a folder put on sys.path (spawned workers get the parent's sys.path); the kill -9 test's driver gets it on
PYTHONPATH. `--engine ray` is checked end to end by each encoder's tests (mmm, abc, audio, events, corpora).
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from orchestrion.core.engine import Failed, Parallel, Record, Store, file_key, imap
from orchestrion.errors import InvalidRequest

HELPERS = '''
import os
import time
from pathlib import Path

import numpy as np

from orchestrion.core.engine import Record
from orchestrion.errors import BadInput


def work(item, context):
    """{"item", "square"}; `context` may make an item slow, raise, be interrupted, or log that it ran."""
    context = context or {}
    if context.get("log"):
        with open(context["log"], "a") as log:
            log.write(f"{item}\\n")
    time.sleep(context.get("sleep", {}).get(str(item), 0))
    if item == context.get("interrupt"):
        raise KeyboardInterrupt
    if item in context.get("fail", ()):
        raise ValueError(f"no {item}")
    if item in context.get("bad", ()):
        raise BadInput("a bad item", f"item-{item}")
    return {"item": item, "square": item * item}


def work_batch(items, context):
    """`work` on a batch, which fails as a whole when any item fails."""
    return [work(item, context) for item in items]


def record(item, context):
    """A Record with arrays of several dtypes and lengths (none for multiples of 4)."""
    if item % 4 == 0:
        return Record({"n": item})
    return Record({"n": item}, {"ids": np.arange(item, dtype=np.uint16), "half": np.full(item % 3, 0.5)})


def pid(item, context):
    return os.getpid()
'''


@pytest.fixture(scope="module")
def helpers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("engine-helpers")
    (folder / "engine_helpers.py").write_text(HELPERS)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("engine_helpers")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("engine_helpers", None)


def local(workers: int, **kw: object) -> Parallel:
    return Parallel(workers=workers, progress=False, **kw)


def keys_of(items: list) -> list[str]:
    return [f"item {i}" for i in items]


def stored(store: Store, keys: list[str]) -> list:
    return [store.read(k) for k in keys]


# ------------------------------------------------------------------------------------------- order


def test_results_come_in_input_order_whatever_finishes_first(helpers: ModuleType) -> None:
    slow_first = {"sleep": {"0": 1.0, "1": 0.5}}  # the first chunks finish last
    results = list(imap(helpers.work, list(range(10)), local(2, chunk=1), context=slow_first))
    assert results == [{"item": i, "square": i * i} for i in range(10)]
    pids = list(imap(helpers.pid, list(range(8)), local(2, chunk=1), context={}))
    assert os.getpid() not in pids  # two workers: run in other processes


def test_workers_1_and_2_give_the_same_results_and_chunks(helpers: ModuleType, tmp_path: Path) -> None:
    items = list(range(23))
    keys = keys_of(items)
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")
    one.fill(helpers.record, items, keys, local(1, chunk=4))
    report = two.fill(helpers.record, items, keys, local(2, chunk=4))
    assert report.workers == 2 and report.computed == 23
    names = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.npz"))
    assert names == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.npz"))
    assert len(names) == 6  # chunks of 4: one file each, named by their items
    for a, b in zip(stored(one, keys), stored(two, keys), strict=True):
        assert a.fields == b.fields and a.arrays.keys() == b.arrays.keys()
        assert all(np.array_equal(a.arrays[n], b.arrays[n]) for n in a.arrays)
    assert list(imap(helpers.work, items, local(1, chunk=4))) == list(imap(helpers.work, items, local(2, chunk=4)))


# ------------------------------------------------------------------------------------------- the store


def test_records_round_trip_with_their_arrays(helpers: ModuleType, tmp_path: Path) -> None:
    items = list(range(9))
    results = Store(tmp_path).map(helpers.record, items, keys_of(items), local(1, chunk=5))
    for item, result in zip(items, results, strict=True):
        assert isinstance(result, Record) and result.fields == {"n": item}
        if item % 4 == 0:  # no arrays of its own: empty ones
            assert all(len(a) == 0 for a in result.arrays.values())
            continue
        assert result.arrays["ids"].dtype == np.uint16 and result.arrays["ids"].tolist() == list(range(item))
        assert result.arrays["half"].dtype == np.float64 and result.arrays["half"].tolist() == [0.5] * (item % 3)
    with pytest.raises(ValueError):  # read back as views of the chunk: never changed in place by mistake
        results[1].arrays["ids"][0] = 7


def test_duplicate_keys_run_once_and_prune_keeps_what_is_wanted(helpers: ModuleType, tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    items = [3, 1, 3, 2, 1]
    store = Store(tmp_path / "store")
    results = store.map(helpers.work, items, keys_of(items), local(1, chunk=2), context={"log": str(log)})
    assert [r["item"] for r in results] == items
    assert sorted(log.read_text().split()) == ["1", "2", "3"]
    store.map(helpers.work, [7, 8], keys_of([7, 8]), local(1, chunk=2))
    assert store.prune(keys_of([7, 8])) == 2  # the two chunks of the first run
    assert "item 8" in Store(tmp_path / "store") and "item 3" not in Store(tmp_path / "store")


def test_a_damaged_chunk_is_run_again(helpers: ModuleType, tmp_path: Path) -> None:
    items = list(range(6))
    Store(tmp_path).fill(helpers.work, items, keys_of(items), local(1, chunk=3))
    first = sorted(tmp_path.rglob("*.npz"))[0]
    first.write_bytes(first.read_bytes()[:100])  # as a disk gone full would leave it (the write is atomic)
    store = Store(tmp_path)
    report = store.fill(helpers.work, items, keys_of(items), local(1, chunk=3))
    assert report.done_before == 3 and report.computed == 3
    assert stored(store, keys_of(items)) == [{"item": i, "square": i * i} for i in items]


def test_file_key_changes_with_the_file_and_the_options(tmp_path: Path) -> None:
    path = tmp_path / "a.mid"
    path.write_bytes(b"one")
    key = file_key(path, "options 1")
    assert file_key(path, "options 1") == key and file_key(path, "options 2") != key
    path.write_bytes(b"three")
    assert file_key(path, "options 1") != key


# ------------------------------------------------------------------------------------------- resume


def test_a_rerun_after_an_interruption_skips_finished_items(helpers: ModuleType, tmp_path: Path) -> None:
    items = list(range(10))
    keys = keys_of(items)
    log = tmp_path / "calls.log"
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C while item 5 runs: chunks [0 1] [2 3] are stored
        Store(tmp_path / "store").fill(helpers.work, items, keys, local(1, chunk=2), context={"interrupt": 5})
    store = Store(tmp_path / "store")
    report = store.fill(helpers.work, items, keys, local(1, chunk=2), context={"log": str(log)})
    assert (report.done_before, report.computed) == (4, 6)
    assert log.read_text().split() == [str(i) for i in range(4, 10)]
    fresh = Store(tmp_path / "fresh").map(helpers.work, items, keys, local(2, chunk=2))
    assert stored(store, keys) == fresh


KILLED_DRIVER = """
import sys
from engine_helpers import work
from orchestrion.core.engine import Parallel, Store

items = list(range(40))
Store(sys.argv[1]).fill(work, items, [f"item {i}" for i in items], Parallel(workers=2, chunk=1, progress=False),
                        context={"sleep": {str(i): 0.1 for i in items}, "log": sys.argv[2]})
"""


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
def test_kill_9_mid_run_loses_only_the_chunks_in_flight(helpers: ModuleType, tmp_path: Path) -> None:
    store_dir, log = tmp_path / "store", tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(helpers.__file__).parent), *sys.path])}
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED_DRIVER), str(store_dir), str(log)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(store_dir.glob("*/*.npz"))) < 6 and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _children(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert driver.returncode == -signal.SIGKILL, driver.stderr.read().decode()[-2000:]
    deadline = time.monotonic() + 30  # workers look for their parent every 0.5 s
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not _alive(workers), "pool workers outlived their killed parent"

    items = list(range(40))
    store = Store(store_dir)
    done = sum(f"item {i}" in store for i in items)
    assert 6 <= done < 40
    log.unlink()
    report = store.fill(helpers.work, items, keys_of(items), local(1), context={"log": str(log)})
    assert report.done_before == done and len(log.read_text().split()) == 40 - done
    assert stored(store, keys_of(items)) == [{"item": i, "square": i * i} for i in items]


# ------------------------------------------------------------------------------------------- failures


def test_a_failing_item_is_reported_not_fatal(helpers: ModuleType, tmp_path: Path) -> None:
    context = {"fail": [1], "bad": [3]}
    for fn, batched in ((helpers.work, False), (helpers.work_batch, True)):  # a batch is retried item by item
        results = list(imap(fn, list(range(5)), local(1, chunk=5), context=context, batched=batched))
        assert results[1] == Failed("ValueError: no 1")
        assert results[3] == Failed("item-3: a bad item")  # our own errors say what they say
        assert [r["item"] for i, r in enumerate(results) if i not in (1, 3)] == [0, 2, 4]
    items = list(range(5))
    store = Store(tmp_path)
    store.fill(helpers.work, items, keys_of(items), local(1, chunk=5), context=context)
    assert Store(tmp_path).read("item 1") == Failed("ValueError: no 1")  # kept: a rerun does not retry it


def test_time_limit_fails_only_the_slow_item(helpers: ModuleType) -> None:
    slow = {"sleep": {"2": 30}}
    started = time.monotonic()
    for fn, batched in ((helpers.work, False), (helpers.work_batch, True)):
        results = list(imap(fn, [0, 1, 2, 3], local(1, chunk=4, seconds=0.5), context=slow, batched=batched))
        assert results[2] == Failed("took over 0.5 s (the time limit per item)")
        assert [results[i]["item"] for i in (0, 1, 3)] == [0, 1, 3]
    assert time.monotonic() - started < 10  # the 30 s sleep was cut short, twice (the batch, then the item)


def test_parallel_checks_its_settings() -> None:
    with pytest.raises(InvalidRequest, match="engine"):
        Parallel(engine="spark")
    with pytest.raises(InvalidRequest, match="workers"):
        Parallel(workers=-1)
    with pytest.raises(InvalidRequest, match="chunk"):
        Parallel(chunk=0)
