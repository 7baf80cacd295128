"""Parallel, resumable, deterministic preprocessing of MIDI collections into an mmm token dataset.

    orchestrion encode mmm INPUT... --out DIR --bars 4 --hop 2 --transpose -5:6 --workers N --engine local|ray

Two phases:

1. *Encode* (parallel): files are handed to workers in chunks; a worker loads, checks and encodes its
   chunk in one vectorised batch (`codecs.mmm.encode_batch`) and writes one cache file for the chunk,
   `DIR/.cache/<kk>/<hash>.npz` (per file: a JSON record, token ids with DENSITY placeholders, sequence
   lengths, density counts), under a temporary name then renamed. A file's key hashes its path, size,
   mtime and the options, so a re-run (after a crash or `kill -9`) skips every file already cached.
2. *Assemble* (one process, streaming, two passes over the cache in sorted path order): density bins
   are the quantiles of all windows' note densities; then each file's sequences go to its split
   (a hash of its content, so a piece, or a copy of it, never sits in two splits) and into shards.

Everything in the dataset (shards, text, tokenizer.json, stats.json, manifest.jsonl, dataset.json) is a
function of the inputs and the options only, so it is byte-identical whatever the number of workers or
the engine; timings go to `run.log`. Memory stays flat: a worker holds one chunk, the assembler one shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from orchestrion.core.music import MIDI_SUFFIXES, missing_tracks
from orchestrion.core.shards import (
    ShardWriter,
    atomic_write_bytes,
    atomic_write_text,
    begin_dataset,
    write_dataset_json,
)
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.mmm import codec as mmm
from orchestrion.mmm.vocabulary import DEFAULT_DENSITY_EDGES

CACHE_VERSION = 1
# A Ray started for one run on this machine needs no other machine and no network. By default Ray takes
# 127.0.0.1 for the machine's outward address and listens on every interface (unless the first switch is off;
# it is named for its first use, one-machine Ray on macOS and Windows), and it sends a usage report, probing
# the cloud metadata address first (the second switch). A cluster the user starts is theirs to configure.
PRIVATE_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

LENGTH_BIN = 128  # tokens per bin of the length histogram in stats.json


@dataclass(frozen=True)
class Limits:
    """What one file may cost; a file over a limit is reported in the manifest and skipped."""

    max_bytes: int = 16 * 2**20
    max_notes: int = 200_000
    seconds: float = 60.0  # per chunk; a chunk that runs over is retried file by file with the same limit
    max_tempo_qpm: float = 2000.0


@dataclass(frozen=True)
class PipelineConfig:
    options: mmm.MMMOptions = field(default_factory=lambda: mmm.MMMOptions(bars=4, hop=2))
    limits: Limits = field(default_factory=Limits)
    workers: int = 0  # 0 = all cores
    engine: str = "local"  # local | ray
    address: str | None = None  # Ray cluster address
    validation_fraction: float = 0.1
    shard_tokens: int = 1 << 22
    chunk: int = 32  # files per task: big enough to amortise numpy's per-call cost, small enough to balance
    progress: bool = True


def parse_transpose(text: str) -> tuple[int, int]:
    """'-5:6' -> (-5, 6): semitone shifts -5..5 (HI exclusive); '0' -> (0, 1)."""
    try:
        if ":" in text:
            lo, hi = (int(x) for x in text.split(":"))
        else:
            lo = int(text)
            hi = lo + 1
    except ValueError:
        raise InvalidRequest("transpose", f"expected LO:HI semitones like -5:6, got {text!r}") from None
    if lo >= hi:
        raise InvalidRequest("transpose", f"LO must be below HI (HI is exclusive), got {text!r}")
    return lo, hi


# ------------------------------------------------------------------------------------------ phase 1


def _fingerprint(config: PipelineConfig) -> str:
    opts = asdict(config.options)
    opts.pop("density_edges")  # bins are computed at assembly, not in the cache
    record = {"cache": CACHE_VERSION, "options": opts, "limits": asdict(config.limits)}
    return json.dumps(record, sort_keys=True)


def cache_key(path: Path, fingerprint: str) -> str:
    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{fingerprint}"
    return hashlib.sha256(text.encode()).hexdigest()


def _chunk_path(cache: Path, keys: list[str]) -> Path:
    name = hashlib.sha256("".join(keys).encode()).hexdigest()
    return cache / name[:2] / f"{name}.npz"


def _write_chunk(path: Path, keys: list[str], records: list[dict], encoded: list[mmm.Encoded | None]) -> None:
    """One file per chunk (not per input file: on a big corpus, file system calls cost more than encoding)."""
    parts = [e for e in encoded if e is not None]
    arrays = {
        "keys": np.array(keys, dtype="S64"),
        "records": np.frombuffer(json.dumps(records, sort_keys=True).encode(), np.uint8),
        "ids": np.concatenate([e.ids for e in parts]) if parts else np.zeros(0, np.uint16),
        "seq_lengths": np.concatenate([np.diff(e.offsets) for e in parts]) if parts else np.zeros(0, np.int64),
        "sequences": np.array([e.sequences if e is not None else 0 for e in encoded], np.int64),
        "density": np.concatenate([e.density_counts for e in parts]) if parts else np.zeros(0, np.int64),
        "densities": np.array([len(e.density_counts) if e is not None else 0 for e in encoded], np.int64),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _cache_index(cache: Path) -> dict[str, Path]:
    """file key -> the chunk file that holds its record."""
    index: dict[str, Path] = {}
    for path in sorted(cache.glob("*/*.npz")) if cache.is_dir() else []:
        try:
            with np.load(path, allow_pickle=False) as data:
                for key in data["keys"].tolist():
                    index[key.decode()] = path
        except (OSError, ValueError, KeyError):  # a damaged chunk is simply redone
            continue
    return index


class _ChunkReader:
    """Reads per-file records out of chunk files, keeping the last few chunks open (files come in order)."""

    def __init__(self, index: dict[str, Path], keep: int = 8):
        self.index, self.keep, self.loaded = index, keep, {}

    def _chunk(self, path: Path) -> dict:
        if path not in self.loaded:
            if len(self.loaded) >= self.keep:
                self.loaded.pop(next(iter(self.loaded)))
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            keys = [k.decode() for k in arrays["keys"].tolist()]
            seq_start = np.concatenate([[0], np.cumsum(arrays["sequences"])])
            tok_start = np.concatenate([[0], np.cumsum(arrays["seq_lengths"])])
            den_start = np.concatenate([[0], np.cumsum(arrays["densities"])])
            self.loaded[path] = {
                "pos": {k: i for i, k in enumerate(keys)},
                "records": json.loads(arrays["records"].tobytes()),
                "arrays": arrays, "seq": seq_start, "tok": tok_start, "den": den_start,
            }  # fmt: skip
        return self.loaded[path]

    def read(self, key: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
        """(record, ids, offsets, density counts) of one file."""
        chunk = self._chunk(self.index[key])
        i = chunk["pos"][key]
        a = chunk["arrays"]
        s0, s1 = chunk["seq"][i], chunk["seq"][i + 1]
        t0, t1 = chunk["tok"][s0], chunk["tok"][s1]
        offsets = chunk["tok"][s0 : s1 + 1] - t0
        d0, d1 = chunk["den"][i], chunk["den"][i + 1]
        return chunk["records"][i], a["ids"][t0:t1], offsets, a["density"][d0:d1]


class _Timeout(Exception):
    pass


def _with_deadline(seconds: float, fn: Callable[[], object]) -> object:
    """fn(), or `_Timeout` after `seconds` (SIGALRM; only in a process's main thread, else no limit)."""
    if threading.current_thread() is not threading.main_thread():
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


def _load_checked(path: Path, limits: Limits) -> tuple[object, str]:
    """Load one file for encoding; returns (score, content sha256) or raises BadInput with the reason."""
    import symusic

    size = path.stat().st_size
    if size == 0:
        raise BadInput("the file is empty (0 bytes)", path)
    if size > limits.max_bytes:
        raise BadInput(f"the file is {size / 2**20:.1f} MiB, over the {limits.max_bytes / 2**20:.0f} MiB limit", path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if b"MThd" not in data[:512]:
        raise BadInput("not a MIDI file (no 'MThd' header)", path)
    try:
        score = symusic.Score.from_midi(data)
    except Exception as exc:  # symusic raises plain RuntimeError/ValueError for corrupt data
        raise BadInput(f"corrupt or truncated MIDI: {exc}", path) from exc
    if not 0 < score.tpq <= 32767:
        raise BadInput(f"absurd tick resolution ({score.tpq} ticks per quarter)", path)
    missing = missing_tracks(data[data.find(b"MThd") :])
    if missing:
        raise BadInput(f"corrupt or truncated MIDI: {missing}", path)
    notes = sum(len(t.notes) for t in score.tracks)
    if notes == 0:
        raise BadInput("the file has no notes", path)
    if notes > limits.max_notes:
        raise BadInput(f"{notes} notes, over the cap of {limits.max_notes} per file", path)
    qpm = score.tempos.numpy()["mspq"]
    if len(qpm) and (qpm.min() <= 0 or 6e7 / qpm.min() > limits.max_tempo_qpm):
        raise BadInput(f"absurd tempo (over {limits.max_tempo_qpm:.0f} quarters per minute)", path)
    return score, digest


def _outcome(path: Path, status: str, reason: str | None, digest: str = "", enc: mmm.Encoded | None = None) -> dict:
    return {
        "path": str(path),
        "status": status,
        "reason": reason,
        "sha256": digest,
        "windows": enc.sequences if enc is not None else 0,
        "tokens": len(enc.ids) if enc is not None else 0,
    }


def encode_chunk(paths: list[str], keys: list[str], config_json: str, cache: str) -> list[dict]:
    """Worker: encode a chunk of files and write the chunk's cache record; returns small summaries."""
    config = _config_from_json(config_json)
    loaded, records, encoded = [], {}, {}
    for p, key in zip(paths, keys, strict=True):
        path = Path(p)
        try:
            score, digest = _load_checked(path, config.limits)
            loaded.append((path, key, score, digest))
        except BadInput as exc:
            records[key] = _outcome(path, "skipped", exc.reason)
        except OSError as exc:
            records[key] = _outcome(path, "failed", f"cannot read: {exc}")
    results = _encode_loaded(loaded, config)
    for (path, key, _, digest), result in zip(loaded, results, strict=True):
        if isinstance(result, BaseException):
            status = "skipped" if isinstance(result, BadInput) else "failed"
            reason = result.reason if isinstance(result, BadInput) else str(result)
            records[key] = _outcome(path, status, reason, digest)
            continue
        notes = []
        if result.skipped:
            notes.append("left out: " + "; ".join(result.skipped))
        if result.capped:
            notes.append(f"capped at {config.options.max_tokens} tokens")
        if result.sequences == 0:
            why = "; ".join(result.skipped) or "no note in any window"
            records[key] = _outcome(path, "skipped", f"no 4/4 window to encode ({why})", digest)
        else:
            records[key] = _outcome(path, "ok", "; ".join(notes) or None, digest, result)
            encoded[key] = result
    _write_chunk(_chunk_path(Path(cache), keys), keys, [records[k] for k in keys], [encoded.get(k) for k in keys])
    return [{"key": k, "windows": records[k]["windows"], "tokens": records[k]["tokens"]} for k in keys]


def _encode_loaded(loaded: list, config: PipelineConfig) -> list:
    """Encode a batch under the time limit; on a timeout, retry file by file so only the slow one fails."""
    if not loaded:
        return []
    scores = [item[2] for item in loaded]
    keys = [item[3] for item in loaded]
    limit = config.limits.seconds
    try:
        return _with_deadline(limit, lambda: mmm.encode_batch(scores, config.options, keys=keys, placeholder=True))
    except Exception:  # noqa: S110 - a batch that times out or trips on one file is retried file by file
        pass
    results: list = []
    for score, key in zip(scores, keys, strict=True):
        try:
            one = _with_deadline(
                limit, lambda s=score, k=key: mmm.encode_batch([s], config.options, keys=[k], placeholder=True)
            )
            results.append(one[0])
        except _Timeout:
            results.append(RuntimeError(f"encoding took over {limit:g} s (the per-file time limit)"))
        except Exception as exc:
            results.append(RuntimeError(f"{type(exc).__name__}: {exc}"))
    return results


def _config_to_json(config: PipelineConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True)


def _config_from_json(text: str) -> PipelineConfig:
    raw = json.loads(text)
    opts = raw.pop("options")
    opts["transpose"] = tuple(opts["transpose"])
    opts["density_edges"] = tuple(opts["density_edges"])
    limits = Limits(**raw.pop("limits"))
    return PipelineConfig(options=mmm.MMMOptions(**opts), limits=limits, **raw)


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: leave when the parent dies (after a `kill -9` nobody else would end us)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_local(
    todo: list[tuple[str, str]], config: PipelineConfig, cache: Path, workers: int, on_done: Callable
) -> None:
    payload = _config_to_json(config)
    if workers <= 1:
        for chunk in _chunks(todo, config.chunk):
            on_done(len(chunk), encode_chunk([p for p, _ in chunk], [k for _, k in chunk], payload, str(cache)))
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    chunks = _chunks(todo, config.chunk)
    context = mp.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_exit_with_parent, initargs=(os.getpid(),)
    ) as pool:
        pending: dict = {}
        for chunk in chunks:  # keep a bounded number of chunks in flight, so memory stays flat
            pending[pool.submit(encode_chunk, [p for p, _ in chunk], [k for _, k in chunk], payload, str(cache))] = len(
                chunk
            )
            if len(pending) >= 2 * workers:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    on_done(pending.pop(future), future.result())
        for future in list(pending):
            on_done(pending.pop(future), future.result())


def _run_ray(todo: list[tuple[str, str]], config: PipelineConfig, cache: Path, workers: int, on_done: Callable) -> None:
    """Phase 1 on Ray: a local Ray (`workers` CPUs), or the cluster at `config.address`.

    Tasks get paths, not bytes: every node must see the inputs and `--out` at the same absolute path (a
    shared file system). A chunk a worker wrote where the driver cannot see it is caught below, by name.
    """
    if not config.address:
        for key, value in PRIVATE_RAY_ENV.items():  # read when ray is first imported, and by its workers
            os.environ.setdefault(key, value)
    import ray

    if not ray.is_initialized():
        if config.address:
            ray.init(address=config.address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    if config.address and not config.workers:  # "all cores" on a cluster means all of its cores, not ours
        workers = max(1, int(ray.cluster_resources().get("CPU", workers)))
    remote = ray.remote(encode_chunk)
    payload = _config_to_json(config)
    cache = cache.resolve()  # a worker's working directory is not the driver's
    pending: dict = {}
    unseen: list[Path] = []

    def finish(ref: object) -> None:
        keys = pending.pop(ref)
        summaries = ray.get(ref)
        chunk_file = _chunk_path(cache, keys)
        if not chunk_file.is_file():
            unseen.append(chunk_file)
        on_done(len(keys), summaries)

    for chunk in _chunks(todo, config.chunk):
        keys = [k for _, k in chunk]
        pending[remote.remote([p for p, _ in chunk], keys, payload, str(cache))] = keys
        if len(pending) >= 4 * workers:  # bounded in flight: the driver's memory stays flat on any corpus
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                finish(ref)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            finish(ref)
    unseen = [path for path in unseen if not path.is_file()]  # looked at again: a network FS may lag a little
    if unseen:
        raise BadInput(
            f"Ray workers encoded {len(unseen)} chunks that this machine cannot see (e.g. {unseen[0]}): with "
            "--engine ray on several machines, the inputs and --out must be on a file system that every node "
            "mounts at the same path",
            cache,
        )


# ------------------------------------------------------------------------------------------ phase 2


def _density_edges(reader: _ChunkReader, keys: list[str], bins: int, bars: int) -> list[float]:
    """Quantile edges (notes per bar) over every DENSITY slot of the dataset, from a streamed histogram."""
    hist = np.zeros(0, np.int64)
    for key in keys:
        counts = np.bincount(reader.read(key)[3])
        if len(counts) > len(hist):
            hist = np.pad(hist, (0, len(counts) - len(hist)))
        hist[: len(counts)] += counts
    if hist.sum() == 0:
        return list(DEFAULT_DENSITY_EDGES[: bins - 1])
    cdf = np.cumsum(hist) / hist.sum()
    edges = [float(np.searchsorted(cdf, q / bins, side="left")) / bars for q in range(1, bins)]
    return [round(e, 6) for e in edges]


def _split_of(digest: str, validation_fraction: float) -> str:
    return "validation" if int(digest[:12], 16) / 16**12 < validation_fraction else "train"


def _tokenizer_json(vocab: list[str]) -> str:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    tokenizer = Tokenizer(WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = WhitespaceSplit()
    tokenizer.add_special_tokens(["<pad>", "<unk>", "PIECE_START", "PIECE_END"])
    return tokenizer.to_str(pretty=True)


def _assemble(out: Path, files: list[Path], keys: list[str], config: PipelineConfig) -> dict:
    opts = config.options
    reader = _ChunkReader(_cache_index(out / ".cache"))
    edges = _density_edges(reader, keys, opts.density_bins, opts.bars or 1)
    ids_ = mmm._Ids(opts.density_bins)
    vocab = mmm.vocabulary(opts.density_bins)
    words = np.array(vocab, dtype=object)
    writers: dict[str, ShardWriter] = {}
    shards: dict[str, list[dict]] = {}
    lengths: Counter = Counter()
    status: Counter = Counter()
    reasons: Counter = Counter()
    max_len = 0
    manifest_tmp = out / ".manifest.jsonl.tmp"
    with open(manifest_tmp, "w", encoding="utf-8") as manifest:
        for key in keys:
            record, ids, offsets, density = reader.read(key)
            status[record["status"]] += 1
            if record["reason"]:
                reasons[record["reason"].split(" (")[0].split(":")[0][:60]] += 1
            entry = {k: record[k] for k in ("path", "status", "reason", "windows", "tokens")}
            manifest.write(json.dumps(entry, sort_keys=True) + "\n")
            if record["status"] != "ok":
                continue
            ids = ids.copy()
            where = np.flatnonzero(ids == mmm.DENSITY_PLACEHOLDER)
            ids[where] = ids_.density + mmm.density_bins(density, opts.bars or 1, edges)
            split = _split_of(record["sha256"], config.validation_fraction)
            writer = writers.get(split)
            if writer is None:
                writer = writers[split] = ShardWriter(out, split, len(shards.setdefault(split, [])))
            sep = np.full(len(ids), " ", dtype=object)
            sep[offsets[1:] - 1] = "\n"
            tokens = np.empty(2 * len(ids), dtype=object)
            tokens[0::2], tokens[1::2] = words[ids], sep
            writer.add_many(ids, offsets, "".join(tokens.tolist()))
            seq_lengths = np.diff(offsets)
            lengths.update((seq_lengths // LENGTH_BIN).tolist())
            max_len = max(max_len, int(seq_lengths.max()))
            if writer.tokens >= config.shard_tokens:
                shards[split].append(writer.close())
                del writers[split]
    for split, writer in writers.items():
        shards[split].append(writer.close())
    manifest_tmp.replace(out / "manifest.jsonl")
    keep = {f"{s['name']}{ext}" for split in shards.values() for s in split for ext in (".bin", ".idx.npy", ".txt")}
    for folder in (out / "shards", out / "text"):
        for stale in folder.glob("*") if folder.is_dir() else []:
            if stale.name not in keep:
                stale.unlink()
    atomic_write_text(out / "tokenizer.json", _tokenizer_json(vocab))
    splits = {
        name: {
            "shards": parts,
            "sequences": sum(p["sequences"] for p in parts),
            "tokens": sum(p["tokens"] for p in parts),
        }
        for name, parts in sorted(shards.items())
    }
    stats = {
        "files": {"total": len(files), **{k: status[k] for k in ("ok", "skipped", "failed")}},
        "reasons": dict(sorted(reasons.items())),
        "windows": sum(s["sequences"] for s in splits.values()),
        "tokens": sum(s["tokens"] for s in splits.values()),
        "splits": {k: {"sequences": v["sequences"], "tokens": v["tokens"]} for k, v in splits.items()},
        "max_sequence_tokens": max_len,
        "length_histogram": {
            "bin_tokens": LENGTH_BIN,
            "counts": {f"{b * LENGTH_BIN}-{(b + 1) * LENGTH_BIN - 1}": lengths[b] for b in sorted(lengths)},
        },
        "density_edges": edges,
    }
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
    options = {k: v for k, v in asdict(opts).items() if k != "density_edges"}
    write_dataset_json(
        out,
        {
            "encoding": "mmm",
            "vocab_size": len(vocab),
            "special_tokens": {"bos": "PIECE_START", "eos": "PIECE_END", "pad": "<pad>", "unk": "<unk>"},
            "splits": splits,
            "options": options,
            "density_edges": edges,
            "steps_per_bar": mmm.STEPS_PER_BAR,
            "max_sequence_tokens": max_len,
            "validation_fraction": config.validation_fraction,
        },
    )
    return stats


# ------------------------------------------------------------------------------------------ public


def encode_mmm_dataset(inputs: list[str], out: str | Path, config: PipelineConfig = PipelineConfig()) -> dict:
    """Encode files, folders and builtin corpora into an mmm token dataset at `out`; returns the stats."""
    from orchestrion.core.corpora import resolve_inputs

    if config.engine not in ("local", "ray"):
        raise InvalidRequest("engine", f"expected 'local' or 'ray', got {config.engine!r}")
    if config.options.bars is None:
        raise InvalidRequest("bars", "the pipeline encodes windows: give --bars 4, 8 or 16")
    out = Path(out)
    files = sorted({p.resolve() for p in resolve_inputs(list(inputs), MIDI_SUFFIXES)}, key=str)
    # A rerun over a finished dataset rewrites its shards: no dataset.json until the new one is written last.
    # Also drops the partial files a killed run left under temporary names.
    begin_dataset(out)
    cache = out / ".cache"
    fingerprint = _fingerprint(config)
    keys = [cache_key(p, fingerprint) for p in files]
    done = _cache_index(cache)
    todo = [(str(p), k) for p, k in zip(files, keys, strict=True) if k not in done]
    workers = config.workers or os.cpu_count() or 1
    started = time.perf_counter()
    totals = {"files": 0, "tokens": 0}
    with _progress(config.progress, len(files), len(files) - len(todo)) as advance:

        def on_done(n: int, summaries: list[dict]) -> None:
            totals["files"] += n
            totals["tokens"] += sum(s["tokens"] for s in summaries)
            advance(n, sum(s["tokens"] for s in summaries))

        runner = _run_ray if config.engine == "ray" else _run_local
        runner(todo, config, cache, workers, on_done)
    encoded_s = time.perf_counter() - started
    stats = _assemble(out, files, keys, config)
    wanted = set(keys)
    for chunk in cache.glob("*/*.npz"):  # chunks of an earlier run with other options or files: not needed again
        try:
            with np.load(chunk, allow_pickle=False) as data:
                stale = not any(k.decode() in wanted for k in data["keys"].tolist())
        except (OSError, ValueError, KeyError):
            stale = True
        if stale:
            chunk.unlink()
    total_s = time.perf_counter() - started
    with open(out / "run.log", "a", encoding="utf-8") as log:
        log.write(json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "engine": config.engine, "workers": workers,
            "files": len(files), "encoded_now": len(todo), "encode_s": round(encoded_s, 3),
            "total_s": round(total_s, 3), "tokens": stats["tokens"],
        }) + "\n")  # fmt: skip
    return stats


class _progress:
    """A rich progress bar with files/s and tokens/s (or nothing, when off)."""

    def __init__(self, enabled: bool, total: int, already: int):
        self.enabled, self.total, self.already = enabled, total, already
        self.tokens, self.done, self.t0 = 0, 0, time.perf_counter()

    def __enter__(self) -> Callable[[int, int], None]:
        if not self.enabled:
            return lambda n, t: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("encode mmm"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task("encode", total=self.total, completed=self.already, rate="")
        return self.advance

    def advance(self, files: int, tokens: int) -> None:
        self.done += files
        self.tokens += tokens
        dt = max(time.perf_counter() - self.t0, 1e-9)
        rate = f"{self.done / dt:,.0f} files/s {self.tokens / dt:,.0f} tokens/s"
        self.bar.update(self.task, advance=files, rate=rate)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()
