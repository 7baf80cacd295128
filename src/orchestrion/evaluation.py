"""One evaluation for every model: likelihood on held-out data, musical statistics, validity, novelty.

`evaluate(model, data, report_dir)` measures one model (and, with `compare`, a second one on the same
held-out data) and writes `report.json` plus an HTML page (`evaluation_report.write_html`).

- Likelihood: GPT models over windows of a token dataset's validation split (loss, perplexity, bits per
  token / character / byte, accuracy@k); SaShiMi through `composers.sashimi.evaluate`; Markov as the
  log-likelihood per event of the held-out pieces under its counts, smoothed by Witten-Bell
  interpolation across the orders (the sampler's hard back-off gives unseen events probability 0).
- Musical statistics: `metrics.compare_sets` over pieces generated with seeds 0..N-1 vs held-out pieces.
- Validity (decodes without repairs / compiles with abc2midi / audio neither silent nor noise), the share
  of samples where a repetition trap fired, and novelty: the share of samples flagged as copies of
  training pieces (`novelty.NoveltyIndex` on the melody's (interval, duration) events).

Every figure is computed with fixed seeds and fixed windows, so the same command gives the same report.
"""

from __future__ import annotations

import json
import math
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrion.errors import BadInput, InvalidRequest


@dataclass
class EvalConfig:
    samples: int = 16  # generated pieces (seeds 0..samples-1)
    real_pieces: int = 32  # held-out real pieces for the statistics (the last ones of the sorted data)
    bars: int = 8  # length of symbolic samples
    seconds: float = 1.0  # length of audio samples (SaShiMi samples slowly on a CPU)
    windows: int = 32  # likelihood windows
    context: int = 512  # longest GPT window, tokens
    audio_seq_len: int = 16384  # SaShiMi window, samples
    rendered: int = 3  # samples rendered to WAV / piano roll for the page
    index_pieces: int = 3000  # training pieces indexed for the novelty check
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ held-out data


@dataclass
class HeldOut:
    """What --data gave: real scores for the statistics, and where each likelihood reads from."""

    source: str
    kind: str  # "midi", "abc", "tokens", "audio"
    scores: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    index_scores: list = field(default_factory=list)  # training-side pieces for the novelty index
    root: Path | None = None  # token or audio dataset directory
    problems: list[str] = field(default_factory=list)


def _abc_tunes_from_text(path: Path, mark: str, limit: int) -> list[str]:
    tunes = []
    for line in path.read_text().splitlines():
        line = line.replace("<s>", "").replace("</s>", "").strip()
        if line:
            tunes.append(line.replace(mark, "\n"))
        if len(tunes) >= limit:
            break
    return tunes


def _abc_score(tune: str):
    import tempfile

    from orchestrion.abcmidi import abc_to_midi
    from orchestrion.music import load_midi

    with tempfile.TemporaryDirectory() as tmp:
        return load_midi(abc_to_midi(tune, Path(tmp) / "tune.mid"))


def load_held_out(data: str, config: EvalConfig) -> HeldOut:
    """--data -> held-out pieces: a token dataset, an audio dataset, MIDI/ABC files, folders or builtin:CORPUS."""
    from orchestrion.corpora import resolve_inputs
    from orchestrion.music import load_midi

    root = Path(data).expanduser()
    if (root / "dataset.json").is_file():
        meta = json.loads((root / "dataset.json").read_text())
        if meta.get("format") == "orchestrion-audio":
            return HeldOut(data, "audio", root=root)
        return _token_held_out(data, root, meta, config)
    files = resolve_inputs([data], (".mid", ".midi", ".abc"))
    held = HeldOut(data, "midi")
    cut = max(len(files) - config.real_pieces, 0)
    for path, target in [(p, held.index_scores) for p in files[:cut][: config.index_pieces]] + [
        (p, held.scores) for p in files[cut:]
    ]:
        try:
            if path.suffix.lower() == ".abc":
                held.kind = "abc"
                target.append(_abc_score(path.read_text()))
            else:
                target.append(load_midi(path))
            if target is held.scores:
                held.names.append(path.name)
        except Exception as exc:  # a batch reports a bad file and carries on
            held.problems.append(f"{path}: {exc}")
    if not held.scores:
        raise BadInput("no held-out piece could be read", data)
    return held


def _token_held_out(data: str, root: Path, meta: dict, config: EvalConfig) -> HeldOut:
    from orchestrion.codecs import mmm

    encoding = meta.get("encoding")
    held = HeldOut(data, "tokens", root=root)
    text = root / "text"
    if not (text / "validation-00000.txt").is_file():
        raise BadInput("the token dataset has no text/validation-00000.txt to read real pieces from", root)
    train = sorted(text.glob("train-*.txt"))
    if encoding == "abc":
        mark = meta.get("newline_mark", "\u00b6")
        for tune in _abc_tunes_from_text(text / "validation-00000.txt", mark, config.real_pieces * 2):
            try:
                held.scores.append(_abc_score(tune))
                held.names.append(tune.split("\n")[1][:40] if "\n" in tune else "tune")
            except Exception as exc:
                held.problems.append(f"validation tune: {exc}")
            if len(held.scores) >= config.real_pieces:
                break
        return held
    if encoding != "mmm":
        raise BadInput(f"unknown token encoding {encoding!r}", root / "dataset.json")
    lines = (text / "validation-00000.txt").read_text().splitlines()
    # Evenly spread: consecutive sequences are windows of one chorale, often transposed copies of each other.
    for i in np.linspace(0, len(lines) - 1, min(config.real_pieces, len(lines))).astype(int):
        score, _ = mmm.decode(lines[i])
        held.scores.append(score)
        held.names.append(f"validation #{i}")
    if train:
        train_lines = train[0].read_text().splitlines()
        step = max(len(train_lines) // config.index_pieces, 1)
        held.index_scores = [mmm.decode(line)[0] for line in train_lines[::step][: config.index_pieces]]
    return held


# ------------------------------------------------------------------------------------------ likelihood


def gpt_likelihood(composer, dataset_root: str | Path, *, windows: int = 32, context: int = 512,
                   split: str = "validation") -> dict:
    """Loss (nats/token), perplexity, bits per token/character/byte and accuracy@1/3/5/10 on fixed windows."""
    import torch
    from tokenizers import Tokenizer

    from orchestrion.datasets import TokenDataset

    dataset = TokenDataset(dataset_root)
    if dataset.encoding != composer.encoding:
        raise BadInput(f"the dataset is {dataset.encoding!r} but the model reads {composer.encoding!r}", dataset_root)
    data_tok = Tokenizer.from_file(str(dataset.tokenizer_path))
    model_tok = composer.tokenizer
    # Renumber dataset ids into the model's vocabulary by token text (they are usually the same tokenizer).
    vocab = data_tok.get_vocab()
    id_map = np.full(max(vocab.values()) + 1, -1, dtype=np.int64)
    for token, i in vocab.items():
        j = model_tok.token_to_id(token)
        id_map[i] = -1 if j is None else j
    ids = id_map[dataset.split(split).concatenated().astype(np.int64)]
    if (ids < 0).any():
        raise BadInput(f"{int((ids < 0).sum())} tokens of the {split} split are not in the model's vocabulary",
                       dataset_root)
    length = min(context, composer.context)
    if len(ids) < length + 1:
        length = len(ids) - 1
    if length < 2:
        raise BadInput(f"the {split} split is too short to measure", dataset_root)
    starts = np.linspace(0, len(ids) - length - 1, min(windows, len(ids) - length)).astype(np.int64)
    model = composer.model.eval()
    nll, total, chars, nbytes = 0.0, 0, 0, 0
    hits = dict.fromkeys((1, 3, 5, 10), 0)
    with torch.no_grad():
        for start in starts:
            w = torch.from_numpy(ids[start : start + length + 1])[None]
            logits = model(input_ids=w[:, :-1], use_cache=False).logits.float()[0]
            target = w[0, 1:]
            nll += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
            top = logits.topk(10, dim=-1).indices
            for k in hits:
                hits[k] += int((top[:, :k] == target[:, None]).any(-1).sum())
            total += len(target)
            text = model_tok.decode(target.tolist(), skip_special_tokens=False)
            chars += len(text)
            nbytes += len(text.encode())
    loss = nll / total
    bits = nll / math.log(2)
    return {"split": split, "windows": len(starts), "tokens": total, "loss": loss, "perplexity": math.exp(loss),
            "bits_per_token": loss / math.log(2), "bits_per_character": bits / max(chars, 1),
            "bits_per_byte": bits / max(nbytes, 1), **{f"accuracy@{k}": hits[k] / total for k in hits}}


def markov_likelihood(composer, scores: list) -> dict:
    """Log-likelihood per event of held-out pieces: high and low lines and beat chords, in their key's mode.

    Witten-Bell interpolation across orders (2, 1, 0, then add-one over the vocabulary) gives every event
    a probability, so a piece with a transition never seen in training still has a finite score.
    """
    from orchestrion.codecs import events as ev
    from orchestrion.composers.markov import LINES, ORDERS, VOCAB, chain_name, transition_keys

    tables: dict = {}

    def table(mode: str, line: str, order: int):
        key = (mode, line, order)
        if key not in tables:
            keys, counts = composer.counts.get(chain_name(mode, line, order), (np.zeros(0, np.uint32), np.zeros(0)))
            keys, counts = keys.astype(np.int64), counts.astype(np.float64)
            states = keys // VOCAB[line]
            uniq, first = np.unique(states, return_index=True)
            totals = np.add.reduceat(counts, first) if len(first) else np.zeros(0)
            distinct = np.diff(np.r_[first, len(keys)]).astype(np.float64)
            tables[key] = (keys, counts, uniq, totals, distinct)
        return tables[key]

    def lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
        if len(sorted_keys) == 0:
            return np.zeros(len(query))
        at = np.clip(np.searchsorted(sorted_keys, query), 0, len(sorted_keys) - 1)
        return np.where(sorted_keys[at] == query, values[at], 0.0)

    nll = dict.fromkeys(LINES, 0.0)
    events = dict.fromkeys(LINES, 0)
    pieces = 0
    for score in scores:
        try:
            piece = ev.encode(score)
        except BadInput:
            continue
        pieces += 1
        for line in LINES:
            seq = getattr(piece, line)
            if len(seq) == 0:
                continue
            keys = transition_keys([seq], line)
            size = VOCAB[line]
            k0, c0, *_ = table(piece.mode, line, 0)
            prob = (lookup(k0, c0, keys[0].astype(np.int64)) + 1.0) / (c0.sum() + size)
            for order in range(1, ORDERS[line] + 1):
                query = keys[order].astype(np.int64)
                ks, cs, states, totals, distinct = table(piece.mode, line, order)
                n = lookup(ks, cs, query)
                t = lookup(states, totals, query // size)
                d = lookup(states, distinct, query // size)
                prob = np.where(t > 0, (n + d * prob) / np.maximum(t + d, 1e-12), prob)
            nll[line] += float(-np.log(prob).sum())
            events[line] += len(prob)
    total = sum(events.values())
    if total == 0:
        raise BadInput("no held-out piece had notes the Markov model can read")
    out = {"pieces": pieces, "events": total, "log_likelihood_per_event": -sum(nll.values()) / total,
           "bits_per_event": sum(nll.values()) / total / math.log(2)}
    for line in LINES:
        if events[line]:
            out[f"bits_per_event_{line}"] = nll[line] / events[line] / math.log(2)
    out["perplexity"] = math.exp(sum(nll.values()) / total)
    return out


def likelihood(composer, held: HeldOut, config: EvalConfig) -> dict:
    kind = composer.kind
    if kind == "gpt":
        if held.kind != "tokens":
            return {"skipped": "a GPT likelihood needs a token dataset (orchestrion encode) as --data"}
        return gpt_likelihood(composer, held.root, windows=config.windows, context=config.context)
    if kind == "sashimi":
        if held.kind != "audio":
            return {"skipped": "a SaShiMi likelihood needs an audio dataset (orchestrion encode audio) as --data"}
        from orchestrion.composers import sashimi

        result = sashimi.evaluate(composer.model, held.root, "validation", seq_len=config.audio_seq_len,
                                  windows=config.windows, batch_size=4)
        result["bits_per_byte"] = result.pop("bpb")
        result["perplexity"] = math.exp(result["loss"])
        return result
    if kind == "markov":
        return markov_likelihood(composer, held.scores)
    return {"skipped": f"no likelihood for {kind!r} models"}


# ------------------------------------------------------------------------------------------ samples


def score_events(score) -> np.ndarray:
    """A score's melody as novelty events (interval, duration), at abc2midi's 480 ticks per quarter."""
    from orchestrion.novelty import events_from_notes

    notes = []
    for t, track in enumerate(score.tracks):
        if track.is_drum or not len(track.notes):
            continue
        a = track.notes.numpy()
        scale = 480.0 / score.tpq
        notes += [(t, int(round(tm * scale)), int(p), int(round(d * scale)))
                  for tm, p, d in zip(a["time"], a["pitch"], a["duration"], strict=True)]
    return events_from_notes(notes)


def _novelty_index(composer, held: HeldOut):
    from orchestrion.novelty import NoveltyIndex

    if composer.kind == "gpt" and composer.encoding == "abc" and held.root is not None:
        meta = json.loads((held.root / "dataset.json").read_text())
        path = held.root / meta.get("novelty_index", "novelty.npz")
        if path.is_file():
            return NoveltyIndex.load(path)
    if held.index_scores:
        events = [score_events(s) for s in held.index_scores]
        return NoveltyIndex.build(events, [f"train-{i}" for i in range(len(events))])
    return None


def generate(composer, config: EvalConfig, progress=None) -> list[dict]:
    """Pieces for seeds 0..N-1 with their validity, repetition traps and (later) novelty."""
    from orchestrion.requests import ComposeRequest

    out = []
    for seed in range(config.samples):
        if composer.kind == "sashimi":
            request = ComposeRequest(seed=seed, seconds=config.seconds)
        else:
            request = ComposeRequest(seed=seed, bars=config.bars)
        piece = composer.compose(request)
        out.append({"seed": seed, "piece": piece, **_validity(composer, piece)})
        if progress is not None:
            progress()
    return out


def _validity(composer, piece) -> dict:
    report = piece.report or {}
    traps = int(report.get("repetition_traps", 0) or 0)
    if piece.audio is not None:
        from orchestrion.audio import quality_report

        quality = quality_report(piece.audio, piece.sample_rate)
        return {"valid": bool(quality["ok"]), "why": quality.get("reason", ""), "traps": traps}
    if piece.abc is not None:
        from orchestrion.abcmidi import validate

        return {"valid": bool(validate(piece.abc).ok and piece.score is not None), "why": "", "traps": traps}
    repairs = report.get("decode_repairs") or []
    has_notes = piece.score is not None and any(len(t.notes) for t in piece.score.tracks)
    why = "; ".join(repairs[:3]) if repairs else ("" if has_notes else "no notes")
    return {"valid": bool(has_notes and not repairs), "why": why, "traps": traps}


# ------------------------------------------------------------------------------------------ one model


def evaluate_one(model_ref: str, held: HeldOut, config: EvalConfig) -> dict:
    from rich.progress import Progress

    from orchestrion.composers import load_composer, resolve_model_dir
    from orchestrion.metrics import compare_sets

    composer = load_composer(model_ref)
    result: dict = {"model": model_ref, "kind": composer.kind, "encoding": getattr(composer, "encoding", None),
                    "model_dir": str(resolve_model_dir(model_ref))}
    result["likelihood"] = likelihood(composer, held, config)
    with Progress(transient=True) as progress:
        task = progress.add_task(f"sampling {model_ref}", total=config.samples)
        samples = generate(composer, config, lambda: progress.advance(task))
    index = _novelty_index(composer, held) if composer.kind != "sashimi" else None
    for s in samples:
        s["copied"] = None
        if index is not None and s["piece"].score is not None:
            if s["piece"].abc is not None and composer.kind == "gpt":
                try:
                    report = index.check_abc(s["piece"].abc)
                except BadInput:
                    report = index.check(score_events(s["piece"].score))
            else:
                report = index.check(score_events(s["piece"].score))
            s["copied"], s["longest_run"], s["ngram_share"] = report.copied, report.longest_run, report.ngram_share
    n = len(samples)
    result["validity_rate"] = sum(s["valid"] for s in samples) / n
    result["repetition_trap_rate"] = sum(s["traps"] > 0 for s in samples) / n
    checked = [s for s in samples if s["copied"] is not None]
    result["novelty"] = {
        "copied_share": sum(bool(s["copied"]) for s in checked) / len(checked) if checked else None,
        "checked": len(checked),
        "mean_ngram_share": float(np.mean([s["ngram_share"] for s in checked])) if checked else None,
        "index": "dataset novelty.npz" if composer.kind == "gpt" and composer.encoding == "abc"
        else f"{len(held.index_scores)} training-side pieces of --data",
    }
    scores = [s["piece"].score for s in samples if s["piece"].score is not None and s["valid"]]
    if composer.kind == "sashimi":
        result["statistics"] = {"skipped": "audio samples have no notes to measure"}
    else:
        result["statistics"] = compare_sets(scores, held.scores)
    result["samples"] = [{k: v for k, v in s.items() if k != "piece"} for s in samples]
    result["_pieces"] = [s["piece"] for s in samples]
    return result


def evaluate(model: str, data: str, report_dir: str | Path, *, compare: str | None = None,
             config: EvalConfig | None = None, command: str | None = None) -> dict:
    """Evaluate `model` (and `compare`) on held-out `data`; write report.json and index.html into report_dir."""
    from orchestrion.evaluation_report import write_report

    config = config or EvalConfig()
    if config.samples < 1:
        raise InvalidRequest("samples", "at least 1")
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    held = load_held_out(data, config)
    models = [evaluate_one(model, held, config)]
    if compare:
        models.append(evaluate_one(compare, held, config))
    command = command or " ".join(shlex.quote(a) for a in ["orchestrion", *sys.argv[1:]])
    return write_report(report_dir, models, held, config, command)


METRIC_NAMES = ("pitch_range", "n_pitches_used", "n_pitch_classes_used", "pitch_class_entropy", "scale_consistency",
                "polyphony", "polyphony_rate", "empty_beat_rate", "groove_consistency", "note_density")
