r"""Closed-form oracles of the accelerated attention flows (SPEC §4.2, §4.3, §6.2).

An *oracle call* is one evaluation of the attention kernel at one state. Following the Oracle
protocol, ``prepare(x, p)`` is that call; ``velocity`` (:math:`F=\partial H/\partial P`) and
``force`` (:math:`G=-\partial H/\partial X`) are cheap given the kernel. Nothing here uses autograd:
the tests check these formulas against autograd of the Hamiltonians in ``energies.py``.

Weights are plain tensors in ``nn.Linear`` layout, heads stacked along the first dimension: ``wq,
wk`` (H·D, C) give queries/keys :math:`q^h_i=W_{Q,h}x_i`, so
:math:`A_h=\mathrm{scale}\,W_{Q,h}^\top W_{K,h}` and :math:`x_i^\top
A_hx_j=\mathrm{scale}\,q^h_i\cdot k^h_j`; ``wo`` (C, H·D) is the metric factor,
:math:`B_h=W_{O,h}\,\mathrm{diag}(d_h)\,W_{O,h}^\top`, never an inverse. Heads stay separate; forces
add over heads. Shapes: x, p (B, T, C); per head (B, H, T, D)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from sympformer.dynamics.kernels import (
    LINEAR_CHUNK,
    linear_attention,
    prefix_counts,
    softmax_attention,
)
from sympformer.dynamics.memory import Tape

LOG_Z_MAX = 30.0
"""Guard on :math:`|\\log\\bar z|`: e^60 (in r̄ = a/z̄²) stays finite in fp32 and bf16."""


class Oracle(Protocol):
    """What an integrator needs from an attention kernel (STYLE §2.2)."""

    def prepare(self, x: Tensor, p: Tensor) -> Any:
        """ONE oracle call: the kernel at the state (x, p) (p only enters a look-ahead)."""

    def velocity(self, k: Any, p: Tensor) -> Tensor:
        """F = ∂H/∂p at (x, p), (B, T, C)."""

    def force(self, k: Any, p: Tensor) -> Tensor:
        """G = -∂H/∂x at (x, p), (B, T, C)."""

    def field(self, k: Any, p: Tensor) -> tuple[Tensor, Tensor]:
        """(F, G) at the same momentum, sharing work."""


class QuadraticPotential(NamedTuple):
    r"""External potential :math:`W(x)=\tfrac12(x-m)^\top Q(x-m)`, force :math:`-\nabla W=-Q(x-m)`.

    The linear-attention potential :math:`W=-\tfrac12x^\top Vx` is ``QuadraticPotential(-V)``."""

    q: Tensor  # (C, C), symmetric
    m: Tensor | None = None  # (C,)

    def _shift(self, x: Tensor) -> Tensor:
        return x if self.m is None else x - self.m

    def energy(self, x: Tensor) -> Tensor:
        """W(x_i) per particle, (B, T)."""
        d = self._shift(x)
        return 0.5 * ((d @ self.q) * d).sum(-1)

    def force(self, x: Tensor) -> Tensor:
        """-∇W(x_i), (B, T, C)."""
        return -self._shift(x) @ self.q


def split_heads(t: Tensor, n_head: int) -> Tensor:
    """(B, T, H·D) -> (B, H, T, D)."""
    return t.unflatten(-1, (n_head, -1)).transpose(-3, -2)


def merge_heads(t: Tensor) -> Tensor:
    """(B, H, T, D) -> (B, T, H·D)."""
    return t.transpose(-3, -2).flatten(-2)


def head_scale(scale: float | None, wq: Tensor, n_head: int) -> float:
    """The score scale: ``scale`` if given, else 1/sqrt(D) with D = rows of wq per head."""
    return scale if scale is not None else 1.0 / math.sqrt(wq.shape[0] // n_head)


def query_key(x: Tensor, wq: Tensor, wk: Tensor, n_head: int) -> tuple[Tensor, Tensor]:
    """Queries and keys (B, H, T, D) of x (B, T, C) with one matrix product."""
    q, k = (x @ torch.cat([wq, wk]).mT).chunk(2, dim=-1)
    return split_heads(q, n_head), split_heads(k, n_head)


def _counts(n_q: int, n_k: int, causal: bool, like: Tensor) -> Tensor:
    """Normaliser of each query: its prefix size i (causal) or the number of particles N
    (global)."""
    if causal:
        return prefix_counts(n_q, n_k - n_q, like)
    return torch.full((n_q,), float(n_k), dtype=like.dtype, device=like.device)


class SoftmaxKernel(NamedTuple):
    x_hat: Tensor  # (B, T, C) the state the kernel was evaluated at
    q: Tensor  # (B, H, L, D) queries of the new tokens
    k: Tensor  # (B, H, S, D) keys of every token so far
    abar: Tensor  # (B, H, L, D) softmax average of keys, ā_i = Σ_j P_ij k_j
    log_z: Tensor  # (B, H, L) log z̄_i, at least fp32


@dataclass(frozen=True)
class SoftmaxOracle:
    r"""Accelerated softmax attention with nonlinear mobility (SPEC §4.3, causal form §6.2).

    Per head, with :math:`\bar z_i=\frac1i\sum_{j\le i}M_{ij}`, :math:`M_{ij}=e^{x_i^\top Ax_j}`,
    :math:`a_i=\langle Y_i,BY_i\rangle`, :math:`\bar r_i=a_i/\bar z_i^2`:

    .. math::
        F_i=\frac{BY_i}{\bar z_i},\qquad
        G_i=\frac1i\sum_{j\le i}M_{ij}\Big[\tfrac12(\bar r_i+\bar r_j)+\nu\Big]AX_j
           =\Big(\frac{a_i}{2\bar z_i}+\nu\bar z_i\Big)\bar a_i+\frac{\bar z_i}2\bar b_i,

    :math:`\bar a_i=\sum_jP_{ij}AX_j`, :math:`\bar b_i=\sum_jP_{ij}\bar r_jAX_j`; two softmax
    passes, one kernel. With ``causal=False`` (i -> N) this is exactly :math:`-\partial_X H_\nu` of
    the bidirectional Hamiltonian :math:`H_\nu=\frac12\sum_i a_i/\bar
    z_i-\frac{\nu}{2N}\sum_{ij}M_{ij}` for symmetric A, B. ``potential`` adds an external
    :math:`\sum_iW(x_i)` (the flow demo of SPEC §5.1)."""

    wq: Tensor  # (H·D, C)
    wk: Tensor  # (H·D, C)
    wo: Tensor  # (C, H·D)
    n_head: int
    dm: Tensor | None = None  # (H·D,) positive metric scales; None means 1
    nu: Tensor | float = 1.0  # potential weight ν
    scale: float | None = None  # None: 1/sqrt(D)
    potential: QuadraticPotential | None = None
    causal: bool = True
    fused: bool = True
    pre: Callable[[Tensor, Tensor], Tensor] | None = None  # (x, p) -> x̂, e.g. LN(x + μ p)
    tape: Tape | None = None

    @property
    def head_scale(self) -> float:
        return head_scale(self.scale, self.wq, self.n_head)

    def prepare(self, x: Tensor, p: Tensor) -> SoftmaxKernel:
        x_hat = x if self.pre is None else self.pre(x, p)
        q, k = query_key(x_hat, self.wq, self.wk, self.n_head)  # (B, H, L, D) each
        if self.tape is not None:
            k = self.tape.cat(k)  # (B, H, S, D)
        abar, lse = softmax_attention(
            q, k, k, self.head_scale, self.causal, need_lse=True, fused=self.fused
        )
        lse = lse.to(torch.promote_types(lse.dtype, torch.float32))
        n = _counts(q.shape[-2], k.shape[-2], self.causal, lse)
        log_z = (lse - torch.log(n)).clamp(-LOG_Z_MAX, LOG_Z_MAX)
        return SoftmaxKernel(x_hat, q, k, abar, log_z)

    def _momentum(self, p: Tensor) -> tuple[Tensor, Tensor]:
        """u^h = W_{O,h}^T p and d_h ⊙ u^h, (B, H, L, D) each."""
        u = split_heads(p @ self.wo, self.n_head)
        du = u if self.dm is None else u * self.dm.view(self.n_head, 1, -1)
        return u, du

    def _velocity(self, kern: SoftmaxKernel, du: Tensor) -> Tensor:
        return merge_heads(du * torch.exp(-kern.log_z)[..., None].to(du.dtype)) @ self.wo.mT

    def _force(self, kern: SoftmaxKernel, u: Tensor, du: Tensor) -> Tensor:
        a = (u * du).sum(-1)  # (B, H, L): <Y_i, B_h Y_i>
        z = torch.exp(kern.log_z)
        r = (a / z**2).to(kern.k.dtype)[..., None]  # (B, H, L, 1)
        if self.tape is not None:
            r = self.tape.cat(r)  # (B, H, S, 1)
        bbar, _ = softmax_attention(
            kern.q, kern.k, r * kern.k, self.head_scale, self.causal, fused=self.fused
        )
        scale = self.head_scale  # A X_j = scale W_Q^T k_j: folded into the (B, H, L) coefficients
        c_a = (scale * (a / (2 * z) + self.nu * z)).to(u.dtype)[..., None]
        c_b = (scale / 2 * z).to(u.dtype)[..., None]
        g = merge_heads(torch.addcmul(c_a * kern.abar, c_b, bbar)) @ self.wq  # (B, T, C)
        if self.potential is not None:
            g = g + self.potential.force(kern.x_hat)
        return g

    def velocity(self, kern: SoftmaxKernel, p: Tensor) -> Tensor:
        return self._velocity(kern, self._momentum(p)[1])

    def force(self, kern: SoftmaxKernel, p: Tensor) -> Tensor:
        return self._force(kern, *self._momentum(p))

    def field(self, kern: SoftmaxKernel, p: Tensor) -> tuple[Tensor, Tensor]:
        u, du = self._momentum(p)
        return self._velocity(kern, du), self._force(kern, u, du)


class LinearKernel(NamedTuple):
    x_hat: Tensor  # (B, T, C)
    phi: Tensor  # (B, H, L, 2D) [q, k]
    psi: Tensor  # (B, H, L, 2D) [k, q]
    n: Tensor  # (L, 1) prefix counts


@dataclass(frozen=True)
class LinearOracle:
    r"""Accelerated Stein flow of linear attention (SPEC §4.2; causal form §6.2).

    Kernel per head :math:`k_h(x,y)=y^\top A^s_hx`, :math:`A^s_h=\mathrm{Sym}(A_h)`, so
    :math:`x_i^\top A^s_hx_j=\frac{\rm scale}2\phi_i\cdot\psi_j` with :math:`\phi=[q,k]`,
    :math:`\psi=[k,q]`; momentum projector :math:`\Pi_h=W_{O,h}W_{O,h}^\top`. With
    :math:`C_i=\frac1i\sum_{j\le i}\Pi Y_jX_j^\top`:

    .. math::
        F_i=C_iAX_i=\frac1i\sum_{j\le i}(X_i^\top AX_j)\Pi Y_j,\qquad
        G_i=-AC_i^\top Y_i+V X_i=-\frac1i\sum_{j\le i}(Y_i^\top\Pi Y_j)AX_j-\nabla W(X_i).

    Both are linear attentions (prefix state O(D²) per head). Causal = exact force on the last token
    of each prefix; ``causal=False`` is :math:`\partial H` of
    :math:`H=\frac1{2N}\sum_{ij}k(X_i,X_j)Y_i^\top\Pi Y_j+\sum_iW(X_i)`.
    """

    wq: Tensor  # (H·D, C)
    wk: Tensor  # (H·D, C)
    wo: Tensor  # (C, H·D)
    n_head: int
    scale: float | None = None
    potential: QuadraticPotential | None = None
    causal: bool = True
    pre: Callable[[Tensor, Tensor], Tensor] | None = None
    tape: Tape | None = None
    chunk: int = LINEAR_CHUNK

    @property
    def head_scale(self) -> float:
        return head_scale(self.scale, self.wq, self.n_head)

    def prepare(self, x: Tensor, p: Tensor) -> LinearKernel:
        x_hat = x if self.pre is None else self.pre(x, p)
        q, k = query_key(x_hat, self.wq, self.wk, self.n_head)  # (B, H, L, D) each
        offset = 0 if self.tape is None else self.tape.offset
        n = _counts(q.shape[-2], q.shape[-2] + offset, self.causal, q)[:, None]  # (L, 1)
        return LinearKernel(x_hat, torch.cat([q, k], -1), torch.cat([k, q], -1), n)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, n: Tensor) -> Tensor:
        return linear_attention(q, k, v, self.causal, self.tape, self.chunk) / n

    def _velocity(self, kern: LinearKernel, u: Tensor) -> Tensor:
        out = self._attend(kern.phi, kern.psi, u, kern.n)  # (B, H, L, D)
        return merge_heads(out) @ self.wo.mT * (self.head_scale / 2)

    def _force(self, kern: LinearKernel, u: Tensor) -> Tensor:
        out = self._attend(u, u, kern.psi, kern.n)  # (B, H, L, 2D): Σ_j (u_i·u_j) [k_j, q_j] / i
        d = out.shape[-1] // 2
        g = merge_heads(out[..., :d]) @ self.wq + merge_heads(out[..., d:]) @ self.wk
        g = g * (-self.head_scale / 2)
        if self.potential is not None:
            g = g + self.potential.force(kern.x_hat)
        return g

    def velocity(self, kern: LinearKernel, p: Tensor) -> Tensor:
        return self._velocity(kern, split_heads(p @ self.wo, self.n_head))

    def force(self, kern: LinearKernel, p: Tensor) -> Tensor:
        return self._force(kern, split_heads(p @ self.wo, self.n_head))

    def field(self, kern: LinearKernel, p: Tensor) -> tuple[Tensor, Tensor]:
        u = split_heads(p @ self.wo, self.n_head)
        return self._velocity(kern, u), self._force(kern, u)
