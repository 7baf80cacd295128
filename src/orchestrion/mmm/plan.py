"""From a request (and its prompt) to the plan of a piece: tracks, known notes, cells to compose, key.

    plan_piece(request, prompt, ...) -> PiecePlan      (orchestrion.mmm.windows)
    Prompt.from_tokens(tokens) / Prompt.from_score(score)

Modes, as `docs/sampling.md` describes them:

- compose: no prompt; `bars` (default 4) bars of `instruments` (default the model's line-up);
- fill: `fill_bars` of the prompt are composed again between the others (notes over their edges are cut);
- harmonise: `keep_tracks` (or a prompt with fewer tracks than asked for) are kept whole and the other
  voices composed around them; with the chorale line-up, each kept track is the voice its program or register
  says (`_kept_voices`, reported); a melody outside the soprano's range is moved by octaves (or semitones)
  into it for composing and the piece moved back, with a warning;
- continue: `bars` longer than the prompt: every track goes on after the prompt's bars.

The key is the request's, else the prompt's (its key signature, else estimated), else drawn from the keys of Bach's chorales
(seeded); a piece composed or continued without a requested key may end in the key it has come to be in
(`PiecePlan.key_free`, see `orchestrion.mmm.sampler`). The tempo is the request's when it gives one, else the prompt's
(`MMMEncoding.validate` records it in the request, so that a replay plays at it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.core.music import Key, estimate_key, parse_key
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.mmm.grammar import track_spans
from orchestrion.mmm.vocabulary import STEPS_PER_BAR, STEPS_PER_QUARTER
from orchestrion.mmm.voices import VOICE_ORDER, VOICE_RANGES
from orchestrion.mmm.windows import PiecePlan, PieceTrack, cut_notes, track_notes

if TYPE_CHECKING:
    import symusic

    from orchestrion.requests import ComposeRequest

# Keys of the 409 chorales of the built-in corpus (`estimate_key`), the draw for a request without a key.
CORPUS_KEYS = {
    "G major": 59, "A minor": 49, "G minor": 44, "D major": 33, "A major": 32, "F major": 28, "B minor": 28,
    "D minor": 27, "Bb major": 25, "C major": 21, "E minor": 20, "C minor": 10, "E major": 10, "Eb major": 9,
    "F# minor": 8,
}  # fmt: skip
MELODY_MARGIN = 2  # a given melody may pass the composed soprano's range by this much before it is moved


@dataclass
class Prompt:
    """A prompt as tracks of notes on the step grid."""

    instruments: list[str]
    notes: list[np.ndarray]  # per track (n, 3): start, end, pitch
    bars: int
    tempo: float | None = None
    score: symusic.Score | None = None
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_tokens(cls, tokens: list[str]) -> Prompt:
        spans = track_spans(tokens)
        if not spans:
            raise InvalidRequest("prompt", "the prompt has no tracks")
        instruments = [next((t[5:] for t in s if t.startswith("INST=")), "0") for s in spans]
        notes = [track_notes(s, 0) for s in spans]
        return cls(instruments, notes, max(s.count("BAR_START") for s in spans))

    @classmethod
    def from_score(cls, score: symusic.Score) -> Prompt:
        """The prompt as `orchestrion.mmm.codec.read_prompt` reads it; what reading changed becomes warnings."""
        from orchestrion.mmm.codec import read_prompt

        try:
            reading = read_prompt(score)
        except BadInput as exc:
            raise InvalidRequest("prompt", exc.reason) from exc
        canon = reading.notes
        notes = [
            np.stack([canon.start[canon.track == k], canon.end[canon.track == k], canon.pitch[canon.track == k]], 1)
            for k in range(len(canon.inst))
        ]
        return cls(list(canon.inst), notes, reading.bars, reading.tempo, score, tuple(reading.report))

    def key(self) -> Key:
        """The prompt's key signature when it has one (a key signature says the mode), else its estimated key."""
        from orchestrion.core.music import score_from_notes

        if self.score is not None and len(self.score.key_signatures):
            signature = self.score.key_signatures[0]
            major = (int(signature.key) * 7) % 12
            return Key((major + 9) % 12, "minor") if signature.tonality else Key(major, "major")
        if self.score is None:
            self.score = score_from_notes(
                [{"pitch": n[:, 2], "start": n[:, 0], "duration": n[:, 1] - n[:, 0]} for n in self.notes if len(n)],
                tpq=STEPS_PER_QUARTER,
            )
        return estimate_key(self.score)


def _instrument(name: str | None) -> str | None:
    return None if name is None else str(name).upper().removeprefix("INST=")


def draw_key(seed: int) -> Key:
    names = list(CORPUS_KEYS)
    weights = np.array(list(CORPUS_KEYS.values()), float)
    return parse_key(names[int(np.random.default_rng([seed, 7]).choice(len(names), p=weights / weights.sum()))])


def plan_piece(
    request: ComposeRequest,
    prompt: Prompt | None,
    *,
    default_instruments: Sequence[str] = ("SOPRANO", "ALTO", "TENOR", "BASS"),
    seed: int = 0,
) -> PiecePlan:
    """The plan of the module docstring for `request` and its (already read) prompt."""
    instruments = [_instrument(i) for i in request.instruments] if request.instruments else []
    given_key = parse_key(request.key) if request.key else None
    tempo = request.tempo
    densities = [f"DENSITY={d}" for d in request.density] if request.density else []
    if prompt is None:
        names = instruments
        if not names:
            count = len(densities) or len(default_instruments) or 4
            names = list(default_instruments) if len(default_instruments) == count else ["0"] * count
        bars = request.bars or 4
        tracks = [PieceTrack(n, density=densities[k] if k < len(densities) else None) for k, n in enumerate(names)]
        todo = np.ones((len(tracks), bars), bool)
        return PiecePlan(bars, tracks, todo, given_key or draw_key(seed), tempo=tempo, key_free=given_key is None)
    if "tempo" not in request.model_fields_set and prompt.tempo:
        tempo = prompt.tempo
    warnings = list(prompt.warnings)
    key = given_key or prompt.key()
    bars = prompt.bars
    if request.fill_bars:
        bad = [b for b in request.fill_bars if not 0 <= b < bars]
        if bad:
            raise InvalidRequest("fill_bars", f"bars {bad} are outside the prompt's {bars} bars (0-based)")
        tracks = []
        for name, notes in zip(prompt.instruments, prompt.notes, strict=True):
            low, high = (int(notes[:, 2].min()), int(notes[:, 2].max())) if len(notes) else (0, 127)
            for b in request.fill_bars:
                notes = cut_notes(notes, b * STEPS_PER_BAR, (b + 1) * STEPS_PER_BAR)
            tracks.append(PieceTrack(name, notes, low=low, high=high))
        todo = np.zeros((len(tracks), bars), bool)
        todo[:, request.fill_bars] = True
        return PiecePlan(bars, tracks, todo, key, "fill", tempo=tempo, warnings=warnings)
    total = len(instruments) or max(len(default_instruments), len(prompt.notes))
    continuing = request.keep_tracks is None and request.bars is not None and request.bars > bars
    if not continuing and (request.keep_tracks is not None or len(prompt.notes) < total):
        keep = request.keep_tracks if request.keep_tracks is not None else list(range(len(prompt.notes)))
        bad = [k for k in keep if not 0 <= k < len(prompt.notes)]
        if bad:
            raise InvalidRequest("keep_tracks", f"tracks {bad} are not in the prompt (it has {len(prompt.notes)})")
        if not instruments:
            voices = list(default_instruments)
            if total == len(voices) and set(voices) == set(VOICE_ORDER):
                chosen = _kept_voices(prompt, keep, warnings)
                instruments = chosen + [v for v in VOICE_ORDER if v not in chosen]
            elif total == len(voices):
                instruments = voices
            else:
                instruments = [prompt.instruments[k] for k in keep]
        instruments += ["0"] * (max(total, len(keep)) - len(instruments))
        kept = [PieceTrack(instruments[i], prompt.notes[k].copy(), kept=True) for i, k in enumerate(keep)]
        shift = _melody_shift(kept, warnings)
        for track in kept:
            track.notes[:, 2] += shift
        if shift:
            key = Key((key.tonic + shift) % 12, key.mode)
        tracks = kept + [
            PieceTrack(n, density=densities[k] if k < len(densities) else None)
            for k, n in enumerate(instruments[len(kept) :], start=len(kept))
        ]
        todo = np.zeros((len(tracks), bars), bool)
        todo[len(kept) :] = True
        return PiecePlan(bars, tracks, todo, key, "harmonise", shift=shift, tempo=tempo, warnings=warnings)
    total_bars = max(request.bars or bars, bars)
    names = [instruments[k] if k < len(instruments) else n for k, n in enumerate(prompt.instruments)]
    tracks = [PieceTrack(n, notes.copy()) for n, notes in zip(names, prompt.notes, strict=True)]
    todo = np.zeros((len(tracks), total_bars), bool)
    todo[:, bars:] = True
    return PiecePlan(total_bars, tracks, todo, key, "continue", tempo=tempo, warnings=warnings, key_free=not given_key)


def _kept_voices(prompt: Prompt, keep: list[int], warnings: list[str]) -> list[str]:
    """The chorale voice each kept track is harmonised as, a warning line each: a track already a voice stays
    one; a bass program (General MIDI 32-39) or a track lying below the tenor is the BASS; the highest other
    track is the SOPRANO (the tune); the rest take the free voice whose range is nearest their median pitch."""
    medians = [float(np.median(prompt.notes[k][:, 2])) if len(prompt.notes[k]) else 0.0 for k in keep]
    chosen: list[str | None] = [None] * len(keep)
    why = [""] * len(keep)
    for i, k in enumerate(keep):
        name = prompt.instruments[k]
        if name in VOICE_ORDER and name not in chosen:
            chosen[i] = name
        elif name.isdigit() and 32 <= int(name) <= 39 and "BASS" not in chosen:
            chosen[i], why[i] = "BASS", f"General MIDI {name}, a bass program"
    tenor_low = VOICE_RANGES["TENOR"][0]
    for i in sorted(range(len(keep)), key=lambda i: -medians[i]):
        free = [v for v in VOICE_ORDER if v not in chosen]
        if chosen[i] is not None or not free or prompt.instruments[keep[i]] == "DRUMS":
            continue
        if medians[i] < tenor_low and "BASS" in free:
            chosen[i], why[i] = "BASS", f"median MIDI {medians[i]:g}, below the tenor's range"
        elif "SOPRANO" in free and not any(c for c in chosen if c != "BASS"):
            chosen[i], why[i] = "SOPRANO", f"median MIDI {medians[i]:g}, the highest part"
        else:
            centre = {v: sum(VOICE_RANGES[v]) / 2 for v in free}
            chosen[i] = min(free, key=lambda v: abs(centre[v] - medians[i]))
            why[i] = f"median MIDI {medians[i]:g}, nearest the {chosen[i].lower()}'s range"
    out = [c or prompt.instruments[k] for c, k in zip(chosen, keep, strict=True)]  # drums, a fifth part: as given
    for i, k in enumerate(keep):
        if out[i] != prompt.instruments[k]:
            warnings.append(f"prompt track {k + 1} (INST={prompt.instruments[k]}) is kept as the {out[i]} ({why[i]})")
    return out


def _melody_shift(kept: list[PieceTrack], warnings: list[str]) -> int:
    """Semitones that bring the kept voices into their ranges (octaves first); 0 when they fit."""
    checks = []
    for track in kept:
        if track.instrument in VOICE_RANGES and len(track.notes):
            low, high = VOICE_RANGES[track.instrument]
            checks.append((track.notes[:, 2], low - MELODY_MARGIN, high + MELODY_MARGIN))
    if not checks:
        return 0

    def outside(shift: int) -> int:
        return sum(int(((p + shift < lo) | (p + shift > hi)).sum()) for p, lo, hi in checks)

    if outside(0) == 0:
        return 0
    octaves = min(range(-48, 49, 12), key=lambda s: (outside(s), abs(s)))
    shift = min(range(octaves - 11, octaves + 12), key=lambda s: (outside(s), abs(s - octaves), abs(s)))
    if outside(shift) >= outside(octaves):
        shift = octaves
    if shift:
        pitches = np.concatenate([p for p, _, _ in checks])
        warnings.append(
            f"the melody (MIDI {int(pitches.min())}-{int(pitches.max())}) lies outside the soprano's range "
            f"({checks[0][1]}-{checks[0][2]}): it was harmonised {abs(shift)} semitones "
            f"{'higher' if shift > 0 else 'lower'} and the piece moved back, so the melody is kept as given"
        )
    if outside(shift):
        warnings.append(f"{outside(shift)} melody notes stay outside the soprano's range even so")
    return shift


def prompt_of(request: ComposeRequest, prompt_tokens: list[str] | None) -> Prompt | None:
    """The request's prompt: the tokens given, else its MIDI file, else None."""
    if prompt_tokens is not None:
        return Prompt.from_tokens(prompt_tokens)
    if request.prompt:
        from orchestrion.core.music import load_midi

        return Prompt.from_score(load_midi(request.prompt))
    return None
