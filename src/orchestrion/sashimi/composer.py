"""`SashimiComposer`: raw audio from a SaShiMi checkpoint, streamed in 0.25 s blocks, from silence or a prompt.

A model directory holds `model.safetensors` (the weights) and `config.json` ({"composer": "sashimi",
"config": the `SashimiConfig` fields, and the model card: metrics, training}), each written atomically.

Composing runs the network in recurrent mode (`orchestrion.sashimi.sampler`): `num_samples` pieces as one
batch, block i of sample b streamed with index i*B + b. A prompt (any audio file; its last
MAX_PROMPT_SECONDS) is fed in and streamed back first, then its continuation. Every draw takes its noise
from a generator seeded with `request.seed`, so a request replays sample for sample. `check` and
`compose_batch` judge each piece silence, noise or tonal music (`orchestrion.core.audio_analysis.classify`):
only tonal audio is valid. The stream ends with one `PieceReport` per sample (in sample order, each with
its "sample" index), so that every path that builds a piece from the stream (compose, the web app's
websocket) carries the verdict: label, reason, flatness, harmonicity, "ok" (tonal). A continuation's
report adds `continuation_chroma`, the chroma similarity of the second before and the second after the
end of the prompt (does it keep the prompt's notes?).

Sampling reads temperature, top-k (0: off) and top-p; a model directory may set their defaults
(config.json "sampling"), and any other request field is refused by name.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from orchestrion.composer import AudioBlock, Composer, Piece, PieceReport
from orchestrion.core.audio import load_audio
from orchestrion.core.audio_analysis import chroma_similarity, classify
from orchestrion.core.files import atomic_path, write_atomic
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.requests import ComposeRequest
from orchestrion.sashimi import mulaw
from orchestrion.sashimi.model import (
    BLOCK_SECONDS,
    CONFIG,
    DEFAULT_SECONDS,
    MAX_PROMPT_SECONDS,
    WEIGHTS,
    Sashimi,
    SashimiConfig,
)

if TYPE_CHECKING:
    from orchestrion.evaluation.heldout import EvalConfig, HeldOut

# The request fields a SaShiMi model reads. Any other field set to something but its default is refused by
# name, so that an option that shaped nothing is never recorded in a piece's provenance.
SASHIMI_FIELDS = ("model", "seconds", "temperature", "top_p", "top_k", "seed", "num_samples", "prompt")
# Sampling fields a model directory may give defaults for (config.json "sampling"), used when a request
# leaves them out; the request then records the values used.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k")

# ------------------------------------------------------------------------------------------- composer


class SashimiComposer(Composer):
    """Raw-audio composer: unconditional or prompt-continuing, streamed in 0.25 s blocks of 16 kHz audio."""

    kind = "sashimi"
    output = "audio"

    def __init__(self, model: Sashimi, card: dict | None = None):
        super().__init__()
        self.model = model.eval()
        self.config = model.config
        self.card = card or {}

    @classmethod
    def load(cls, directory: str | Path) -> SashimiComposer:
        from safetensors.torch import load_model

        directory = Path(directory)
        record = json.loads((directory / CONFIG).read_text())
        model = Sashimi(SashimiConfig.from_dict(record.get("config", {})))
        try:
            load_model(model, str(directory / WEIGHTS), device="cpu")
        except (OSError, RuntimeError) as exc:
            raise BadInput(f"cannot load the SaShiMi weights: {exc}", directory / WEIGHTS) from exc
        return cls(model, {k: v for k, v in record.items() if k not in ("composer", "config")})

    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS) as tmp:
            save_model(self.model, str(tmp))
        record = {"composer": self.kind, "config": self.config.to_dict(), **self.card}
        write_atomic(directory / CONFIG, json.dumps(record, indent=2, sort_keys=True) + "\n")
        return directory

    def validate(self, request: ComposeRequest) -> ComposeRequest:
        for name, info in type(request).model_fields.items():
            if name not in SASHIMI_FIELDS and getattr(request, name) != info.default:
                raise InvalidRequest(name, f"a SaShiMi (raw audio) model has no {name} option; leave it out")
        request = request.with_seed()
        defaults = self.card.get("sampling") or {}
        update: dict = {k: defaults[k] for k in SAMPLING_FIELDS if k in defaults and k not in request.model_fields_set}
        if request.seconds is None:
            update["seconds"] = DEFAULT_SECONDS
        request = request.model_copy(update=update)
        if request.top_k > self.config.n_classes:
            raise InvalidRequest("top_k", f"top_k is at most {self.config.n_classes} (the 8-bit classes); 0 = off")
        if request.prompt is not None and not Path(request.prompt).is_file():
            raise InvalidRequest("prompt", f"no such audio file: {request.prompt}")
        return request

    def options(self) -> dict:
        return {
            **super().options(),
            "output": "audio",
            "sample_rate": self.config.sample_rate,
            "n_layers": self.config.n_layers,
            "default_seconds": DEFAULT_SECONDS,
            "defaults": {"temperature": 1.0, "top_p": 1.0, "top_k": 0, **(self.card.get("sampling") or {})},
            "fields": ["seconds", "temperature", "top_p", "top_k", "seed", "num_samples", "prompt"],
        }

    def _prompt(self, request: ComposeRequest, batch: int) -> np.ndarray | None:
        if request.prompt is None:
            return None
        x = load_audio(request.prompt, self.config.sample_rate)[-int(MAX_PROMPT_SECONDS * self.config.sample_rate) :]
        return np.tile(mulaw.encode(x, self.config.quantization).astype(np.int64), (batch, 1))  # (B, P)

    def stream(self, request: ComposeRequest) -> Iterator[AudioBlock]:
        """Yield 0.25 s blocks. With num_samples B > 1 the B samples are made together, one batch, and
        block i of sample b has index i*B + b. A prompt is streamed first, then its continuation."""
        from orchestrion.sashimi.sampler import Sampler  # numba: compiled only to compose

        request = self.validate(request)
        rate, batch = self.config.sample_rate, request.num_samples
        total = int(round(request.seconds * rate))
        block = int(BLOCK_SECONDS * rate)
        rng = np.random.default_rng(request.seed)
        sampler = Sampler(self.model, batch)
        prompt = self._prompt(request, batch)
        index, position = 0, 0
        heard = np.zeros(0, dtype=np.float32)  # the prompt as the model heard it (8-bit)
        if prompt is not None:
            sampler.feed(prompt)
            heard = mulaw.decode(prompt[0], self.config.quantization)
            for start in range(0, len(heard), block):
                for _ in range(batch):
                    yield AudioBlock(index, position, heard[start : start + block], rate)
                    index += 1
                position += len(heard[start : start + block])
        else:
            silence = mulaw.encode(np.zeros(batch), self.config.quantization).astype(np.int64)
            sampler.step(silence)
        made: list[list[np.ndarray]] = [[] for _ in range(batch)]
        for start in range(0, total, block):
            n = min(block, total - start)
            gumbel = rng.gumbel(size=(n, batch, self.config.n_classes)).astype(np.float32)
            out = sampler.sample(n, request.temperature, request.top_p, gumbel, request.top_k)  # (B, n)
            for b, row in enumerate(out):
                made[b].append(mulaw.decode(row, self.config.quantization))
                yield AudioBlock(index, position, made[b][-1], rate)
                index += 1
            position += n
        for b in range(batch):
            generated = np.concatenate(made[b]) if made[b] else np.zeros(0, dtype=np.float32)
            yield PieceReport({**continuation_report(heard, generated, rate), "sample": b})

    def compose_batch(self, request: ComposeRequest) -> list[Piece]:
        """All num_samples pieces of one batched run, each with its report (the verdict: silence, noise or
        tonal music) from the stream."""
        request = self.validate(request)
        batch = request.num_samples
        parts: list[list[np.ndarray]] = [[] for _ in range(batch)]
        reports: list[dict] = [{} for _ in range(batch)]
        for chunk in self.stream(request):
            if isinstance(chunk, PieceReport):
                reports[chunk.report["sample"]] = chunk.report
            else:
                parts[chunk.index % batch].append(chunk.samples)
        return [
            Piece(
                provenance=self.provenance(request, batch_index=b),
                audio=np.concatenate(parts[b]),
                sample_rate=self.config.sample_rate,
                report=reports[b],
            )
            for b in range(batch)
        ]

    def compose(self, request: ComposeRequest) -> Piece:
        """The first piece of `compose_batch` (a batch of one, as `orchestrion generate` asks for)."""
        return self.compose_batch(request)[0]

    def trained_on(self) -> list[str]:
        data = (self.card.get("training") or {}).get("data")
        return [str(data)] if data else []

    def check(self, piece: Piece) -> dict:
        """Valid when the audio is tonal music: neither silence nor noise of any colour."""
        if piece.audio is None:
            return {"valid": False, "why": "no audio"}
        verdict = classify(piece.audio, piece.sample_rate)
        return {"valid": verdict.label == "tonal", "why": "" if verdict.label == "tonal" else verdict.reason}

    def likelihood(self, held: HeldOut, config: EvalConfig) -> dict:
        from orchestrion.sashimi.training import evaluate  # a cycle: sashimi.training saves through this class

        if held.form != "audio":
            return {"skipped": "a SaShiMi likelihood needs an audio dataset (orchestrion encode audio) as --data"}
        result = evaluate(
            self.model, held.root, "validation", seq_len=config.audio_seq_len, windows=config.windows, batch_size=4
        )
        result["bits_per_byte"] = result.pop("bpb")
        result["perplexity"] = math.exp(result["loss"])
        return result


def audio_report(audio: np.ndarray, sample_rate: int) -> dict:
    """What `generate` and the server say of a piece of audio: the verdict, its reason and the numbers."""
    verdict = classify(audio, sample_rate).to_json()
    return {"ok": verdict["label"] == "tonal", **verdict}


def continuation_report(prompt: np.ndarray, generated: np.ndarray, sample_rate: int) -> dict:
    """The report of a piece made of `prompt` (maybe empty) then `generated`: the verdict on what the model
    made (the prompt is not judged), the prompt's length, and for a continuation `continuation_chroma`, the
    chroma similarity of up to a second either side of the seam (does it keep the prompt's notes?)."""
    report = audio_report(generated, sample_rate)
    report["prompt_seconds"] = round(len(prompt) / sample_rate, 3)
    if len(prompt):
        span = min(sample_rate, len(prompt), len(generated))
        similarity = chroma_similarity(prompt[len(prompt) - span :], generated[:span], sample_rate) if span else None
        report["continuation_chroma"] = round(similarity, 4) if similarity is not None else None
    return report
