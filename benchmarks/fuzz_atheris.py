"""Coverage-guided fuzzing of one reader with atheris (libFuzzer for Python), for long runs.

    .venv/bin/pip install -e '.[fuzz]'   # atheris: optional, not needed by the test suite
    .venv/bin/python benchmarks/fuzz_atheris.py midi [CORPUS_DIR] [-max_total_time=3600] [-timeout=5]
        [-rss_limit_mb=2048] [-jobs=N] ...

Readers: midi (load_midi on the bytes, then the pipeline's mmm encoding), mmm (a line of tokens, decoded and
written as MIDI), abc (the pure-Python ABC steps), audio (load_audio without the ffmpeg fallback). Every
argument after the reader goes to libFuzzer. A CORPUS_DIR that is empty or missing is filled with the seeds
`benchmarks/fuzz.py` mutates (test fixtures, plus cached corpus files), and libFuzzer adds the inputs that
reach new code to it. Our own error (OrchestrionError) is an accepted outcome; any other exception, a
timeout (-timeout, seconds per input) or memory over -rss_limit_mb is a finding, and libFuzzer writes the
input to crash-*/timeout-*/oom-* for a regression test in tests/test_fuzz.py.
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import atheris

# The readers import their modules lazily, so the modules to trace are imported here, inside the block.
with atheris.instrument_imports(include=["orchestrion"]):
    import orchestrion.abc.text
    import orchestrion.core.audio
    import orchestrion.core.music  # noqa: F401 - imported to be instrumented
    from orchestrion.errors import OrchestrionError
    from orchestrion.testing import fuzz_inputs, fuzzing

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
SCRATCH = Path(tempfile.mkdtemp(prefix="orchestrion-atheris-"))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


READERS = {
    "midi": fuzzing.read_midi,
    "mmm": lambda data: fuzzing.read_mmm(_text(data)),
    "abc": lambda data: fuzzing.read_abc(_text(data)),
    "audio": lambda data: fuzzing.read_audio_soundfile(data, SCRATCH / "input.wav"),
}


def _seeds(reader: str) -> list[bytes]:
    midi = fuzzing.midi_seeds(FIXTURES, corpus_limit=100)
    if reader == "midi":
        return midi
    if reader == "mmm":
        return [" ".join(tokens).encode() for tokens in fuzzing.mmm_seeds(midi[:20])]
    if reader == "abc":
        return [text.encode() for text in fuzzing.abc_seeds(FIXTURES, corpus_limit=200)]
    return [*fuzz_inputs.wav_seeds(random.Random(0)), *(p.read_bytes() for p in sorted(FIXTURES.glob("*.wav")))]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in READERS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(READERS)}}} [CORPUS_DIR] [libFuzzer options]\n\n{__doc__}")
    reader = sys.argv.pop(1)
    run = READERS[reader]
    corpus = next((Path(a) for a in sys.argv[1:] if not a.startswith("-")), None)
    if corpus is not None and (not corpus.is_dir() or not any(corpus.iterdir())):
        corpus.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(_seeds(reader)):
            (corpus / f"seed-{i:04d}").write_bytes(seed)

    def test_one_input(data: bytes) -> None:
        try:
            run(data)
        except OrchestrionError:
            pass  # the promised outcome for bad input

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
