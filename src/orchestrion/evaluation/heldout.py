"""What `--data` gives an evaluation: real pieces for the statistics, and where each likelihood reads from.

--data is a token dataset (`orchestrion encode mmm|abc`), an audio dataset (`encode audio`), MIDI or ABC
files, folders of them, or `builtin:CORPUS`. The kind of the data decides how it is read; the model is
never asked what it is (each composer answers `likelihood(held, config)` itself).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrion.errors import BadInput


@dataclass
class EvalConfig:
    samples: int = 16  # generated pieces (seeds 0..samples-1)
    real_pieces: int = 32  # held-out real pieces for the statistics (the last ones of the sorted data)
    bars: int | None = None  # length of symbolic samples: a token dataset's window length, else 8
    seconds: float = 1.0  # length of audio samples (SaShiMi samples slowly on a CPU)
    windows: int = 32  # likelihood windows
    context: int = 512  # longest GPT window, tokens
    audio_seq_len: int = 16384  # SaShiMi window, samples
    rendered: int = 3  # samples rendered to WAV / piano roll for the page
    index_pieces: int = 3000  # training pieces indexed for the novelty check
    extra: dict = field(default_factory=dict)


@dataclass
class HeldOut:
    """Real scores for the statistics, training-side pieces for the novelty index, and the dataset root."""

    source: str
    form: str  # what the data is: "midi", "abc", "tokens", "audio"
    scores: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    index_scores: list = field(default_factory=list)  # training-side pieces for the novelty index
    root: Path | None = None  # token or audio dataset directory
    novelty_path: Path | None = None  # a token dataset's own novelty index (ABC datasets write one)
    problems: list[str] = field(default_factory=list)
    tunes: list[str] = field(default_factory=list)  # real ABC tunes, for the ABC measures
    audio: list = field(default_factory=list)  # real audio windows (float waveforms), for the audio measures
    sample_rate: int = 16000
    bars: int | None = None  # the length of a token dataset's windows, in bars
    inputs: list[str] = field(default_factory=list)  # what a dataset was made from (its dataset.json "inputs")

    def sample_bars(self, config: EvalConfig) -> int:
        """How long generated symbolic pieces should be: as asked, else as long as the real windows."""
        return config.bars or self.bars or 8

    def real_scores(self, bars: int) -> list:
        """The real scores cut to `bars` bars (their endings); a token dataset's windows are left as they are."""
        from orchestrion.evaluation.quality import last_bars

        return list(self.scores) if self.form == "tokens" else [last_bars(s, bars) for s in self.scores]


def load_held_out(data: str, config: EvalConfig) -> HeldOut:
    """--data -> held-out pieces: a token dataset, an audio dataset, MIDI/ABC files, folders or builtin:CORPUS."""
    from orchestrion.core.corpora import resolve_inputs
    from orchestrion.core.music import load_midi

    root = Path(data).expanduser()
    if (root / "dataset.json").is_file():
        meta = json.loads((root / "dataset.json").read_text())
        if meta.get("format") == "orchestrion-audio":
            return _audio_held_out(data, root, meta, config)
        return _token_held_out(data, root, meta, config)
    files = resolve_inputs([data], (".mid", ".midi", ".abc"))
    held = HeldOut(data, "midi")
    cut = max(len(files) - config.real_pieces, 0)
    for path, target in [(p, held.index_scores) for p in files[:cut][: config.index_pieces]] + [
        (p, held.scores) for p in files[cut:]
    ]:
        try:
            if path.suffix.lower() == ".abc":
                held.form = "abc"
                _read_tunes(path, target, held)
            else:
                target.append(load_midi(path))
                if target is held.scores:
                    held.names.append(path.name)
        except BadInput as exc:  # a batch reports a bad file and carries on; the message names the user's file
            held.problems.append(f"{path}: {exc.reason}")
        except Exception as exc:  # noqa: BLE001 - any other failure of one file is reported the same way
            held.problems.append(f"{path}: {type(exc).__name__}: {exc}")
    if not held.scores:
        why = "; ".join(held.problems[:3]) + (f"; and {len(held.problems) - 3} more" if len(held.problems) > 3 else "")
        raise BadInput(f"no held-out piece could be read: {why or 'no file to read'}", data)
    return held


def _read_tunes(path: Path, target: list, held: HeldOut) -> None:
    """Every tune of an ABC file, each on its own (a tune that does not compile is a problem, not the file)."""
    from orchestrion.core import abcfile
    from orchestrion.core.abcmidi import abc_to_score

    tunes = abcfile.tunes_of(abcfile.decode(path.read_bytes()))
    if not tunes:
        raise BadInput("no tune (no X: line, and no block with a K: field)", path)
    for tune in tunes:
        try:
            target.append(abc_to_score(tune.text))
        except BadInput as exc:
            held.problems.append(f"{path}: {tune.label}: {exc.reason}")
            continue
        if target is held.scores:
            held.tunes.append(tune.text)
            held.names.append(path.name if len(tunes) == 1 else f"{path.name}#{tune.number}")


def _token_held_out(data: str, root: Path, meta: dict, config: EvalConfig) -> HeldOut:
    """Real pieces from a token dataset's text files, read back through the dataset's own encoding."""
    from orchestrion.registry import encoding_for

    encoding = encoding_for(meta.get("encoding") or "")
    held = HeldOut(data, "tokens", root=root, bars=(meta.get("options") or {}).get("bars"),
                   inputs=[str(x) for x in meta.get("inputs", [])])  # fmt: skip
    novelty = root / meta.get("novelty_index", "novelty.npz")
    held.novelty_path = novelty if novelty.is_file() else None
    text = root / "text"
    if not (text / "validation-00000.txt").is_file():
        raise BadInput("the token dataset has no text/validation-00000.txt to read real pieces from", root)
    lines = [line for line in (text / "validation-00000.txt").read_text().splitlines() if line.strip()]
    # Evenly spread: consecutive sequences are often windows of one piece, or transposed copies of each other.
    for i in np.linspace(0, len(lines) - 1, min(2 * config.real_pieces, len(lines))).astype(int):
        try:
            score, name = encoding.score_of(lines[i], meta)
        except Exception as exc:  # a sequence the encoding cannot read back is reported, not fatal
            held.problems.append(f"validation #{i}: {exc}")
            continue
        held.scores.append(score)
        held.names.append(name or f"validation #{i}")
        tune = encoding.text_of(lines[i], meta)
        if tune is not None:
            held.tunes.append(tune)
        if len(held.scores) >= config.real_pieces:
            break
    train = sorted(text.glob("train-*.txt"))
    if train and held.novelty_path is None:
        train_lines = train[0].read_text().splitlines()
        step = max(len(train_lines) // config.index_pieces, 1)
        for line in train_lines[::step][: config.index_pieces]:
            try:
                held.index_scores.append(encoding.score_of(line, meta)[0])
            except Exception:  # noqa: S112 - a training line that does not read back is simply not indexed
                continue
    return held


def _audio_held_out(data: str, root: Path, meta: dict, config: EvalConfig) -> HeldOut:
    """Real audio windows as long as the samples, evenly spread over the validation split."""
    from orchestrion.sashimi import mulaw
    from orchestrion.sashimi.dataset import AudioDataset

    dataset = AudioDataset(root)
    held = HeldOut(data, "audio", root=root, sample_rate=dataset.sample_rate,
                   inputs=[str(x) for x in meta.get("inputs", [])])  # fmt: skip
    length = int(round(config.seconds * dataset.sample_rate))
    for window in dataset.split("validation").windows(length, config.real_pieces):
        held.audio.append(mulaw.decode(window.astype(np.int64), dataset.quantization))
    return held
