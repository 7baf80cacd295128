"""SaShiMi: a multi-scale U-Net of S4 blocks over raw 8-bit audio (Goel et al., "It's Raw!", 2022).

    classes (B, L) -> embedding (B, L, 64)
      -> DownPool x4 -> (B, L/4, 128) -> DownPool x4 -> (B, L/16, 256)
      -> n_layers x [S4 block, FF block] at 256
      -> UpPool x4 -> + skip -> n_layers x [S4, FF] at 128 -> + skip
      -> UpPool x4 -> + skip -> n_layers x [S4, FF] at 64 -> + skip
      -> LayerNorm -> linear -> logits (B, L, 256)

Pooling is causal: a coarse step summarises 4 fine steps and is shifted one coarse step later before
it is spread back (UpPool), so output t never sees input t' > t. Training runs every S4 layer as an FFT
convolution; sampling runs the same network one sample at a time in recurrent mode (`Sampler`), with
per-stage caches like the reference's `step()`: a stage's pooling buffer collects 4 inputs, the coarser
stage runs once per 4 fine steps, and its 4 outputs wait in a queue. Nothing in the past is recomputed.

This module is the network and its config (`SashimiConfig`, JSON round trip), run as a whole sequence. The
recurrent sampler is `orchestrion.sashimi.sampler` (compiled loop nests), the S4D layer
`orchestrion.sashimi.s4`, training and evaluation `orchestrion.sashimi.training`, and the composer that
saves and loads a model directory (model.safetensors + config.json) `orchestrion.sashimi.composer`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from orchestrion.sashimi.s4 import GELU_APPROX, S4D

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
BLOCK_SECONDS = 0.25  # audio per streamed block
DEFAULT_SECONDS = 5.0
MAX_PROMPT_SECONDS = 8.0  # the tail of a longer prompt is what the model continues from


@dataclass
class SashimiConfig:
    d_model: int = 64
    n_layers: int = 2  # S4 + FF block pairs per stage (the reference: 8, and 2 for the ablation)
    pool: tuple[int, ...] = (4, 4)
    expand: int = 2
    ff: int = 2  # feed-forward expansion
    d_state: int = 64
    dropout: float = 0.0
    n_classes: int = 256
    quantization: str = "mulaw"
    sample_rate: int = 16000
    # Add a learned linear map of each class's amplitude (its decoded value and its companded level) to
    # its embedding, so that the ordinal structure of the 256 classes is known from the first step and the
    # linear S4 layers can predict the waveform at once. Off in the models trained before it existed.
    amplitude_input: bool = False
    # Add to the logits a peak over the classes' decoded amplitudes, -((a_c - mu) / sigma)^2 / 2, with mu and
    # log sigma two more outputs of the head: a unimodal prediction (a waveform's next value and how sure
    # the model is) from the first step, which the 256 free logits then reshape. Off in older models.
    amplitude_output: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pool"] = list(self.pool)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> SashimiConfig:
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if "pool" in data:
            data["pool"] = tuple(data["pool"])
        return cls(**data)

    @property
    def frame(self) -> int:
        """Sequence lengths must be multiples of this (the product of the pooling factors)."""
        return math.prod(self.pool)


# ------------------------------------------------------------------------------------ building blocks


class DownPool(nn.Module):
    """(B, L, H) -> (B, L/p, H*expand): each output summarises p consecutive inputs."""

    def __init__(self, d: int, expand: int, pool: int):
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(d * pool, d * expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, h = x.shape
        return self.linear(x.reshape(b, length // self.pool, self.pool * h))


class UpPool(nn.Module):
    """(B, L, H) -> (B, L*p, H/expand), shifted one coarse step right so that it stays causal."""

    def __init__(self, d: int, expand: int, pool: int):
        super().__init__()
        self.pool, self.d_out = pool, d // expand
        self.linear = nn.Linear(d, self.d_out * pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        x = self.linear(x)  # (B, L, p*H')
        x = F.pad(x[:, :-1], (0, 0, 1, 0))  # coarse step j feeds fine steps of block j+1
        return x.reshape(b, length * self.pool, self.d_out)


class FeedForward(nn.Module):
    def __init__(self, d: int, expand: int, dropout: float):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, d * expand), nn.Linear(d * expand, d)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(F.gelu(self.fc1(x), approximate=GELU_APPROX)))


class Residual(nn.Module):
    """Pre-norm residual: x + dropout(layer(norm(x)))."""

    def __init__(self, d: int, layer: nn.Module, dropout: float):
        super().__init__()
        self.norm, self.layer = nn.LayerNorm(d), layer
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.layer(self.norm(x)))


def _stage(d: int, config: SashimiConfig) -> list[nn.Module]:
    blocks: list[nn.Module] = []
    for _ in range(config.n_layers):
        blocks.append(Residual(d, S4D(d, config.d_state, dropout=config.dropout), config.dropout))
        blocks.append(Residual(d, FeedForward(d, config.ff, config.dropout), config.dropout))
    return blocks


def class_levels(config: SashimiConfig) -> torch.Tensor:
    """(C, 2) float: each class's decoded amplitude in [-1, 1] and its place on the class scale in [-1, 1]."""
    from orchestrion.sashimi import mulaw

    classes = torch.arange(config.n_classes)
    bits = max(1, (config.n_classes - 1).bit_length())
    decoded = torch.from_numpy(mulaw.decode(classes.numpy(), config.quantization, bits).astype("float32"))
    return torch.stack([decoded, classes.float() / (config.n_classes - 1) * 2 - 1], dim=1)


LOG_SIGMA = (-8.0, 2.0)  # the peak's width, sigma, from 3e-4 (about the finest mu-law step) to 7


def amplitude_peak(params: torch.Tensor, amplitudes: torch.Tensor) -> torch.Tensor:
    """params (..., 2) = (mu, log sigma), amplitudes (C,) -> (..., C): -((a_c - mu) / sigma)^2 / 2."""
    mu, log_sigma = params[..., :1], params[..., 1:].clamp(*LOG_SIGMA)
    return -0.5 * ((amplitudes - mu) * torch.exp(-log_sigma)).square()


# ---------------------------------------------------------------------------------------------- model


class Sashimi(nn.Module):
    def __init__(self, config: SashimiConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.embedding = nn.Embedding(config.n_classes, d)
        if config.amplitude_input:
            self.amplitude = nn.Linear(2, d)
            self.register_buffer("levels", class_levels(config), persistent=False)  # (C, 2)
        self.down = nn.ModuleList()
        for p in config.pool:
            self.down.append(DownPool(d, config.expand, p))
            d *= config.expand
        self.center = nn.ModuleList(_stage(d, config))
        self.up = nn.ModuleList()
        for p in reversed(config.pool):
            block = nn.ModuleList([UpPool(d, config.expand, p)])
            d //= config.expand
            block.extend(_stage(d, config))
            self.up.append(block)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.n_classes + (2 if config.amplitude_output else 0))
        if config.amplitude_output and not config.amplitude_input:
            self.register_buffer("levels", class_levels(config), persistent=False)  # (C, 2)

    def input_table(self) -> torch.Tensor:
        """(C, D): what each class puts into the network (its embedding, plus its amplitude's map)."""
        table = self.embedding.weight
        if self.config.amplitude_input:
            table = table + self.amplitude(self.levels)
        return table

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) with L a multiple of config.frame -> logits (B, L, n_classes)."""
        if tokens.shape[1] % self.config.frame:
            raise ValueError(f"sequence length {tokens.shape[1]} is not a multiple of {self.config.frame}")
        x = F.embedding(tokens.long(), self.input_table())  # (B, L, D)
        skips = [x]
        for pool in self.down:
            x = pool(x)
            skips.append(x)
        for layer in self.center:
            x = layer(x)
        x = x + skips.pop()
        for block in self.up:
            x = block[0](x) + skips.pop()  # UpPool plus the skip from the same scale
            h = x
            for layer in block[1:]:
                x = layer(x)
            x = x + h
        out = self.head(self.norm(x))  # (B, L, C) or (B, L, C + 2)
        if not self.config.amplitude_output:
            return out
        return out[..., :-2].float() + amplitude_peak(out[..., -2:].float(), self.levels[:, 0])  # fp32 under autocast
