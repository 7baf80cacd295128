"""A token dataset with every k-th training tune of another (validation unchanged): the many-passes proxy.

python scripts/folk_subset.py DATA OUT --every 16
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

from orchestrion.core.shards import ShardWriter, TokenDataset, write_dataset_json

ap = argparse.ArgumentParser()
ap.add_argument("data", type=Path)
ap.add_argument("out", type=Path)
ap.add_argument("--every", type=int, default=16)
a = ap.parse_args()
ds = TokenDataset(a.data)
a.out.mkdir(parents=True, exist_ok=True)
for name in ("tokenizer.json", "novelty.npz"):
    shutil.copy(a.data / name, a.out / name)
for f in ("shards/validation-00000.bin", "shards/validation-00000.idx.npy", "text/validation-00000.txt"):
    (a.out / f).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(a.data / f, a.out / f)
lines = (a.data / "text/train-00000.txt").read_text(encoding="utf-8").splitlines()
split = ds.split("train")
w = ShardWriter(a.out, "train", 0)
for i in range(0, len(split), a.every):
    w.add(np.asarray(split[i]), lines[i])
info = w.close()
meta = json.loads((a.data / "dataset.json").read_text())
meta["splits"]["train"] = {"shards": [info["name"]], "sequences": info["sequences"], "tokens": info["tokens"]}
meta["subset"] = f"every {a.every}th train tune of {a.data}"
for k in ("format", "version"):
    meta.pop(k, None)
write_dataset_json(a.out, meta)
print(a.out, info)
