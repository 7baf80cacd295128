"""Token datasets on disk: the contract between the encoders (mmm, abc) and the GPT trainer.

A dataset directory holds

    dataset.json                 {"format": "orchestrion-tokens", "version": 1, "encoding": "mmm" | "abc",
                                  "vocab_size": V, "special_tokens": {...}, "splits": {split: {"shards": [...],
                                  "sequences": N, "tokens": N}}, ...encoding-specific fields}
    tokenizer.json               a Hugging Face `tokenizers` file (WordLevel for mmm, byte-level BPE for abc)
    shards/<split>-<k>.bin       token ids, uint16, all sequences of the shard back to back
    shards/<split>-<k>.idx.npy   int64 offsets, length sequences + 1 (sequence i is bin[idx[i]:idx[i+1]])
    text/<split>-<k>.txt         the same sequences as text, one per line, for people

Shards are memory-mapped for reading. Every file is written whole by `orchestrion.core.files`, so a
killed run never leaves a partial file under a final name, and dataset.json is written last.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrion.core.files import atomic_path, write_atomic
from orchestrion.errors import BadInput

FORMAT = "orchestrion-tokens"
VERSION = 1
SPLITS = ("train", "validation", "test")


def save_npy(path: Path, array: np.ndarray) -> None:
    """`array` as a .npy file (never pickled), written whole or not at all."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy adds no .npy to the name
        np.save(f, array, allow_pickle=False)


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:05d}"


@dataclass
class ShardWriter:
    """Writes one shard: token ids (uint16), offsets and the text lines, all at `close()`."""

    root: Path
    split: str
    index: int
    sequences: list[np.ndarray] = field(default_factory=list)  # blocks of ids, back to back
    lengths: list[np.ndarray] = field(default_factory=list)  # per block: its sequences' lengths
    lines: list[str] = field(default_factory=list)  # per block: its text lines, each ending in a newline
    _tokens: int = 0

    def add(self, ids: np.ndarray | list[int], text: str) -> None:
        if "\n" in text:
            raise ValueError("a sequence's text must be one line")
        ids = np.asarray(ids)
        self.add_many(ids, np.array([0, len(ids)], dtype=np.int64), text + "\n")

    def add_many(self, ids: np.ndarray, offsets: np.ndarray, text: str) -> None:
        """Add many sequences at once: `ids[offsets[i]:offsets[i+1]]` is sequence i and `text` holds
        their lines, each ending in a newline (the fast path for large datasets)."""
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.uint16).max):
            raise ValueError("token ids must fit in uint16")
        lengths = np.diff(np.asarray(offsets, dtype=np.int64))
        if text.count("\n") != len(lengths) or (text and not text.endswith("\n")):
            raise ValueError("text must hold one line per sequence, each ending in a newline")
        self.sequences.append(ids[offsets[0] : offsets[-1]].astype(np.uint16))
        self.lengths.append(lengths)
        self.lines.append(text)
        self._tokens += int(lengths.sum())

    @property
    def tokens(self) -> int:
        return self._tokens

    def close(self) -> dict:
        name = shard_name(self.split, self.index)
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, dtype=np.int64)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum(lengths)
        ids = np.concatenate(self.sequences) if self.sequences else np.zeros(0, dtype=np.uint16)
        write_atomic(self.root / "shards" / f"{name}.bin", ids.tobytes())
        save_npy(self.root / "shards" / f"{name}.idx.npy", offsets)
        write_atomic(self.root / "text" / f"{name}.txt", "".join(self.lines))
        return {"name": name, "sequences": len(lengths), "tokens": int(offsets[-1])}


def begin_dataset(root: Path) -> None:
    """Before an encoder rewrites a dataset in place: drop its dataset.json (and files a killed run left under
    temporary names), so that until the new dataset.json is written last, nothing looks like a whole dataset."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").unlink(missing_ok=True)
    # Partial files under temporary names, never read: core.files' `.NAME.TOKEN.tmp[.SUFFIX]` and the
    # `.NAME.tmp` of writers from before it (a dataset a killed older run left behind).
    for tmp in list(root.rglob(".*.tmp*")):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def write_dataset_json(root: Path, meta: dict) -> None:
    record = {"format": FORMAT, "version": VERSION, **meta}
    write_atomic(root / "dataset.json", json.dumps(record, indent=2, sort_keys=True) + "\n")


class TokenSplit:
    """The sequences of one split, memory-mapped: `len()`, `[i]` -> np.ndarray of ids, `tokens`."""

    def __init__(self, root: Path, shards: list[str]):
        self._bins, self._offsets = [], []
        for name in shards:
            bin_path, idx_path = root / "shards" / f"{name}.bin", root / "shards" / f"{name}.idx.npy"
            if not (bin_path.is_file() and idx_path.is_file()):
                raise BadInput(
                    f"shard {name} is missing: the dataset is incomplete; run 'orchestrion encode' again", root
                )
            offsets = np.load(idx_path, allow_pickle=False)
            if len(offsets) == 0 or bin_path.stat().st_size != 2 * int(offsets[-1]):
                raise BadInput(f"shard {name} does not match its index: the dataset is damaged; encode it again", root)
            self._offsets.append(offsets)
            # np.memmap refuses an empty file; an empty shard is a valid one
            self._bins.append(np.memmap(bin_path, dtype=np.uint16, mode="r") if offsets[-1] else np.zeros(0, np.uint16))
        counts = np.array([len(o) - 1 for o in self._offsets], dtype=np.int64)
        self._starts = np.concatenate([[0], np.cumsum(counts)])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def tokens(self) -> int:
        return int(sum(int(o[-1]) for o in self._offsets))

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(i)
        shard = int(np.searchsorted(self._starts, i, side="right") - 1)
        j = i - int(self._starts[shard])
        offsets = self._offsets[shard]
        return np.asarray(self._bins[shard][offsets[j] : offsets[j + 1]])

    def concatenated(self) -> np.ndarray:
        """All ids of the split back to back (a memory map when there is one shard)."""
        if len(self._bins) == 1:
            return self._bins[0]
        return np.concatenate(self._bins) if self._bins else np.zeros(0, dtype=np.uint16)


class TokenDataset:
    """A dataset directory written by `orchestrion encode mmm|abc`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise BadInput("not a token dataset (no dataset.json); make one with 'orchestrion encode'", self.root)
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT:
            raise BadInput(f"dataset.json has format {self.meta.get('format')!r}, expected {FORMAT!r}", meta_path)
        missing = [name for name in self._files() if not (self.root / name).is_file()]
        if missing:
            raise BadInput(f"the dataset is incomplete ({', '.join(missing[:3])} missing); encode it again", self.root)

    def _files(self) -> list[str]:
        names = ["tokenizer.json"]
        for split in self.meta.get("splits", {}).values():
            for shard in split.get("shards", []):
                name = shard["name"] if isinstance(shard, dict) else shard
                names += [f"shards/{name}.bin", f"shards/{name}.idx.npy"]
        return names

    @property
    def encoding(self) -> str:
        return self.meta["encoding"]

    @property
    def tokenizer_path(self) -> Path:
        return self.root / "tokenizer.json"

    def split(self, name: str) -> TokenSplit:
        splits = self.meta.get("splits", {})
        if name not in splits:
            raise BadInput(f"the dataset has no {name!r} split (it has: {', '.join(splits) or 'none'})", self.root)
        return TokenSplit(self.root, [s["name"] if isinstance(s, dict) else s for s in splits[name]["shards"]])
