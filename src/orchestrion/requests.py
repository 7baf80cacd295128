"""Compose requests: one validated object shared by the CLI, the Python API and the HTTP API.

One set of limits and one set of error messages serves all three. Fields a model does not use are
ignored by it; a composer checks the fields it does use with `Composer.validate`, which raises
`InvalidRequest` naming the field.
"""

from __future__ import annotations

import secrets

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrion.core.music import parse_key
from orchestrion.errors import BadInput, InvalidRequest

MAX_BARS = 4096
MAX_SECONDS = 600.0
MAX_VOICES = 16
MAX_SAMPLES = 64


class ComposeRequest(BaseModel):
    """Everything a composer needs to make one piece (or a batch of `num_samples` pieces)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field("builtin:markov", description="a model directory or builtin:NAME")
    # length
    bars: int | None = Field(None, ge=1, le=MAX_BARS, description="number of 4/4 measures")
    seconds: float | None = Field(None, gt=0, le=MAX_SECONDS, description="length of audio in seconds")
    # voices, key, tempo (markov; gpt where it applies)
    voices: list[int] | None = Field(
        None, min_length=1, max_length=MAX_VOICES, description="voice kinds: 0 high melody, 1 low melody, 2 chords"
    )
    programs: list[int] | None = Field(None, description="General MIDI program per voice (0-127)")
    key: str | None = Field(None, description="key and mode, e.g. 'D minor'")
    tempo: float = Field(120.0, ge=20, le=400, description="quarter notes per minute")
    chord_pull: bool = Field(True, description="pull melodic voices toward the tones of the current chord")
    style: str | None = Field(None, max_length=40, description="markov: 'chorale' or 'lively' (default: the model's)")
    max_hold_bars: float | None = Field(
        None, ge=1, le=64, description="markov: the longest one melody pitch is held or repeated, in bars (default 2)"
    )
    # sampling
    temperature: float = Field(1.0, gt=0, le=10)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0, le=100_000)
    repetition_penalty: float = Field(1.0, gt=0, le=10)
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="same seed, same piece; drawn when omitted")
    num_samples: int = Field(1, ge=1, le=MAX_SAMPLES)
    max_tokens: int | None = Field(None, ge=1, le=1_000_000)
    # conditioning
    prompt: str | None = Field(None, description="a prompt file (MIDI, ABC or audio) or an uploaded prompt id")
    instruments: list[str] | None = Field(None, description="mmm instruments per track, e.g. ['SOPRANO', '0']")
    density: list[int] | None = Field(None, description="mmm note-density bin per track")
    fill_bars: list[int] | None = Field(None, description="mmm bars to fill in (0-based), keeping the rest")
    keep_tracks: list[int] | None = Field(None, description="tracks of the prompt to keep; the rest are composed")
    candidates: int | None = Field(
        None, ge=1, le=64, description="mmm: candidate bars the harmony critic chooses from (default 8; 1 is fastest)"
    )
    crossing: bool | None = Field(None, description="mmm: let chorale voices cross (default: they may not)")
    title: str | None = Field(None, max_length=200)
    meter: str | None = Field(None, max_length=16, description="ABC meter, e.g. '6/8'")
    rhythm: str | None = Field(None, max_length=40, description="ABC rhythm, e.g. 'jig' or 'reel'")
    variations_of: str | None = Field(None, description="ABC tune to make variations of")
    form: str | None = Field(
        None, description="ABC tune form: 'strains' (two repeated 8-bar strains, the default for dance tunes) or 'free'"
    )

    @field_validator("voices")
    @classmethod
    def _known_voice_kinds(cls, voices: list[int] | None) -> list[int] | None:
        if voices is not None:
            for kind in voices:
                if kind not in (0, 1, 2):
                    raise ValueError(f"unknown voice kind {kind}: use 0 (high melody), 1 (low melody) or 2 (chords)")
        return voices

    @field_validator("programs")
    @classmethod
    def _programs_in_range(cls, programs: list[int] | None) -> list[int] | None:
        if programs is not None:
            if len(programs) > MAX_VOICES:
                raise ValueError(f"at most {MAX_VOICES} programs")
            for p in programs:
                if not 0 <= p <= 127:
                    raise ValueError(f"General MIDI program {p} is outside 0-127")
        return programs

    @field_validator("form")
    @classmethod
    def _known_form(cls, form: str | None) -> str | None:
        if form is not None and form.strip().lower() not in ("strains", "free"):
            raise ValueError(f"unknown form {form!r}: use 'strains' (two repeated 8-bar strains) or 'free'")
        return None if form is None else form.strip().lower()

    @field_validator("key")
    @classmethod
    def _readable_key(cls, key: str | None) -> str | None:
        if key is not None:
            try:
                return parse_key(key).name
            except BadInput as exc:
                raise ValueError(str(exc)) from exc
        return key

    @model_validator(mode="after")
    def _programs_match_voices(self) -> ComposeRequest:
        if self.programs is not None and self.voices is not None and len(self.programs) != len(self.voices):
            raise ValueError(f"{len(self.programs)} programs given for {len(self.voices)} voices")
        return self

    def with_seed(self) -> ComposeRequest:
        """A copy with a concrete seed, so that the piece can be replayed."""
        if self.seed is not None:
            return self
        return self.model_copy(update={"seed": secrets.randbelow(2**31)})


def first_error(exc: Exception) -> tuple[str, str]:
    """(field, message) of the first problem in a pydantic ValidationError, for 422s and CLI errors."""
    if isinstance(exc, InvalidRequest):
        return exc.field, exc.message
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ())) or "request"
        message = err.get("msg", "invalid value").removeprefix("Value error, ")
        return field, message
    return "request", str(exc)
