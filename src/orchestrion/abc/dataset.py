"""`orchestrion encode abc`: ABC collections -> cleaned spaceless tunes -> BPE token dataset.

Stages, each reported:

1. read and split the inputs into tunes; junk (binary data, absurdly long tunes) becomes a per-tune error;
2. clean every tune with the named steps of `abc.text` (per-step counts), make it spaceless;
3. compile the cleaned tune and its spaceless form with abc2midi on the engine's workers
   (`orchestrion.core.engine`: local processes or Ray), each call under a time limit: the validity table
   (clean / warnings / errors) and the spaceless equivalence (same notes with and without spaces). Results
   are kept in the engine's store `cache/` by tune hash, so a rerun or an interrupted run only compiles what
   it has not seen;
4. keep the tunes `--keep` allows, drop exact duplicates, split 19:1 by the hash of the tune text;
5. train byte-level BPE tokenizers (256 ... 4096) on the train split, report tokens per tune, save the
   default as tokenizer.json; write the shards (`core.shards`), stats.json, report.json and novelty.npz.

Each token sequence is `<s>` + the spaceless tune (real newlines) + `</s>`; text/<split>-<k>.txt holds
the same tunes one per line, newlines written as "¶" (`abc.text.NEWLINE_MARK`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrion.abc import text as abccodec
from orchestrion.abc.text import spaceless
from orchestrion.core.abcmidi import midi_to_abc
from orchestrion.core.engine import Failed, Parallel, Store
from orchestrion.core.files import write_atomic
from orchestrion.errors import BadInput, InvalidRequest, OrchestrionError

KEEP = {"clean": ("clean",), "warnings": ("clean", "warnings"), "all": ("clean", "warnings", "errors")}
VOCAB_SIZES = (256, 512, 1024, 2048, 4096)
DEFAULT_VOCAB = 2048
SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>"}
MAX_FILE_BYTES = 200_000_000
CACHE_VERSION = 1  # of check_tune's results; part of every cache key
CHUNK = 16  # tunes per engine task: two abc2midi runs each, ~10 ms


@dataclass
class TuneRecord:
    id: str
    source: str
    abc: str = ""  # cleaned, with spaces
    text: str = ""  # cleaned, spaceless: what the model sees
    error: str | None = None  # a problem found before compiling (junk, too long)
    steps: list[str] = field(default_factory=list)
    result: dict | None = None  # the validity worker's answer


# ------------------------------------------------------------------------------------------ reading


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # older ABC collections are Latin-1
        return raw.decode("latin-1")


def read_inputs(inputs: list[str]) -> tuple[list[dict], list[dict]]:
    """Raw tune records {"id", "source", "abc"} from files, folders and builtin:folk-abc, plus file errors.

    MIDI files (for corpora that exist only as MIDI) are decompiled with midi2abc, one record per file.
    """
    from orchestrion.core import corpora

    records: list[dict] = []
    errors: list[dict] = []
    paths: list[str] = []
    for item in inputs:
        if item == "builtin:folk-abc":
            records.extend({"id": r["id"], "source": r["source"], "abc": r["abc"]} for r in corpora.folk_tunes())
        else:
            paths.append(item)
    for path in corpora.resolve_inputs(paths, (".abc", ".mid", ".midi")) if paths else []:
        if path.suffix.lower() in (".mid", ".midi"):
            records_or_error = _from_midi(path)
            (records if isinstance(records_or_error, dict) else errors).append(
                records_or_error if isinstance(records_or_error, dict) else {"id": str(path), "error": records_or_error}
            )
            continue
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise BadInput(f"file is {size / 1e6:.0f} MB, more than any ABC collection", path)
            text = _decode(path.read_bytes())
            if abccodec.is_binary(text):
                raise BadInput("binary data, not ABC text", path)
        except (OSError, BadInput) as e:
            errors.append({"id": str(path), "error": str(e)})
            continue
        tunes = abccodec.split_tunes(text)
        if not tunes:
            errors.append({"id": str(path), "error": f"{path}: no tune (no X: or K: field)"})
        for k, tune in enumerate(tunes, start=1):
            records.append({"id": f"{path.stem}-{k:04d}", "source": str(path), "abc": tune.abc})
    return records, errors


def _from_midi(path: Path) -> dict | str:
    """A MIDI-only piece as one ABC record (midi2abc with the reference filters), or the reason it failed."""
    from orchestrion.errors import OrchestrionError

    try:
        text = midi_to_training_abc(path)
    except OrchestrionError as e:
        return str(e)
    if text is None:
        return f"{path}: midi2abc gave under 150 characters (too short to learn from)"
    return {"id": path.stem, "source": str(path), "abc": text}


def midi_to_training_abc(
    midi_path: Path, *, timeout: float = 30, max_chars: int = 300_000, min_chars: int = 150
) -> str | None:
    """MIDI -> spaceless ABC for training, with the reference pipeline's filters; None when too short.

    Drops lyric (w:), comment, warning and copyright lines and midi2abc's "T: from <path>" title (it
    would leak file names into the model), removes spaces from the music, truncates pathological output
    at `max_chars` and rejects results under `min_chars`.
    """
    raw = midi_to_abc(midi_path, timeout=timeout, max_chars=max_chars * 2)
    kept = []
    for line in raw.splitlines():
        lower = line.lower()
        if line.startswith(("w:", "W:", "T: from", "T:from")) or "copyright" in lower:
            continue
        if line.startswith("%") and not line.startswith("%%"):
            continue
        if "warning" in lower and not line.startswith("%%"):
            continue
        kept.append(line.split(" %")[0].rstrip() if line.startswith("K:") else line)
    text = spaceless("\n".join(kept) + "\n")[:max_chars]
    return text if len(text) >= min_chars else None


def clean_records(raw: list[dict], steps: list[str] | None) -> tuple[list[TuneRecord], Counter]:
    """Clean every tune; per-step counts of tunes each step changed."""
    counts: Counter = Counter()
    out = []
    for r in raw:
        rec = TuneRecord(id=r["id"], source=r["source"])
        text = r["abc"]
        if len(text) > abccodec.MAX_TUNE_CHARS:
            rec.error = f"tune is {len(text):,} characters (limit {abccodec.MAX_TUNE_CHARS:,}): not a tune"
        elif abccodec.is_binary(text):
            rec.error = "binary data, not ABC text"
        else:
            try:
                result = abccodec.clean(text, steps)
            except OrchestrionError as e:  # the optional abc2abc step runs an external tool
                rec.error = f"cleaning failed: {e}"
                out.append(rec)
                continue
            counts.update(result.changed)
            rec.abc, rec.steps = result.abc, result.changed
            rec.text = abccodec.spaceless(result.abc)
            if not rec.text.strip() or not any(line.startswith("K:") for line in rec.text.splitlines()):
                rec.error = "no K: field (a tune needs a key line before its music)"
        out.append(rec)
    return out, counts


# ------------------------------------------------------------------------------------------ validity


def _key(abc: str, text: str) -> str:
    return hashlib.sha1(f"{CACHE_VERSION}\0{abc}\0{text}".encode()).hexdigest()


def _note_digest(notes: list | None) -> str | None:
    return None if notes is None else hashlib.sha1(json.dumps(notes).encode()).hexdigest()


def _failed_check(reason: str) -> dict:
    return {
        "status": "errors",
        "messages": [f"Error: {reason}"],
        "spaced_status": "errors",
        "same_notes": None,
        "diff": None,
        "events": [],
    }


def check_tune(tune: tuple[str, str], timeout: float) -> dict:
    """Engine worker: compile the cleaned tune with its spaces and spaceless; validity, equivalence and melody
    events."""
    from orchestrion.core.abcmidi import compile_notes
    from orchestrion.core.novelty import events_from_notes
    from orchestrion.errors import OrchestrionError

    abc, text = tune
    try:
        spaced, spaced_notes = compile_notes(abc, timeout=timeout)
        dense, dense_notes = compile_notes(text, timeout=timeout)
    except OrchestrionError as e:  # a missing tool, reported per tune rather than stopping the batch
        return _failed_check(str(e))
    same = None
    diff = None
    if spaced_notes is not None and dense_notes is not None:
        same = _note_digest(spaced_notes) == _note_digest(dense_notes)
        if not same:
            diff = f"{len(spaced_notes)} notes with spaces, {len(dense_notes)} without"
    elif spaced_notes is not None:
        same, diff = False, "compiles with spaces but not without: " + "; ".join(dense.messages[:2])
    events = events_from_notes(dense_notes).tolist() if dense_notes else []
    return {
        "status": dense.status,
        "messages": dense.messages[:8],
        "spaced_status": spaced.status,
        "same_notes": same,
        "diff": diff,
        "events": events,
    }


def run_validity(records: list[TuneRecord], store: Store, parallel: Parallel, *, timeout: float) -> None:
    """Fill `record.result` for every compilable record, on the engine's workers, kept in `store` (resumable)."""
    todo = [rec for rec in records if rec.error is None]
    results = store.map(
        check_tune, [(rec.abc, rec.text) for rec in todo], [_key(rec.abc, rec.text) for rec in todo], parallel,
        context=timeout, label="abc2midi",
    )  # fmt: skip
    for rec, result in zip(todo, results, strict=True):
        rec.result = _failed_check(result.reason) if isinstance(result, Failed) else result


# ------------------------------------------------------------------------------------------ tokenizer


def make_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE for spaceless ABC. Pieces never cross a newline, so merges learn notes and bars.

    (GPT-2's regex pre-split cuts at every letter/digit boundary, which stops `c2d` from ever merging:
    measured 1.4x compression against 2.7x here at 2,048.)
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\n"), "merged_with_previous"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    specials = list(SPECIAL_TOKENS.values())
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size, 256 + len(specials)),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def _parse_vocab(vocab: str) -> int | None:
    """The BPE size a `vocab` name asks for (None for the folk vocabulary)."""
    if vocab == "folk":
        return None
    if vocab == "bpe":
        return DEFAULT_VOCAB
    if vocab.startswith("bpe-") and vocab[4:].isdigit() and int(vocab[4:]) in VOCAB_SIZES:
        return int(vocab[4:])
    sizes = ", ".join(f"bpe-{n}" for n in VOCAB_SIZES)
    raise InvalidRequest("vocab", f"must be bpe, {sizes} or folk, not {vocab!r}")


def folk_report(train: list[str], validation: list[str], out_dir: Path, tok_report: dict):
    """Fit the folk-symbol tokenizer on the train split, add its row to the tokenizer report, return it."""
    from orchestrion.abc.folkvocab import make_folk_tokenizer

    tok = make_folk_tokenizer(train)
    held_out = validation or train
    chars = float(np.mean([len(t) for t in held_out]))
    per_tune = float(np.mean([len(e.ids) for e in tok.encode_batch(held_out)]))
    tok_report["sizes"]["folk"] = {
        "tokens_per_tune": round(per_tune, 1),
        "ratio": round(chars / per_tune, 3),
        "vocab_size": tok.get_vocab_size(),
    }
    tok_report["default"] = "folk"
    write_atomic(out_dir / "tokenizers" / "folk.json", tok.to_str(pretty=True))
    return tok


def tokenizer_report(
    train: list[str], validation: list[str], out_dir: Path, chosen_size: int = DEFAULT_VOCAB
) -> tuple[dict, object]:
    """Tokens per tune at character level and per vocabulary size; returns the report and the default tokenizer."""
    from rich.progress import track

    held_out = validation or train
    chars = float(np.mean([len(t) for t in held_out]))
    rows = {"characters": {"tokens_per_tune": round(chars, 1), "ratio": 1.0}}
    chosen = None
    for size in track(VOCAB_SIZES, description="training BPE tokenizers", transient=True):
        tok = make_tokenizer(train, size)
        counts = [len(e.ids) for e in tok.encode_batch(held_out)]
        per_tune = float(np.mean(counts))
        rows[str(size)] = {
            "tokens_per_tune": round(per_tune, 1),
            "ratio": round(chars / per_tune, 3),
            "vocab_size": tok.get_vocab_size(),
        }
        write_atomic(out_dir / "tokenizers" / f"bpe-{size}.json", tok.to_str(pretty=True))
        if size == chosen_size:
            chosen = tok
    return {"measured_on": "validation" if validation else "train", "default": chosen_size, "sizes": rows}, chosen


# ------------------------------------------------------------------------------------------ the pipeline


def split_of(text: str) -> str:
    """Stable 19:1 train/validation split by the hash of the cleaned tune."""
    return "validation" if int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16) % 20 == 0 else "train"


def _print_tables(console, step_counts: Counter, table_counts: Counter, total: int, steps_on: list[str]) -> None:
    from rich.table import Table

    t = Table(title=f"cleaning ({total:,} tunes)")
    t.add_column("step")
    t.add_column("tunes changed", justify="right")
    t.add_column("what it does")
    for step in abccodec.STEPS:
        on = step.name in steps_on
        t.add_row(step.name + ("" if on else " (off)"), f"{step_counts.get(step.name, 0):,}", step.help)
    console.print(t)
    v = Table(title="validity (abc2midi, spaceless tunes)")
    v.add_column("status")
    v.add_column("tunes", justify="right")
    v.add_column("share", justify="right")
    for status in ("clean", "warnings", "errors"):
        n = table_counts.get(status, 0)
        v.add_row(status, f"{n:,}", f"{100 * n / max(total, 1):.1f}%")
    console.print(v)


def encode_abc(
    inputs: list[str],
    out: Path,
    *,
    keep: str = "warnings",
    workers: int = 0,
    steps: list[str] | None = None,
    timeout: float = 10.0,
    engine: str = "local",
    address: str | None = None,
    vocab: str = "bpe",
) -> dict:
    """Build an ABC token dataset in `out`; returns the report (also written to out/report.json).

    abc2midi runs on `workers` processes (0 = all cores) of `engine` (local, or ray: a private Ray, or the
    cluster at `address`); the dataset is the same whatever they are. `vocab`: "bpe" (the byte-level BPE
    of DEFAULT_VOCAB tokens), "bpe-N" (N one of VOCAB_SIZES) or "folk" (one token per musical symbol,
    `abc.folkvocab`).
    """
    from rich.console import Console

    from orchestrion.core.novelty import NoveltyIndex
    from orchestrion.core.shards import ShardWriter, begin_dataset, write_dataset_json

    if keep not in KEEP:
        raise InvalidRequest("keep", f"must be one of {', '.join(KEEP)}, not {keep!r}")
    vocab_size = _parse_vocab(vocab)
    parallel = Parallel(workers=workers, engine=engine, address=address, chunk=CHUNK)
    console = Console(stderr=True)
    out = Path(out)
    begin_dataset(out)  # a rerun over a finished dataset rewrites its files: it is not whole until the end

    raw, file_errors = read_inputs(inputs)
    if not raw:
        raise BadInput("no ABC tunes found in the inputs: " + "; ".join(e["error"] for e in file_errors[:5]))
    records, step_counts = clean_records(raw, steps)
    store = Store(out / "cache")
    run_validity(records, store, parallel, timeout=timeout)

    table: Counter = Counter()
    errors: list[dict] = list(file_errors)
    for rec in records:
        status = "errors" if rec.error else rec.result["status"]
        table[status] += 1
        if status == "errors":
            msgs = [rec.error] if rec.error else [m for m in rec.result["messages"] if m.startswith("Error")]
            errors.append({"id": rec.id, "source": rec.source, "error": "; ".join(msgs[:3])})
    steps_on = [s.name for s in abccodec.STEPS if (s.default if steps is None else s.name in steps)]
    _print_tables(console, step_counts, table, len(records), steps_on)

    # Spaceless equivalence over the tunes that compile cleanly with their spaces.
    clean_spaced = [r for r in records if r.result and r.result["spaced_status"] == "clean"]
    mismatches = [{"id": r.id, "reason": r.result["diff"]} for r in clean_spaced if not r.result["same_notes"]]
    equal_share = 1 - len(mismatches) / max(len(clean_spaced), 1)
    console.print(
        f"spaceless equivalence: {len(clean_spaced) - len(mismatches):,} of {len(clean_spaced):,} "
        f"cleanly compiling tunes give the same notes without spaces ({100 * equal_share:.2f}%)"
        if clean_spaced
        else "spaceless equivalence: not measured (no tune compiles cleanly with its spaces)"
    )

    kept, seen, duplicates = [], set(), 0
    for rec in records:
        if rec.error or rec.result["status"] not in KEEP[keep]:
            continue
        if rec.text in seen:
            duplicates += 1
            continue
        seen.add(rec.text)
        kept.append(rec)
    by_split = {
        "train": [r for r in kept if split_of(r.text) == "train"],
        "validation": [r for r in kept if split_of(r.text) == "validation"],
    }
    if not by_split["train"]:
        sources = ", ".join(sorted({str(r.source) for r in records})[:3]) or ", ".join(map(str, inputs))
        first = next((e for e in errors if e.get("error")), None)
        why = f"; the first problem: {first.get('source') or first.get('id')}: {first['error']}" if first else ""
        raise BadInput(
            f"no tune survived cleaning and --keep {keep} in {sources} ({len(records)} read; "
            f"{table['errors']} with errors, {table['warnings']} with warnings){why}; see {out / 'report.json'}"
        )

    tok_report, tokenizer = tokenizer_report(
        [r.text for r in by_split["train"]], [r.text for r in by_split["validation"]], out, vocab_size or DEFAULT_VOCAB
    )
    if vocab == "folk":
        tokenizer = folk_report(
            [r.text for r in by_split["train"]], [r.text for r in by_split["validation"]], out, tok_report
        )
    write_atomic(out / "tokenizer.json", tokenizer.to_str(pretty=True))
    bos, eos = (tokenizer.token_to_id(SPECIAL_TOKENS[k]) for k in ("bos", "eos"))
    splits_meta: dict[str, dict] = {}
    max_tokens: dict[str, int] = {}  # with <s> and </s>: the context a model needs for whole tunes
    for split, recs in by_split.items():
        writer = ShardWriter(out, split, 0)
        for rec, enc in zip(recs, tokenizer.encode_batch([r.text for r in recs]), strict=True):
            writer.add([bos, *enc.ids, eos], abccodec.escape_newlines(rec.text))
        longest = max((len(seq) for seq in writer.sequences), default=0)
        info = writer.close()
        splits_meta[split] = {"shards": [info["name"]], "sequences": info["sequences"], "tokens": info["tokens"]}
        max_tokens[split] = longest

    index = NoveltyIndex.build(
        [np.asarray(r.result["events"], dtype=np.int64) for r in by_split["train"]], [r.id for r in by_split["train"]]
    )
    index.save(out / "novelty.npz")
    # The same check on held-out tunes is the baseline for generated ones: folk collections hold variants
    # of one melody under other titles and keys, which a text split cannot keep apart.
    overlap = [index.check(np.asarray(r.result["events"], dtype=np.int64)) for r in by_split["validation"]]
    novelty_baseline = {
        "validation_tunes": len(overlap),
        "flagged_as_copies": sum(o.copied for o in overlap),
        "median_ngram_share": float(np.median([o.ngram_share for o in overlap])) if overlap else 0.0,
    }
    console.print(
        f"novelty index: {len(index.ids):,} train tunes; {novelty_baseline['flagged_as_copies']} of "
        f"{len(overlap)} validation tunes share most of their melody with a train tune"
    )

    stats = {
        "tunes_read": len(records) + len(file_errors),
        "kept": len(kept),
        "duplicates_dropped": duplicates,
        "splits": {k: len(v) for k, v in by_split.items()},
        "characters_per_tune": round(float(np.mean([len(r.text) for r in kept])), 1),
        "max_characters": max(len(r.text) for r in kept),
        "tokens_per_tune": {k: round(v["tokens"] / max(v["sequences"], 1), 1) for k, v in splits_meta.items()},
        "max_tokens_per_tune": max_tokens,
        "keys": Counter(abccodec.header(r.abc)["key"] for r in kept).most_common(20),
        "meters": Counter(abccodec.header(r.abc)["meter"] for r in kept).most_common(20),
    }
    report = {
        "inputs": inputs,
        "keep": keep,
        "cleaning_steps": {s: step_counts.get(s, 0) for s in abccodec.STEP_NAMES},
        "steps_on": steps_on,
        "validity": {s: table.get(s, 0) for s in ("clean", "warnings", "errors")},
        "dropped": {"errors_or_keep": len(records) - len(kept) - duplicates, "duplicates": duplicates},
        "spaceless_equivalence": {
            "checked": len(clean_spaced),
            "same_notes": len(clean_spaced) - len(mismatches),
            "share": round(equal_share, 5),
            "mismatches": mismatches,
        },
        "tokenizer": tok_report,
        "novelty_baseline": novelty_baseline,
        "errors": errors,
    }
    write_atomic(out / "stats.json", json.dumps(stats, indent=2) + "\n")
    write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_atomic(
        out / "validity.jsonl",
        "".join(
            json.dumps(
                {
                    "id": r.id,
                    "status": "errors" if r.error else r.result["status"],
                    "messages": [r.error] if r.error else r.result["messages"],
                }
            )
            + "\n"
            for r in records
        ),
    )
    write_dataset_json(
        out,
        {
            "encoding": "abc",
            "vocab_size": tokenizer.get_vocab_size(),
            "special_tokens": SPECIAL_TOKENS,
            "splits": splits_meta,
            "newline_mark": abccodec.NEWLINE_MARK,
            "sequence": "<s> + spaceless tune (real newlines) + </s>; text files write newlines as newline_mark",
            "keep": keep,
            "vocab": vocab,
            "novelty_index": "novelty.npz",
        },
    )
    store.prune(_key(r.abc, r.text) for r in records if r.error is None)  # tunes of earlier runs' inputs
    _print_tokenizer(console, tok_report)
    console.print(
        f"wrote {len(kept):,} tunes ({splits_meta['train']['sequences']:,} train, "
        f"{splits_meta['validation']['sequences']:,} validation) to {out}; "
        f"{len(errors):,} per-tune errors listed in report.json"
    )
    return report


def _print_tokenizer(console, tok_report: dict) -> None:
    from rich.table import Table

    t = Table(title=f"tokens per tune ({tok_report['measured_on']} split)")
    t.add_column("vocabulary")
    t.add_column("tokens/tune", justify="right")
    t.add_column("fewer than characters", justify="right")
    for name, row in tok_report["sizes"].items():
        label = name + (" (default)" if name == str(tok_report["default"]) else "")
        t.add_row(label, f"{row['tokens_per_tune']:.1f}", f"{row['ratio']:.2f}x")
    console.print(t)
