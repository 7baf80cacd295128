"""A loadable model directory from a GPT run that is still training (its last checkpoint, or best/).

    python scripts/folk_snapshot.py RUN_DIR DATA --preset NAME --out MODEL_DIR [--best]

MODEL_DIR then works with `orchestrion generate MODEL_DIR ...` and `GPT2LMHeadModel.from_pretrained`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def snapshot(run: Path, data: Path, preset_name: str, out: Path, best: bool = False) -> Path:
    from safetensors.torch import load_model
    from tokenizers import Tokenizer

    from orchestrion.core.shards import TokenDataset
    from orchestrion.core.training import BEST, checkpoint_dir
    from orchestrion.gpt.model import build_model, preset
    from orchestrion.registry import encoding_for

    ds = TokenDataset(data)
    tok = Tokenizer.from_file(str(ds.tokenizer_path))
    model = build_model(preset(preset_name), tok, ds.meta, ds.encoding)
    source = run / BEST if best else checkpoint_dir(run)
    load_model(model, str(source / "model.safetensors"))
    state = json.loads((source / ("state.json" if best else "train_state.json")).read_text())
    for name, value in encoding_for(ds.encoding).data_defaults(ds, tok).items():
        setattr(model.config, name, value)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    tok.save(str(out / "tokenizer.json"))
    card = {"run": str(run), "source": str(source), "step": state.get("step"), "val_loss": state.get("val_loss")}
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    if (run / "metrics.jsonl").is_file():
        shutil.copy(run / "metrics.jsonl", out / "metrics.jsonl")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("data", type=Path)
    ap.add_argument("--preset", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--best", action="store_true", help="the best validation weights (best/), not the last checkpoint")
    a = ap.parse_args()
    print(snapshot(a.run, a.data, a.preset, a.out, a.best))
