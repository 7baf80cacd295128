"""One parallel, resumable, deterministic map over files or other work items, for every encode command.

    imap(fn, items, Parallel(workers=8))                      results in input order, streamed
    Store(folder).fill(fn, items, keys, Parallel(...))        results kept on disk; a rerun skips finished items
    Store(folder).map(fn, items, keys, Parallel(...))         fill, then the results in input order

`fn` is a module-level function (workers import it by name): `fn(item, context)`, or with `batched=True`
`fn(items, context) -> one result per item` for code that is faster on a batch (the mmm encoder). Items
are cut into chunks of `Parallel.chunk` in input order; a chunk is one task, run in this process
(`workers` 1), on a pool of spawned local processes, or on Ray (`engine="ray"`: a private Ray on this
machine, or the cluster at `address`). Results come back in input order, so everything made from them is
the same whatever the number of workers or the engine.

Failures. An item `fn` raises on, or that runs past the time limit, becomes `Failed(reason)`: reported,
never fatal. `Parallel.seconds` limits a task; a batched chunk that raises or runs over is retried item by
item, each under the same limit, so only the bad item fails (SIGALRM: the limit holds in a worker's main
thread, where tasks run; elsewhere there is none).

The store. A folder of chunk files, `<kk>/<sha256>.npz` (numpy, no pickle), each written whole
(`orchestrion.core.files`) by the worker that ran the chunk, so result data never passes through the
driver and a `kill -9` at any moment loses at most the chunks in flight. A chunk file holds

    keys          S64, the sha256 of each item's key (FORMAT folded in)
    results       JSON, one [kind, value] per item: ["value", v], ["record", fields], ["failed", reason]
    array.NAME    a Record's 1-D array NAME, every item's back to back
    sizes.NAME    int64, its length per item (0 where an item has none)

A stored result is a JSON value or a `Record` (JSON fields plus named 1-D numpy arrays); read back, it is
the same (arrays as read-only views). An item's key must name everything its result depends on: the
input (`file_key`: path, size, modification time) and the options. Items whose key is in the store are
not run again, failed ones included (a failure is a result: the same input fails the same way); duplicate
keys run once.

Ray tasks get paths, not file contents, and run in the driver's working directory: every node must see
the inputs and the outputs at the same absolute path (a shared file system). A chunk file a worker wrote
where the driver cannot see it is an error that says so, not a hole in the dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orchestrion.core.files import write_atomic
from orchestrion.errors import BadInput, InvalidRequest, OrchestrionError

FORMAT = "orchestrion-store-1"  # part of every stored key: a new chunk format never reads an old chunk
ENGINES = ("local", "ray")
# A Ray started for one run on this machine needs no other machine and no network. By default Ray takes
# 127.0.0.1 for the machine's outward address and listens on every interface (unless the first switch is off;
# it is named for its first use, one-machine Ray on macOS and Windows), and it sends a usage report, probing
# the cloud metadata address first (the second switch). A cluster the user starts is theirs to configure.
PRIVATE_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
IN_FLIGHT = {"local": 2, "ray": 4}  # tasks per worker handed out ahead: workers never wait, memory stays flat


@dataclass(frozen=True)
class Parallel:
    """How a map runs: the `--workers`, `--engine` and `--address` of every encode command."""

    workers: int = 0  # 0 = all cores: this machine's, or the cluster's with `address`
    engine: str = "local"  # local | ray
    address: str | None = None  # a Ray cluster to join; None starts a private Ray on this machine
    chunk: int = 32  # items per task: enough to amortise a task's cost, few enough to spread the work
    seconds: float | None = None  # time limit per task, and per item when a batch is retried; None: none
    progress: bool = True  # a rich progress bar on stderr

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InvalidRequest("engine", f"expected 'local' or 'ray', got {self.engine!r}")
        if self.workers < 0:
            raise InvalidRequest("workers", f"expected 0 (all cores) or more, got {self.workers}")
        if self.chunk < 1:
            raise InvalidRequest("chunk", f"expected 1 or more items per task, got {self.chunk}")


@dataclass(frozen=True)
class Failed:
    """An item `fn` raised on or ran out of time for; `reason` says which and why."""

    reason: str


@dataclass
class Record:
    """A result with bulk data: JSON `fields` plus named 1-D arrays, stored compactly (not as JSON)."""

    fields: Any
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class FillReport:
    """What `Store.fill` did: items wanted (distinct keys), found already done, run now, and on how many workers."""

    items: int
    done_before: int
    computed: int
    workers: int


def file_key(path: Path, fingerprint: str) -> str:
    """The store key of one input file under options `fingerprint`: a changed or moved file is run again."""
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{fingerprint}"


def imap(
    fn: Callable,
    items: Sequence,
    parallel: Parallel,
    *,
    context: object = None,
    batched: bool = False,
    label: str = "",
    weigh: Callable[[Any], int] | None = None,
    unit: str = "",
) -> Iterator[Any]:
    """`fn` over `items`, yielding each result (or `Failed`) in input order as soon as it and those before it
    are done. Chunks finished out of order wait in memory, and count against the tasks in flight."""
    chunks = _chunks(list(items), parallel.chunk)
    runner = _Runner(parallel, len(chunks))
    tasks = ((fn, chunk, context, batched, parallel.seconds, weigh, None, None) for chunk in chunks)
    waiting: dict[int, list] = {}
    with _Progress(parallel.progress, label, runner.workers, len(items), 0, unit) as advance:
        finished = runner.run(tasks, backlog=lambda: len(waiting))
        try:
            following = 0
            for index, (weight, results) in finished:
                advance(len(chunks[index]), weight)
                waiting[index] = results
                while following in waiting:
                    yield from waiting.pop(following)
                    following += 1
        finally:
            finished.close()


class Store:
    """A folder of finished chunks (see the module docstring): which items are done, and their results."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.index = self._scan()  # stored key -> the chunk file that holds it
        self._loaded: dict[Path, _Chunk] = {}  # a few chunks, most recent last (items are read in order)

    def __contains__(self, key: str) -> bool:
        return _digest(key) in self.index

    def fill(
        self,
        fn: Callable,
        items: Sequence,
        keys: Sequence[str],
        parallel: Parallel,
        *,
        context: object = None,
        batched: bool = False,
        label: str = "",
        weigh: Callable[[Any], int] | None = None,
        unit: str = "",
    ) -> FillReport:
        """Run `fn` on every item whose key is not stored yet; workers write their chunks here."""
        if len(items) != len(keys):
            raise ValueError("one key per item")
        digests = [_digest(k) for k in keys]
        todo: dict[str, object] = {}
        for item, digest in zip(items, digests, strict=True):
            if digest not in self.index and digest not in todo:
                todo[digest] = item
        distinct = len(set(digests))
        chunks = _chunks(list(todo.items()), parallel.chunk)
        runner = _Runner(parallel, len(chunks))
        folder = str(self.folder.resolve())  # a worker's working directory need not be the driver's
        tasks = (
            (fn, [item for _, item in chunk], context, batched, parallel.seconds, weigh, folder, [d for d, _ in chunk])
            for chunk in chunks
        )
        unseen: list[Path] = []
        with _Progress(parallel.progress, label, runner.workers, distinct, distinct - len(todo), unit) as advance:
            for index, (weight, _) in runner.run(tasks, backlog=lambda: 0):
                chunk_digests = [d for d, _ in chunks[index]]
                path = _chunk_path(self.folder, chunk_digests)
                if not path.is_file():
                    unseen.append(path)
                self.index.update(dict.fromkeys(chunk_digests, path))
                advance(len(chunk_digests), weight)
        unseen = [path for path in unseen if not path.is_file()]  # looked at again: a network FS may lag a little
        if unseen:
            raise BadInput(
                f"workers wrote {len(unseen)} chunks that this machine cannot see (e.g. {unseen[0]}): with "
                "--engine ray on several machines, the inputs and --out must be on a file system that every node "
                "mounts at the same path",
                self.folder,
            )
        return FillReport(distinct, distinct - len(todo), len(todo), runner.workers)

    def map(
        self,
        fn: Callable,
        items: Sequence,
        keys: Sequence[str],
        parallel: Parallel,
        *,
        context: object = None,
        batched: bool = False,
        label: str = "",
    ) -> list[Any]:
        """`fill`, then every item's result in input order."""
        self.fill(fn, items, keys, parallel, context=context, batched=batched, label=label)
        return [self.read(key) for key in keys]

    def read(self, key: str) -> Any:
        """The stored result of the item with this key (a JSON value, a `Record` or `Failed`); KeyError if none."""
        digest = _digest(key)
        return self._chunk(self.index[digest]).result(digest)

    def prune(self, keys: Iterable[str]) -> int:
        """Delete every chunk that holds none of `keys` (left by runs over other inputs or options); returns
        how many went."""
        wanted = {_digest(k) for k in keys}
        holders: dict[Path, bool] = {}
        for digest, path in self.index.items():
            holders[path] = holders.get(path, False) or digest in wanted
        for path in sorted(self.folder.glob("*/*.npz")) if self.folder.is_dir() else []:
            holders.setdefault(path, False)  # a damaged chunk the scan could not read
        stale = [path for path, holds in holders.items() if not holds]
        for path in stale:
            path.unlink(missing_ok=True)
            self._loaded.pop(path, None)
        gone = set(stale)
        self.index = {d: p for d, p in self.index.items() if p not in gone}
        return len(stale)

    def _scan(self) -> dict[str, Path]:
        index: dict[str, Path] = {}
        for path in sorted(self.folder.glob("*/*.npz")) if self.folder.is_dir() else []:
            try:
                with np.load(path, allow_pickle=False) as data:
                    for digest in data["keys"].tolist():
                        index[digest.decode()] = path
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged chunk is run again
                continue
        return index

    def _chunk(self, path: Path) -> _Chunk:
        chunk = self._loaded.pop(path, None) or _Chunk.load(path)
        self._loaded[path] = chunk
        if len(self._loaded) > 8:
            self._loaded.pop(next(iter(self._loaded)))
        return chunk


# ------------------------------------------------------------------------------------------ chunk files


def _digest(key: str) -> str:
    return hashlib.sha256(f"{FORMAT}\0{key}".encode()).hexdigest()


def _chunk_path(folder: Path, digests: list[str]) -> Path:
    """Where the chunk of these items lives: one file per chunk, not per item (on a big corpus, file system
    calls cost more than the work)."""
    name = hashlib.sha256("".join(digests).encode()).hexdigest()
    return folder / name[:2] / f"{name}.npz"


def _write_chunk(path: Path, digests: list[str], results: list) -> None:
    entries: list = []
    arrays: dict[str, list[np.ndarray]] = {}
    for i, result in enumerate(results):
        if isinstance(result, Failed):
            entries.append(["failed", result.reason])
        elif isinstance(result, Record):
            entries.append(["record", result.fields])
            for name, array in result.arrays.items():
                arrays.setdefault(name, [np.zeros(0, np.asarray(array).dtype)] * len(results))[i] = np.ravel(array)
        else:
            entries.append(["value", result])
    data = {
        "keys": np.array(digests, dtype="S64"),
        "results": np.frombuffer(json.dumps(entries).encode(), np.uint8),
    }
    for name, parts in arrays.items():
        data[f"array.{name}"] = np.concatenate(parts)
        data[f"sizes.{name}"] = np.array([len(p) for p in parts], np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **data)
    write_atomic(path, buffer.getvalue())


@dataclass
class _Chunk:
    """One chunk file, read back: results by stored key."""

    position: dict[str, int]
    entries: list
    arrays: dict[str, np.ndarray]
    starts: dict[str, np.ndarray]  # per array name: where each item's part begins, and the end

    @classmethod
    def load(cls, path: Path) -> _Chunk:
        with np.load(path, allow_pickle=False) as data:
            contents = {name: data[name] for name in data.files}
        names = [n.removeprefix("array.") for n in contents if n.startswith("array.")]
        arrays = {n: contents[f"array.{n}"] for n in names}
        for array in arrays.values():
            array.flags.writeable = False
        return cls(
            position={d.decode(): i for i, d in enumerate(contents["keys"].tolist())},
            entries=json.loads(contents["results"].tobytes()),
            arrays=arrays,
            starts={n: np.concatenate([[0], np.cumsum(contents[f"sizes.{n}"])]) for n in names},
        )

    def result(self, digest: str) -> Any:
        i = self.position[digest]
        kind, value = self.entries[i]
        if kind == "failed":
            return Failed(value)
        if kind == "value":
            return value
        return Record(value, {n: a[self.starts[n][i] : self.starts[n][i + 1]] for n, a in self.arrays.items()})


# ------------------------------------------------------------------------------------------ the worker side


class _Timeout(BaseException):
    """Raised by the time limit; a BaseException, so that code which catches Exception does not swallow it."""


def _with_deadline(seconds: float | None, fn: Callable[[], Any]) -> Any:
    """fn(), or `_Timeout` after `seconds` (SIGALRM; only in a process's main thread, else no limit)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        return fn()
    armed = [True]

    def fire(signum: int, frame: object) -> None:
        if armed[0]:  # a late signal, after fn() is done, must not break the bookkeeping below
            raise _Timeout

    previous = signal.signal(signal.SIGALRM, fire)
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, seconds)
            return fn()
        finally:
            armed[0] = False
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _reason(exc: BaseException, seconds: float | None) -> str:
    if isinstance(exc, _Timeout):
        return f"took over {seconds:g} s (the time limit per item)"
    if isinstance(exc, OrchestrionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _call(fn: Callable, items: list, context: object, batched: bool, seconds: float | None) -> list:
    """Every item's result or `Failed`: a batch first (when batched), then item by item."""
    if batched and len(items) > 1:
        try:
            results = list(_with_deadline(seconds, lambda: fn(items, context)))
            if len(results) == len(items):
                return results
        except (Exception, _Timeout):  # a batch that times out or trips on one item is retried item by item
            pass
    out = []
    for item in items:
        try:
            if batched:
                (result,) = _with_deadline(seconds, lambda item=item: fn([item], context))
            else:
                result = _with_deadline(seconds, lambda item=item: fn(item, context))
            out.append(result)
        except (Exception, _Timeout) as exc:
            out.append(Failed(_reason(exc, seconds)))
    return out


def _run_chunk(
    fn: Callable,
    items: list,
    context: object,
    batched: bool,
    seconds: float | None,
    weigh: Callable[[Any], int] | None,
    folder: str | None,
    digests: list[str] | None,
    cwd: str | None = None,
) -> tuple[int, list | None]:
    """One task, in a worker: (the chunk's weight for the progress bar, its results or None when stored)."""
    if cwd is not None and os.getcwd() != cwd and os.path.isdir(cwd):
        os.chdir(cwd)  # a Ray worker: relative paths mean what they mean to the driver
    results = _call(fn, items, context, batched, seconds)
    weight = sum(weigh(r) for r in results if not isinstance(r, Failed)) if weigh else 0
    if folder is None:
        return weight, results
    assert digests is not None and len(digests) == len(results)
    _write_chunk(_chunk_path(Path(folder), digests), digests, results)
    return weight, None


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: leave when the parent dies (after a `kill -9` nobody else would end us)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


# ------------------------------------------------------------------------------------------ the driver side


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class _Runner:
    """Runs tasks in this process, on spawned local processes or on Ray, a bounded number in flight."""

    def __init__(self, parallel: Parallel, tasks: int):
        self.parallel = parallel
        self.ray = None
        workers = parallel.workers or os.cpu_count() or 1
        if parallel.engine == "ray" and tasks:
            self.ray = _start_ray(parallel, workers)
            if parallel.address and not parallel.workers:  # "all cores" of a cluster: its cores, not ours
                workers = max(1, int(self.ray.cluster_resources().get("CPU", workers)))
        elif parallel.engine == "local":
            workers = max(1, min(workers, tasks))  # no process is started for nothing to do
        self.workers = workers

    def run(self, tasks: Iterable[tuple], backlog: Callable[[], int]) -> Iterator[tuple[int, tuple]]:
        """Yield (task index, what `_run_chunk` returned) as tasks finish; a new task is handed out while fewer
        than IN_FLIGHT per worker are running or finished but not yet taken up (`backlog`)."""
        if self.ray is not None:
            return self._run_ray(iter(tasks), backlog)
        if self.workers <= 1:
            return ((i, _run_chunk(*task)) for i, task in enumerate(tasks))
        return self._run_local(iter(tasks), backlog)

    def _run_local(self, tasks: Iterator[tuple], backlog: Callable[[], int]) -> Iterator[tuple[int, tuple]]:
        import multiprocessing as mp
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        limit = IN_FLIGHT["local"] * self.workers
        pool = ProcessPoolExecutor(
            self.workers, mp_context=mp.get_context("spawn"), initializer=_exit_with_parent, initargs=(os.getpid(),)
        )
        pending: dict = {}
        try:
            for index, task in enumerate(tasks):
                pending[pool.submit(_run_chunk, *task)] = index
                while len(pending) + backlog() >= limit:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        yield pending.pop(future), future.result()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield pending.pop(future), future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run_ray(self, tasks: Iterator[tuple], backlog: Callable[[], int]) -> Iterator[tuple[int, tuple]]:
        ray = self.ray
        remote = ray.remote(_run_chunk)
        limit = IN_FLIGHT["ray"] * self.workers
        cwd = os.getcwd()
        pending: dict = {}

        def finished() -> Iterator[tuple[int, tuple]]:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                yield pending.pop(ref), ray.get(ref)

        for index, task in enumerate(tasks):
            pending[remote.remote(*task, cwd)] = index
            while len(pending) + backlog() >= limit:
                yield from finished()
        while pending:
            yield from finished()


def _start_ray(parallel: Parallel, workers: int) -> Any:
    """Ray, connected: to the cluster at `parallel.address`, or to a private one on this machine (`workers`
    CPUs, loopback only) started now unless this process already has one."""
    if not parallel.address:
        for key, value in PRIVATE_RAY_ENV.items():  # read when ray is first imported, and by its workers
            os.environ.setdefault(key, value)
    import ray

    if not ray.is_initialized():
        if parallel.address:
            ray.init(address=parallel.address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return ray


class _Progress:
    """A rich progress bar on stderr with items/s (and, with a `unit`, the rate of the results' weight, e.g.
    tokens/s), or nothing."""

    def __init__(self, enabled: bool, label: str, workers: int, total: int, already: int, unit: str):
        self.enabled = enabled and total > already
        self.label, self.workers, self.total, self.already, self.unit = label, workers, total, already, unit
        self.items, self.weight, self.t0 = 0, 0, time.perf_counter()

    def __enter__(self) -> Callable[[int, int], None]:
        if not self.enabled:
            return lambda items, weight: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn(f"{self.label} ({self.workers} worker{'s' if self.workers > 1 else ''})"), BarColumn(),
            MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task(self.label, total=self.total, completed=self.already, rate="")
        return self.advance

    def advance(self, items: int, weight: int) -> None:
        self.items += items
        self.weight += weight
        dt = max(time.perf_counter() - self.t0, 1e-9)
        rate = f"{self.items / dt:,.0f}/s" + (f" {self.weight / dt:,.0f} {self.unit}/s" if self.unit else "")
        self.bar.update(self.task, advance=items, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
