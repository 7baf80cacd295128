"""The evaluation report: report.json with every figure, and index.html with tables, plots and players.

Files written next to index.html: `loss-<model>.png` (from the model dir's metrics.jsonl),
`hist-<model>.png` (real vs generated, one panel per metric), `roll-<model>-<seed>.png` (piano rolls or
spectrograms of a few samples) and `sample-<model>-<seed>.wav` (rendered with FluidSynth, or the model's
own audio). Every link in the page is relative, so the directory can be moved or served as it is.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import numpy as np

from orchestrion.core.files import write_atomic
from orchestrion.core.render import render_pianoroll, render_spectrogram, render_wav, write_wav
from orchestrion.evaluation.metrics import DURATION_LABELS, SCALAR_METRICS, duration_histogram

SUMMARY_ROWS = (
    ("likelihood", "loss"),
    ("likelihood", "perplexity"),
    ("likelihood", "bits_per_token"),
    ("likelihood", "bits_per_character"),
    ("likelihood", "bits_per_byte"),
    ("likelihood", "bits_per_event"),
    ("likelihood", "accuracy@1"),
    ("likelihood", "accuracy@3"),
    ("likelihood", "accuracy@5"),
    ("likelihood", "accuracy@10"),
    ("likelihood", "accuracy"),
    ("", "validity_rate"),
    ("", "repetition_trap_rate"),
    ("novelty", "copied_share"),
)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-") or "model"


def _fmt(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return html.escape(str(value))


def _loss_curve(model: dict, out: Path) -> Path | None:
    path = Path(model["model_dir"]) / "metrics.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r and "step" in r]
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r and "step" in r]
    if not train and not val:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, points in (("train", train), ("validation", val)):
        if points:
            ax.plot(*zip(*points, strict=True), label=label, marker="o" if label == "validation" else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(f"loss curve: {model['model']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _histograms(model: dict, generated: list, real: list, out: Path) -> Path | None:
    if not generated or not real:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(SCALAR_METRICS)
    cols = 4
    rows = math.ceil((len(names) + 1) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows))
    axes = axes.ravel()
    for ax, name in zip(axes, names, strict=False):
        g = [SCALAR_METRICS[name](s) for s in generated]
        r = [SCALAR_METRICS[name](s) for s in real]
        lo, hi = min(g + r), max(g + r)
        edges = np.linspace(lo, hi if hi > lo else lo + 1, 13)
        ax.hist(r, bins=edges, alpha=0.55, label="real", density=True)
        ax.hist(g, bins=edges, alpha=0.55, label="generated", density=True)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    ax = axes[len(names)]
    x = np.arange(len(DURATION_LABELS))
    ax.bar(x - 0.2, np.mean([duration_histogram(s) for s in real], axis=0), 0.4, label="real")
    ax.bar(x + 0.2, np.mean([duration_histogram(s) for s in generated], axis=0), 0.4, label="generated")
    ax.set_xticks(x, DURATION_LABELS, rotation=60, fontsize=6)
    ax.set_title("duration_histogram", fontsize=9)
    ax.legend(fontsize=7)
    for ax in axes[len(names) + 1 :]:
        ax.axis("off")
    fig.suptitle(f"real vs generated: {model['model']}")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _media(model: dict, report_dir: Path, count: int) -> list[dict]:
    """WAV and picture for the first `count` samples; a failure is noted in the page and the rest go on."""
    slug = _slug(model["model"])
    media = []
    for sample, piece in list(zip(model["samples"], model["_pieces"], strict=True))[:count]:
        entry = {"seed": sample["seed"]}
        wav = report_dir / f"sample-{slug}-{sample['seed']}.wav"
        png = report_dir / f"roll-{slug}-{sample['seed']}.png"
        try:
            if piece.audio is not None:
                write_wav(wav, piece.audio, piece.sample_rate)
                render_spectrogram(piece.audio, png, sample_rate=piece.sample_rate)
            elif piece.score is not None:
                render_wav(piece.score, wav, sample_rate=22050, mono=True)
                render_pianoroll(piece.score, png, title=f"{model['model']} seed {sample['seed']}")
            else:
                entry["error"] = "no notes"
        except Exception as exc:  # one unrenderable sample must not lose the report
            entry["error"] = str(exc)
        if wav.is_file():
            entry["wav"] = wav.name
        if png.is_file():
            entry["image"] = png.name
        if piece.abc is not None:
            entry["abc"] = piece.abc
        media.append(entry)
    return media


def _public(model: dict) -> dict:
    return {k: v for k, v in model.items() if not k.startswith("_")}


def write_report(report_dir: Path, models: list[dict], held, config, command: str) -> dict:
    report_dir = Path(report_dir)
    for model in models:
        slug = _slug(model["model"])
        files: dict = {}
        loss = _loss_curve(model, report_dir / f"loss-{slug}.png")
        if loss is not None:
            files["loss_curve"] = loss.name
        generated = [
            p.score
            for p, s in zip(model["_pieces"], model["samples"], strict=True)
            if p.score is not None and s["valid"]
        ]
        hist = _histograms(model, generated, held.scores, report_dir / f"hist-{slug}.png")
        if hist is not None:
            files["histograms"] = hist.name
        files["samples"] = _media(model, report_dir, config.rendered)
        model["files"] = files
    first = _public(models[0])
    report = {
        "command": command,
        "data": held.source,
        "real_pieces": len(held.scores) or len(held.audio),
        "data_problems": held.problems,
        "config": {k: v for k, v in config.__dict__.items() if k != "extra"},
        **{k: v for k, v in first.items() if k != "statistics"},
        **(first["statistics"] if "skipped" not in first["statistics"] else {"statistics": first["statistics"]}),
        "models": [_public(m) for m in models],
    }
    text = json.dumps(report, indent=2, default=_json_default)
    write_atomic(report_dir / "report.json", text + "\n")
    write_atomic(report_dir / "index.html", _html(models, held, command))
    return json.loads(text)


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _html(models: list[dict], held, command: str) -> str:
    head = "".join(f"<th>{html.escape(m['model'])}</th>" for m in models)
    kinds = "".join(f"<td>{_fmt(m['kind'])}</td>" for m in models)
    rows = [f"<tr><td>kind</td>{kinds}</tr>"]
    for group, name in SUMMARY_ROWS:
        values = [(m.get(group) or {}).get(name) if group else m.get(name) for m in models]
        if any(v is not None for v in values):
            rows.append(f"<tr><td>{html.escape(name)}</td>{''.join(f'<td>{_fmt(v)}</td>' for v in values)}</tr>")
    for m in models:
        skipped = m["likelihood"].get("skipped")
        if skipped:
            rows.append(
                f"<tr><td>likelihood ({html.escape(m['model'])})</td><td colspan={len(models)}>"
                f"{html.escape(skipped)}</td></tr>"
            )
    summary = f"<table><tr><th>figure</th>{head}</tr>{''.join(rows)}</table>"

    stat_head = "".join(f"<th>{html.escape(m['model'])} generated</th><th>distance</th>" for m in models)
    stat_rows = []
    for name in [*SCALAR_METRICS, "duration_histogram"]:
        real = next((m["statistics"].get(name, {}) for m in models if name in m["statistics"]), None)
        if real is None:
            continue
        real_text = (
            "–" if name == "duration_histogram" else f"{_fmt(real.get('real_mean'))} ± {_fmt(real.get('real_std'))}"
        )
        cells = ""
        for m in models:
            s = m["statistics"].get(name)
            if s is None:
                cells += "<td>–</td><td>–</td>"
            elif name == "duration_histogram":
                cells += f"<td>–</td><td>{_fmt(s['distance'])}</td>"
            else:
                cells += (
                    f"<td>{_fmt(s['generated_mean'])} ± {_fmt(s['generated_std'])}</td><td>{_fmt(s['distance'])}</td>"
                )
        stat_rows.append(f"<tr><td>{name}</td><td>{real_text}</td>{cells}</tr>")
    stats = (
        (
            f"<table><tr><th>metric</th><th>real ({len(held.scores)} pieces)</th>{stat_head}</tr>"
            f"{''.join(stat_rows)}</table>"
        )
        if stat_rows
        else "<p>No musical statistics (audio models).</p>"
    )

    sections = []
    for m in models:
        files = m["files"]
        parts = [f"<h2>{html.escape(m['model'])} ({html.escape(m['kind'])})</h2>"]
        if "loss_curve" in files:
            parts.append(f"<h3>Loss curve</h3><img src='{files['loss_curve']}' alt='loss curve'>")
        if "histograms" in files:
            parts.append(f"<h3>Real vs generated</h3><img src='{files['histograms']}' alt='histograms'>")
        parts.append("<h3>Samples</h3><div class='samples'>")
        for s in files["samples"]:
            block = f"<figure><figcaption>seed {s['seed']}</figcaption>"
            if "image" in s:
                block += f"<img src='{s['image']}' alt='sample {s['seed']}'>"
            if "wav" in s:
                block += f"<audio controls preload='none' src='{s['wav']}'></audio>"
            if "abc" in s:
                block += f"<pre>{html.escape(s['abc'][:1500])}</pre>"
            if "error" in s:
                block += f"<p class='err'>{html.escape(s['error'])}</p>"
            parts.append(block + "</figure>")
        parts.append("</div>")
        flagged = [s for s in m["samples"] if not s["valid"] or s.get("copied")]
        if flagged:
            items = "".join(
                f"<li>seed {s['seed']}: {'invalid ' + html.escape(s['why']) if not s['valid'] else ''}"
                f"{' flagged as a copy' if s.get('copied') else ''}</li>"
                for s in flagged
            )
            parts.append(f"<h3>Flagged samples</h3><ul>{items}</ul>")
        sections.append("".join(parts))
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in held.problems[:50])
    verdicts = _verdicts(models)
    quality = _quality_table(models)
    baselines = _baseline_rows(models)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>orchestrion evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.samples {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.verdict {{ font-size: 1.2em; padding: 0.5em 1em; background: #f4f4ff; border-left: 4px solid #557; }}
.warn {{ padding: 0.5em 1em; background: #fff4e0; border-left: 4px solid #c80; }}
td.within {{ background: #e6f4e6; }} td.above, td.below {{ background: #fbe4e4; }}
figure {{ margin: 0; max-width: 440px; }} figure img {{ max-width: 440px; }}
pre {{ background: #f6f6f6; padding: 0.5em; max-height: 12em; overflow: auto; }}
code {{ background: #f0f0f0; padding: 2px 4px; }} .err {{ color: #b00; }}
</style></head><body>
<h1>orchestrion evaluation</h1>
<p>Command: <code>{html.escape(command)}</code></p>
<p>Held-out data: <code>{html.escape(held.source)}</code> ({len(held.scores) or len(held.audio)} real pieces)</p>
{verdicts}
<h2>Music quality (generated against real pieces of the same length)</h2>{quality}
<h2>Summary</h2>{summary}{baselines}
<h2>Musical statistics (mean ± std; distance 0 = same distribution, 1 = disjoint)</h2>{stats}
{"".join(sections)}
{f"<h2>Data problems</h2><ul>{problems}</ul>" if problems else ""}
</body></html>
"""


def _verdicts(models: list[dict]) -> str:
    """The plain verdict on top: per model, on how many measures it is like the data, and any warning."""
    parts = []
    for m in models:
        verdict = (m.get("verdict") or {}).get("text")
        if verdict:
            parts.append(
                f"<p class='verdict' role='status'><b>{html.escape(m['model'])}</b>: {html.escape(verdict)}</p>"
            )
        parts += [f"<p class='warn' role='alert'>{html.escape(w)}</p>" for w in m.get("warnings", [])]
    return "".join(parts)


def _quality_table(models: list[dict]) -> str:
    names = list(dict.fromkeys(name for m in models for name in m.get("quality", {})))
    if not names:
        return "<p>No quality measures apply.</p>"
    head = "".join(f"<th>{html.escape(m['model'])}</th><th>verdict</th>" for m in models)
    rows = []
    for name in names:
        real = next(m["quality"][name]["real"] for m in models if name in m.get("quality", {}))
        cells = ""
        for m in models:
            row = m.get("quality", {}).get(name)
            if row is None:
                cells += "<td>–</td><td>–</td>"
            else:
                cells += f"<td>{_fmt(row['generated'])}</td><td class='{row['verdict']}'>{row['verdict']}</td>"
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{_fmt(real['mean'])} ± {_fmt(real['std'])}</td>{cells}</tr>")
    return f"<table><tr><th>measure</th><th>real (mean ± std)</th>{head}</tr>{''.join(rows)}</table>"


def _baseline_rows(models: list[dict]) -> str:
    """Each model's likelihood next to the baselines on the same data (a model must beat them)."""
    rows = []
    for m in models:
        baseline = (m.get("likelihood") or {}).get("baseline") or {}
        for name, figures in baseline.items():
            if isinstance(figures, dict):
                for unit, value in figures.items():
                    model_value = m["likelihood"].get(unit)
                    rows.append(f"<tr><td>{html.escape(m['model'])}</td><td>{html.escape(name)}</td>"
                                f"<td>{html.escape(unit)}</td><td>{_fmt(value)}</td><td>{_fmt(model_value)}</td></tr>")  # fmt: skip
    if not rows:
        return ""
    return ("<h3>Likelihood against baselines (lower bits are better)</h3><table><tr><th>model</th><th>baseline</th>"
            f"<th>unit</th><th>baseline</th><th>model</th></tr>{''.join(rows)}</table>")  # fmt: skip
