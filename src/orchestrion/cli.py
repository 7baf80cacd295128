"""The `orchestrion` command line: wiring only, no logic.

Every command parses its options and calls one function elsewhere. Heavy libraries (torch,
transformers, music21, audio) are imported inside the commands so that `orchestrion --help` is fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="orchestrion",
    help="Learn music from a corpus and compose new music (mmm, abc, markov and sashimi models).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
corpus_app = typer.Typer(help="Built-in corpora: list them, export them as files.", no_args_is_help=True)
encode_app = typer.Typer(help="Turn files into a training dataset.", no_args_is_help=True)
decode_app = typer.Typer(help="Turn model tokens or text back into music.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model on a dataset or corpus.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
app.add_typer(encode_app, name="encode")
app.add_typer(decode_app, name="decode")
app.add_typer(train_app, name="train")

Inputs = Annotated[list[str], typer.Argument(help="files, folders or builtin:CORPUS names")]
OutDir = Annotated[Path, typer.Option("--out", "-o", help="output directory")]
Workers = Annotated[int, typer.Option("--workers", "-j", help="parallel worker processes (0 = all cores)")]


def _console():
    from rich.console import Console

    return Console(stderr=True)


# ------------------------------------------------------------------------------------------- corpus


@corpus_app.command("list")
def corpus_list() -> None:
    """List the built-in corpora and whether they are cached."""
    from orchestrion.core import corpora

    corpora.print_corpus_table()


@corpus_app.command("export")
def corpus_export(
    source: Annotated[
        str,
        typer.Argument(help="a built-in corpus (bach-chorales, palestrina, folk-abc) or a folder of MIDI/ABC files"),
    ],
    out: OutDir,
    workers: Workers = 0,
    engine: Annotated[str, typer.Option(help="local or ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --engine ray)")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="conversion cache (default ~/.cache/orchestrion)")] = None,
) -> None:
    """Write a built-in corpus, or the usable files of a folder, as MIDI and ABC files (bad ones in report.json)."""
    from orchestrion.core import corpora
    from orchestrion.errors import BadInput

    name = source.removeprefix("builtin:")
    if name in corpora.CORPORA:
        corpora.export_corpus(name, out, workers=workers, cache_dir=cache_dir, engine=engine, address=address)
    elif Path(source).expanduser().is_dir():
        from orchestrion.core.folder_export import export_folder

        report = export_folder(Path(source).expanduser(), out)
        if not report["written"]:  # an empty corpus is a failure: the reasons are listed above
            found = (
                f"{report['files']} file(s), {len(report['bad'])} bad, {len(report['ignored'])} neither MIDI nor ABC"
            )
            raise BadInput(f"no usable MIDI or ABC file to export ({found}; see {out / 'report.json'})", source)
    else:
        known = ", ".join(corpora.CORPORA)
        raise BadInput(f"unknown corpus {source!r} and no such folder; the built-in corpora are: {known}")


# ------------------------------------------------------------------------------------------- encode


@encode_app.command("mmm")
def encode_mmm(
    inputs: Inputs,
    out: OutDir,
    bars: Annotated[int, typer.Option(help="window length in bars (4, 8 or 16)")] = 4,
    hop: Annotated[int, typer.Option(help="bars between window starts")] = 2,
    transpose: Annotated[str, typer.Option(help="semitone range LO:HI (HI exclusive), e.g. -5:6")] = "0:1",
    fill: Annotated[bool, typer.Option("--fill", help="bar infilling (FILL_IN ... FILL_START/FILL_END)")] = False,
    permute_tracks: Annotated[bool, typer.Option("--permute-tracks", help="shuffle track order")] = False,
    voices: Annotated[
        bool, typer.Option("--voices", help="a sung corpus: parts named soprano..bass are voices, whatever program")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="refuse damaged files instead of repairing them")] = False,
    workers: Workers = 0,
    engine: Annotated[str, typer.Option(help="local or ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --engine ray)")] = None,
    chunk: Annotated[int, typer.Option(help="files per worker task", hidden=True)] = 32,
) -> None:
    """Encode MIDI into an mmmtrack token dataset (parallel, resumable, deterministic)."""
    from orchestrion.errors import BadInput
    from orchestrion.mmm.dataset import Limits, PipelineConfig, encode_mmm_dataset, parse_transpose
    from orchestrion.mmm.vocabulary import MMMOptions

    options = MMMOptions(
        bars=bars, hop=hop, transpose=parse_transpose(transpose), fill=fill, permute_tracks=permute_tracks,
        voices=voices,
    )  # fmt: skip
    config = PipelineConfig(
        options=options, limits=Limits(strict=strict), workers=workers, engine=engine, address=address, chunk=chunk
    )
    stats = encode_mmm_dataset(inputs, out, config)
    files = stats["files"]
    summary = (
        f"{stats['windows']} sequences, {stats['tokens']} tokens from {files['ok']} files "
        f"({files['skipped']} skipped, {files['failed']} failed; see {out / 'manifest.jsonl'})"
    )
    if stats["windows"] == 0:  # a dataset with nothing in it is a failure, whatever was written
        why = "; ".join(stats["problems"])
        raise BadInput(f"no window to train on: {summary}{'; for example ' + why if why else ''}", out)
    print(f"{out}: {summary}")


@encode_app.command("abc")
def encode_abc(
    inputs: Inputs,
    out: OutDir,
    keep: Annotated[str, typer.Option(help="keep tunes that compile: clean, warnings or all")] = "warnings",
    workers: Workers = 0,
    engine: Annotated[str, typer.Option(help="local or ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --engine ray)")] = None,
    skip: Annotated[list[str] | None, typer.Option("--skip", help="a cleaning step to switch off (repeatable)")] = None,
    abc2abc: Annotated[bool, typer.Option("--abc2abc", help="also re-layout every tune through abc2abc")] = False,
    vocab: Annotated[
        str,
        typer.Option(help="the tokens: bpe (byte-level BPE, 2,048), bpe-N (N = 256 ... 4096) or folk (one per symbol)"),
    ] = "bpe",
) -> None:
    """Clean ABC tunes into a spaceless dataset with a BPE or folk-symbol tokenizer."""
    from orchestrion.abc.dataset import encode_abc as run
    from orchestrion.abc.text import STEPS
    from orchestrion.errors import InvalidRequest

    unknown = sorted(set(skip or []) - {s.name for s in STEPS})
    if unknown:
        raise InvalidRequest("skip", f"unknown cleaning steps {unknown}; known: {', '.join(s.name for s in STEPS)}")
    steps = [s.name for s in STEPS if (s.default or (abc2abc and s.name == "abc2abc")) and s.name not in (skip or [])]
    run(inputs, out, keep=keep, workers=workers, steps=steps, engine=engine, address=address, vocab=vocab)


@encode_app.command("events")
def encode_events(
    inputs: Inputs,
    out: OutDir,
    workers: Workers = 0,
    engine: Annotated[str, typer.Option(help="local or ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --engine ray)")] = None,
) -> None:
    """Encode MIDI into melody/chord events for the Markov model."""
    from orchestrion.errors import BadInput
    from orchestrion.markov.dataset import encode_to_dir

    events = encode_to_dir(inputs, out, workers=workers, engine=engine, address=address)
    if events.stat().st_size == 0:  # nothing encoded is a failure, whatever was written
        problems = (out / "problems.txt").read_text(encoding="utf-8").splitlines()
        example = f"; for example {problems[0]}" if problems else ""
        raise BadInput(f"no piece could be encoded ({len(problems)} file(s) skipped, see problems.txt){example}", out)
    print(events)


@encode_app.command("audio")
def encode_audio(
    inputs: Inputs,
    out: OutDir,
    chunk_seconds: Annotated[float, typer.Option(help="chunk length in seconds")] = 60.0,
    quantization: Annotated[str, typer.Option(help="mulaw or linear")] = "mulaw",
    workers: Workers = 0,
    engine: Annotated[str, typer.Option(help="local or ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --engine ray)")] = None,
    piano_limit: Annotated[int | None, typer.Option(help="render only the first N chorales for builtin:piano")] = None,
) -> None:
    """Encode audio into 16 kHz 8-bit mu-law shards for SaShiMi (INPUT: files, folders or builtin:piano)."""
    from orchestrion.sashimi.dataset import encode_audio as encode

    meta = encode(
        inputs,
        out,
        chunk_seconds=chunk_seconds,
        quantization=quantization,
        workers=workers,
        piano_limit=piano_limit,
        engine=engine,
        address=address,
    )
    for split, info in meta["splits"].items():
        print(
            f"{split}: {len(info['shards'])} files, {info['chunks']} chunks, {info['samples'] / meta['sample_rate']:.0f} s"
        )
    print(out / "dataset.json")


# ------------------------------------------------------------------------------------------- decode


@decode_app.command("mmm")
def decode_mmm(
    source: Annotated[str, typer.Argument(help="a file of mmm tokens (one sequence per line) or the tokens")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .mid")],
) -> None:
    """Decode mmm tokens into a MIDI file, repairing malformed model output."""
    from orchestrion.core.files import write_atomic
    from orchestrion.core.music import midi_bytes
    from orchestrion.errors import BadInput
    from orchestrion.mmm.codec import decode

    path = Path(source)
    if "PIECE_START" in source or "TRACK_START" in source or "NOTE_ON=" in source:
        text = source  # tokens (a long line is no file name: asking the file system would fail)
    elif path.is_file():
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        if not lines:
            raise BadInput("the file holds no tokens", path)
        text = lines[0]
    else:
        raise BadInput("neither a file nor a line of mmm tokens", source)
    score, repairs = decode(text)
    data, channels = midi_bytes(score)  # channels given out properly: drums on 10, one program per channel
    write_atomic(out, data)
    for repair in repairs + channels:
        _console().print(f"[yellow]repaired:[/yellow] {repair}")
    print(out)


@decode_app.command("abc")
def decode_abc(
    source: Annotated[Path, typer.Argument(help="an ABC file")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output .mid")],
) -> None:
    """Compile ABC into MIDI with abc2midi, each tune of the file on its own (OUT-1.mid, OUT-2.mid, ... when
    there are several); a spaceless or one-line generated tune is made readable first."""
    from rich.markup import escape

    from orchestrion.abc.text import NEWLINE_MARK, to_readable
    from orchestrion.core import abcfile
    from orchestrion.core.abcmidi import compile_tunes
    from orchestrion.errors import BadInput

    if not source.is_file():
        raise BadInput("no such file", source)
    text = abcfile.decode(source.read_bytes())
    if NEWLINE_MARK in text or not abcfile.split(text).tunes:  # a generated tune, one line, maybe without X:
        text = to_readable(text)
    tunes = abcfile.tunes_of(text)
    if not tunes:
        raise BadInput("no tune (no X: line, and no block with a K: field)", source)
    written, failed = compile_tunes(tunes, out)
    if len(tunes) == 1 and failed:
        raise BadInput(failed[0][1], source)  # name the user's file, not the output
    console = _console()
    for tune, path, validity in written:
        note = f"{validity.status}{': ' + validity.messages[0] if validity.messages else ''}"
        console.print(f"{escape(str(source))} {escape(tune.label)} -> {escape(str(path))} ({escape(note)})")
    for tune, reason in failed:
        console.print(f"[red]not compiled:[/red] {escape(f'{source}: {tune.label}: {reason}')}", soft_wrap=True)
    if not written:
        raise BadInput(f"no tune could be compiled ({len(failed)} tried; the reasons are above)", source)


# -------------------------------------------------------------------------------------------- train


@train_app.command("markov")
def train_markov(
    data: Annotated[list[str], typer.Argument(help="MIDI files, folders, builtin:CORPUS, .abc files")],
    out: OutDir,
    workers: Workers = 0,
    engine: Annotated[str, typer.Option(help="local or ray")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --engine ray)")] = None,
    style: Annotated[str, typer.Option(help="the model's default style: chorale or lively")] = "chorale",
) -> None:
    """Train the Markov composer (melody and chord chains, major and minor)."""
    from rich.markup import escape

    from orchestrion.markov.dataset import REPAIRED
    from orchestrion.markov.training import train

    composer = train(data, out, workers=workers, engine=engine, address=address, style=style)
    console = _console()
    for problem in composer.problems:  # "repaired: FILE: ..." (read anyway) or "FILE: reason" (skipped)
        kind, line = ("repaired", problem[len(REPAIRED) :]) if problem.startswith(REPAIRED) else ("skipped", problem)
        console.print(f"[yellow]{kind}[/yellow] " + escape(line), highlight=False, soft_wrap=True)
    if composer.problems:
        fixed, report = sum(p.startswith(REPAIRED) for p in composer.problems), escape(str(Path(out) / "report.json"))
        console.print(
            f"{len(composer.problems) - fixed} file(s) skipped, {fixed} repaired: see {report}", soft_wrap=True
        )
    print(out)


@train_app.command("gpt")
def train_gpt(
    data: Annotated[Path, typer.Argument(help="a dataset written by 'encode mmm' or 'encode abc'")],
    out: OutDir,
    preset: Annotated[str, typer.Option(help="seed, small or tiny")] = "small",
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --out")] = False,
    init: Annotated[str | None, typer.Option(help="start from a model, e.g. builtin:chorales")] = None,
    steps: Annotated[int | None, typer.Option(help="optimizer steps (default from the preset)")] = None,
) -> None:
    """Train the GPT-2 composer on mmm tokens or ABC text (under torchrun: DDP across processes)."""
    import shlex

    from orchestrion.gpt.training import train_gpt as _train_gpt

    result = _train_gpt(
        data,
        out,
        preset_name=preset,
        resume=resume,
        init=init,
        steps=steps,
        command=shlex.join(["orchestrion", *sys.argv[1:]]),
    )
    _console().print(
        f"{out}: {result.steps} steps, validation loss {result.val_loss:.4f}, {result.tokens_per_second:,.0f} tokens/s"
    )


@train_app.command("sashimi")
def train_sashimi(
    data: Annotated[Path, typer.Argument(help="a dataset written by 'encode audio'")],
    out: OutDir,
    preset: Annotated[str, typer.Option(help="named settings: reference (the first builtin:piano) or piano")] = (
        "reference"
    ),
    layers: Annotated[int | None, typer.Option(help="S4 blocks per stage: 2 or 8")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue from the last checkpoint in --out")] = False,
    steps: Annotated[int | None, typer.Option(help="optimizer steps")] = None,
    seq_len: Annotated[int | None, typer.Option(help="training window in samples (a multiple of 16)")] = None,
    batch_size: Annotated[int | None, typer.Option(help="windows per step")] = None,
    lr: Annotated[float | None, typer.Option(help="peak learning rate")] = None,
) -> None:
    """Train the SaShiMi raw-audio composer; prints the metric table (loss, bits per byte, accuracy@k)."""
    from orchestrion.sashimi import training as sashimi

    settings = sashimi.preset(preset)
    if layers is not None:
        settings.layers = layers
    if seq_len is not None:
        settings.seq_len = seq_len
    settings.train.update({k: v for k, v in (("batch_size", batch_size), ("lr", lr)) if v is not None})
    card = sashimi.train_sashimi(data, out, settings, resume=resume, steps=steps)
    print(sashimi.metric_table(card["metrics"]))


# ----------------------------------------------------------------------------------------- generate


def _int_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated whole numbers, got {text!r}") from None


@app.command()
def generate(
    model: Annotated[str | None, typer.Argument(help="a model directory or builtin:NAME")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="output file: .mid, .wav or .abc")] = Path("piece.mid"),
    prompt: Annotated[str | None, typer.Option(help="a prompt file (MIDI, ABC or audio) to continue")] = None,
    bars: Annotated[int | None, typer.Option(help="number of 4/4 measures")] = None,
    seconds: Annotated[float | None, typer.Option(help="seconds of audio")] = None,
    voices: Annotated[str | None, typer.Option(help="voice kinds, e.g. 0,0,1,1,2 (0 high, 1 low, 2 chords)")] = None,
    programs: Annotated[str | None, typer.Option(help="General MIDI program per voice, e.g. 0,40,32")] = None,
    key: Annotated[str | None, typer.Option(help="key and mode, e.g. 'D minor'")] = None,
    tempo: Annotated[float | None, typer.Option(help="quarter notes per minute")] = None,
    temperature: Annotated[float | None, typer.Option(help="sampling temperature")] = None,
    top_p: Annotated[float | None, typer.Option(help="nucleus sampling mass")] = None,
    top_k: Annotated[int | None, typer.Option(help="sample among the k most likely tokens")] = None,
    repetition_penalty: Annotated[float | None, typer.Option(help="penalty for repeated tokens (>1)")] = None,
    style: Annotated[str | None, typer.Option(help="markov: chorale or lively")] = None,
    max_hold_bars: Annotated[float | None, typer.Option(help="markov: longest one pitch is held, in bars")] = None,
    seed: Annotated[int | None, typer.Option(help="same seed, same piece")] = None,
    num_samples: Annotated[int | None, typer.Option("--num-samples", "-n", help="pieces to make")] = None,
    instruments: Annotated[
        str | None, typer.Option(help="mmm instruments per track, e.g. SOPRANO,ALTO or 0,32")
    ] = None,
    fill_bars: Annotated[str | None, typer.Option(help="mmm bars to fill in, e.g. 2,3")] = None,
    density: Annotated[str | None, typer.Option(help="mmm note-density bin per track, e.g. 2,5")] = None,
    keep_tracks: Annotated[str | None, typer.Option(help="prompt tracks to keep, e.g. 0")] = None,
    title: Annotated[str | None, typer.Option(help="ABC title")] = None,
    meter: Annotated[str | None, typer.Option(help="ABC meter, e.g. 6/8")] = None,
    rhythm: Annotated[str | None, typer.Option(help="ABC rhythm, e.g. jig")] = None,
    form: Annotated[
        str | None, typer.Option(help="ABC form: strains (two repeated 8-bar strains; dance tunes) or free")
    ] = None,
    replay: Annotated[Path | None, typer.Option(help="a provenance sidecar (piece.mid.json) to make again")] = None,
) -> None:
    """Compose a piece with a model and write it with its provenance sidecar."""
    from orchestrion.generate import generate_to_files
    from orchestrion.requests import ComposeRequest

    fields = {
        "bars": bars,
        "seconds": seconds,
        "voices": _int_list(voices),
        "programs": _int_list(programs),
        "key": key,
        "tempo": tempo,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "repetition_penalty": repetition_penalty,
        "style": style,
        "max_hold_bars": max_hold_bars,
        "seed": seed,
        "num_samples": num_samples,
        "prompt": prompt,
        "instruments": instruments.split(",") if instruments else None,
        "fill_bars": _int_list(fill_bars),
        "density": _int_list(density),
        "keep_tracks": _int_list(keep_tracks),
        "title": title,
        "meter": meter,
        "rhythm": rhythm,
        "form": form,
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    if replay is not None:
        from orchestrion.provenance import read_sidecar

        record = read_sidecar(replay)
        request = ComposeRequest(**{**record["request"], **fields})
    else:
        if model is None:
            raise typer.BadParameter("give a MODEL (a directory or builtin:NAME) or --replay piece.json")
        request = ComposeRequest(model=model, **fields)
    for path in generate_to_files(request, out):
        print(path)


# ------------------------------------------------------------------------------------------- render


@app.command()
def render(
    source: Annotated[Path, typer.Argument(help="a .mid, .abc or MusicXML file")],
    wav: Annotated[Path | None, typer.Option(help="write audio here (FluidSynth)")] = None,
    png: Annotated[Path | None, typer.Option(help="write a piano roll here")] = None,
    svg: Annotated[Path | None, typer.Option(help="write a score here (verovio)")] = None,
    sample_rate: Annotated[int, typer.Option(help="audio sample rate")] = 44100,
    strict: Annotated[
        bool, typer.Option("--strict", help="refuse a damaged MIDI file instead of repairing it")
    ] = False,
) -> None:
    """Render a piece to audio (WAV), a piano roll (PNG) and a score (SVG); each tune of an ABC file on its own."""
    from rich.markup import escape

    from orchestrion.core.render import render_file

    problems: list[str] = []
    repaired: list[str] = []
    for path in render_file(
        source, wav=wav, png=png, svg=svg, sample_rate=sample_rate, strict=strict, problems=problems, repaired=repaired
    ):
        print(path)
    if repaired:
        _console().print(
            f"[yellow]repaired:[/yellow] {escape(f'{source}: dropped ' + '; '.join(repaired))}", soft_wrap=True
        )
    for problem in problems:
        _console().print(f"[yellow]not rendered:[/yellow] {escape(problem)}", soft_wrap=True)


# --------------------------------------------------------------------------------------------- eval


@app.command("eval")
def evaluate(
    model: Annotated[str, typer.Argument(help="a model directory or builtin:NAME")],
    data: Annotated[str, typer.Option(help="held-out data: a dataset, folder or builtin:CORPUS")],
    report: Annotated[Path, typer.Option(help="report directory")] = Path("eval-report"),
    compare: Annotated[str | None, typer.Option(help="a second model to put side by side")] = None,
    samples: Annotated[int, typer.Option(help="pieces to generate for the musical statistics")] = 16,
    bars: Annotated[
        int | None, typer.Option(help="bars per generated piece (default: the data's window length, else 8)")
    ] = None,
    seconds: Annotated[float, typer.Option(help="seconds per generated piece of audio")] = 1.0,
) -> None:
    """Evaluate a model against held-out data: music quality, likelihood and its baselines; an HTML report."""
    from rich.markup import escape

    from orchestrion.evaluation.evaluate import evaluate as run_evaluation
    from orchestrion.evaluation.heldout import EvalConfig

    config = EvalConfig(samples=samples, bars=bars, seconds=seconds)
    result = run_evaluation(model, data, report, compare=compare, config=config)
    console = _console()
    for m in result["models"]:
        console.print(f"[bold]{escape(m['model'])}[/bold]: {escape(m['verdict']['text'])}")
        for warning in m.get("warnings", []):
            console.print(f"  [yellow]warning:[/yellow] {escape(warning)}")
        like = {k: round(v, 4) for k, v in m["likelihood"].items() if isinstance(v, float)}
        console.print(f"  likelihood {like}, baseline {m['likelihood'].get('baseline') or 'none'}", highlight=False)
        console.print(f"  validity {m['validity_rate']:.2f}, copies {m['novelty']['copied_share']}", highlight=False)
    console.print(f"report: {report / 'index.html'}", highlight=False)


# ---------------------------------------------------------------------------------------- serve/demo


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="address to bind (127.0.0.1 keeps it private)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port")] = 8000,
    model: Annotated[
        list[str] | None, typer.Option("--model", "-m", help="serve these models (default: every built-in one)")
    ] = None,
    max_jobs: Annotated[
        int, typer.Option(help="compositions at once; past it clients are told the server is busy")
    ] = 64,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            help="where finished pieces and uploaded prompts are kept across restarts "
            "(default $ORCHESTRION_DATA or ~/.local/share/orchestrion/server)"
        ),
    ] = None,
) -> None:
    """Serve the web app: live streamed composition in the browser."""
    import uvicorn
    from rich.markup import escape

    from orchestrion.server.app import create_app, default_data_dir
    from orchestrion.server.state import MAX_JSON_BYTES

    data_dir = data_dir or default_data_dir()
    _console().print(
        f"orchestrion: serving on http://{host}:{port}/ (Ctrl+C stops), pieces kept in {escape(str(data_dir))}",
        soft_wrap=True,
    )
    # No per-message deflate: compressing every measure costs more CPU than it saves bytes on a local network.
    # A websocket message is one compose request: the same cap as a JSON body.
    uvicorn.run(
        create_app(model or None, max_jobs=max_jobs, data_dir=data_dir), host=host, port=port, log_level="warning",
        ws_ping_interval=20, ws_per_message_deflate=False, ws_max_size=MAX_JSON_BYTES,
    )  # fmt: skip


@app.command()
def demo(out: Annotated[Path, typer.Option("--out", "-o", help="output directory")] = Path("demo-out")) -> None:
    """Compose with every built-in model and write MIDI, WAV and PNG files."""
    from orchestrion.demo import run_demo

    for path in run_demo(out):
        print(path)


@app.command()
def version() -> None:
    """Print the version."""
    from orchestrion import __version__

    print(__version__)


# --------------------------------------------------------------------------------------------- main


def main() -> None:
    """Entry point: turns our errors into a clear message and a non-zero exit, never a traceback."""
    from orchestrion.errors import OrchestrionError

    try:
        app()
    except OrchestrionError as exc:
        _console().print(f"[red]error:[/red] {exc}")
        sys.exit(1)
    except Exception as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            from orchestrion.requests import first_error

            field, message = first_error(exc)
            _console().print(f"[red]invalid request:[/red] {field}: {message}")
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
