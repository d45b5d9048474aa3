r"""Hamiltonians and energies in their global (bidirectional) form, for tests and flow experiments.

The oracles never differentiate these: tests check :math:`F=\partial_PH` and :math:`G=-\partial_XH`
of the closed forms against autograd of the functions below (float64). Shapes: x, p (B, N, C) ->
(B,)."""

from __future__ import annotations

import torch
from torch import Tensor

from sympformer.dynamics.oracles import LinearOracle, SoftmaxOracle, split_heads


def _state(oracle: SoftmaxOracle | LinearOracle, x: Tensor, p: Tensor):
    x_hat = x if oracle.pre is None else oracle.pre(x, p)
    q = split_heads(x_hat @ oracle.wq.mT, oracle.n_head)  # (B, H, N, D)
    k = split_heads(x_hat @ oracle.wk.mT, oracle.n_head)
    u = split_heads(p @ oracle.wo, oracle.n_head)
    potential = 0.0 if oracle.potential is None else oracle.potential.energy(x_hat).sum(-1)
    return q, k, u, potential


def softmax_hamiltonian(oracle: SoftmaxOracle, x: Tensor, p: Tensor) -> Tensor:
    r""":math:`H_\nu=\sum_h\Big[\frac12\sum_i\frac{\langle Y_i,B_hY_i\rangle}{\bar z^h_i}
    -\frac{\nu}{2N}\sum_{ij}M^h_{ij}\Big]+\sum_iW(X_i)`, :math:`\bar z^h_i=\frac1N\sum_jM^h_{ij}`
    (SPEC §4.3, mean-field units)."""
    q, k, u, potential = _state(oracle, x, p)
    m = torch.exp((q @ k.mT) * oracle.head_scale)  # (B, H, N, N)
    n = m.shape[-1]
    z = m.mean(-1)  # (B, H, N)
    du = u if oracle.dm is None else u * oracle.dm.view(oracle.n_head, 1, -1)
    kinetic = 0.5 * ((u * du).sum(-1) / z).sum((-1, -2))
    return kinetic - oracle.nu / (2 * n) * m.sum((-1, -2, -3)) + potential


def linear_hamiltonian(oracle: LinearOracle, x: Tensor, p: Tensor) -> Tensor:
    r""":math:`H=\sum_h\frac1{2N}\sum_{ij}(X_i^\top A^s_hX_j)\,Y_i^\top\Pi_hY_j+\sum_iW(X_i)`
    (SPEC §4.2)."""
    q, k, u, potential = _state(oracle, x, p)
    kernel = (q @ k.mT + k @ q.mT) * (oracle.head_scale / 2)  # (B, H, N, N): x_i^T A^s x_j
    n = kernel.shape[-1]
    return (kernel * (u @ u.mT)).sum((-1, -2, -3)) / (2 * n) + potential


def interaction_energy(x: Tensor, a: Tensor) -> Tensor:
    r"""Softmax interaction energy :math:`\mathcal E(\rho^N)=-\frac1{2N^2}\sum_{ij}e^{x_i^\top
    Ax_j}`, (B,)."""
    n = x.shape[-2]
    return -0.5 * torch.exp(x @ a @ x.mT).sum((-1, -2)) / n**2
