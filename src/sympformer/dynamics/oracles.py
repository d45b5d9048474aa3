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
add over heads. Shapes: x, p (B, T, C); per head (B, H, T, D).

**Ingredients** (issue 14; SPEC §5 "Relations"). Three switches take a Hamiltonian oracle apart one
piece at a time, for ablations between YuriiFormer and SympFormer:

* ``mobility=False`` — Euclidean kinetic energy: the drift is :math:`F=Y` instead of the metric
  drift.
* ``kinetic=False`` — the force keeps only its potential part :math:`G(X,0)` (no metric-variation
  terms).
* ``wv, wout`` given — the force is the classical attention field with a value matrix,
  :math:`G_i=\Gamma_i=W_{\rm out}\sum_{j\le i}P_{ij}W_Vx_j` (softmax) or
  :math:`W_{\rm out}\frac1i\sum_{j\le i}(q_i\cdot k_j/\sqrt D)W_Vx_j` (linear), instead of
  :math:`-\partial_XH`. With ``mobility=False`` this is heavy ball (SPEC §5 "Relations").

Only the full oracle (the defaults) is a Hamiltonian system; the others are what their equations
say, and the tests check each against explicit loops."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
import torch.nn.functional as F
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


def _metric_norm(u: Tensor, dm: Tensor | None, n_head: int) -> Tensor:
    """a_i = <Y_i, B_h Y_i> = Σ_d d_{h,d} (u^h_{i,d})² per head, (B, H, L), from u (B, H, L, D)
    and the metric scales dm (H·D,) (None: all 1); one product with the scales, no (B, H, L, D)
    temporary for d ⊙ u."""
    sq = u.square()
    if dm is None:
        return sq.sum(-1)
    return (sq @ dm.view(n_head, -1, 1)).squeeze(-1)  # (B, H, L, D) @ (H, D, 1)


class SoftmaxKernel(NamedTuple):
    x_hat: Tensor  # (B, T, C) the state the kernel was evaluated at
    q: Tensor  # (B, H, L, D) queries of the new tokens
    k: Tensor  # (B, H, S, D) keys of every token so far
    avg: Tensor  # (B, H, L, D) softmax average of the values: keys ā_i = Σ_j P_ij k_j, or W_V x̂
    log_z: Tensor | None  # (B, H, L) log z̄_i, at least fp32; None when nothing reads it


@dataclass(frozen=True)
class AttentionOracle:
    """The fields both kernels share: per-head projections, the score scale, an external
    potential, causality, the pre-map x -> x̂ and decoding tape, and the ingredient switches
    (ModelConfig.drift / .force; each kernel's docstring states the equation they select)."""

    wq: Tensor | None  # (H·D, C); None only where nothing reads the kernel (linear: F = Y, G = -∇W)
    wk: Tensor | None  # (H·D, C)
    wo: Tensor | None  # (C, H·D) metric factor; None when neither drift nor force reads it
    n_head: int
    scale: float | None = None  # None: 1/sqrt(D)
    potential: QuadraticPotential | None = None
    causal: bool = True
    pre: Callable[[Tensor, Tensor], Tensor] | None = None  # (x, p) -> x̂, e.g. LN(x + μ p)
    tape: Tape | None = None
    mobility: bool = True  # the kernel's metric drift; False: F = Y
    kinetic: bool = True  # G with its kinetic (metric-variation) terms; False: without them
    wv: Tensor | None = None  # (H·D, C) value map: G = Γ(x̂), the attention field
    wout: Tensor | None = None  # (C, H·D) output map of Γ

    @property
    def head_scale(self) -> float:
        return head_scale(self.scale, self.wq, self.n_head)

    @property
    def attention_force(self) -> bool:
        return self.wv is not None


@dataclass(frozen=True)
class SoftmaxOracle(AttentionOracle):
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
    :math:`\sum_iW(x_i)` (the flow demo of SPEC §5.1).

    Ingredients (module docstring): ``mobility=False`` gives F = Y; ``kinetic=False`` gives
    :math:`G_i=\nu\bar z_i\bar a_i` (one pass); ``wv, wout`` give :math:`G=\Gamma(\hat x)` from
    one pass whose values are :math:`W_V\hat x` (with the log-sum-exp only if the drift needs
    :math:`\bar z`)."""

    dm: Tensor | None = None  # (H·D,) positive metric scales; None means 1
    nu: Tensor | float = 1.0  # potential weight ν
    fused: bool = True

    def prepare(self, x: Tensor, p: Tensor) -> SoftmaxKernel:
        x_hat = x if self.pre is None else self.pre(x, p)
        q, k = query_key(x_hat, self.wq, self.wk, self.n_head)  # (B, H, L, D) each
        values = None if self.wv is None else split_heads(x_hat @ self.wv.mT, self.n_head)
        if self.tape is not None:
            k = self.tape.cat(k)  # (B, H, S, D)
            values = None if values is None else self.tape.cat(values)
        need_lse = self.mobility or not self.attention_force  # z̄: drift or Hamiltonian force
        avg, lse = softmax_attention(
            q, k, k if values is None else values, self.head_scale, self.causal, need_lse,
            self.fused,
        )  # fmt: skip
        log_z = None
        if lse is not None:
            lse = lse.to(torch.promote_types(lse.dtype, torch.float32))
            n = _counts(q.shape[-2], k.shape[-2], self.causal, lse)
            log_z = F.hardtanh(lse - torch.log(n), -LOG_Z_MAX, LOG_Z_MAX)  # clamp
        return SoftmaxKernel(x_hat, q, k, avg, log_z)

    def _momentum(self, p: Tensor) -> Tensor:
        """u^h = W_{O,h}^T p, (B, H, L, D)."""
        return split_heads(p @ self.wo, self.n_head)

    def _velocity(self, kern: SoftmaxKernel, p: Tensor) -> Tensor:
        """F = Σ_h W_{O,h} (d_h ⊙ W_{O,h}^T p) / z̄ (the metric scales folded into W_O)."""
        wo = self.wo if self.dm is None else self.wo * self.dm
        du = split_heads(p @ wo, self.n_head)  # (B, H, L, D): d_h ⊙ u^h
        return merge_heads(du * torch.exp(-kern.log_z).to(du.dtype)[..., None]) @ self.wo.mT

    def _force(self, kern: SoftmaxKernel, u: Tensor | None) -> Tensor:
        if self.attention_force:
            g = merge_heads(kern.avg) @ self.wout.mT  # Γ_i = W_out Σ_j P_ij W_V x̂_j, (B, T, C)
        else:
            scale = self.head_scale  # A X_j = scale W_Q^T k_j: folded into the (B, H, L) factors
            z = torch.exp(kern.log_z)  # (B, H, L)
            if self.kinetic:
                a = _metric_norm(u, self.dm, self.n_head)  # (B, H, L): <Y_i, B_h Y_i>
                a_z = a / z
                r = (a_z / z).to(kern.k.dtype)[..., None]  # (B, H, L, 1): r̄ = a / z̄²
                if self.tape is not None:
                    r = self.tape.cat(r)  # (B, H, S, 1)
                bbar, _ = softmax_attention(
                    kern.q, kern.k, r * kern.k, scale, self.causal, fused=self.fused
                )
                c_a = a_z * (scale / 2) + (self.nu * scale) * z  # s (a/(2z̄) + ν z̄)
                c_b = z * (scale / 2)
                dtype = kern.avg.dtype
                c_a, c_b = c_a.to(dtype)[..., None], c_b.to(dtype)[..., None]
                g = torch.addcmul(c_a * kern.avg, c_b, bbar)
            else:  # potential part only: ν z̄_i ā_i
                g = (z * (self.nu * scale)).to(kern.avg.dtype)[..., None] * kern.avg
            g = merge_heads(g) @ self.wq  # (B, T, C)
        if self.potential is not None:
            g = g + self.potential.force(kern.x_hat)
        return g

    def _needs_momentum(self) -> bool:
        return self.kinetic and not self.attention_force

    def velocity(self, kern: SoftmaxKernel, p: Tensor) -> Tensor:
        return self._velocity(kern, p) if self.mobility else p

    def force(self, kern: SoftmaxKernel, p: Tensor) -> Tensor:
        return self._force(kern, self._momentum(p) if self._needs_momentum() else None)

    def field(self, kern: SoftmaxKernel, p: Tensor) -> tuple[Tensor, Tensor]:
        f = self._velocity(kern, p) if self.mobility else p
        return f, self.force(kern, p)


class LinearKernel(NamedTuple):
    x_hat: Tensor  # (B, T, C)
    phi: Tensor | None  # (B, H, L, 2D) [q, k]; None when nothing reads the kernel
    psi: Tensor | None  # (B, H, L, 2D) [k, q]
    values: Tensor | None  # (B, H, L, D) W_V x̂ (attention force only)


@dataclass(frozen=True)
class LinearOracle(AttentionOracle):
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

    Ingredients (module docstring): ``mobility=False`` gives F = Y; ``kinetic=False`` gives
    :math:`G=-\nabla W` (token-local); ``wv, wout`` give the linear attention field
    :math:`G_i=W_{\rm out}\frac1i\sum_{j\le i}(\mathrm{scale}\,q_i\cdot k_j)W_V\hat x_j`.
    """

    chunk: int = LINEAR_CHUNK

    def prepare(self, x: Tensor, p: Tensor) -> LinearKernel:
        x_hat = x if self.pre is None else self.pre(x, p)
        if self.wq is None:  # F = Y and G = -∇W: token-local, the kernel is never read
            return LinearKernel(x_hat, None, None, None)
        q, k = query_key(x_hat, self.wq, self.wk, self.n_head)  # (B, H, L, D) each
        values = None if self.wv is None else split_heads(x_hat @ self.wv.mT, self.n_head)
        return LinearKernel(x_hat, torch.cat([q, k], -1), torch.cat([k, q], -1), values)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
        """Prefix mean scale (1/i) Σ_{j<=i} (q_i·k_j) v_j (global mean over N if not causal)."""
        return linear_attention(q, k, v, self.causal, self.tape, self.chunk, mean=True, scale=scale)

    def _velocity(self, kern: LinearKernel, u: Tensor) -> Tensor:
        out = self._attend(kern.phi, kern.psi, u, self.head_scale / 2)  # (B, H, L, D)
        return merge_heads(out) @ self.wo.mT

    def _force(self, kern: LinearKernel, u: Tensor | None) -> Tensor:
        d = self.wq.shape[0] // self.n_head if self.wq is not None else 0
        if self.attention_force:  # Γ: keys k_j = psi[..., :D], queries q_i = phi[..., :D]
            out = self._attend(kern.phi[..., :d], kern.psi[..., :d], kern.values, self.head_scale)
            g = merge_heads(out) @ self.wout.mT
        elif self.kinetic:
            # (B, H, L, 2D): -(s/2i) Σ_j (u_i·u_j) [k_j, q_j], then [k-part, q-part] of each head
            # through [W_Q,h; W_K,h] in one product
            out = self._attend(u, u, kern.psi, -self.head_scale / 2)
            w_kq = torch.cat([self.wq.unflatten(0, (self.n_head, d)),
                              self.wk.unflatten(0, (self.n_head, d))], 1)  # fmt: skip
            g = merge_heads(out) @ w_kq.flatten(0, 1)  # (B, L, H·2D) @ (H·2D, C)
        else:
            g = torch.zeros_like(kern.x_hat)
        if self.potential is not None:
            g = g + self.potential.force(kern.x_hat)
        return g

    def _needs_momentum(self) -> bool:
        return self.kinetic and not self.attention_force

    def _momentum(self, p: Tensor) -> Tensor:
        return split_heads(p @ self.wo, self.n_head)

    def velocity(self, kern: LinearKernel, p: Tensor) -> Tensor:
        return self._velocity(kern, self._momentum(p)) if self.mobility else p

    def force(self, kern: LinearKernel, p: Tensor) -> Tensor:
        return self._force(kern, self._momentum(p) if self._needs_momentum() else None)

    def field(self, kern: LinearKernel, p: Tensor) -> tuple[Tensor, Tensor]:
        u = self._momentum(p) if self.mobility or self._needs_momentum() else None
        f = self._velocity(kern, u) if self.mobility else p
        return f, self._force(kern, u if self._needs_momentum() else None)
