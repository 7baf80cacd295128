"""What shipping a trained GPT run as a built-in model takes, shared by scripts/ship_chorales.py and
scripts/folk_ship.py: export the run with its model card, install the files, re-pin the golden piece.

    exported = export_with_card(run, model_dir, preset, title, sections)   # likelihood, baselines, card
    install(model_dir, out)                                                # MODEL_FILES into the package
    repin(golden, ["generate", "builtin:NAME", ...])                       # tests/golden/... composed again
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 25 * 2**20  # a built-in model's weights at most


@dataclass
class Exported:
    card: dict
    composer: object
    likelihood: dict
    baselines: dict
    size: int  # bytes of model.safetensors


def export_with_card(
    run: Path,
    model_dir: Path,
    preset: str,
    title: str,
    sections: Callable[[dict, dict, dict, list[dict]], str],
    extra: dict | None = None,
) -> Exported:
    """`export_checkpoint` of a run (a copy of it: the trainer rewrites its checkpoint), scored on 32 fixed
    validation windows beside the token unigram and bigram, with model_card.json and model_card.md (its
    heading `title`, then `sections(card, likelihood, baselines, metrics records)`; `extra` joins the card).
    Exits when the weights
    pass `MAX_BYTES`."""
    from orchestrion.evaluation.baselines import token_baselines
    from orchestrion.gpt.likelihood import gpt_likelihood
    from orchestrion.gpt.training import _card_markdown, export_checkpoint
    from orchestrion.registry import load_composer

    card = export_checkpoint(run, model_dir, preset_name=preset) | (extra or {})
    composer = load_composer(model_dir)
    context = int(composer.model.config.n_positions)
    likelihood = gpt_likelihood(composer, card["data"], windows=32, context=context)
    baselines = token_baselines(card["data"], likelihood["window_starts"], likelihood["window_length"])
    card["likelihood"] = {k: v for k, v in likelihood.items() if k != "window_starts"}
    card["baselines"] = baselines
    records = [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]
    (model_dir / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    text = _card_markdown(card).replace("# GPT-2 composer", f"# {title}: GPT-2 composer", 1)
    (model_dir / "model_card.md").write_text(text + sections(card, likelihood, baselines, records))
    size = (model_dir / "model.safetensors").stat().st_size
    if size > MAX_BYTES:
        sys.exit(f"the weights are {size / 2**20:.1f} MB, over the 25 MB a built-in model may have")
    return Exported(card, composer, likelihood, baselines, size)


def install(model_dir: Path, out: Path) -> None:
    """The model's files (`MODEL_FILES`) replace those in `out`, with the files' own modes (not 0600)."""
    import shutil

    from orchestrion.gpt.model import MODEL_FILES

    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copyfile(model_dir / name, out / name)
    print(f"shipped to {out}")


def repin(golden: Path, arguments: list[str]) -> None:
    """Compose the golden piece again with the installed model (the command of tests/golden/README.md)."""
    command = [str(Path(sys.executable).with_name("orchestrion")), *arguments, "--out", str(golden)]
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"re-pinned {golden.relative_to(ROOT)}")
