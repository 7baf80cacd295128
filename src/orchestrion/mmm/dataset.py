"""Parallel, resumable, deterministic preprocessing of MIDI collections into an mmm token dataset.

    orchestrion encode mmm INPUT... --out DIR --bars 4 --hop 2 --transpose -5:6 --workers N --engine local|ray

Two phases:

1. *Encode* (parallel, `orchestrion.core.engine`: local processes or Ray): files go to workers in chunks; a
   worker loads, checks and encodes its chunk in one vectorised batch (`mmm.codec.encode_batch`) and writes
   one cache file for the chunk into the engine's store `DIR/.cache/` (per file: its manifest record, token
   ids with DENSITY placeholders, sequence lengths, density counts), whole or not at all. A file's key names
   its path, size, mtime and the options, so a re-run (after a crash or `kill -9`) skips every file already
   cached. A chunk over `Limits.seconds` is retried file by file; a file over it is reported `failed`.
2. *Assemble* (one process, streaming, two passes over the cache in sorted path order): density bins
   are the quantiles of all windows' note densities; then each file's sequences go to its split
   (a hash of its content, so a piece, or a copy of it, never sits in two splits) and into shards.

A damaged file (a controller value of 168, say) is read leniently (`orchestrion.core.music.read_midi`) and
encoded from its readable tracks and events, its manifest reason saying what was dropped; `Limits.strict`
(`--strict`) refuses it. stats.json lists the instruments kept, as INST= tokens.

Everything in the dataset (shards, text, tokenizer.json, stats.json, manifest.jsonl, dataset.json) is a
function of the inputs and the options only, so it is byte-identical whatever the number of workers or
the engine; timings go to `run.log`. Memory stays flat: a worker holds one chunk, the assembler one shard.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from orchestrion.core.engine import Failed, Parallel, Record, Store, file_key
from orchestrion.core.files import atomic_path, write_atomic
from orchestrion.core.music import MIDI_SUFFIXES, read_midi
from orchestrion.core.shards import ShardWriter, begin_dataset, write_dataset_json
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.mmm import codec as mmm
from orchestrion.mmm.vocabulary import DEFAULT_DENSITY_EDGES

CACHE_VERSION = 2  # of the per-file records below; part of every cache key

LENGTH_BIN = 128  # tokens per bin of the length histogram in stats.json


@dataclass(frozen=True)
class Limits:
    """What one file may cost; a file over a limit is reported in the manifest and skipped."""

    max_bytes: int = 16 * 2**20
    max_notes: int = 200_000
    seconds: float = 60.0  # per chunk; a chunk that runs over is retried file by file with the same limit
    max_tempo_qpm: float = 2000.0
    strict: bool = False  # refuse a damaged file instead of keeping its readable tracks and events


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


def _load_checked(path: Path, limits: Limits) -> tuple[object, str, list[str]]:
    """Load one file for encoding; returns (score, content sha256, what a damaged file lost) or raises
    BadInput with the reason."""
    size = path.stat().st_size
    if size == 0:
        raise BadInput("the file is empty (0 bytes)", path)
    if size > limits.max_bytes:
        raise BadInput(f"the file is {size / 2**20:.1f} MiB, over the {limits.max_bytes / 2**20:.0f} MiB limit", path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    score, dropped = read_midi(data, strict=limits.strict, name=path)  # BadInput names the file and the reason
    notes = sum(len(t.notes) for t in score.tracks)
    if notes > limits.max_notes:
        raise BadInput(f"{notes} notes, over the cap of {limits.max_notes} per file", path)
    qpm = score.tempos.numpy()["mspq"]
    if len(qpm) and (qpm.min() <= 0 or 6e7 / qpm.min() > limits.max_tempo_qpm):
        raise BadInput(f"absurd tempo (over {limits.max_tempo_qpm:.0f} quarters per minute)", path)
    return score, digest, dropped


def _outcome(path: Path, status: str, reason: str | None, digest: str = "", enc: mmm.Encoded | None = None) -> dict:
    # An ok file's reason says what was left out, regrouped, quantised or repaired (None when nothing was).
    return {
        "path": str(path),
        "status": status,
        "reason": reason,
        "sha256": digest,
        "windows": enc.sequences if enc is not None else 0,
        "tokens": len(enc.ids) if enc is not None else 0,
    }


def encode_chunk(paths: list[str], config_json: str) -> list[Record]:
    """Worker (batched; the engine's time limit applies): load, check and encode a chunk of files in one
    vectorised batch. Per file a Record: its manifest fields and, when encoded, its token ids (DENSITY
    placeholders), sequence lengths and density counts."""
    config = _config_from_json(config_json)
    records: list[Record | None] = [None] * len(paths)
    loaded = []
    for i, p in enumerate(paths):
        path = Path(p)
        try:
            score, digest, dropped = _load_checked(path, config.limits)
            loaded.append((i, path, score, digest, dropped))
        except BadInput as exc:
            records[i] = Record(_outcome(path, "skipped", exc.reason))
        except OSError as exc:
            records[i] = Record(_outcome(path, "failed", f"cannot read: {exc}"))
    scores, digests = [item[2] for item in loaded], [item[3] for item in loaded]
    results = mmm.encode_batch(scores, config.options, keys=digests, placeholder=True) if loaded else []
    for (i, path, _, digest, dropped), result in zip(loaded, results, strict=True):
        records[i] = _encoded_record(path, digest, result, config, dropped)
    return records


def _encoded_record(
    path: Path, digest: str, result: mmm.Encoded | BadInput, config: PipelineConfig, dropped: list[str]
) -> Record:
    if isinstance(result, BadInput):
        return Record(_outcome(path, "skipped", result.reason, digest))
    notes = []
    if dropped:
        notes.append("damaged file, dropped: " + "; ".join(dropped))
    if result.regrouped:
        notes.append("; ".join(result.regrouped))
    if result.skipped:
        notes.append("left out: " + "; ".join(result.skipped))
    if result.capped:
        notes.append(f"capped at {config.options.max_tokens} tokens")
    if result.sequences == 0:
        why = "; ".join(result.skipped) or "no note in any window"
        return Record(_outcome(path, "skipped", f"no 4/4 window to encode ({why})", digest))
    arrays = {"ids": result.ids, "seq_lengths": np.diff(result.offsets), "density": result.density_counts}
    return Record(_outcome(path, "ok", "; ".join(notes) or None, digest, result), arrays)


def _tokens(record: Record) -> int:
    """A file's tokens, for the progress bar's rate."""
    return record.fields["tokens"]


def _config_to_json(config: PipelineConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True)


def _config_from_json(text: str) -> PipelineConfig:
    raw = json.loads(text)
    opts = raw.pop("options")
    opts["transpose"] = tuple(opts["transpose"])
    opts["density_edges"] = tuple(opts["density_edges"])
    limits = Limits(**raw.pop("limits"))
    return PipelineConfig(options=mmm.MMMOptions(**opts), limits=limits, **raw)


# ------------------------------------------------------------------------------------------ phase 2


def _read(store: Store, key: str, path: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """(manifest fields, token ids, sequence offsets, density counts) of one file, from the cache."""
    result = store.read(key)
    if isinstance(result, Failed):  # the engine's: over the time limit, or the encoder raised
        return _outcome(path, "failed", result.reason), np.zeros(0, np.uint16), np.zeros(1, np.int64), _NONE
    arrays = result.arrays
    offsets = np.concatenate([[0], np.cumsum(arrays.get("seq_lengths", _NONE))]).astype(np.int64)
    return result.fields, arrays.get("ids", np.zeros(0, np.uint16)), offsets, arrays.get("density", _NONE)


_NONE = np.zeros(0, np.int64)


def _density_edges(store: Store, files: list[Path], keys: list[str], bins: int, bars: int) -> list[float]:
    """Quantile edges (notes per bar) over every DENSITY slot of the dataset, from a streamed histogram."""
    hist = np.zeros(0, np.int64)
    for path, key in zip(files, keys, strict=True):
        counts = np.bincount(_read(store, key, path)[3])
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


def _assemble(out: Path, files: list[Path], keys: list[str], config: PipelineConfig, store: Store) -> dict:
    opts = config.options
    edges = _density_edges(store, files, keys, opts.density_bins, opts.bars or 1)
    vocab = mmm.vocabulary(opts.density_bins)
    words = np.array(vocab, dtype=object)
    writers: dict[str, ShardWriter] = {}
    shards: dict[str, list[dict]] = {}
    lengths: Counter = Counter()
    ids_ = mmm.BlockIds(opts.density_bins)
    instruments = np.zeros(ids_.density - ids_.inst, np.int64)  # track-windows per INST= token
    status: Counter = Counter()
    reasons: Counter = Counter()
    problems: list[str] = []  # the first files left out, with their whole reason (for a command's message)
    max_len = 0
    with atomic_path(out / "manifest.jsonl") as manifest_tmp, open(manifest_tmp, "w", encoding="utf-8") as manifest:
        for path, key in zip(files, keys, strict=True):
            record, ids, offsets, density = _read(store, key, path)
            status[record["status"]] += 1
            if record["reason"]:
                reasons[record["reason"].split(" (")[0].split(":")[0][:60]] += 1
            entry = {k: record[k] for k in ("path", "status", "reason", "windows", "tokens")}
            manifest.write(json.dumps(entry, sort_keys=True) + "\n")
            if record["status"] != "ok":
                if len(problems) < 3:
                    problems.append(f"{Path(record['path']).name}: {record['reason']}")
                continue
            encoded = mmm.Encoded(ids.copy(), offsets, density, opts.bars or 1)
            mmm.fill_density(encoded, edges)  # the dataset's bins, now that every file's densities are known
            ids = encoded.ids
            inst = ids[(ids >= ids_.inst) & (ids < ids_.density)].astype(np.int64) - ids_.inst
            instruments += np.bincount(inst, minlength=len(instruments))
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
    keep = {f"{s['name']}{ext}" for split in shards.values() for s in split for ext in (".bin", ".idx.npy", ".txt")}
    for folder in (out / "shards", out / "text"):
        for stale in folder.glob("*") if folder.is_dir() else []:
            if stale.name not in keep:
                stale.unlink()
    write_atomic(out / "tokenizer.json", _tokenizer_json(vocab))
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
        # The instruments kept, as INST= tokens, and in how many (window, track) pairs each plays.
        "instruments": {vocab[ids_.inst + k]: int(c) for k, c in enumerate(instruments.tolist()) if c},
    }
    write_atomic(out / "stats.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
    stats = {**stats, "problems": problems}  # returned, not written: it names files
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

    # Checks the engine first, then the options.
    parallel = Parallel(
        workers=config.workers, engine=config.engine, address=config.address, chunk=config.chunk,
        seconds=config.limits.seconds, progress=config.progress,
    )  # fmt: skip
    if config.options.bars is None:
        raise InvalidRequest("bars", "the pipeline encodes windows: give --bars 4, 8 or 16")
    out = Path(out)
    files = sorted({p.resolve() for p in resolve_inputs(list(inputs), MIDI_SUFFIXES)}, key=str)
    # A rerun over a finished dataset rewrites its shards: no dataset.json until the new one is written last.
    # Also drops the partial files a killed run left under temporary names.
    begin_dataset(out)
    store = Store(out / ".cache")
    fingerprint = _fingerprint(config)
    keys = [file_key(p, fingerprint) for p in files]
    started = time.perf_counter()
    report = store.fill(
        encode_chunk, [str(p) for p in files], keys, parallel, context=_config_to_json(config), batched=True,
        label="encode mmm", weigh=_tokens, unit="tokens",
    )  # fmt: skip
    encoded_s = time.perf_counter() - started
    stats = _assemble(out, files, keys, config, store)
    store.prune(keys)  # chunks of an earlier run with other options or files: not needed again
    total_s = time.perf_counter() - started
    with open(out / "run.log", "a", encoding="utf-8") as log:
        log.write(json.dumps({
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "engine": config.engine, "workers": report.workers,
            "files": len(files), "encoded_now": report.computed, "encode_s": round(encoded_s, 3),
            "total_s": round(total_s, 3), "tokens": stats["tokens"],
        }) + "\n")  # fmt: skip
    return stats
