"""The mmmtrack token format: what a sequence reads, its grammar and vocabulary, and the encoder's options.

A sequence (one window of bars) reads

    PIECE_START
      TRACK_START INST=<0-127|DRUMS|SOPRANO|ALTO|TENOR|BASS> DENSITY=<bin>
        BAR_START <bar body> BAR_END   (once per bar of the window; an empty bar is BAR_START BAR_END)
      TRACK_END                        (once per track that sounds in the window)
      [FILL_START <bar body> FILL_END] (only with fill: the content of the bar marked FILL_IN)
    PIECE_END

and a bar body is any run of `NOTE_ON=<pitch>`, `NOTE_OFF=<pitch>` and `TIME_DELTA=<steps>` (1..16).

A track's General MIDI program decides its `INST=` (`instrument_of`): drums are DRUMS, a sung part (a choir
program, 52-54, or any part of a corpus encoded with `voices`) named soprano, alto, tenor or bass is that
voice, and every other track is its program, whatever its name.

Grammar (what a grammar mask over these tokens must allow; `vocabulary()` lists every token):

    piece  := PIECE_START track+ fill* PIECE_END
    track  := TRACK_START INST=* DENSITY=* bar+ TRACK_END
    bar    := BAR_START (FILL_IN | event*) BAR_END
    event  := NOTE_ON=p | NOTE_OFF=p | TIME_DELTA=d      (the deltas of one bar sum to at most 16)
    fill   := FILL_START event* FILL_END                  (one per FILL_IN, in order)

Time runs on a 16th-note grid (4 steps per quarter, 16 per 4/4 bar); TIME_DELTA never crosses a bar line.
Within one time step, NOTE_OFFs come before NOTE_ONs, each group in rising pitch order.

Notes held across bar lines: a note is written once, `NOTE_ON` in the bar where it starts and `NOTE_OFF`
in the bar where it ends, with nothing in the bars between (no re-attack). A note that ends exactly on a
bar line is closed at the end of the bar before it (`TIME_DELTA` up to step 16, then `NOTE_OFF`), so a
NOTE_OFF may sit at step 16 but a NOTE_ON never does. In a window, a note that starts before the window
starts at its first step and one that outlasts it ends at its last step.

`DENSITY=` is the track's note-density bin in the window: notes sounding in the window per bar, cut at
`density_edges` (the dataset pipeline computes them as quantiles over the dataset and stores them with it).

Token ids follow `vocabulary()`'s order, a function of `density_bins` only: structure tokens (PAD = 0 ...
FILL_END = 10), INST=, DENSITY=, NOTE_ON=, NOTE_OFF=, TIME_DELTA=; `BlockIds` says where each block starts.
The codec is `orchestrion.mmm.codec` (encode) and `orchestrion.mmm.decode` (decode, with repairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orchestrion.errors import BadInput

STEPS_PER_QUARTER = 4
STEPS_PER_BAR = 16  # 4/4 only
VOICES = ("SOPRANO", "ALTO", "TENOR", "BASS")
# The General MIDI programs of sung parts: Choir Aahs, Voice Oohs, Synth Voice (0-based).
VOICE_PROGRAMS = frozenset({52, 53, 54})
# Part names that make a sung part a voice token (the first word of the track's name, any case); the Latin
# names are Palestrina's and other Renaissance part books'.
VOICE_NAMES = {
    "soprano": "SOPRANO", "s": "SOPRANO", "cantus": "SOPRANO", "superius": "SOPRANO", "discantus": "SOPRANO",
    "alto": "ALTO", "a": "ALTO", "altus": "ALTO", "contratenor": "ALTO",
    "tenor": "TENOR", "t": "TENOR",
    "bass": "BASS", "b": "BASS", "bassus": "BASS",
}  # fmt: skip
DEFAULT_DENSITY_EDGES = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 16.0)  # notes per bar; 10 bins
SPECIAL_TOKENS = {"bos": "PIECE_START", "eos": "PIECE_END", "pad": "<pad>", "unk": "<unk>"}
DENSITY_PLACEHOLDER = np.iinfo(np.uint16).max  # the pipeline fills density bins in once it knows the edges
# Work limits of one encode_batch call, so that no file can make it allocate gigabytes. The (window, track,
# bar) grid is dense (about 35 bytes a cell): a 60 KB file of 3,000 one-note tracks under a note in bar 2,000
# asks for 12 million cells. A note held through a long piece is repeated in every window (about 180 bytes
# a note-window pair). A batch over a limit is split in halves; a single score over one is refused. Real
# pieces stay well below: 16 tracks over 2,000 bars in 4-bar windows is 64,000 cells, and 200,000 notes
# (the pipeline's per-file limit) in 8 windows each is 1.6 million pairs.
MAX_GRID_CELLS = 1_000_000
MAX_NOTE_WINDOWS = 2_000_000

_STRUCTURE = (
    "<pad>", "<unk>", "PIECE_START", "PIECE_END", "TRACK_START", "TRACK_END",
    "BAR_START", "BAR_END", "FILL_IN", "FILL_START", "FILL_END",
)  # fmt: skip


@dataclass(frozen=True)
class MMMOptions:
    """Encoder options. `bars=None` encodes the whole piece as one sequence (which must be all 4/4)."""

    bars: int | None = None
    hop: int | None = None  # bars between window starts; default: `bars`
    transpose: tuple[int, int] = (0, 1)  # semitone range [lo, hi)
    fill: bool = False
    permute_tracks: bool = False
    seed: int = 0
    density_bins: int = 10
    density_edges: tuple[float, ...] = DEFAULT_DENSITY_EDGES
    max_tokens: int = 2_000_000  # a cap per piece, so one pathological file cannot blow the dataset up
    max_bars: int = 2_000  # longer pieces (over an hour at 120 bpm) are refused: a stray far-off event would
    # otherwise make millions of empty windows
    voices: bool = False  # the corpus is sung: parts named soprano..bass are voices whatever their program

    def __post_init__(self) -> None:
        if self.bars is not None and not 1 <= self.bars <= 64:
            raise BadInput(f"bars must be between 1 and 64, got {self.bars}")
        if self.hop is not None and self.hop < 1:
            raise BadInput(f"hop must be at least 1 bar, got {self.hop}")
        lo, hi = self.transpose
        if not -127 <= lo < hi <= 128:
            raise BadInput(f"transpose must be a range LO:HI with LO < HI, got {lo}:{hi}")
        if len(self.density_edges) != self.density_bins - 1:
            raise BadInput(f"density_edges needs {self.density_bins - 1} edges for {self.density_bins} bins")


def instrument_of(program: int, is_drum: bool, name: str, *, voices: bool = False) -> str:
    """A track's INST= value: "DRUMS", a voice (SOPRANO..BASS) or its General MIDI program ("0".."127").

    The program decides: a part is a voice only when it is sung (a choir program, or `voices` for a corpus
    of voices) and named like one, so a pop song's "Bass" (electric bass) or "Tenor" (a saxophone) keeps
    its program.
    """
    if is_drum:
        return "DRUMS"
    if voices or int(program) in VOICE_PROGRAMS:
        words = name.strip().lower().replace(".", " ").replace("_", " ").split()
        if words and words[0].rstrip("0123456789") in VOICE_NAMES:
            return VOICE_NAMES[words[0].rstrip("0123456789")]
    return str(int(program))


# ------------------------------------------------------------------------------------------ vocabulary


def vocabulary(density_bins: int = 10) -> list[str]:
    """Every token, in id order; a deterministic function of the options that change it."""
    return [
        *_STRUCTURE,
        *(f"INST={p}" for p in range(128)),
        "INST=DRUMS",
        *(f"INST={v}" for v in VOICES),
        *(f"DENSITY={b}" for b in range(density_bins)),
        *(f"NOTE_ON={p}" for p in range(128)),
        *(f"NOTE_OFF={p}" for p in range(128)),
        *(f"TIME_DELTA={d}" for d in range(1, STEPS_PER_BAR + 1)),
    ]


@dataclass(frozen=True)
class BlockIds:
    """Where each block of the vocabulary starts: `ids.note_on + pitch` is the id of NOTE_ON=pitch, and so on."""

    density_bins: int
    inst: int = len(_STRUCTURE)
    drums: int = len(_STRUCTURE) + 128

    @property
    def voice(self) -> int:
        return self.drums + 1

    @property
    def density(self) -> int:
        return self.voice + len(VOICES)

    @property
    def note_on(self) -> int:
        return self.density + self.density_bins

    @property
    def note_off(self) -> int:
        return self.note_on + 128

    @property
    def time_delta(self) -> int:  # id of TIME_DELTA=1
        return self.note_off + 128


PAD, UNK, PIECE_START, PIECE_END, TRACK_START, TRACK_END, BAR_START, BAR_END, FILL_IN, FILL_START, FILL_END = range(11)
