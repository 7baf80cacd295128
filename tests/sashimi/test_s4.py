"""The S4D layer: its two modes (FFT convolution, recurrence) compute the same causal map."""

from __future__ import annotations

import pytest
import torch

from orchestrion.sashimi.s4 import S4D


def _recurrent(layer: S4D, u: torch.Tensor) -> torch.Tensor:
    state = layer.initial_state(u.shape[0])
    outputs = []
    for t in range(u.shape[1]):
        y, state = layer.step(u[:, t], state)
        outputs.append(y)
    return torch.stack(outputs, 1)


@pytest.mark.parametrize("length", [1, 17, 300])
def test_convolution_and_recurrence_agree(length: int) -> None:
    torch.manual_seed(0)
    layer = S4D(d_model=8, d_state=16).eval()
    u = torch.randn(2, length, 8)
    with torch.no_grad():
        conv, rec = layer(u), _recurrent(layer, u)
    assert conv.shape == (2, length, 8)
    assert float((conv - rec).norm() / conv.norm()) < 1e-4


def test_kernel_matches_powers_of_the_transition() -> None:
    torch.manual_seed(1)
    layer = S4D(d_model=4, d_state=8)
    with torch.no_grad():
        dA, dBC = layer.discrete()
        k = layer.kernel(50)  # (L, H)
        naive = torch.stack([2 * (dBC * dA**i).sum(-1).real for i in range(50)])
    assert torch.allclose(k, naive, rtol=1e-4, atol=1e-5)


def test_causal() -> None:
    torch.manual_seed(2)
    layer = S4D(d_model=4, d_state=8).eval()
    u = torch.randn(1, 64, 4)
    v = u.clone()
    v[:, 40:] = torch.randn(1, 24, 4)
    with torch.no_grad():
        a, b = layer(u), layer(v)
    assert torch.allclose(a[:, :40], b[:, :40], atol=1e-6)
    assert not torch.allclose(a[:, 40:], b[:, 40:])


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(3)
    layer = S4D(d_model=4, d_state=8)
    layer(torch.randn(2, 32, 4)).square().mean().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
