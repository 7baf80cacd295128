"""Ship the latest checkpoint of the chorale run as `builtin:chorales` (issue 18), in one command.

    .venv/bin/python scripts/ship_chorales.py [--run /work/runs/chorales-pos/run] [--repin] [--dry-run]

1. `orchestrion.gpt.training.export_checkpoint`: the run's checkpoint/ (copied first: the trainer rewrites it
   every few hundred steps) rebuilt as a `chorale`-preset model with its tokenizer (plus the bar-position
   tokens), config.json with what the data gives (line-up, DENSITY edges), metrics.jsonl and the loss curve
   up to the checkpoint's step;
2. the model card: the learning curve (validation loss by step), the likelihood on 32 fixed validation
   windows of 512 tokens beside the unigram and bigram baselines on the same windows (what `orchestrion eval`
   prints), and the commands that made the data and trained the model;
3. the files (`orchestrion.gpt.model.MODEL_FILES`) replace those of src/orchestrion/builtin/chorales, after a
   check that the weights stay under 25 MB and that the model composes 4 bars;
4. with `--repin`, the golden piece is composed again (the command of tests/golden/README.md).

Run the quality benchmark after it: `.venv/bin/python benchmarks/quality.py --models chorales`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from shipping import ROOT, export_with_card, install, repin

BUILTIN = ROOT / "src/orchestrion/builtin/chorales"
RUN = Path("/work/runs/chorales-pos/run")
ENCODE = "orchestrion encode mmm builtin:bach-chorales --out /work/data/chorales-mmm --bars 4 --hop 2 --transpose -5:6"


def card_sections(card: dict, likelihood: dict, baselines: dict, records: list[dict]) -> str:
    """The model card's learning curve, likelihood against its baselines, and how to make it again."""
    val = [r for r in records if r.get("val_loss") is not None]
    every = max(1, len(val) // 12)
    rows = [f"| {r['step']} | {r['val_loss']:.4f} | {r.get('train_loss', float('nan')):.4f} |" for r in val[::every]]
    if val and val[-1] is not val[::every][-1]:
        rows.append(
            f"| {val[-1]['step']} | {val[-1]['val_loss']:.4f} | {val[-1].get('train_loss', float('nan')):.4f} |"
        )
    bits = likelihood["bits_per_token"]
    uni, bi = baselines["unigram"]["bits_per_token"], baselines["bigram"]["bits_per_token"]
    return "\n".join(
        [
            "",
            "## The model",
            "",
            f"`builtin:chorales` is the `chorale` preset (the `small` GPT-2 reading mmm's bar positions as "
            f"token_type_ids, `orchestrion.mmm.timing`), step {card['steps']} of a {card['of_steps']}-step run "
            "on 4-bar windows of the 364 four-part chorales in 4/4, in 12 transpositions.",
            "",
            "## Learning curve",
            "",
            "![loss curve](loss_curve.png)",
            "",
            "| step | validation loss (nats/token) | train loss |",
            "|---|---|---|",
            *rows,
            "",
            "## Likelihood and baselines",
            "",
            f"On {likelihood['windows']} fixed validation windows of {likelihood['window_length']} tokens "
            f"({likelihood['tokens']:,} tokens; the windows `orchestrion eval` scores):",
            "",
            "| model | bits/token | loss (nats/token) |",
            "|---|---|---|",
            f"| this model | {bits:.3f} | {likelihood['loss']:.4f} |",
            f"| token bigram (Witten-Bell, fitted on train) | {bi:.3f} | {bi * 0.693147:.4f} |",
            f"| token unigram | {uni:.3f} | {uni * 0.693147:.4f} |",
            "",
            f"accuracy@1 {likelihood['accuracy@1']:.3f}, accuracy@5 {likelihood['accuracy@5']:.3f}.",
            "",
            "## Made with",
            "",
            "The first 500 steps were run by the experiment that measured the bar-position feature "
            "(/work/runs/chorales-pos/train_pos.py: the same model, data, data order and seed, on a 24,000-step "
            "schedule); `orchestrion train gpt` resumed from its checkpoint:",
            "",
            "```bash",
            f"{ENCODE}",
            *(f"OMP_NUM_THREADS=1 {c}" for c in dict.fromkeys(card.get("commands") or [])),
            "python scripts/ship_chorales.py --repin      # this card, at the step above",
            "```",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=RUN, help="the `orchestrion train gpt --preset chorale` run")
    parser.add_argument("--out", type=Path, default=BUILTIN)
    parser.add_argument("--repin", action="store_true", help="compose tests/golden/chorales.mid again")
    parser.add_argument("--dry-run", action="store_true", help="export and measure into a temporary folder only")
    args = parser.parse_args()

    from orchestrion.requests import ComposeRequest

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        for name in ("commands.jsonl", "data_fingerprint.json", "metrics.jsonl"):
            shutil.copy2(args.run / name, run / name)
        shutil.copytree(args.run / "checkpoint", run / "checkpoint")
        model_dir = Path(tmp) / "model"
        made = export_with_card(run, model_dir, "chorale", "builtin:chorales", card_sections)
        piece = made.composer.compose(ComposeRequest(model=str(model_dir), bars=4, seed=0))
        assert piece.report.get("decode_repairs") == [], piece.report
        likelihood, bigram = made.likelihood, made.baselines["bigram"]["bits_per_token"]
        print(
            f"step {made.card['steps']}: validation loss {likelihood['loss']:.4f} nats/token "
            f"({likelihood['bits_per_token']:.3f} bits; bigram {bigram:.3f}), {made.size / 2**20:.1f} MB"
        )
        if args.dry_run:
            return
        install(model_dir, args.out)
    if args.repin:
        repin(ROOT / "tests/golden/chorales.mid", ["generate", "builtin:chorales", "--bars", "2", "--seed", "11"])


if __name__ == "__main__":
    main()
