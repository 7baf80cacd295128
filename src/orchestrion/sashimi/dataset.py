"""Audio datasets for SaShiMi: any folder of audio -> 16 kHz mono 8-bit shards, and the built-in piano corpus.

A dataset directory holds

    dataset.json                  {"format": "orchestrion-audio", "version": 1, "sample_rate": 16000,
                                   "quantization": "mulaw" | "linear", "bits": 8, "chunk_samples": N,
                                   "split_by": "file" | "chunk", "splits": {split: {"shards": [...],
                                   "chunks": N, "samples": N}}, "failed": {file: reason}}
    shards/<k>.u8                 one source file's quantised samples, uint8, its chunks back to back
    shards/<k>.idx.npy            int64 chunk offsets, length chunks + 1

One shard per source file keeps the split by file trivial and makes the job resumable: a shard whose
index exists is finished and is skipped on the next run (the index is written last, both atomically), so
the shards are the job's manifest. Files are encoded on the engine's workers (`orchestrion.core.engine`:
local processes or Ray; with Ray on several machines `--out` must be on a file system they all share).
Shards are memory-mapped for reading, so a dataset far larger than memory trains fine.

The built-in corpus `builtin:piano` is the Bach chorales (from music21's corpus) rendered by FluidSynth
with General MIDI program 0 (acoustic grand piano) on every voice: a piano dataset in the spirit of
YouTubeMix that needs no download. `builtin:piano-melody` is the same chorales' soprano lines alone, one
note at a time on the same piano: simpler audio (one pitch and its partials), for a small model to learn
tones from.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orchestrion.core.engine import Failed, Parallel, imap
from orchestrion.core.files import atomic_path, write_atomic
from orchestrion.core.shards import SPLITS, begin_dataset
from orchestrion.errors import BadInput

FORMAT = "orchestrion-audio"
VERSION = 1
PIANO = "builtin:piano"
PIANO_MELODY = "builtin:piano-melody"
PIANO_VOICES = {PIANO: "all", PIANO_MELODY: "soprano"}  # which chorale voices each built-in corpus plays
PIANO_VERSION = 2
TRIM_DB = -60.0  # rendered rests before the first and after the last note are trimmed below this
MIN_CHUNK_SECONDS = 0.5  # a file's last, shorter chunk is kept when at least this long
HELD_OUT = 0.1  # share of source files for validation, and again for test


# ------------------------------------------------------------------------------------ piano corpus


def _render_piano(job: tuple[str, str], context: tuple[int, str]) -> str | None:
    """Engine worker: render one chorale (source, dest) as mono piano into `dest`; an error message or None.

    `context` is (sample rate, voices): "all", or "soprano" for the first (highest) part alone."""
    source, dest = job
    sample_rate, voices = context
    from orchestrion.core.music import load_midi
    from orchestrion.core.render import render_wav
    from orchestrion.errors import OrchestrionError

    try:
        score = load_midi(source)
        if voices == "soprano":
            score.tracks = score.tracks[:1]
        for track in score.tracks:
            track.program = 0
            track.is_drum = False
        # Rendered and trimmed under a temporary name: a file under `dest` is finished (a rerun skips it).
        with atomic_path(dest) as partial:
            render_wav(score, partial, sample_rate=sample_rate, mono=True)
            _trim_silence(partial, sample_rate)
    except OrchestrionError as exc:
        return str(exc)
    return None


def _trim_silence(path: Path, sample_rate: int) -> None:
    """Cut the silence a chorale's pick-up rest and the reverb tail leave at either end (10 ms frames)."""
    import soundfile as sf

    from orchestrion.core.render import write_wav

    x, _ = sf.read(str(path), dtype="float32")
    hop = sample_rate // 100
    n = len(x) // hop
    if n == 0:
        return
    level = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(level > TRIM_DB)
    if len(loud):
        write_wav(path, x[loud[0] * hop : (loud[-1] + 1) * hop], sample_rate)


def piano_corpus(
    limit: int | None = None,
    *,
    workers: int = 1,
    cache_dir: Path | None = None,
    sample_rate: int = 16000,
    parallel: Parallel | None = None,
    voices: str = "all",
) -> list[Path]:
    """The built-in piano audio: the chorales rendered once into the cache (resumable), sorted by name.

    `voices`: "all" (the four parts) or "soprano" (the melody alone).

    Rendered on `parallel`'s workers (default: `workers` local processes); a file that exists is finished.
    """
    from rich.console import Console
    from rich.markup import escape

    from orchestrion.core import corpora

    parallel = parallel or Parallel(workers=workers, chunk=1)  # a chorale is a big task
    midis = corpora.corpus_files("bach-chorales", cache_dir=cache_dir)
    if limit is not None:
        midis = midis[:limit]
    if voices not in ("all", "soprano"):
        raise BadInput(f"unknown piano voices {voices!r}; use 'all' or 'soprano'")
    name = "piano" if voices == "all" else f"piano-{voices}"
    root = (corpora.cache_dir(cache_dir) / f"{name}-{sample_rate}-v{PIANO_VERSION}").resolve()
    root.mkdir(parents=True, exist_ok=True)
    wavs = [root / f"{m.stem}.wav" for m in midis]
    jobs = [(str(m), str(w)) for m, w in zip(midis, wavs, strict=True) if not w.is_file()]
    console = Console(stderr=True)
    rendering = imap(_render_piano, jobs, parallel, context=(sample_rate, voices), label="render piano")
    for (source, dest), error in zip(jobs, rendering, strict=True):
        if isinstance(error, Failed):
            error = error.reason
        if error:
            console.print(f"[yellow]skipped[/yellow] {escape(f'{source}: {error}')}", highlight=False)
        elif not Path(dest).is_file():
            raise _unseen(Path(dest))
    return [w for w in wavs if w.is_file()]


def _unseen(path: Path) -> BadInput:
    return BadInput(
        "a worker wrote this file where this machine cannot see it: with --engine ray on several machines, the "
        "inputs and --out (and the corpus cache) must be on a file system that every node mounts at the same path",
        path,
    )


# ---------------------------------------------------------------------------------------- encoding


def _shard_key(path: Path) -> str:
    return hashlib.sha1(path.name.encode()).hexdigest()[:12]


def assign_splits(files: list[Path]) -> dict[Path, str]:
    """Split by source file, by a hash of the file name: stable whatever the order or number of files.

    With three or more files, validation and test get at least one file each.
    """
    ordered = sorted(files, key=lambda p: (hashlib.sha1(p.name.encode()).hexdigest(), str(p)))
    n = len(ordered)
    if n < 3:
        return {p: "train" for p in ordered}
    held = max(1, round(HELD_OUT * n))
    splits = {}
    for i, p in enumerate(ordered):
        splits[p] = "validation" if i < held else "test" if i < 2 * held else "train"
    return splits


def _encode_file(job: tuple[str, str], settings: tuple[int, int, str]) -> dict:
    """Engine worker: load, quantise and chunk one file (source, shard) into its shard; returns the shard
    record or {"error": ...}."""
    source, shard = job
    sample_rate, chunk, quantization = settings
    from orchestrion.core.audio import load_audio
    from orchestrion.errors import OrchestrionError
    from orchestrion.sashimi import mulaw

    try:
        x = load_audio(source, sample_rate)
    except OrchestrionError as exc:
        return {"source": source, "error": str(exc)}
    q = mulaw.encode(x, quantization)
    starts = list(range(0, len(q), chunk))
    offsets = [0]
    for s in starts:
        n = min(chunk, len(q) - s)
        if n >= min(chunk, MIN_CHUNK_SECONDS * sample_rate):
            offsets.append(offsets[-1] + n)
    if len(offsets) == 1:
        return {"source": source, "error": f"shorter than {MIN_CHUNK_SECONDS} s"}
    root = Path(shard)
    write_atomic(root.with_suffix(".u8"), q[: offsets[-1]].tobytes())
    index = io.BytesIO()
    np.save(index, np.asarray(offsets, dtype=np.int64), allow_pickle=False)
    write_atomic(root.with_suffix(".idx.npy"), index.getvalue())  # last: marks it done
    return {"source": source, "chunks": len(offsets) - 1, "samples": offsets[-1]}


def encode_audio(
    inputs: list[str],
    out: str | Path,
    *,
    chunk_seconds: float = 60.0,
    quantization: str = "mulaw",
    sample_rate: int = 16000,
    workers: int = 1,
    piano_limit: int | None = None,
    engine: str = "local",
    address: str | None = None,
) -> dict:
    """`orchestrion encode audio`: files, folders or builtin:piano -> an audio dataset in `out`.

    Resumable: run it again after an interruption and finished files are skipped. A file that cannot be
    read is reported and left out; the rest carry on. Files are encoded on `workers` processes (0 = all
    cores) of `engine` (local, or ray: a private Ray, or the cluster at `address`), with the same result.
    """
    from rich.console import Console
    from rich.markup import escape

    from orchestrion.core.audio import find_audio_files
    from orchestrion.sashimi.mulaw import QUANTIZATIONS

    parallel = Parallel(workers=workers, engine=engine, address=address, chunk=1)  # a file is a big task
    if quantization not in QUANTIZATIONS:
        raise BadInput(f"unknown quantisation {quantization!r}; use one of: {', '.join(QUANTIZATIONS)}")
    if not 0.1 <= chunk_seconds <= 3600:
        raise BadInput(f"chunk length must be 0.1-3600 seconds, not {chunk_seconds}")
    out = Path(out)
    files: list[Path] = []
    plain = []
    for item in inputs:
        if item in PIANO_VOICES:
            files.extend(
                piano_corpus(piano_limit, sample_rate=sample_rate, parallel=parallel, voices=PIANO_VOICES[item])
            )
        else:
            plain.append(item)
    files.extend(find_audio_files(plain))
    files = sorted(dict.fromkeys(files))
    if not files:
        raise BadInput("no audio files found", ", ".join(inputs))
    chunk = int(round(chunk_seconds * sample_rate))
    meta_path = out / "dataset.json"
    # The shards' settings, kept beside them: a run killed before dataset.json exists is resumed only with
    # the same settings (its finished shards are reused as they are).
    settings_path = out / "shards" / "settings.json"
    settings = {"quantization": quantization, "chunk_samples": chunk, "sample_rate": sample_rate}
    for path in (meta_path, settings_path):
        if path.is_file():
            old = json.loads(path.read_text())
            if {k: old.get(k) for k in settings} != settings:
                raise BadInput("this folder holds a dataset made with other settings; use a new --out", out)
    begin_dataset(out)  # until the new dataset.json is written last, the folder holds no whole dataset
    write_atomic(settings_path, json.dumps(settings, sort_keys=True) + "\n")
    keys = {f: _shard_key(f) for f in files}
    if len(set(keys.values())) != len(keys):  # same name in two folders: fall back to the full path
        keys = {f: hashlib.sha1(str(f).encode()).hexdigest()[:12] for f in files}
    shards = (out / "shards").resolve()  # a worker's working directory need not be the driver's
    todo = [f for f in files if not (shards / f"{keys[f]}.idx.npy").is_file()]
    failed: dict[str, str] = {}
    console = Console(stderr=True)
    jobs = [(str(f), str(shards / keys[f])) for f in todo]
    encoding = imap(_encode_file, jobs, parallel, context=(sample_rate, chunk, quantization), label="encode audio")
    for f, record in zip(todo, encoding, strict=True):
        error = record.reason if isinstance(record, Failed) else record.get("error")
        if error:
            failed[str(f)] = error
            console.print(f"[yellow]skipped[/yellow] {escape(f'{f}: {error}')}", highlight=False)
        elif not (shards / f"{keys[f]}.idx.npy").is_file():
            raise _unseen(shards / f"{keys[f]}.idx.npy")

    done = [f for f in files if (out / "shards" / f"{keys[f]}.idx.npy").is_file()]
    if not done:
        raise BadInput("no file could be encoded: " + "; ".join(f"{k}: {v}" for k, v in failed.items()), out)
    split_by = "file" if len(done) >= 3 else "chunk"
    by_split = assign_splits(done) if split_by == "file" else {f: "all" for f in done}
    splits: dict[str, dict] = {s: {"shards": [], "chunks": 0, "samples": 0} for s in SPLITS}
    for f in done:
        offsets = np.load(out / "shards" / f"{keys[f]}.idx.npy", allow_pickle=False)
        record = {"name": keys[f], "source": f.name, "chunks": len(offsets) - 1, "samples": int(offsets[-1])}
        for s in SPLITS if by_split[f] == "all" else (by_split[f],):
            splits[s]["shards"].append(record)
            splits[s]["chunks"] += record["chunks"]
            splits[s]["samples"] += record["samples"]
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "sample_rate": sample_rate,
        "quantization": quantization,
        "bits": 8,
        "chunk_samples": chunk,
        "split_by": split_by,
        "splits": splits,
        "failed": failed,
        "hours": round(
            sum(int(np.load(out / "shards" / f"{keys[f]}.idx.npy", allow_pickle=False)[-1]) for f in done)
            / sample_rate
            / 3600,
            3,
        ),
    }
    write_atomic(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


# ----------------------------------------------------------------------------------------- reading


@dataclass
class AudioSplit:
    """The chunks of one split, memory-mapped. With split_by "chunk" (fewer than 3 source files) every
    chunk's first 80% is train, the next 10% validation and the last 10% test."""

    chunks: list[np.ndarray]

    @property
    def samples(self) -> int:
        return int(sum(len(c) for c in self.chunks))

    def window(self, rng: np.random.Generator, length: int) -> np.ndarray:
        """A random window of `length` samples from a chunk chosen in proportion to its length."""
        usable = np.array([max(0, len(c) - length + 1) for c in self.chunks], dtype=np.float64)
        if usable.sum() == 0:
            raise BadInput(f"no chunk holds {length} samples; use a shorter training window")
        c = self.chunks[int(rng.choice(len(self.chunks), p=usable / usable.sum()))]
        start = int(rng.integers(0, len(c) - length + 1))
        return np.asarray(c[start : start + length])

    def windows(self, length: int, limit: int) -> list[np.ndarray]:
        """Up to `limit` non-overlapping windows spread evenly over the split: the same ones every time."""
        starts = [(i, s) for i, c in enumerate(self.chunks) for s in range(0, len(c) - length + 1, length)]
        if not starts:
            return []
        picks = np.linspace(0, len(starts) - 1, num=min(limit, len(starts))).round().astype(int)
        return [np.asarray(self.chunks[starts[p][0]][starts[p][1] : starts[p][1] + length]) for p in picks]


class AudioDataset:
    """A dataset directory written by `orchestrion encode audio`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise BadInput(
                "not an audio dataset (no dataset.json); make one with 'orchestrion encode audio'", self.root
            )
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise BadInput(f"dataset.json has format {self.meta.get('format')!r}, expected {FORMAT!r}", meta_path)
        for split in self.meta.get("splits", {}).values():
            for shard in split["shards"]:
                data, index = (self.root / "shards" / f"{shard['name']}{ext}" for ext in (".u8", ".idx.npy"))
                if not (data.is_file() and index.is_file()) or data.stat().st_size != shard["samples"]:
                    raise BadInput(
                        f"shard {shard['name']} ({shard['source']}) is missing or damaged: "
                        "the dataset is incomplete; run 'orchestrion encode audio' again",
                        self.root,
                    )

    @property
    def quantization(self) -> str:
        return self.meta["quantization"]

    @property
    def sample_rate(self) -> int:
        return int(self.meta["sample_rate"])

    def split(self, name: str) -> AudioSplit:
        if name not in SPLITS:
            raise BadInput(f"unknown split {name!r}; use one of: {', '.join(SPLITS)}")
        chunks = []
        for shard in self.meta["splits"][name]["shards"]:
            data = np.memmap(self.root / "shards" / f"{shard['name']}.u8", dtype=np.uint8, mode="r")
            offsets = np.load(self.root / "shards" / f"{shard['name']}.idx.npy", allow_pickle=False)
            for a, b in zip(offsets[:-1], offsets[1:], strict=True):
                if self.meta.get("split_by") == "chunk":  # one or two long files: split inside each chunk
                    n = int(b - a)
                    lo, hi = {"train": (0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}[name]
                    a, b = a + int(lo * n), a + int(hi * n)
                chunks.append(data[int(a) : int(b)])
        return AudioSplit(chunks)


SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}


class AudioTask:
    """The shared training loop's TrainTask for next-sample prediction on an audio dataset.

    Batch (split, step, index) is a pure function of those three numbers and the seed, so a resumed run
    sees exactly the data the killed one would have.
    """

    def __init__(self, dataset: AudioDataset, seq_len: int, batch_size: int, seed: int = 0):
        self.dataset, self.seq_len, self.batch_size, self.seed = dataset, seq_len, batch_size, seed
        self._splits: dict[str, AudioSplit] = {}

    def _split(self, name: str) -> AudioSplit:
        if name not in self._splits:
            self._splits[name] = self.dataset.split(name)
        return self._splits[name]

    def batch(self, split: str, step: int, index: int) -> dict:
        import torch

        rng = np.random.default_rng([self.seed, SPLIT_IDS[split], step, index])
        data = self._split(split)
        w = np.stack([data.window(rng, self.seq_len + 1) for _ in range(self.batch_size)]).astype(np.int64)
        return {"x": torch.from_numpy(w[:, :-1]), "y": torch.from_numpy(w[:, 1:])}  # (B, L) each

    def loss(self, model, batch: dict):  # noqa: ANN001, ANN201 (torch types stay out of this module's imports)
        import torch.nn.functional as F

        logits = model(batch["x"])  # (B, L, C)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), batch["y"].reshape(-1))

    def tokens(self, batch: dict) -> int:
        return int(batch["y"].numel())
