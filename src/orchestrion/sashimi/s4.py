"""An S4 layer, diagonal variant (S4D), with a convolution mode for training and a recurrent step.

Which S4: S4D-Lin (Gu et al., "On the Parameterization and Initialization of Diagonal State Space
Models", 2022) with zero-order-hold discretisation. Why diagonal: its convolution kernel is a plain
Vandermonde product (no Cauchy kernel, so no custom CUDA or PyKeOps, which the reference needed), it
matches S4's quality on audio in that paper, and its recurrent step is an element-wise complex
multiply-add, which is what makes sampling cheap. A state of N real dimensions is N/2 complex modes
(conjugate pairs are implicit, hence the factor 2 on the real part).

    continuous:  x'(t) = A x(t) + B u(t),  y(t) = 2 Re(C x(t)) + D u(t),  A diagonal, B = 1
    discrete:    x_k = dA x_{k-1} + dB u_k,  dA = exp(dt A),  dB = (exp(dt A) - 1) / A
    kernel:      K_l = 2 Re(sum_n C_n dB_n dA_n^l),   y = K * u (causal)

The layer (as in the SaShiMi reference): y = GELU(SSM(u) + D u), then a position-wise linear to 2H and
a GLU. Tensors are laid out (B, L, H) so that SaShiMi never transposes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GELU_APPROX = "none"  # exact (erf) GELU: faster to train than the tanh form on CPU; the sampler uses erf too


class S4D(nn.Module):
    """One S4D layer over (B, L, H): `forward` by FFT convolution, `step` one sample at a time."""

    def __init__(
        self, d_model: int, d_state: int = 64, dt_min: float = 1e-3, dt_max: float = 1e-1, dropout: float = 0.0
    ):
        super().__init__()
        h, n = d_model, d_state // 2
        self.d_model, self.n_modes = h, n
        # log-uniform time steps give each channel its own time scale, from 10 to 1000 samples
        self.log_dt = nn.Parameter(torch.rand(h) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(h, n)))  # S4D-Lin: Re(A) = -1/2
        self.A_imag = nn.Parameter(math.pi * torch.arange(n, dtype=torch.float32).repeat(h, 1))  # Im(A) = pi n
        self.C = nn.Parameter(torch.view_as_real(torch.randn(h, n, dtype=torch.cfloat) * (0.5**0.5)))
        self.D = nn.Parameter(torch.randn(h))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.output = nn.Linear(h, 2 * h)

    def discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(dA, dBC): the diagonal transition and C*dB, both complex (H, N/2)."""
        dt = torch.exp(self.log_dt).unsqueeze(-1)  # (H, 1)
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)  # (H, N)
        dtA = A * dt
        dA = torch.exp(dtA)
        dBC = torch.view_as_complex(self.C) * (dA - 1.0) / A
        return dA, dBC

    def kernel(self, length: int) -> torch.Tensor:
        """The convolution kernel K, real (L, H).

        dA^l for every l would be an (H, N, L) tensor of complex exponentials; splitting l = a*T + b
        turns it into two small ones and one batched complex matmul, far cheaper on a CPU.
        """
        dt = torch.exp(self.log_dt).unsqueeze(-1)
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dtA = A * dt  # (H, N)
        _, dBC = self.discrete()
        t = max(1, int(math.ceil(math.sqrt(length))))
        blocks = (length + t - 1) // t
        fine = torch.exp(dtA.unsqueeze(-1) * torch.arange(t, device=dtA.device))  # (H, N, T): dA^b
        coarse = torch.exp(dtA.unsqueeze(-1) * (t * torch.arange(blocks, device=dtA.device)))  # (H, N, A): dA^(aT)
        k = torch.einsum("hnb,hna->hab", dBC.unsqueeze(-1) * fine, coarse)  # (H, A, T)
        k = 2 * k.real.reshape(self.d_model, blocks * t)[:, :length]  # (H, L)
        return k.transpose(0, 1)  # (L, H)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u (B, L, H) -> (B, L, H), causal."""
        length = u.shape[1]
        k = self.kernel(length).to(u.dtype)  # (L, H)
        n = 2 * length  # zero-pad to 2L so the circular FFT convolution is a linear (causal) one
        y = torch.fft.irfft(torch.fft.rfft(u.float(), n=n, dim=1) * torch.fft.rfft(k.float(), n=n, dim=0), n=n, dim=1)
        y = y[:, :length].to(u.dtype) + u * self.D  # (B, L, H)
        y = self.dropout(F.gelu(y, approximate=GELU_APPROX))
        return F.glu(self.output(y), dim=-1)

    def initial_state(self, batch: int, device: torch.device | None = None) -> torch.Tensor:
        return torch.zeros(batch, self.d_model, self.n_modes, dtype=torch.cfloat, device=device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One sample: u (B, H), state (B, H, N/2) complex -> (y (B, H), next state)."""
        dA, dBC = self.discrete()
        state = dA * state + dBC * u.unsqueeze(-1)  # (B, H, N)
        y = 2 * state.real.sum(-1) + u * self.D  # (B, H)
        y = F.gelu(y, approximate=GELU_APPROX)
        return F.glu(self.output(y), dim=-1), state
