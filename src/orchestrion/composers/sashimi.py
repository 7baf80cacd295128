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

The sampler runs in numpy rather than torch: at batch 1 a step is ~100 tiny operations, and numpy's
per-call overhead is several times smaller than torch's. The weights are folded once into plain arrays
(LayerNorm scales into the following matrix, C into dB) so that a step touches each weight once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit
from torch import nn

from orchestrion.composers.base import AudioBlock, Composer, Piece
from orchestrion.composers.s4 import GELU_APPROX, S4D
from orchestrion.errors import BadInput, InvalidRequest
from orchestrion.requests import ComposeRequest

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


# ---------------------------------------------------------------------------------------------- model


class Sashimi(nn.Module):
    def __init__(self, config: SashimiConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.embedding = nn.Embedding(config.n_classes, d)
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
        self.head = nn.Linear(d, config.n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, L) with L a multiple of config.frame -> logits (B, L, n_classes)."""
        if tokens.shape[1] % self.config.frame:
            raise ValueError(f"sequence length {tokens.shape[1]} is not a multiple of {self.config.frame}")
        x = self.embedding(tokens.long())  # (B, L, D)
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
        return self.head(self.norm(x))


# ------------------------------------------------------------------------ recurrent sampler (numba)
#
# At batch 1 a step is ~100 tiny operations; as numpy or torch calls their per-call overhead alone is
# several times real time, so each stage's layers run as one compiled loop nest (numba). The weights are
# folded once into plain arrays (LayerNorm scales into the following matrix, C into dB), stacked per
# stage, so that a step touches each weight once.


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


@njit(cache=True, fastmath=True, error_model="numpy")
def _gelu(v: float) -> float:
    return 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))


@njit(cache=True, fastmath=True, error_model="numpy")
def _normalize(x: np.ndarray, out: np.ndarray) -> None:
    """LayerNorm of one row without its affine part (folded into the next weights)."""
    h = x.shape[0]
    mean = 0.0
    for i in range(h):
        mean += x[i]
    mean /= h
    var = 0.0
    for i in range(h):
        d = x[i] - mean
        out[i] = d
        var += d * d
    inv = 1.0 / math.sqrt(var / h + 1e-5)
    for i in range(h):
        out[i] *= inv


@njit(cache=True, fastmath=True, error_model="numpy")
def _stage_layers(x, dA, dBCg, dBCb, Dg, Db, W, bias, state, W1, b1, W2, b2):  # noqa: N803
    """A stage's [S4, FF] pairs on x (B, H), in place, plus the residual around the whole stage."""
    batch, h = x.shape
    n_layers, _, n_modes = dA.shape
    e_dim = W1.shape[2]
    n = np.empty(h, np.float32)
    y = np.empty(h, np.float32)
    z = np.empty(2 * h, np.float32)
    e = np.empty(e_dim, np.float32)
    for b in range(batch):
        xb = x[b]
        skip = xb.copy()
        for layer in range(n_layers):
            _normalize(xb, n)  # S4 block
            for i in range(h):
                acc = 0.0
                for k in range(n_modes):
                    s = state[layer, b, i, k] * dA[layer, i, k] + dBCg[layer, i, k] * n[i] + dBCb[layer, i, k]
                    state[layer, b, i, k] = s
                    acc += s.real
                y[i] = _gelu(2.0 * acc + n[i] * Dg[layer, i] + Db[layer, i])
            z[:] = bias[layer]
            for i in range(h):
                yi = y[i]
                for j in range(2 * h):
                    z[j] += yi * W[layer, i, j]
            for i in range(h):
                xb[i] += z[i] / (1.0 + math.exp(-z[h + i]))
            _normalize(xb, n)  # feed-forward block
            e[:] = b1[layer]
            for i in range(h):
                ni = n[i]
                for j in range(e_dim):
                    e[j] += ni * W1[layer, i, j]
            for j in range(e_dim):
                e[j] = _gelu(e[j])
            for i in range(h):
                xb[i] += b2[layer, i]
            for j in range(e_dim):
                ej = e[j]
                for i in range(h):
                    xb[i] += ej * W2[layer, j, i]
        for i in range(h):
            xb[i] += skip[i]


@njit(cache=True, fastmath=True, error_model="numpy")
def _linear(x, W, b):  # noqa: N803
    """x (B, I) @ W (I, O) + b."""
    out = np.empty((x.shape[0], W.shape[1]), np.float32)
    for r in range(x.shape[0]):
        out[r] = b
        for i in range(x.shape[1]):
            xi = x[r, i]
            for j in range(W.shape[1]):
                out[r, j] += xi * W[i, j]
    return out


@njit(cache=True, fastmath=True, error_model="numpy")
def _head(x, W, b, logits):  # noqa: N803
    """logits (B, C) = LayerNorm(x) @ W + b, with the norm's affine part folded into W and b."""
    n = np.empty(x.shape[1], np.float32)
    for r in range(x.shape[0]):
        _normalize(x[r], n)
        logits[r] = b
        for i in range(x.shape[1]):
            ni = n[i]
            for j in range(W.shape[1]):
                logits[r, j] += ni * W[i, j]


def _fold_stage(blocks: list, batch: int) -> tuple:
    """Stack a stage's [S4, FF] residual blocks into the arrays `_stage_layers` takes."""
    s4s, ffs = blocks[0::2], blocks[1::2]
    dA, dBCg, dBCb, Dg, Db, W, bias, W1, b1, W2, b2 = ([] for _ in range(11))
    for blk in s4s:
        g, b = _np(blk.norm.weight), _np(blk.norm.bias)
        with torch.no_grad():
            a, bc = blk.layer.discrete()
        a, bc = a.cpu().numpy().astype(np.complex64), bc.cpu().numpy().astype(np.complex64)
        d = _np(blk.layer.D)
        # the S4 input u = g*n + b reaches the state through dBC and the skip through D: fold g and b in
        dA.append(a)
        dBCg.append(bc * g[:, None])
        dBCb.append(bc * b[:, None])
        Dg.append(d * g)
        Db.append(d * b)
        W.append(_np(blk.layer.output.weight).T)
        bias.append(_np(blk.layer.output.bias))
    for blk in ffs:
        g, b = _np(blk.norm.weight), _np(blk.norm.bias)
        w1 = _np(blk.layer.fc1.weight).T  # (H, E)
        W1.append(g[:, None] * w1)
        b1.append(b @ w1 + _np(blk.layer.fc1.bias))
        W2.append(_np(blk.layer.fc2.weight).T)
        b2.append(_np(blk.layer.fc2.bias))

    def stack(arrays: list, dtype: type = np.float32) -> np.ndarray:
        return np.ascontiguousarray(np.stack(arrays), dtype=dtype)

    h, n_modes = dA[0].shape
    state = np.zeros((len(s4s), batch, h, n_modes), dtype=np.complex64)
    return (stack(dA, np.complex64), stack(dBCg, np.complex64), stack(dBCb, np.complex64), stack(Dg), stack(Db),
            stack(W), stack(bias), state, stack(W1), stack(b1), stack(W2), stack(b2))


class _Stage:
    """One pooling scale in recurrent mode: a buffer of 4 inputs, a queue of 4 up-pooled outputs, layers."""

    def __init__(self, down: DownPool, up_block: nn.ModuleList, batch: int):
        up: UpPool = up_block[0]
        self.p, self.h = down.pool, up.d_out
        self.buffer = np.zeros((batch, self.p, self.h), dtype=np.float32)
        self.queue = np.zeros((batch, self.p, self.h), dtype=np.float32)  # zeros: the causal shift
        self.down_W, self.down_b = np.ascontiguousarray(_np(down.linear.weight).T), _np(down.linear.bias)
        self.up_W, self.up_b = np.ascontiguousarray(_np(up.linear.weight).T), _np(up.linear.bias)
        self.layers = _fold_stage(list(up_block[1:]), batch)


class Sampler:
    """Recurrent-mode SaShiMi over a batch: `step(classes) -> logits` for one sample of every sequence."""

    def __init__(self, model: Sashimi, batch: int = 1):
        model = model.eval()
        self.batch = batch
        self.embedding = _np(model.embedding.weight)  # (C, D)
        # stage k pairs down[k] with up[-1-k]: both work at the finer resolution of that scale
        self.stages = [_Stage(model.down[k], model.up[len(model.down) - 1 - k], batch) for k in range(len(model.down))]
        self.center = _fold_stage(list(model.center), batch)
        g, b = _np(model.norm.weight), _np(model.norm.bias)
        w = _np(model.head.weight).T  # (D, C)
        self.head_W = np.ascontiguousarray(g[:, None] * w, dtype=np.float32)
        self.head_b = (b @ w + _np(model.head.bias)).astype(np.float32)
        self.logits = np.zeros((batch, self.head_b.shape[0]), dtype=np.float32)
        self.t = 0

    def _run(self, k: int, x: np.ndarray, t: int) -> np.ndarray:
        """Stage k's output for its input x (B, H) at its own time t: one step of that scale."""
        if k == len(self.stages):
            _stage_layers(x, *self.center)
            return x
        stage = self.stages[k]
        j = t % stage.p
        stage.buffer[:, j] = x
        y = stage.queue[:, j] + x  # the up-pooled output of the previous coarse step, plus the skip
        if j == stage.p - 1:  # the buffer is full: run the coarser scale once and refill the queue
            coarse = self._run(k + 1, _linear(stage.buffer.reshape(self.batch, -1), stage.down_W, stage.down_b), t // stage.p)
            stage.queue[:] = _linear(coarse, stage.up_W, stage.up_b).reshape(self.batch, stage.p, stage.h)
        _stage_layers(y, *stage.layers)
        return y

    def step(self, classes: np.ndarray) -> np.ndarray:
        """classes (B,) of the current sample -> logits (B, C) for the next one (a reused buffer)."""
        x = self._run(0, self.embedding[classes], self.t)
        self.t += 1
        _head(x, self.head_W, self.head_b, self.logits)
        return self.logits

    def feed(self, classes: np.ndarray) -> np.ndarray:
        """Run a prompt (B, T) through the recurrence; returns the logits after its last sample."""
        for t in range(classes.shape[1]):
            self.step(classes[:, t])
        return self.logits


def choose(logits: np.ndarray, temperature: float, top_p: float, gumbel: np.ndarray) -> np.ndarray:
    """Sample one class per row: Gumbel-max over temperature-scaled logits, restricted to the top-p nucleus."""
    z = logits / temperature
    if top_p < 1.0:
        order = np.argsort(-z, axis=-1)
        zs = np.take_along_axis(z, order, -1)
        p = np.exp(zs - zs[:, :1])
        cum = np.cumsum(p, -1) / p.sum(-1, keepdims=True)
        drop = (cum - p / p.sum(-1, keepdims=True)) >= top_p  # keep up to and including the crossing class
        zs[drop] = -np.inf
        z = np.empty_like(z)
        np.put_along_axis(z, order, zs, -1)
    return np.argmax(z + gumbel, axis=-1)
