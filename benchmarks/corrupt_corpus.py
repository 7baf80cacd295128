"""A corrupted corpus end to end: the 409 built-in chorales with 5% broken files of each kind mixed in.

    .venv/bin/python benchmarks/corrupt_corpus.py [--workers N] [--fraction 0.05] [--seed 10]

Kinds (each `fraction` of the clean count, seeded): MIDI cut inside a track, MIDI cut exactly between two
tracks, zero-length `.mid`, random bytes named `.mid`, a WAV and a PNG renamed `.mid`, and MIDI files with
no notes. Runs `encode mmm`, `train markov` and `corpus export` on the clean folder and on the corrupted
one (in process, the same functions the CLI calls), checks that the corrupted run reports exactly the
broken files and gives the same dataset, model and export as the clean one, and prints counts and times.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from orchestrion.testing.fuzz_inputs import PNG_HEADER, track_ends


def wav_bytes(seconds: float = 0.5, rate: int = 16000) -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(np.zeros(int(seconds * rate), np.int16).tobytes())
    return buffer.getvalue()


def build(root: Path, fraction: float, seed: int) -> tuple[Path, Path, dict[str, str]]:
    from orchestrion.core.corpora import corpus_files
    from orchestrion.core.music import save_midi, score_from_notes

    chorales = corpus_files("bach-chorales")
    clean, corrupted = root / "clean", root / "corrupted"
    for folder in (clean, corrupted):
        folder.mkdir(parents=True)
        for path in chorales:
            shutil.copy(path, folder / path.name)
    rng = np.random.default_rng(seed)
    per_kind = max(1, round(fraction * len(chorales)))
    silent = score_from_notes([{"pitch": [], "start": [], "duration": []}], tpq=480)
    bad: dict[str, str] = {}
    for i in range(per_kind):
        source = chorales[int(rng.integers(len(chorales)))].read_bytes()
        ends = track_ends(source)
        broken = {
            "cut-inside": source[: int(rng.integers(15, len(source) - 1))],
            "cut-between": source[: ends[int(rng.integers(len(ends) - 1))]],
            "empty": b"",
            "noise": rng.integers(0, 256, int(rng.integers(100, 5000)), dtype=np.uint8).tobytes(),
            "wav": wav_bytes(),
            "png": PNG_HEADER,
        }
        for kind, data in broken.items():
            name = f"{kind}-{i:03d}.mid"
            if kind == "cut-inside" and data in (source[:e] for e in ends):
                data = data[:-1]  # a cut that happened to land between tracks: move it inside one
            (corrupted / name).write_bytes(data)
            bad[name] = kind
        save_midi(silent, corrupted / f"silent-{i:03d}.mid")
        bad[f"silent-{i:03d}.mid"] = "no notes"
    return clean, corrupted, bad


def timed(fn, *args, **kw):  # noqa: ANN001, ANN201
    started = time.perf_counter()
    result = fn(*args, **kw)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()

    from orchestrion.core.folder_export import export_folder
    from orchestrion.markov.training import train
    from orchestrion.mmm.dataset import PipelineConfig, encode_mmm_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clean, corrupted, bad = build(root, args.fraction, args.seed)
        kinds = sorted(set(bad.values()))
        print(f"corpus: {len(list(clean.iterdir()))} chorales + {len(bad)} broken files "
              f"({len(bad) // len(kinds)} of each of {len(kinds)} kinds: {', '.join(kinds)})")  # fmt: skip
        rows = []
        config = PipelineConfig(workers=args.workers, progress=False)
        for label, folder in (("clean", clean), ("corrupted", corrupted)):
            stats, t_mmm = timed(encode_mmm_dataset, [str(folder)], root / f"mmm-{label}", config)
            model, t_markov = timed(train, [str(folder)], root / f"markov-{label}", workers=args.workers)
            report, t_export = timed(export_folder, folder, root / f"export-{label}")
            rows.append((label, t_mmm, t_markov, t_export, stats, model, report))

        def dataset(label: str) -> dict[str, bytes]:
            base = root / f"mmm-{label}"
            skip = ("run.log", "manifest.jsonl", "stats.json")
            return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*"))
                    if p.is_file() and ".cache" not in p.parts and p.name not in skip}  # fmt: skip

        records = [json.loads(x) for x in (root / "mmm-corrupted" / "manifest.jsonl").read_text().splitlines()]
        clean_bad = {Path(json.loads(x)["path"]).name for x in (root / "mmm-clean" / "manifest.jsonl").read_text().splitlines()
                     if json.loads(x)["status"] != "ok"}  # fmt: skip
        mmm_bad = {Path(r["path"]).name for r in records if r["status"] != "ok"} - clean_bad
        markov_bad = {
            Path(s["path"]).name for s in json.loads((root / "markov-corrupted" / "report.json").read_text())["skipped"]
        }
        export_bad = {b["path"] for b in rows[1][6]["bad"]}
        same_export = {
            p.name: p.read_bytes() for p in (root / "export-clean").iterdir() if p.name != "report.json"
        } == {p.name: p.read_bytes() for p in (root / "export-corrupted").iterdir() if p.name != "report.json"}
        same_model = (root / "markov-clean" / "counts.safetensors").read_bytes() == (
            root / "markov-corrupted" / "counts.safetensors"
        ).read_bytes()
        print(f"encode mmm:    reported exactly the broken files: {mmm_bad == set(bad)}; same dataset: "
              f"{dataset('clean') == dataset('corrupted')}")  # fmt: skip
        print(f"train markov:  reported exactly the broken files: {markov_bad == set(bad)}; same counts: {same_model}")
        print(f"corpus export: reported exactly the broken files: {export_bad == set(bad)}; same files: {same_export}")
        print(
            f"\n{'':10} {'encode mmm':>11} {'train markov':>13} {'corpus export':>14}   (seconds, {args.workers} workers)"
        )
        for label, t_mmm, t_markov, t_export, *_ in rows:
            print(f"{label:10} {t_mmm:11.2f} {t_markov:13.2f} {t_export:14.2f}")


if __name__ == "__main__":
    main()
