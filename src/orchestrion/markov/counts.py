"""Counting for the Markov composer: transition keys, the vectorised and the sequential counter, merge, save/load.

Counts are sparse: sorted flattened keys and their counts (only observed transitions), saved as
`counts.safetensors`; two models merge by adding counts. Counting flattens every transition of a chain
into one uint32 key and reduces them with one sort (`np.unique`), or with `torch.unique` + `index_add_`
on CUDA, and equals the plain sequential counter `count_sequential`. Generation lives in
`orchestrion.markov.composer`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchestrion.core.files import atomic_path
from orchestrion.markov import events as ev

MODES = ("major", "minor")
LINES = ("high", "low", "chords")
KIND_LINES = {0: "high", 1: "low", 2: "chords"}
KIND_NAMES = {0: "high melody", 1: "low melody", 2: "chords"}
MELODY_BOS = ev.N_MELODY_EVENTS  # 657: "before the piece", so that pieces learn how to begin
CHORD_BOS = ev.N_CHORDS  # 22621
VOCAB = {"high": MELODY_BOS + 1, "low": MELODY_BOS + 1, "chords": CHORD_BOS + 1}
ORDERS = {"high": 2, "low": 2, "chords": 1}

Counts = dict[str, tuple[np.ndarray, np.ndarray]]  # "major.high.2" -> (sorted keys, counts)


def chain_name(mode: str, line: str, order: int) -> str:
    return f"{mode}.{line}.{order}"


# ---------------------------------------------------------------------------------------- counting


def _padded(sequences: list[np.ndarray], bos: int, order: int) -> np.ndarray:
    """`order` BOS symbols, then every sequence after `order` BOS symbols of its own, as one uint32 array."""
    pad = np.full(order, bos, dtype=np.uint16)  # events are uint16 (VOCAB < 2**16)
    parts = [pad]  # the leading pad keeps the array at least `order` long when there are no pieces
    for seq in sequences:
        parts += (pad, seq)
    return np.concatenate(parts).astype(np.uint32)


def transition_keys(sequences: list[np.ndarray], line: str, minor: list[bool] | None = None) -> dict[int, np.ndarray]:
    """Flattened keys of every transition, per order: {2: (a*V+b)*V+c, 1: b*V+c, 0: c} (uint32).

    With `order` BOS symbols before each piece, an n-gram belongs to one piece exactly when its last
    symbol is not BOS, so one mask drops every n-gram that would cross from one piece into the next.
    With `minor` (one flag per piece), minor pieces' keys are moved up by V**(order+1), so that both
    modes are counted in one pass.
    """
    bos, size, top = VOCAB[line] - 1, VOCAB[line], ORDERS[line]
    x = _padded(sequences, bos, top)  # (N,)
    real = x[top:] != bos
    if minor is not None:
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences)) + top
        flags = np.repeat(np.asarray([0, *minor], dtype=np.uint32), np.r_[top, lengths])[top:][real]
    full = np.zeros(len(x) - top, dtype=np.uint32)
    for j in range(top, -1, -1):  # Horner: oldest symbol most significant
        full = full * np.uint32(size) + x[top - j : len(x) - j]
    full = full[real]
    keys = {}
    for order in range(top + 1):
        span = np.uint32(size ** (order + 1))
        key = full if order == top else full % span  # a shorter history is the key's low digits
        keys[order] = key + flags * span if minor is not None else key
    return keys


def reduce_keys(keys: np.ndarray, space: int | None = None, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique keys, their counts): a bincount when the key space is no larger than the keys,
    else one sort (numpy's SIMD sort beats a sparse bincount); on CUDA a unique + index-add (the
    reference system's atomicAdd)."""
    if device.startswith("cuda") or device == "torch":  # "torch": the same code on the CPU, for tests
        import torch

        device = "cpu" if device == "torch" else device
        k = torch.from_numpy(keys.astype(np.int64)).to(device)  # (N,)
        unique, inverse = torch.unique(k, sorted=True, return_inverse=True)
        counts = torch.zeros(len(unique), dtype=torch.int64, device=k.device)
        counts.index_add_(0, inverse, torch.ones_like(inverse))
        return unique.cpu().numpy().astype(np.uint32), counts.cpu().numpy()
    if space is not None and space <= len(keys):
        dense = np.bincount(keys, minlength=space)
        unique = np.flatnonzero(dense)
        return unique.astype(np.uint32), dense[unique].astype(np.int64)
    unique, counts = np.unique(keys, return_counts=True)
    return unique.astype(np.uint32), counts.astype(np.int64)


def count_pieces(pieces: list[ev.PieceEvents], device: str = "cpu") -> Counts:
    """Vectorised counts of all six chains and their lower orders over `pieces`."""
    counts: Counts = {}
    minor = [p.mode == "minor" for p in pieces]
    for line in LINES:
        keys = transition_keys([getattr(p, line) for p in pieces], line, minor)
        for order, k in keys.items():
            span = VOCAB[line] ** (order + 1)
            unique, n = reduce_keys(k, 2 * span, device)
            cut = int(np.searchsorted(unique, span))
            counts[chain_name("major", line, order)] = (unique[:cut], n[:cut])
            counts[chain_name("minor", line, order)] = (unique[cut:] - np.uint32(span), n[cut:])
    return counts


def count_sequential(pieces: list[ev.PieceEvents]) -> Counts:
    """The plain reference: walk every piece step by step and count in dicts (for tests and benchmarks)."""
    tables: dict[str, dict[int, int]] = {
        chain_name(m, line, o): {} for m in MODES for line in LINES for o in range(ORDERS[line] + 1)
    }
    for piece in pieces:
        for line in LINES:
            size, bos, top = VOCAB[line], VOCAB[line] - 1, ORDERS[line]
            history = [bos] * top
            for symbol in getattr(piece, line).tolist():
                context = history + [symbol]
                for order in range(top + 1):
                    key = 0
                    for s in context[top - order :]:
                        key = key * size + s
                    table = tables[chain_name(piece.mode, line, order)]
                    table[key] = table.get(key, 0) + 1
                history = history[1:] + [symbol]
    return {
        name: (np.asarray(sorted(t), dtype=np.uint32), np.asarray([t[k] for k in sorted(t)], dtype=np.int64))
        for name, t in tables.items()
    }


def merge_counts(*parts: Counts) -> Counts:
    """Add counts: models trained on different shards merge into the model of all the data."""
    merged: Counts = {}
    for name in sorted({n for p in parts for n in p}):
        keys = np.concatenate([p[name][0] for p in parts if name in p])
        values = np.concatenate([p[name][1] for p in parts if name in p])
        unique, inverse = np.unique(keys, return_inverse=True)
        merged[name] = (unique.astype(np.uint32), np.bincount(inverse, weights=values).astype(np.int64))
    return merged


def counts_nbytes(counts: Counts) -> int:
    return int(sum(k.nbytes + c.nbytes for k, c in counts.values()))


def dense_nbytes(bytes_per_cell: int = 4) -> int:
    """Size of the same six chains as dense row-major matrices (the reference system's layout)."""
    melody, chords = ev.N_MELODY_EVENTS, ev.N_CHORDS
    return len(MODES) * (2 * melody**3 + chords**2) * bytes_per_cell


def save_counts(counts: Counts, path: Path) -> None:
    from safetensors.numpy import save_file

    tensors = {}
    for name, (keys, values) in counts.items():
        tensors[f"{name}.keys"] = np.ascontiguousarray(keys, dtype=np.uint32)
        # int32 halves the file; a chain would need 2**31 sightings of one transition to overflow it.
        tensors[f"{name}.counts"] = np.ascontiguousarray(values, dtype=np.int32)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
        tmp.chmod(0o644)


def load_counts(path: Path) -> Counts:
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    names = sorted({k.rsplit(".", 1)[0] for k in tensors})
    return {n: (tensors[f"{n}.keys"].astype(np.uint32), tensors[f"{n}.counts"].astype(np.int64)) for n in names}
