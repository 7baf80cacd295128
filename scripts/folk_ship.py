"""Ship a checkpoint of the folk-vocabulary run as `builtin:folk` (issue 17), in one command.

    .venv/bin/python scripts/folk_ship.py [--run /work/runs/folk-long] [--preset folk-long] [--best]
                                          [--repin] [--dry-run]

1. The run's checkpoint/ (or, with `--best`, the best validation weights of best/) is copied first (the
   trainer rewrites both while it runs) and rebuilt by `orchestrion.gpt.training.export_checkpoint` as a
   model of the preset with the dataset's tokenizer, config.json with what the data gives (meters, keys),
   metrics.jsonl and the loss curve up to its step;
2. the model card: the learning curve, the likelihood on 32 fixed validation windows (bits per token and per
   character) beside the token unigram and bigram fitted on the same data, and the commands;
3. a check that the weights stay under 25 MB and that a reel composes, abc2midi-clean, through the body
   grammar (two strains, the tonic at the end); then the files (`orchestrion.gpt.model.MODEL_FILES`) replace
   those of src/orchestrion/builtin/folk;
4. with `--repin`, the golden tune is composed again (the command of tests/golden/README.md).

Ship only when the quality benchmark improves: run it on the `--dry-run` folder first (the folder is kept
with `--keep DIR`), `.venv/bin/python benchmarks/folk.py --model DIR --novelty DATA/novelty.npz`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from shipping import ROOT, export_with_card, install, repin

BUILTIN = ROOT / "src/orchestrion/builtin/folk"
RUN = Path("/work/runs/folk-long")
ENCODE = "orchestrion encode abc builtin:folk-abc --vocab folk --out /work/data/folk-abc-folk --workers 1"


def copy_run(run: Path, into: Path, best: bool) -> None:
    """The files `export_checkpoint` reads, copied; with `best`, best/'s weights stand in for the checkpoint's."""
    into.mkdir(parents=True)
    for name in ("commands.jsonl", "data_fingerprint.json", "metrics.jsonl"):
        shutil.copy2(run / name, into / name)
    shutil.copytree(run / "checkpoint", into / "checkpoint", ignore=shutil.ignore_patterns("optimizer.pt"))
    if best:
        state = json.loads((run / "best" / "state.json").read_text())
        shutil.copy2(run / "best" / "model.safetensors", into / "checkpoint" / "model.safetensors")
        train_state = json.loads((into / "checkpoint" / "train_state.json").read_text())
        train_state.update(step=state["step"], val_loss=state["val_loss"], best_val_loss=state["val_loss"])
        (into / "checkpoint" / "train_state.json").write_text(json.dumps(train_state) + "\n")


def card_sections(card: dict, likelihood: dict, baselines: dict, records: list[dict]) -> str:
    val = [r for r in records if r.get("val_loss") is not None]
    every = max(1, len(val) // 12)
    rows = [f"| {r['step']} | {r['val_loss']:.4f} |" for r in val[::every]]
    uni, bi = baselines["unigram"], baselines["bigram"]
    return "\n".join(
        [
            "",
            "## Learning curve",
            "",
            "![loss curve](loss_curve.png)",
            "",
            "| step | validation loss (nats/token) |",
            "|---|---|",
            *rows,
            "",
            "## Likelihood and baselines",
            "",
            f"On {likelihood['windows']} fixed validation windows of {likelihood['window_length']} tokens:",
            "",
            "| model | bits/token | bits/character |",
            "|---|---|---|",
            f"| this model | {likelihood['bits_per_token']:.3f} | {likelihood['bits_per_character']:.3f} |",
            f"| token bigram (Witten-Bell, fitted on train) | {bi['bits_per_token']:.3f} | "
            f"{bi.get('bits_per_character', float('nan')):.3f} |",
            f"| token unigram | {uni['bits_per_token']:.3f} | {uni.get('bits_per_character', float('nan')):.3f} |",
            "",
            "## Made with",
            "",
            "```bash",
            ENCODE,
            *(f"OMP_NUM_THREADS=1 {c}" for c in dict.fromkeys(card.get("commands") or [])),
            f"python scripts/folk_ship.py --run RUN --preset {card['preset']}{' --best' if card.get('best') else ''}",
            "```",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=RUN, help="the `orchestrion train gpt` run of the folk model")
    parser.add_argument("--preset", default="folk-long", help="the run's preset")
    parser.add_argument("--best", action="store_true", help="the best validation weights (best/), not the last")
    parser.add_argument("--out", type=Path, default=BUILTIN)
    parser.add_argument("--repin", action="store_true", help="compose tests/golden/folk.abc again")
    parser.add_argument("--dry-run", action="store_true", help="export and check into a temporary folder only")
    parser.add_argument("--keep", type=Path, help="also copy the exported model folder here (to benchmark it)")
    args = parser.parse_args()

    from orchestrion.core.abcmidi import validate
    from orchestrion.evaluation import abc_metrics
    from orchestrion.requests import ComposeRequest

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        copy_run(args.run, run, args.best)
        model_dir = Path(tmp) / "model"

        made = export_with_card(run, model_dir, args.preset, "builtin:folk", card_sections, {"best": args.best})
        tune = made.composer.compose(ComposeRequest(model=str(model_dir), rhythm="reel", seed=0)).abc or ""
        clean = validate(tune).ok and abc_metrics.bar_length_ok(tune, source="abc2midi")
        if not (clean and abc_metrics.final_tonic(tune) == 1.0 and abc_metrics.strains(tune) == 2):
            sys.exit(f"the exported model's reel breaks the decoding's promises:\n{tune}")
        print(
            f"step {made.card['steps']}: {made.likelihood['bits_per_token']:.3f} bits/token, "
            f"{made.likelihood['bits_per_character']:.3f} bits/char (token bigram "
            f"{made.baselines['bigram']['bits_per_token']:.3f} bits/token), {made.size / 2**20:.1f} MB"
        )
        if args.keep:
            shutil.copytree(model_dir, args.keep, dirs_exist_ok=True)
            print(f"kept in {args.keep}")
        if args.dry_run:
            return
        install(model_dir, args.out)
    if args.repin:
        repin(ROOT / "tests/golden/folk.abc", ["generate", "builtin:folk", "--rhythm", "reel", "--seed", "11"])


if __name__ == "__main__":
    main()
