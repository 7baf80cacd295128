"""Rendering: MIDI -> WAV through FluidSynth, a piano-roll PNG (matplotlib), a score SVG (verovio).

Audio goes through the real FluidSynth program with a General MIDI soundfont (Debian's
fluid-soundfont-gm), at any sample rate; the audio model uses 16 kHz mono. Every output is written whole
by `orchestrion.core.files`, so a failed render never leaves a half-written file behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.core import abcfile
from orchestrion.core.abcmidi import abc_to_midi
from orchestrion.core.corpora import music21_to_score
from orchestrion.core.files import atomic_path, write_atomic
from orchestrion.core.music import MIDI_SUFFIXES, load_midi, read_midi, save_midi, time_signatures
from orchestrion.core.tools import find_soundfont, require, run_tool
from orchestrion.errors import BadInput

if TYPE_CHECKING:
    import symusic

    from orchestrion.core.isolate import Isolated

MUSICXML_SUFFIXES = (".xml", ".mxl", ".musicxml")
ABC_SUFFIXES = (".abc",)
RENDER_SUFFIXES = (".mid", ".midi", ".kar", ".smf", *ABC_SUFFIXES, *MUSICXML_SUFFIXES)
FLUIDSYNTH_GAIN = 0.5  # FluidSynth's default (0.2) is very quiet; peaks are normalised afterwards anyway
PEAK = 0.89  # -1 dBFS: loud enough to hear, with headroom for MP3/AAC encoders
# The seed write-up's colours for the four chorale voices; other tracks cycle through a palette.
VOICE_COLOURS = {"soprano": "#2ca02c", "alto": "#ff7f0e", "tenor": "#1f77b4", "bass": "#d62728"}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
GM_PROGRAMS = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano", "Electric Piano 1",
    "Electric Piano 2", "Harpsichord", "Clavinet", "Celesta", "Glockenspiel", "Music Box", "Vibraphone", "Marimba",
    "Xylophone", "Tubular Bells", "Dulcimer", "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion", "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)",
    "Electric Guitar (jazz)", "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics", "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)",
    "Fretless Bass", "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2", "Violin", "Viola", "Cello",
    "Contrabass", "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani", "String Ensemble 1",
    "String Ensemble 2", "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs", "Synth Voice",
    "Orchestra Hit", "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1",
    "Synth Brass 2", "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn", "Bassoon",
    "Clarinet", "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)", "Lead 5 (charang)",
    "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)", "Pad 1 (new age)", "Pad 2 (warm)",
    "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)", "FX 5 (brightness)", "FX 6 (goblins)",
    "FX 7 (echoes)", "FX 8 (sci-fi)", "Sitar", "Banjo", "Shamisen", "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock", "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet", "Telephone Ring", "Helicopter", "Applause",
    "Gunshot",
)  # fmt: skip


def program_name(program: int, is_drum: bool = False) -> str:
    """The General MIDI name of a program (0-based), or 'Drums' for a drum track."""
    return "Drums" if is_drum else GM_PROGRAMS[int(program) % 128]


def _save_figure(fig, out_png: Path) -> None:
    """Lay out and write a matplotlib figure as PNG, atomically."""
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")


# -------------------------------------------------------------------------------------------- audio


def write_wav(path: str | Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Write float samples in [-1, 1] (shape (n,) mono or (n, channels)) as 16-bit PCM WAV, atomically."""
    import soundfile

    path = Path(path)
    data = np.asarray(samples, dtype=np.float32)
    if data.ndim not in (1, 2):
        raise BadInput(f"audio must have shape (samples,) or (samples, channels), not {data.shape}", path)
    if sample_rate <= 0:
        raise BadInput(f"the sample rate must be positive, not {sample_rate}", path)
    with atomic_path(path) as tmp:
        soundfile.write(
            str(tmp), np.clip(np.nan_to_num(data), -1.0, 1.0), int(sample_rate), subtype="PCM_16", format="WAV"
        )
    return path


@contextmanager
def _midi_file(score_or_path: symusic.Score | str | Path) -> Iterator[tuple[Path, symusic.Score]]:
    """A MIDI file on disk for `score_or_path` (a temporary one for a Score), and the loaded score."""
    if isinstance(score_or_path, str | Path):
        path = Path(score_or_path)
        yield path, load_midi(path)  # load first: bad files get our error, not FluidSynth's
        return
    score = score_or_path
    if sum(len(t.notes) for t in score.tracks) == 0:
        raise BadInput("the piece has no notes to render")
    with tempfile.TemporaryDirectory(prefix="orchestrion-render-") as tmp:
        path = save_midi(score, Path(tmp) / "piece.mid")  # each program its own channel, drums on 10
        yield path, score


def render_wav(
    score_or_midi_path: symusic.Score | str | Path,
    out: str | Path,
    *,
    sample_rate: int = 44100,
    mono: bool = False,
) -> Path:
    """Render MIDI to a 16-bit WAV with FluidSynth and the General MIDI soundfont.

    The result is peak-normalised to -1 dBFS; `mono` averages the two channels (the audio model uses
    `sample_rate=16000, mono=True`).
    """
    import soundfile

    out = Path(out)
    if not 8000 <= sample_rate <= 192000:
        raise BadInput(f"the sample rate must be between 8000 and 192000 Hz, not {sample_rate}", out)
    fluidsynth = require("fluidsynth")
    soundfont = find_soundfont()
    with _midi_file(score_or_midi_path) as (midi, score), tempfile.TemporaryDirectory(prefix="orchestrion-wav-") as tmp:
        seconds = float(score.to("second").end())
        raw = Path(tmp) / "raw.wav"
        args = [
            fluidsynth,
            "-n",
            "-i",
            "-q",
            "-g",
            str(FLUIDSYNTH_GAIN),
            "-r",
            str(sample_rate),
            "-T",
            "wav",
            "-O",
            "s16",
            "-F",
            str(raw),
            str(soundfont),
            str(midi),
        ]
        # Fast rendering runs far quicker than real time; the limit only catches a stuck process.
        run_tool(args, timeout=60 + 2 * seconds)
        if not raw.is_file() or raw.stat().st_size <= 44:
            raise BadInput("FluidSynth wrote no audio for this piece", midi)
        audio, rate = soundfile.read(str(raw), dtype="float32", always_2d=True)  # (n, channels)
    if mono:
        audio = audio.mean(axis=1)
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak > 0:
        audio = audio * (PEAK / peak)
    return write_wav(out, audio, rate)


# ---------------------------------------------------------------------------------------- piano roll


def bar_lines(score: symusic.Score) -> np.ndarray:
    """Tick positions of every bar line from 0 to past the end, following the score's meters."""
    end = max(int(score.end()), 1)
    lines: list[int] = []
    for span in time_signatures(score):
        bar = max(1, round(score.tpq * 4 * span.numerator / span.denominator))
        stop = span.end if span.end > span.start else end
        lines.extend(range(span.start, max(stop, span.start + 1), bar))
    last_bar = max(
        1, round(score.tpq * 4 * time_signatures(score)[-1].numerator / time_signatures(score)[-1].denominator)
    )
    while not lines or lines[-1] < end:
        lines.append((lines[-1] + last_bar) if lines else last_bar)
    return np.asarray(sorted(set(lines)), dtype=np.float64)


def _pitch_label(pitch: int) -> str:
    return f"C{pitch // 12 - 1}"


def _track_colour(name: str, index: int) -> str:
    return VOICE_COLOURS.get(name.strip().lower(), PALETTE[index % len(PALETTE)])


def render_pianoroll(score: symusic.Score | str | Path, out_png: str | Path, *, title: str | None = None) -> Path:
    """Draw a DAW-style piano roll: one colour per track, bars on the x axis, a legend of tracks."""
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    if isinstance(score, str | Path):
        title = title if title is not None else Path(score).name
        score = load_midi(score)
    out_png = Path(out_png)
    tracks = [t for t in score.tracks if len(t.notes)]
    if not tracks:
        raise BadInput("the piece has no notes to draw", out_png)
    bars = bar_lines(score)
    n_bars = len(bars) - 1
    to_bars = lambda ticks: np.interp(ticks, bars, np.arange(len(bars)))  # noqa: E731 (ticks -> bar position)

    pitches = np.concatenate([t.notes.numpy()["pitch"] for t in tracks]).astype(int)
    low, high = int(pitches.min()) - 2, int(pitches.max()) + 2
    width = float(np.clip(3 + 0.45 * n_bars, 6, 24))
    height = float(np.clip(2.5 + 0.09 * (high - low), 3.5, 9))
    fig, ax = plt.subplots(figsize=(width, height), dpi=100)
    try:
        for pitch in range(low, high + 1):  # shade black-key rows, as a keyboard would
            if pitch % 12 in (1, 3, 6, 8, 10):
                ax.axhspan(pitch - 0.5, pitch + 0.5, color="#f0f0f0", lw=0, zorder=0)
        for x in range(n_bars + 1):
            ax.axvline(x, color="#b0b0b0", lw=0.8, zorder=1)
        for i, track in enumerate(score.tracks):
            if len(track.notes) == 0:
                continue
            a = track.notes.numpy()
            start = to_bars(a["time"].astype(np.float64))
            end = to_bars((a["time"] + a["duration"]).astype(np.float64))
            label = f"{track.name or f'track {i + 1}'} ({program_name(track.program, track.is_drum)})"
            ax.barh(
                a["pitch"],
                end - start,
                left=start,
                height=0.8,
                color=_track_colour(track.name, i),
                edgecolor="black",
                linewidth=0.3,
                label=label,
                zorder=2,
            )
        ax.set_xlim(0, n_bars)
        ax.set_ylim(low - 0.5, high + 0.5)
        step = 1 if n_bars <= 32 else int(np.ceil(n_bars / 32))
        ax.set_xticks(np.arange(0, n_bars, step) + 0.5, [str(b + 1) for b in range(0, n_bars, step)])
        ax.tick_params(axis="x", length=0)
        cs = [p for p in range(low, high + 1) if p % 12 == 0]
        ax.set_yticks(cs, [_pitch_label(p) for p in cs])
        ax.set_xlabel("bar")
        ax.set_ylabel("pitch")
        if title:
            ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
        _save_figure(fig, out_png)
    finally:
        plt.close(fig)
    return out_png


def render_spectrogram(
    audio: np.ndarray | str | Path, out_png: str | Path, *, sample_rate: int | None = None, title: str | None = None
) -> Path:
    """Draw a waveform and a log-frequency spectrogram of mono or stereo audio (samples or a WAV file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(audio, str | Path):
        import soundfile

        title = title if title is not None else Path(audio).name
        audio, sample_rate = soundfile.read(str(audio), dtype="float32", always_2d=True)
    samples = np.asarray(audio, dtype=np.float32)
    samples = samples.mean(axis=1) if samples.ndim == 2 else samples  # (n,)
    out_png = Path(out_png)
    if sample_rate is None or sample_rate <= 0 or samples.size < 256:
        raise BadInput("need at least 256 samples and a sample rate to draw a spectrogram", out_png)
    seconds = np.arange(samples.size) / sample_rate
    fig, (wave, spec) = plt.subplots(2, 1, figsize=(10, 5), dpi=100, sharex=True, height_ratios=(1, 2))
    try:
        # The envelope (min and max per block of samples) looks the same as every sample and draws fast.
        block = max(1, samples.size // 2000)
        usable = samples[: samples.size // block * block].reshape(-1, block)  # (blocks, block)
        times = seconds[: usable.shape[0] * block : block]
        wave.fill_between(times, usable.min(axis=1), usable.max(axis=1), color="#1f77b4", lw=0)
        wave.set_ylim(-1, 1)
        wave.set_ylabel("amplitude")
        with np.errstate(divide="ignore"):  # digital silence is -inf dB; it is drawn as the floor
            spec.specgram(samples, NFFT=1024, Fs=sample_rate, noverlap=512, cmap="magma", scale="dB", vmin=-120)
        spec.set_yscale("symlog", linthresh=200)
        spec.set_ylim(50, sample_rate / 2)
        spec.set_ylabel("frequency (Hz)")
        spec.set_xlabel("seconds")
        if title:
            wave.set_title(title)
        _save_figure(fig, out_png)
    finally:
        plt.close(fig)
    return out_png


# --------------------------------------------------------------------------------------------- score


TITLE_MARKER = "Title: "  # a MIDI marker at time 0 that names the piece (written by composers, read here)
VOICE_CLEFS = {"soprano": "treble", "alto": "treble", "tenor": "treble8vb", "bass": "bass"}


def midi_title(score: symusic.Score) -> str | None:
    """The title a MIDI file carries as a `Title: ...` marker, or None."""
    for marker in score.markers:
        if marker.text.startswith(TITLE_MARKER):
            return marker.text[len(TITLE_MARKER) :].strip() or None
    return None


def _musicxml_from_midi(path: Path, title: str | None = None) -> str:
    """MIDI -> MusicXML text through music21 (verovio cannot read MIDI), engraved as a musician expects:
    the title (given, else the file's `Title:` marker; never music21's 'Music21 Fragment'), the key
    signature (the file's, else the estimated key's) and a clef per part: treble for soprano and alto, treble
    with the octave mark below for the tenor, bass for the bass, and for other parts the clef of their range."""
    from music21 import clef, converter, key, metadata
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    from orchestrion.core.music import estimate_key

    notes = load_midi(path)
    try:
        parsed = converter.parse(str(path), format="midi", quantizePost=True, forceSource=True)
    except Exception as exc:  # music21 raises many error types on odd files
        raise BadInput(f"music21 could not read the MIDI file: {exc}", path) from exc
    title = title or midi_title(notes)
    parsed.metadata = metadata.Metadata()
    if title:
        parsed.metadata.title = title
    if len(notes.key_signatures):  # music21 puts a MIDI key signature on one part only: every part gets it
        signature = notes.key_signatures[0]
        opening = key.KeySignature(int(signature.key)).asKey("minor" if signature.tonality else "major")
    else:
        estimated = estimate_key(notes)
        opening = key.Key(PITCH_SPELLING[estimated.tonic], estimated.mode)
    for part in parsed.parts:
        first = part.getElementsByClass("Measure").first()
        if first is None:
            continue
        if not any(k.offset == 0 for k in first.getElementsByClass("KeySignature")):
            first.insert(0, key.Key(opening.tonic, opening.mode))
        name = VOICE_CLEFS.get((part.partName or "").strip().lower())
        wanted = (
            {"treble": clef.TrebleClef, "treble8vb": clef.Treble8vbClef, "bass": clef.BassClef}[name]()
            if name
            else clef.bestClef(part.flatten(), allowTreble8vb=True)
        )
        for old in first.getElementsByClass("Clef"):
            first.remove(old)
        first.insert(0, wanted)
    text = GeneralObjectExporter(parsed).parse().decode("utf-8")
    if not title:  # music21 names an untitled score "Music21 Fragment"
        text = text.replace("<movement-title>Music21 Fragment</movement-title>", "")
    return text


# Note names as key signatures spell them (flats for F, Bb, Eb, Ab; sharps otherwise).
PITCH_SPELLING = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")


def render_svg(source: symusic.Score | str | Path, out_svg: str | Path, *, title: str | None = None) -> Path:
    """Engrave a score as SVG with verovio, from MusicXML, ABC or MIDI (through music21 -> MusicXML).

    For MIDI, `title` (else the file's `Title:` marker) heads the score, the key signature is the file's
    (else the estimated key's) and chorale voices get their clefs (the tenor's treble with an 8 below).
    A long piece that needs several pages gets them stacked into one SVG file per page:
    `out.svg`, `out-2.svg`, ...
    """
    from importlib.resources import files

    import verovio

    out_svg = Path(out_svg)
    # verovio keeps its font path per thread and sets it only in the thread that imported it: a toolkit made
    # in another thread (a server worker) finds no fonts unless the path is set again here.
    verovio.setDefaultResourcePath(str(files("verovio") / "data"))
    # verovio warns on stderr about every ABC field it ignores; only its errors are worth showing.
    verovio.enableLog(verovio.LOG_ERROR)
    toolkit = verovio.toolkit()
    toolkit.setOptions(
        {
            "pageWidth": 2100,
            "pageHeight": 60000,
            "adjustPageHeight": True,
            "scale": 40,
            "footer": "none",
            "header": "auto",
        }
    )
    if not isinstance(source, str | Path):
        with tempfile.TemporaryDirectory(prefix="orchestrion-svg-") as tmp:
            midi = Path(tmp) / "piece.mid"
            source.dump_midi(str(midi))
            return render_svg(midi, out_svg, title=title)
    path = Path(source)
    if not path.is_file():
        raise BadInput("no such file", path)
    suffix = path.suffix.lower()
    if suffix == ".mxl":
        data = path.read_bytes()
        loaded = toolkit.loadZipDataBuffer(data, len(data))
    elif suffix in MUSICXML_SUFFIXES or suffix in ABC_SUFFIXES:
        text = path.read_text(encoding="utf-8", errors="replace")
        if suffix in ABC_SUFFIXES and "X:" not in text:
            raise BadInput("not an ABC tune (no X: line)", path)
        loaded = toolkit.loadData(text)
    else:
        load_midi(path)
        loaded = toolkit.loadData(_musicxml_from_midi(path, title))
    if not loaded or toolkit.getPageCount() == 0:
        raise BadInput("verovio could not read this score", path)
    for page in range(1, toolkit.getPageCount() + 1):
        target = out_svg if page == 1 else out_svg.with_name(f"{out_svg.stem}-{page}{out_svg.suffix}")
        write_atomic(target, toolkit.renderToSVG(page))
    return out_svg


# ------------------------------------------------------------------------------------------ dispatch


def score_from_file(
    source: str | Path, work_dir: Path, *, strict: bool = False, dropped: list[str] | None = None
) -> tuple[symusic.Score, Path]:
    """Load MIDI, ABC (its first tune, compiled with abc2midi) or MusicXML (through music21) as a score and a
    MIDI file to synthesise (a damaged MIDI file's readable part is written afresh; `strict` refuses it).

    Errors name `source`, never a file of `work_dir`.
    """
    path = Path(source)
    if not path.is_file():
        raise BadInput("no such file", path)
    suffix = path.suffix.lower()
    midi = work_dir / f"{path.stem}.mid"
    if suffix in MIDI_SUFFIXES:
        score, lost = read_midi(path, strict=strict)
        if dropped is not None:
            dropped.extend(lost)  # what a damaged file lost, a line per kind
        if not lost:
            return score, path
        return score, save_midi(score, midi)
    if suffix in ABC_SUFFIXES:
        tunes = abcfile.tunes_of(abcfile.decode(path.read_bytes()))
        if not tunes:
            raise BadInput("not an ABC tune (no X: line, and no block with a K: field)", path)
        try:
            return load_midi(abc_to_midi(tunes[0].text, midi)), midi
        except BadInput as exc:
            raise BadInput(exc.reason, path) from exc
    if suffix in MUSICXML_SUFFIXES:
        from music21 import converter

        try:
            score = music21_to_score(converter.parse(str(path), forceSource=True))
        except BadInput as exc:
            raise BadInput(exc.reason, path) from exc
        except Exception as exc:  # music21's parse errors come in many types
            raise BadInput(f"music21 could not read the MusicXML file: {exc}", path) from exc
        return score, save_midi(score, midi)
    raise BadInput(f"cannot render {suffix or 'files without a suffix'}: use one of {', '.join(RENDER_SUFFIXES)}", path)


def _numbered(path: str | Path | None, number: int, count: int) -> Path | None:
    """`out.svg` for a file of one tune; `out-2.svg` for its second tune when it has several."""
    if path is None or count == 1:
        return None if path is None else Path(path)
    path = Path(path)
    return path.with_name(f"{path.stem}-{number}{path.suffix}")


def render_file(
    source: str | Path,
    *,
    wav: str | Path | None = None,
    png: str | Path | None = None,
    svg: str | Path | None = None,
    sample_rate: int = 44100,
    strict: bool = False,
    problems: list[str] | None = None,
    repaired: list[str] | None = None,
    child: Isolated | None = None,
    timeout: float | None = None,
) -> list[Path]:
    """Render a .mid, .abc or MusicXML file to any of WAV, PNG and SVG (all three, beside it, if none is given).

    Engraving and synthesis run in a child process (`orchestrion.core.isolate`; `child` reuses one), so input
    that crashes verovio or hangs a tool is our BadInput naming `source`, not the end of this process. Each
    tune of an ABC file is rendered on its own, to `out-1.svg`, `out-2.svg`, ... when there are several;
    a tune that fails goes to `problems` (when given, else it is raised once the others are written), and
    what a damaged MIDI file lost to `repaired` (a line per kind; `strict` refuses such a file). `timeout`
    bounds each engraving and synthesis (default: 2 minutes plus the piece's length, 3 times over).
    """
    from orchestrion.core.isolate import Isolated

    source = Path(source)
    if wav is None and png is None and svg is None:
        wav, png, svg = source.with_suffix(".wav"), source.with_suffix(".png"), source.with_suffix(".svg")
    tunes: list[abcfile.Tune | None] = [None]
    if source.suffix.lower() in ABC_SUFFIXES and source.is_file():
        tunes = abcfile.tunes_of(abcfile.decode(source.read_bytes())) or [None]
    written: list[Path] = []
    failed: list[str] = []
    worker = child or Isolated()
    try:
        with tempfile.TemporaryDirectory(prefix="orchestrion-render-") as tmp:
            for tune in tunes:
                number = tune.number if tune else 1
                outs = [_numbered(p, number, len(tunes)) for p in (wav, png, svg)]
                try:
                    written += _render_one(
                        source, tune, outs, Path(tmp), worker, sample_rate, strict, timeout, repaired=repaired
                    )
                except BadInput as exc:
                    if tune is None or len(tunes) == 1:
                        raise BadInput(exc.reason, source) from exc
                    failed.append(f"{tune.label}: {exc.reason}")
    finally:
        if child is None:
            worker.close()
    if failed and (problems is None or not written):
        raise BadInput("; ".join(failed), source)
    if problems is not None:
        problems.extend(f"{source}: {line}" for line in failed)
    return written


def _render_one(
    source: Path,
    tune: abcfile.Tune | None,
    outs: list[Path | None],
    tmp: Path,
    worker: Isolated,
    sample_rate: int,
    strict: bool,
    timeout: float | None,
    repaired: list[str] | None = None,
) -> list[Path]:
    """One piece (a MIDI or MusicXML file, or one tune of an ABC file) to the outputs given (wav, png, svg)."""
    wav, png, svg = outs
    if tune is None:
        score, midi = score_from_file(source, tmp, strict=strict, dropped=repaired)
        engrave, title = source, source.name
    else:
        problem = abcfile.engraving_problem(tune.text) if svg is not None else None
        if problem:  # verovio would die on it; the child process is the net for what this does not know
            raise BadInput(f"cannot engrave the score: {problem}", source)
        engrave, midi = tmp / f"tune-{tune.number}.abc", tmp / f"tune-{tune.number}.mid"
        engrave.write_text(tune.text, encoding="utf-8")
        score, title = load_midi(abc_to_midi(tune.text, midi)), f"{source.name}, {tune.label}"
    seconds = float(score.to("second").end())
    written = []
    if wav is not None:
        limit = timeout or 120 + 3 * seconds
        worker.call("wav", midi, wav, sample_rate=sample_rate, timeout=limit, name=source)
        written.append(Path(wav))
    if png is not None:
        written.append(render_pianoroll(score, png, title=title))
    if svg is not None:
        worker.call("svg", engrave, svg, timeout=timeout or 120 + seconds, name=source)
        written.append(Path(svg))
    return written
