"""Transformer blocks as steps of flows. Every block maps a `State` (x, p, t, prev) to the next one.

* :class:`EulerBlock` — GPT: Lie-Trotter splitting of gradient descent, explicit Euler steps
  X <- X + h Γ(LN X) (h = 1 for softmax GPT, learned for linear GPT), then X <- X + MLP(LN X).
* :class:`NesterovBlock` — YuriiFormer: one Nesterov step per sub-step (attention, then MLP).
* :class:`AcceleratedBlock` — SympFormer: one step of a `SCHEMES` integrator of the damped
  Hamiltonian flow, momentum LayerNorm, then the MLP sub-step with look-ahead (SPEC §7).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sympformer.dynamics import NO_DAMPING, Damping, State, Steps, Tape, get_scheme, nesterov
from sympformer.model.attention import ORACLES, ClassicalAttention, Scalar
from sympformer.model.config import DAMPING_BOUNDS, STEP_BOUNDS, ModelConfig


class MLP(nn.Module):
    """Position-wise MLP, (B, T, C) -> (B, T, C): W_2 GELU(W_1 x), no bias."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_width, bias=False)
        self.proj = nn.Linear(cfg.mlp_width, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.gelu(self.fc(x)))


class EulerBlock(nn.Module):
    """X <- X + h Γ(LN_1 X); X <- X + MLP(LN_2 X). The momentum is not used."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.ln_1, self.ln_2 = (
            nn.LayerNorm(cfg.d_model, bias=False),
            nn.LayerNorm(cfg.d_model, bias=False),
        )
        self.attn, self.mlp = ClassicalAttention(cfg), MLP(cfg)
        learned_step = cfg.spec.kernel == "linear"
        self.h = Scalar(cfg.step_init, bounds=STEP_BOUNDS) if learned_step else None

    def forward(self, s: State, tape: Tape | None = None) -> State:
        a = self.attn(self.ln_1(s.x), tape)
        x = s.x + (a if self.h is None else self.h() * a)
        return s._replace(x=x + self.mlp(self.ln_2(x)))


class NesterovBlock(nn.Module):
    """YuriiFormer: per sub-step O (attention, then MLP), x_in = X + μ v,
    v <- LN_v(β v + γ O(LN x_in)), X <- X + v."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        c = cfg.d_model
        self.ln_a, self.ln_m = nn.LayerNorm(c, bias=False), nn.LayerNorm(c, bias=False)
        self.v_norm_a, self.v_norm_m = nn.LayerNorm(c, bias=False), nn.LayerNorm(c, bias=False)
        self.attn, self.mlp = ClassicalAttention(cfg), MLP(cfg)
        # with a zero initial velocity, layer 0's first look-ahead and retention act on v = 0
        momentum_in = layer > 0 or cfg.velocity_init == "learned"
        self.mu_a = Scalar(0.9, "fraction") if momentum_in else None
        self.beta_a = Scalar(0.9, "fraction") if momentum_in else None
        self.mu_m, self.beta_m = Scalar(0.9, "fraction"), Scalar(0.9, "fraction")
        self.gamma_a, self.gamma_m = Scalar(1.0), Scalar(1.0)

    def forward(self, s: State, tape: Tape | None = None) -> State:
        x, v = nesterov(
            lambda z: self.attn(self.ln_a(z), tape),
            s.x,
            s.p,
            0.0 if self.mu_a is None else self.mu_a(),
            0.0 if self.beta_a is None else self.beta_a(),
            self.gamma_a(),
            self.v_norm_a,
        )
        x, v = nesterov(
            lambda z: self.mlp(self.ln_m(z)),
            x,
            v,
            self.mu_m(),
            self.beta_m(),
            self.gamma_m(),
            self.v_norm_m,
        )
        return s._replace(x=x, p=v)


class _WithoutForce:
    """Oracle of a last layer whose kick is never read (the drift ignores it and no Nesterov MLP
    step follows): G is not computed, and the parameters only G uses are not allocated."""

    def __init__(self, oracle):
        self.oracle = oracle

    def prepare(self, x: Tensor, p: Tensor):
        return self.oracle.prepare(x, p)

    def velocity(self, k, p: Tensor) -> Tensor:
        return self.oracle.velocity(k, p)

    def force(self, k, p: Tensor) -> Tensor:
        return torch.zeros_like(p)

    def field(self, k, p: Tensor) -> tuple[Tensor, Tensor]:
        return self.oracle.velocity(k, p), torch.zeros_like(p)


class _FreeDrift:
    """Oracle of such a last layer with drift=identity: F = Y, G unused; it has no attention."""

    def prepare(self, x: Tensor, p: Tensor) -> None:
        return None

    def velocity(self, k, p: Tensor) -> Tensor:
        return p

    def force(self, k, p: Tensor) -> Tensor:
        return torch.zeros_like(p)

    def field(self, k, p: Tensor) -> tuple[Tensor, Tensor]:
        return p, torch.zeros_like(p)


class AcceleratedBlock(nn.Module):
    """One integrator step of the damped Hamiltonian attention flow, then the MLP sub-step.

    X, Y <- scheme(oracle, X, Y, t; h, η);  Y <- LN_p(Y);  then the MLP sub-step, by
    ModelConfig.mlp_step: euler, v_att = (X^+ - X)/h, X <- X + γ MLP(LN_m(X + μ v_att)); or
    nesterov, Y <- LN_v(β Y + γ MLP(LN_m(X + μ Y))), X <- X + Y. Learned scalars: h (softplus),
    the damping (c_log, c_lin: softplus; or a constant rate c), plus what the scheme reads
    (retention a: sigmoid; ξ = θ_max sigmoid(.)/(2h)); μ, γ (and β) of the MLP sub-step. The
    oracle's drift and force follow ModelConfig.drift and .force."""

    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        c = cfg.d_model
        self.scheme = get_scheme(cfg.scheme)
        last = layer == cfg.n_layer - 1
        nesterov_mlp = cfg.mlp_step == "nesterov"  # reads the momentum after the step
        self.force_used = not last or self.scheme.drift_uses_kick or nesterov_mlp
        # a zero initial velocity makes layer 0's look-ahead X + μ_la·0 inert, and the kinetic
        # terms of a force evaluated only there vanish: neither is allocated
        momentum_in = layer > 0 or cfg.velocity_init == "learned"
        force = cfg.force if self.force_used else None
        if force == "hamiltonian" and not momentum_in and self.scheme.oracle_calls == 1:
            force = "potential"  # G(X, 0) = G_potential(X): the same numbers, one pass less
        self.attn = None
        if cfg.drift == "metric" or force is not None:
            self.attn = ORACLES[cfg.spec.kernel](
                cfg, lookahead=cfg.lookahead and momentum_in, force=force
            )
        self.h = Scalar(cfg.step_init, bounds=STEP_BOUNDS)
        untied = cfg.untied_steps and self.force_used
        self.h_y = Scalar(cfg.step_init, bounds=STEP_BOUNDS) if untied else None
        self.c_log = self.c_lin = self.rate = self.retention = self.xi = None
        if self.force_used:  # the damping only acts on Y
            if "retention" in self.scheme.reads:  # a learned retention replaces the schedule
                self.retention = Scalar(cfg.retention_init, "fraction")
            elif cfg.damping == "constant":  # α = c, e^{-c h} = retention_init at init
                rate = -math.log(cfg.retention_init) / cfg.step_init
                self.rate = Scalar(rate, bounds=DAMPING_BOUNDS)
            else:
                self.c_log = Scalar(cfg.c_log_init, bounds=DAMPING_BOUNDS)
                self.c_lin = Scalar(cfg.c_lin_init, bounds=DAMPING_BOUNDS)
        if "xi" in self.scheme.reads:
            self.xi = Scalar(cfg.xi_init, "fraction")
        self.theta_max = cfg.theta_max
        norm_p = cfg.momentum_norm == "end" and (not last or nesterov_mlp)
        self.p_norm = nn.LayerNorm(c, bias=False) if norm_p else None
        self.ln_m, self.mlp = nn.LayerNorm(c, bias=False), MLP(cfg)
        self.mu = Scalar(cfg.mlp_lookahead_init, "fraction") if cfg.mlp_lookahead else None
        self.gamma = Scalar(cfg.mlp_gain_init)
        self.beta = Scalar(cfg.retention_init, "fraction") if nesterov_mlp else None
        self.v_norm = nn.LayerNorm(c, bias=False) if nesterov_mlp else None

    def steps(self) -> Steps:
        h = self.h()
        h_y = h if self.h_y is None else self.h_y()
        xi = None if self.xi is None else self.theta_max * self.xi() / (2 * h)
        return Steps(h, h_y, xi)

    def damping(self) -> Damping:
        if self.retention is not None:
            return NO_DAMPING._replace(retention=self.retention())
        if self.rate is not None:
            return Damping(0.0, self.rate())
        if self.c_log is None:
            return NO_DAMPING  # last layer of an explicit scheme: Y^+ is discarded
        return Damping(self.c_log(), self.c_lin())

    def oracle(self, tape: Tape | None):
        if self.attn is None:
            return _FreeDrift()
        oracle = self.attn.oracle(tape)
        return oracle if self.force_used else _WithoutForce(oracle)

    def forward(self, s: State, tape: Tape | None = None) -> State:
        steps = self.steps()
        out = self.scheme.step(self.oracle(tape), s, steps, self.damping())
        p = out.p if self.p_norm is None else self.p_norm(out.p)
        x = out.x
        mu = 0.0 if self.mu is None else self.mu()
        if self.beta is None:  # look-ahead Euler at X + μ v_att = X^k + (1 + μ/h)(X^+ - X^k)
            look = x if self.mu is None else torch.lerp(s.x, x, 1 + mu / steps.x)
            x = torch.addcmul(x, self.gamma(), self.mlp(self.ln_m(look)))
        else:
            mlp = lambda z: self.mlp(self.ln_m(z))  # noqa: E731
            x, p = nesterov(mlp, x, p, mu, self.beta(), self.gamma(), self.v_norm)
        return State(x, p, s.t + steps.x.detach(), out.prev)


BLOCKS = {"euler": EulerBlock, "nesterov": NesterovBlock, "hamiltonian": AcceleratedBlock}
