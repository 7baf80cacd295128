"""SaShiMi in recurrent mode: one sample at a time, no recomputation of the past.

Like the reference's `step()`, each pooling scale keeps a cache: a buffer that collects 4 inputs, and a
queue holding the 4 up-pooled outputs of the previous coarse step (zeros at first: the causal shift). A
coarser scale runs once every 4 steps of the finer one, so at 16 kHz the centre runs at 1 kHz.

At batch 1 a step is ~100 tiny operations; as numpy or torch calls their per-call overhead alone is
several times real time, so each stage's layers run as one compiled loop nest (numba). The weights are
folded once into plain arrays (LayerNorm scales into the following matrix, C into dB), stacked per stage,
so that a step touches each weight once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from numba import njit

from orchestrion.sashimi.model import LOG_SIGMA, class_levels

if TYPE_CHECKING:
    from torch import nn

    from orchestrion.sashimi.model import DownPool, Sashimi, UpPool


LOG_SIGMA_LOW, LOG_SIGMA_HIGH = LOG_SIGMA


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


@njit(cache=True, fastmath=True, error_model="numpy")
def _gelu(v: float) -> float:
    return 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


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
def _head(x, W, b, amplitudes, logits):  # noqa: N803
    """logits (B, C) = LayerNorm(x) @ W + b, with the norm's affine part folded into W and b. When W has
    two more columns (amplitude_output) they are the peak's mu and log sigma, added as in `amplitude_peak`."""
    n = np.empty(x.shape[1], np.float32)
    out = np.empty(W.shape[1], np.float32)
    c = logits.shape[1]
    for r in range(x.shape[0]):
        _normalize(x[r], n)
        out[:] = b
        for i in range(x.shape[1]):
            ni = n[i]
            for j in range(W.shape[1]):
                out[j] += ni * W[i, j]
        logits[r] = out[:c]
        if W.shape[1] > c:
            mu = out[c]
            inv = math.exp(-min(max(out[c + 1], LOG_SIGMA_LOW), LOG_SIGMA_HIGH))
            for j in range(c):
                d = (amplitudes[j] - mu) * inv
                logits[r, j] -= 0.5 * d * d


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
    return (
        stack(dA, np.complex64),
        stack(dBCg, np.complex64),
        stack(dBCb, np.complex64),
        stack(Dg),
        stack(Db),
        stack(W),
        stack(bias),
        state,
        stack(W1),
        stack(b1),
        stack(W2),
        stack(b2),
    )


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
        with torch.no_grad():
            self.embedding = _np(model.input_table())  # (C, D): embedding plus the amplitude map, folded
        # stage k pairs down[k] with up[-1-k]: both work at the finer resolution of that scale
        self.stages = [_Stage(model.down[k], model.up[len(model.down) - 1 - k], batch) for k in range(len(model.down))]
        self.center = _fold_stage(list(model.center), batch)
        g, b = _np(model.norm.weight), _np(model.norm.bias)
        w = _np(model.head.weight).T  # (D, C)
        self.head_W = np.ascontiguousarray(g[:, None] * w, dtype=np.float32)
        self.head_b = (b @ w + _np(model.head.bias)).astype(np.float32)
        self.amplitudes = _np(class_levels(model.config)[:, 0])  # (C,): each class's decoded value
        self.logits = np.zeros((batch, model.config.n_classes), dtype=np.float32)
        self.t = 0
        self._net = None
        if len(self.stages) == 2:
            s0, s1 = self.stages
            self._net = (
                self.embedding,
                s0.buffer,
                s0.queue,
                s0.down_W,
                s0.down_b,
                s0.up_W,
                s0.up_b,
                s0.layers,
                s1.buffer,
                s1.queue,
                s1.down_W,
                s1.down_b,
                s1.up_W,
                s1.up_b,
                s1.layers,
                self.center,
                self.head_W,
                self.head_b,
                self.amplitudes,
                self.logits,
            )

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
            coarse = self._run(
                k + 1, _linear(stage.buffer.reshape(self.batch, -1), stage.down_W, stage.down_b), t // stage.p
            )
            stage.queue[:] = _linear(coarse, stage.up_W, stage.up_b).reshape(self.batch, stage.p, stage.h)
        _stage_layers(y, *stage.layers)
        return y

    def step(self, classes: np.ndarray) -> np.ndarray:
        """classes (B,) of the current sample -> logits (B, C) for the next one (a reused buffer)."""
        classes = np.ascontiguousarray(classes, dtype=np.int64)
        if self._net is not None:
            _advance(self._net, self.t, classes)
        else:
            x = self._run(0, self.embedding[classes], self.t)
            _head(x, self.head_W, self.head_b, self.amplitudes, self.logits)
        self.t += 1
        return self.logits

    def feed(self, classes: np.ndarray) -> np.ndarray:
        """Run a prompt (B, T) through the recurrence; returns the logits after its last sample."""
        classes = np.ascontiguousarray(classes, dtype=np.int64)
        if self._net is not None:
            _feed(self._net, self.t, classes)
            self.t += classes.shape[1]
        else:
            for t in range(classes.shape[1]):
                self.step(classes[:, t])
        return self.logits

    def sample(self, n: int, temperature: float, top_p: float, gumbel: np.ndarray, top_k: int = 0) -> np.ndarray:
        """n samples (B, n) from the current logits on (choose, step, choose, ...); gumbel is (n, B, C) noise."""
        out = np.empty((self.batch, n), dtype=np.int64)
        if self._net is not None:
            _sample(self._net, self.t, gumbel, 1.0 / temperature, top_k, top_p, out)
            self.t += n
        else:
            for s in range(n):
                out[:, s] = choose(self.logits, temperature, top_p, gumbel[s], top_k)
                self.step(out[:, s])
        return out


# With the reference's two pooling stages the whole step, sampling included, runs compiled: no Python
# between samples. Other pool configurations take the general (recursive, per-step Python) path above.


@njit(cache=True, fastmath=True, error_model="numpy")
def _advance(net, t, classes):  # noqa: ANN001, ANN201
    emb, b0, q0, dW0, db0, uW0, ub0, L0, b1, q1, dW1, db1, uW1, ub1, L1, Lc, hW, hb, amps, logits = net  # noqa: N806
    batch, p0, p1 = classes.shape[0], b0.shape[1], b1.shape[1]
    x = np.empty((batch, emb.shape[1]), np.float32)
    for b in range(batch):
        x[b] = emb[classes[b]]
    j0 = t % p0
    b0[:, j0, :] = x
    y0 = q0[:, j0, :] + x  # up-pooled output of the previous coarse step, plus the skip
    if j0 == p0 - 1:
        x1 = _linear(b0.reshape(batch, -1), dW0, db0)
        j1 = (t // p0) % p1
        b1[:, j1, :] = x1
        y1 = q1[:, j1, :] + x1
        if j1 == p1 - 1:
            c = _linear(b1.reshape(batch, -1), dW1, db1)
            _stage_layers(c, *Lc)
            q1[:] = _linear(c, uW1, ub1).reshape(batch, p1, q1.shape[2])
        _stage_layers(y1, *L1)
        q0[:] = _linear(y1, uW0, ub0).reshape(batch, p0, q0.shape[2])
    _stage_layers(y0, *L0)
    _head(y0, hW, hb, amps, logits)


@njit(cache=True, fastmath=True, error_model="numpy")
def _feed(net, t, classes):  # noqa: ANN001, ANN201
    for s in range(classes.shape[1]):
        _advance(net, t + s, np.ascontiguousarray(classes[:, s]))


@njit(cache=True, fastmath=True, error_model="numpy")
def _choose_row(logits, inv_temperature, top_k, top_p, gumbel):  # noqa: ANN001, ANN201
    """Gumbel-max over temperature-scaled logits, restricted to the k most likely classes (top_k > 0) and
    then to the smallest nucleus holding top_p of their renormalised mass (top_p < 1)."""
    c = logits.shape[0]
    z = logits * inv_temperature
    keep = c
    order = np.arange(c)
    if top_p < 1.0 or 0 < top_k < c:
        order = np.argsort(-z)
        if 0 < top_k < c:
            keep = top_k
        if top_p < 1.0:
            top = z[order[0]]
            total = 0.0
            for r in range(keep):
                total += math.exp(z[order[r]] - top)
            cum = 0.0
            for r in range(keep):
                cum += math.exp(z[order[r]] - top) / total
                if cum >= top_p:
                    keep = r + 1
                    break
    best, best_score = order[0], -np.inf
    for r in range(keep):
        k = order[r]
        score = z[k] + gumbel[k]
        if score > best_score:
            best, best_score = k, score
    return best


@njit(cache=True, fastmath=True, error_model="numpy")
def _sample(net, t, gumbel, inv_temperature, top_k, top_p, out):  # noqa: ANN001, ANN201
    logits = net[-1]
    classes = np.empty(out.shape[0], np.int64)
    for s in range(out.shape[1]):
        for b in range(out.shape[0]):
            classes[b] = _choose_row(logits[b], inv_temperature, top_k, top_p, gumbel[s, b])
            out[b, s] = classes[b]
        _advance(net, t + s, classes)


def choose(logits: np.ndarray, temperature: float, top_p: float, gumbel: np.ndarray, top_k: int = 0) -> np.ndarray:
    """Sample one class per row of logits (B, C) with Gumbel noise (B, C), at a temperature, within the top
    k (0: all) and then the top-p nucleus."""
    return np.array(
        [_choose_row(row, 1.0 / temperature, top_k, top_p, g) for row, g in zip(logits, gumbel, strict=True)]
    )
