"""Attention modules: they own the weights and call the math in `sympformer.dynamics`.

* :class:`ClassicalAttention` — the attention field Γ of GPT / YuriiFormer (softmax or linear).
* :class:`SoftmaxOracleModule`, :class:`LinearOracleModule` — build a `dynamics` oracle per forward
  from their parameters (pre-LN with look-ahead, Q/K projections, metric factor W_O, ν or V).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sympformer.dynamics import LinearOracle, QuadraticPotential, SoftmaxOracle, Tape
from sympformer.dynamics.kernels import linear_attention, softmax_attention
from sympformer.dynamics.oracles import merge_heads, split_heads
from sympformer.model.config import ModelConfig

INIT_STD = 0.02
"""Standard deviation of every Linear and Embedding weight at init (GPT-2)."""


def inverse_softplus(y: float) -> float:
    """x with softplus(x) = y (y > 0)."""
    return y + math.log(-math.expm1(-y))


def logit(y: float) -> float:
    """x with sigmoid(x) = y (0 < y < 1)."""
    return math.log(y / (1 - y))


class Scalar(nn.Module):
    """A learned scalar (or vector) behind a positivity or unit-interval map (SPEC §7).

    ``Scalar(0.3)`` is softplus(raw) starting at 0.3; ``Scalar(0.9, "fraction")`` is sigmoid(raw);
    ``bounds=(lo, hi)`` clamps the mapped value (a guard: no gradient beyond it). The raw parameter
    is named ``raw``: the optimizer puts every ``*.raw`` in the scalar group.
    """

    MAPS = {"positive": (F.softplus, inverse_softplus), "fraction": (torch.sigmoid, logit)}

    def __init__(
        self,
        value: float,
        kind: str = "positive",
        size: int | None = None,
        bounds: tuple[float, float] | None = None,
    ):
        super().__init__()
        self.kind, self.bounds = kind, bounds
        fn, inverse = self.MAPS[kind]
        self.fn = fn
        shape = () if size is None else (size,)
        self.raw = nn.Parameter(torch.full(shape, inverse(value)))

    def forward(self) -> Tensor:
        value = self.fn(self.raw)
        # hardtanh = clamp with a one-kernel backward (clamp's takes five)
        return value if self.bounds is None else F.hardtanh(value, *self.bounds)

    def extra_repr(self) -> str:
        return self.kind if self.bounds is None else f"{self.kind}, bounds={self.bounds}"


class ClassicalAttention(nn.Module):
    """Multi-head causal attention field Γ(x) (x already normalised), (B, T, C) -> (B, T, C).

    softmax: Γ_i = Σ_h W_O,h Σ_{j<=i} P_ij v_j;  linear: Γ_i = Σ_h W_O,h (1/i) Σ_{j<=i} (q_i·k_j/√D)
    v_j."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.kernel = cfg.n_head, cfg.spec.kernel
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x: Tensor, tape: Tape | None = None) -> Tensor:
        q, k, v = (
            split_heads(t, self.n_head) for t in self.qkv(x).chunk(3, dim=-1)
        )  # (B, H, L, D)
        if self.kernel == "softmax":
            if tape is not None:
                k, v = tape.cat(k), tape.cat(v)
            y, _ = softmax_attention(q, k, v)
        else:
            scale = 1 / math.sqrt(q.shape[-1])
            y = linear_attention(q, k, v, tape=tape, mean=True, scale=scale)
        return self.proj(merge_heads(y))


class _OracleModule(nn.Module):
    """Shared parts: pre-LN with look-ahead, the Q/K projections (A_h = W_Q,h^T W_K,h / √D), the
    metric factor W_O where the drift or the Hamiltonian force reads it, and W_V, W_out where the
    force is the attention field (ModelConfig.drift, .force). Only what the ingredients use is
    allocated (no dead parameters)."""

    def __init__(self, cfg: ModelConfig, lookahead: bool, force: str | None):
        """``force``: the block's force (ModelConfig.force, or "potential" where the kinetic
        terms vanish, or None where the kick is never read)."""
        super().__init__()
        c = cfg.d_model
        self.n_head = cfg.n_head
        self.norm = nn.LayerNorm(c, bias=False)
        self.mobility = cfg.drift == "metric"
        self.kinetic = force == "hamiltonian"
        # the kernel is read by the metric drift, by G and Γ, and by the softmax potential force;
        # the linear kernel's potential W is token-local
        reads_kernel = self.mobility or force in ("hamiltonian", "attention")
        reads_kernel = reads_kernel or (cfg.spec.kernel == "softmax" and force == "potential")
        self.wq = nn.Linear(c, c, bias=False) if reads_kernel else None
        self.wk = self.wq if cfg.qk_tied or not reads_kernel else nn.Linear(c, c, bias=False)
        uses_metric = self.mobility or force == "hamiltonian"
        # metric factor (C, H·D), orthonormal at init
        self.wo = nn.Parameter(torch.empty(c, c)) if uses_metric else None
        attention = force == "attention"
        self.wv = nn.Linear(c, c, bias=False) if attention else None  # Γ's value map
        self.wout = nn.Linear(c, c, bias=False) if attention else None  # Γ's output map
        self.potential_force = force in ("hamiltonian", "potential")
        self.lookahead = Scalar(cfg.lookahead_init, "fraction") if lookahead else None

    def reset_special(self, n_layer: int) -> None:
        """Run after the generic init: orthonormal W_O, so that Σ_h W_O,h W_O,h^T = I; the
        attention force's output map scaled like a residual projection (GPT-2)."""
        if self.wo is not None:
            nn.init.orthogonal_(self.wo)
        if self.wout is not None:
            nn.init.normal_(self.wout.weight, std=INIT_STD / math.sqrt(2 * n_layer))

    def pre(self, x: Tensor, p: Tensor) -> Tensor:
        """x̂ = LN(X + μ_la Y): where the kernel is evaluated (SPEC §7)."""
        if self.lookahead is None:
            return self.norm(x)
        return self.norm(torch.addcmul(x, self.lookahead(), p))

    def _common(self, tape: Tape | None) -> dict:
        """The oracle fields every kernel shares."""
        return {
            "wq": None if self.wq is None else self.wq.weight,
            "wk": None if self.wk is None else self.wk.weight,
            "wo": self.wo,
            "n_head": self.n_head,
            "pre": self.pre,
            "tape": tape,
            "mobility": self.mobility,
            "kinetic": self.kinetic,
            "wv": None if self.wv is None else self.wv.weight,
            "wout": None if self.wout is None else self.wout.weight,
        }


class SoftmaxOracleModule(_OracleModule):
    """Parameters of the accelerated softmax oracle: B_h = W_O,h diag(softplus β_h) W_O,h^T, ν."""

    def __init__(self, cfg: ModelConfig, lookahead: bool, force: str | None):
        super().__init__(cfg, lookahead, force)
        # D_h: per-head metric scales
        self.metric = Scalar(1.0, size=cfg.d_model) if self.wo is not None else None
        self.nu = Scalar(cfg.nu_init) if self.potential_force else None

    def oracle(self, tape: Tape | None) -> SoftmaxOracle:
        nu = 0.0 if self.nu is None else self.nu()
        dm = None if self.metric is None else self.metric()
        return SoftmaxOracle(dm=dm, nu=nu, **self._common(tape))


class LinearOracleModule(_OracleModule):
    """Parameters of the accelerated linear oracle: Π_h = W_O,h W_O,h^T, potential V = Sym(W_P)."""

    def __init__(self, cfg: ModelConfig, lookahead: bool, force: str | None):
        super().__init__(cfg, lookahead, force)
        self.wp = nn.Linear(cfg.d_model, cfg.d_model, bias=False) if self.potential_force else None

    def oracle(self, tape: Tape | None) -> LinearOracle:
        potential = None
        if self.wp is not None:
            v = self.wp.weight
            potential = QuadraticPotential(-(v + v.mT) / 2)  # W(x) = -½ xᵀ Sym(W_P) x
        return LinearOracle(potential=potential, **self._common(tape))


ORACLES = {"softmax": SoftmaxOracleModule, "linear": LinearOracleModule}
