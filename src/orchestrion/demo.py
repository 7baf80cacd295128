"""`orchestrion demo`: render a built-in chorale, then compose with every built-in model.

For each piece it writes the music (MIDI or ABC, with a provenance sidecar), a WAV, a piano-roll PNG
and, for ABC and the chorale, an SVG score. A model that fails is reported and the demo goes on.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrion.core.abcmidi import abc_to_midi
from orchestrion.core.corpora import corpus_files, music21_corpus_dir, pick_satb
from orchestrion.core.files import write_atomic
from orchestrion.core.music import load_midi
from orchestrion.core.render import render_pianoroll, render_spectrogram, render_svg, render_wav
from orchestrion.errors import OrchestrionError
from orchestrion.registry import available_builtins, load_composer
from orchestrion.requests import ComposeRequest

DEMO_SEED = 7
# A sensible request per built-in model; the model and the seed are added by `run_demo`.
DEFAULT_REQUESTS: dict[str, dict] = {
    "builtin:markov": {"bars": 16, "voices": [0, 1, 2, 2]},
    "builtin:chorales": {"bars": 4},  # the shipped model has a 512-token context: 4 bars of 4 voices fit well
    "builtin:folk": {"num_samples": 1},
    "builtin:folk-bpe": {"num_samples": 1},
    "builtin:piano": {"seconds": 4.0},
}


def _console():
    from rich.console import Console

    return Console(stderr=True)


def demo_chorale(out: Path) -> list[Path]:
    """Render the first built-in Bach chorale (a fresh cache converts just that one) to MIDI, WAV, PNG, SVG.

    The SVG is engraved from the original MusicXML, which spells notes and beams better than MIDI can.
    """
    midi = corpus_files("bach-chorales", limit=1)[0]
    stem = f"chorale-{midi.stem}"
    target = out / f"{stem}.mid"
    shutil.copyfile(midi, target)
    written = [target]
    written.append(render_wav(target, out / f"{stem}.wav"))
    written.append(render_pianoroll(target, out / f"{stem}.png", title=f"Bach chorale {midi.stem}"))
    original = music21_corpus_dir() / "bach" / f"{midi.stem}.mxl"
    if original.is_file():
        written.append(satb_musicxml(original, out / f"{stem}.musicxml"))
    written.append(render_svg(written[-1] if original.is_file() else target, out / f"{stem}.svg"))
    return written


def satb_musicxml(source: Path, out: Path) -> Path:
    """The four voices of a chorale's original MusicXML (instrumental doublings dropped), as MusicXML."""
    from music21 import converter, stream
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    original = converter.parse(str(source), forceSource=True)
    voices = stream.Score([part for _, part in pick_satb(list(original.parts))])
    voices.metadata = original.metadata
    return write_atomic(out, GeneralObjectExporter(voices).parse())


def demo_model(name: str, out: Path) -> list[Path]:
    """Compose one piece with a built-in model and write it in every form that suits it."""
    composer = load_composer(name)
    fields = {**DEFAULT_REQUESTS.get(name, {"bars": 8}), "num_samples": 1}
    request = composer.validate(ComposeRequest(model=name, seed=DEMO_SEED, **fields))
    piece = composer.compose(request)
    stem = name.removeprefix("builtin:")
    written: list[Path] = []
    if piece.abc is not None:
        written.extend(piece.save(out / f"{stem}.abc"))
        midi = abc_to_midi(piece.abc, out / f"{stem}.mid")
        written.append(midi)
        written.append(render_wav(midi, out / f"{stem}.wav"))
        written.append(render_pianoroll(load_midi(midi), out / f"{stem}.png", title=name))
        written.append(render_svg(out / f"{stem}.abc", out / f"{stem}.svg"))
    elif piece.score is not None:
        written.extend(piece.save(out / f"{stem}.mid"))
        written.append(render_wav(piece.score, out / f"{stem}.wav"))
        written.append(render_pianoroll(piece.score, out / f"{stem}.png", title=name))
    elif piece.audio is not None:
        written.extend(piece.save(out / f"{stem}.wav"))
        written.append(render_spectrogram(piece.audio, out / f"{stem}.png", sample_rate=piece.sample_rate, title=name))
    return written


def run_demo(out: str | Path) -> list[Path]:
    """Render a built-in chorale, then compose with each available built-in model; returns the files."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    console = _console()
    written: list[Path] = []
    jobs = [("a built-in Bach chorale", lambda: demo_chorale(out))]
    jobs += [(name, lambda name=name: demo_model(name, out)) for name in available_builtins()]
    failures = 0
    for label, job in jobs:
        console.print(f"[bold]demo:[/bold] {label}")
        try:
            written.extend(job())
        except Exception as exc:  # one broken model must not stop the rest of the demo
            failures += 1
            from rich.markup import escape

            console.print(f"[red]  failed:[/red] {escape(f'{type(exc).__name__}: {exc}')}", highlight=False)
    if len(jobs) == 1:
        console.print("no built-in models yet: the demo rendered the chorale only")
    if failures == len(jobs):
        raise OrchestrionError("every part of the demo failed (see the messages above)")
    return written
