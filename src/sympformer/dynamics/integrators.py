r"""Time integrators of the damped Hamiltonian flow :math:`\dot X=F,\ \dot Y=G-\alpha(t)Y` (SPEC
§5).

One registry, :data:`SCHEMES`: key -> :class:`Integrator` (its order, oracle calls per step, whether
its drift reads the new momentum, and the one-step function). A new scheme is one decorated function
here. Every step takes ``(oracle, state, steps, damping)`` and returns the next :class:`State`;
history for multistep schemes travels in ``State.prev``, so blocks stay stateless.

The first-order (classical) pictures use the same oracle: the gradient flow is
:math:`\dot X=F(X,G(X,0))` (kinetic terms vanish at Y = 0), so a residual attention layer is
:func:`euler` of :func:`gradient_flow_velocity`, and YuriiFormer is :func:`nesterov` per sub-step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from sympformer.dynamics.damping import Damping
from sympformer.dynamics.oracles import Oracle


class State(NamedTuple):
    x: Tensor  # positions (B, T, C)
    p: Tensor  # momenta (B, T, C)
    t: Tensor  # time, 0-d tensor
    prev: tuple[Tensor, ...] | None = None  # multistep history (ab2, etd_ab2)


class Steps(NamedTuple):
    x: Tensor | float  # h_X: drift step (also the interval t advances by)
    y: Tensor | float  # h_Y: kick step
    xi: Tensor | float | None = None  # Tao's binding ξ (tao, strang)


@dataclass(frozen=True)
class Integrator:
    name: str
    order: int  # global order on a fixed vector field (checked by the order test)
    oracle_calls: int  # `prepare` calls per step (checked by a counting test)
    drift_uses_kick: bool  # X^+ reads the new momentum (else the last layer's kick is dead)
    step: Callable[[Oracle, State, Steps, Damping], State]
    h_init: float  # initial learned step of a softmax model (SPEC §7); see ArchSpec for others
    reads: tuple[str, ...] = ()  # optional inputs it reads: "retention" (Damping), "xi" (Steps)


SCHEMES: dict[str, Integrator] = {}


def register(
    name: str,
    *,
    order: int,
    oracle_calls: int,
    drift_uses_kick: bool,
    h_init: float,
    reads: tuple[str, ...] = (),
):
    def add(step: Callable[[Oracle, State, Steps, Damping], State]):
        if name in SCHEMES:
            raise ValueError(f"integrator {name!r} is registered twice")
        SCHEMES[name] = Integrator(name, order, oracle_calls, drift_uses_kick, step, h_init, reads)
        return step

    return add


def axpy(x: Tensor, h: Tensor | float, f: Tensor) -> Tensor:
    """x + h f in one kernel (h a 0-d tensor or a float): the update of every explicit step."""
    return torch.addcmul(x, h, f) if isinstance(h, Tensor) else torch.add(x, f, alpha=h)


def get_scheme(name: str) -> Integrator:
    """The registered integrator ``name``; a ValueError listing the valid keys otherwise."""
    if name not in SCHEMES:
        raise ValueError(f"unknown integrator {name!r}; choose one of {sorted(SCHEMES)}")
    return SCHEMES[name]


@register(
    "plain_euler", order=1, oracle_calls=1, h_init=0.3, drift_uses_kick=False, reads=("retention",)
)
def plain_euler(oracle: Oracle, s: State, h: Steps, damp: Damping) -> State:
    r"""Heavy ball: :math:`Y^+=aY+h_YG_k`, :math:`X^+=X+h_XF_k`; a is ``damp.retention`` (learned in
    the models) or, if None, :math:`\sigma(t,h_X)`, the binding under which the scheme has order
    1."""
    k = oracle.prepare(s.x, s.p)
    f, g = oracle.field(k, s.p)
    a = damp.retention if damp.retention is not None else damp.sigma(s.t, h.x)
    return State(axpy(s.x, h.x, f), axpy(a * s.p, h.y, g), s.t + h.x)


@register("damped_euler", order=1, oracle_calls=1, h_init=0.3, drift_uses_kick=False)
def damped_euler(oracle: Oracle, s: State, h: Steps, damp: Damping) -> State:
    r"""Explicit Euler with explicit friction: :math:`Y^+=Y+h_Y(G_k-\alpha(t_k)Y)`,
    :math:`X^+=X+h_XF_k`.
    Unstable once :math:`h\alpha` nears 1."""
    k = oracle.prepare(s.x, s.p)
    f, g = oracle.field(k, s.p)
    return State(axpy(s.x, h.x, f), axpy(s.p, h.y, g - damp.alpha(s.t) * s.p), s.t + h.x)


@register("exp_euler", order=1, oracle_calls=1, h_init=0.3, drift_uses_kick=False)
def exp_euler(oracle: Oracle, s: State, h: Steps, damp: Damping) -> State:
    r"""Exponential Euler: :math:`Y^+=\sigma_kY+w_kG_k`, :math:`w_k=h_Y(1-\sigma_k)/\Delta\eta_k`
    (-> h_Y as Δη -> 0), :math:`X^+=X+h_XF_k` with the old Y. Friction exact."""
    k = oracle.prepare(s.x, s.p)
    f, g = oracle.field(k, s.p)
    d = damp.delta_eta(s.t, h.x)
    small = d.abs() < 1e-6
    w = torch.where(small, 1 - d / 2, -torch.expm1(-d) / torch.where(small, 1.0, d))
    return State(axpy(s.x, h.x, f), axpy(torch.exp(-d) * s.p, h.y * w, g), s.t + h.x)


@register("presymp_euler", order=1, oracle_calls=1, h_init=0.3, drift_uses_kick=True)
def presymp_euler(oracle: Oracle, s: State, h: Steps, damp: Damping) -> State:
    r"""Kick-damp-drift (paper, Eq. presymp_Euler): :math:`Y^+=\sigma_k(Y+h_YG(X,Y))`,
    :math:`X^+=X+h_XF(X,Y^+)`; F at Y^+ reuses the kernel of X^k (one oracle call)."""
    k = oracle.prepare(s.x, s.p)
    p = damp.sigma(s.t, h.x) * axpy(s.p, h.y, oracle.force(k, s.p))
    return State(axpy(s.x, h.x, oracle.velocity(k, p)), p, s.t + h.x)


def _ab2_weights(h: Tensor | float, prev_h: Tensor | float | None) -> tuple:
    """Variable-step Adams-Bashforth 2: (1 + ω/2, -ω/2) with ω = h_k / h_{k-1}; Euler (1, 0)
    first."""
    if prev_h is None:
        return 1.0, 0.0
    omega = h / prev_h
    return 1 + omega / 2, -omega / 2


@register("ab2", order=2, oracle_calls=1, h_init=0.01, drift_uses_kick=False)
def ab2(oracle: Oracle, s: State, h: Steps, damp: Damping) -> State:
    r"""Adams-Bashforth 2 on :math:`u=(X,Y)`, :math:`f_k=(F_k,G_k-\alpha(t_k)Y^k)`:
    :math:`u^+=u+h[(1+\frac\omega2)f_k-\frac\omega2f_{k-1}]`, :math:`\omega=h_k/h_{k-1}`; Euler
    first. Across layers with different weights this is a first-order scheme carrying a history
    term."""
    k = oracle.prepare(s.x, s.p)
    f, g = oracle.field(k, s.p)
    g = g - damp.alpha(s.t) * s.p
    if s.prev is None:
        x, p = axpy(s.x, h.x, f), axpy(s.p, h.y, g)
    else:
        f0, g0, h0 = s.prev
        c1, c0 = _ab2_weights(h.x, h0)
        x = axpy(axpy(s.x, h.x * c1, f), h.x * c0, f0)
        p = axpy(axpy(s.p, h.y * c1, g), h.y * c0, g0)
    return State(x, p, s.t + h.x, (f, g, h.x))


@register("etd_ab2", order=1, oracle_calls=1, h_init=0.01, drift_uses_kick=True)
def etd_ab2(oracle: Oracle, s: State, h: Steps, damp: Damping) -> State:
    r"""Integrating-factor AB2 on the conformal momentum :math:`\Pi=e^{\eta}Y`:
    :math:`Y^+=e^{-\eta(t+h)}[e^{\eta(t)}Y+h((1+\frac\omega2)e^{\eta(t)}G_k-\frac\omega2e^{\eta(t_{k-1})}G_{k-1})]`,
    :math:`X^+=X+hF(X,Y^+)`. Written with factors :math:`e^{-\Delta\eta}\le1` only (no overflow).
    Momentum second order on a fixed field, drift first order."""
    k = oracle.prepare(s.x, s.p)
    g = oracle.force(k, s.p)
    t1 = s.t + h.x
    sigma = damp.sigma(s.t, h.x)
    if s.prev is None:
        p = sigma * axpy(s.p, h.y, g)
    else:
        g0, t0, h0 = s.prev
        c1, c0 = _ab2_weights(h.x, h0)
        p = axpy(sigma * axpy(s.p, h.y * c1, g), h.y * c0 * damp.sigma(t0, t1 - t0), g0)
    return State(axpy(s.x, h.x, oracle.velocity(k, p)), p, t1, (g, s.t, h.x))


def _tao_flow(
    oracle: Oracle,
    x: Tensor,
    p: Tensor,
    t: Tensor,
    h: Tensor | float,
    xi: Tensor | float,
    rel_eta: Callable[[Tensor], Tensor] | None,
) -> tuple[Tensor, Tensor]:
    r"""One step of Tao's extended phase-space integrator (arXiv 1609.02212) for the conformal
    Hamiltonian :math:`\tilde H(\tau,X,\Pi)=e^{\tilde\eta}H(X,e^{-\tilde\eta}\Pi)`,
    :math:`\tilde\eta(\tau)=\eta(\tau)-\eta(t_k)` (so :math:`\Pi=Y` at the start; ``rel_eta=None``
    is the conservative H). Map :math:`\phi_A^{h/2}\phi_B^{h/2}\phi_C^{h}\phi_B^{h/2}\phi_A^{h/2}`;
    four calls. Returns (X, Y) at t + h."""
    scale = (lambda tau: torch.exp(rel_eta(tau))) if rel_eta is not None else (lambda tau: 1.0)

    def at(xa: Tensor, pi: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        e = scale(tau)
        y = pi / e
        vel, frc = oracle.field(oracle.prepare(xa, y), y)
        return vel, e * frc

    xb, pib, ta, tb = x, p, t, t  # copies (X̄, Π̄) and the two clocks

    def phi_a(d):  # H_A = H(X, Π̄) on clock t: moves Π and X̄
        nonlocal p, xb, tb
        vel, frc = at(x, pib, ta)
        p, xb, tb = p + d * frc, xb + d * vel, tb + d

    def phi_b(d):  # H_B = H(X̄, Π) on clock t̄: moves X and Π̄
        nonlocal x, pib, ta
        vel, frc = at(xb, p, tb)
        x, pib, ta = x + d * vel, pib + d * frc, ta + d

    def phi_c(d):  # binding ξ|X - X̄|²/2 + ξ|Π - Π̄|²/2: rotate the differences by θ = 2ξd
        nonlocal x, p, xb, pib
        theta = torch.as_tensor(2 * xi * d, dtype=x.dtype, device=x.device)  # never float32
        c, s_ = torch.cos(theta), torch.sin(theta)
        sx, sp, dx, dp = x + xb, p + pib, x - xb, p - pib
        dx, dp = c * dx + s_ * dp, -s_ * dx + c * dp
        x, xb, p, pib = (sx + dx) / 2, (sx - dx) / 2, (sp + dp) / 2, (sp - dp) / 2

    half = h / 2
    phi_a(half)
    phi_b(half)
    phi_c(h)
    phi_b(half)
    phi_a(half)
    return x, p / scale(t + h)


def _require_xi(h: Steps, name: str) -> Tensor | float:
    if h.xi is None:
        raise ValueError(f"integrator {name!r} needs Tao's binding xi (Steps.xi)")
    return h.xi


@register("tao", order=2, oracle_calls=4, h_init=0.01, drift_uses_kick=True, reads=("xi",))
def tao(oracle: Oracle, s: State, h: Steps, damp: Damping) -> State:
    r"""Tao's symmetric map on :math:`(X,\Pi)` and copies, with França-Jordan-Vidal's conformal,
    extended-time treatment of the damping (arXiv 2004.06840 §6.2); :math:`Y^+=e^{-\Delta\eta}\Pi`.
    Order 2 for fixed ξ (a binding ξ ∝ 1/h makes it first order).

    η is measured from the start of the layer (SPEC §5 note): :math:`\Pi=e^{\eta(\tau)-\eta(t_k)}Y`,
    so Π = Y at :math:`t_k` and :math:`e^{\eta}` stays bounded in deep stacks. Because
    :math:`\phi_C` mixes X and Π, this is a different (equally valid) discretisation from the
    authors' absolute η (1.3e-5 to 2.2e-5 apart after one step with identical oracles). The
    rotation angle 2ξh and its cos/sin are computed in the state's dtype."""
    xi = _require_xi(h, "tao")
    x, p = _tao_flow(oracle, s.x, s.p, s.t, h.x, xi, lambda tau: damp.delta_eta(s.t, tau - s.t))
    return State(x, p, s.t + h.x)


@register("strang", order=2, oracle_calls=4, h_init=0.01, drift_uses_kick=True, reads=("xi",))
def strang(oracle: Oracle, s: State, h: Steps, damp: Damping) -> State:
    r"""Strang splitting: damp over [t, t+h/2], one Tao step of the conservative H, damp over
    [t+h/2, t+h] (each half with its own friction factor)."""
    xi = _require_xi(h, "strang")
    half = h.x / 2
    p = damp.sigma(s.t, half) * s.p
    x, p = _tao_flow(oracle, s.x, p, s.t, h.x, xi, None)
    return State(x, damp.sigma(s.t + half, half) * p, s.t + h.x)


def gradient_flow_velocity(oracle: Oracle, x: Tensor) -> Tensor:
    r"""Velocity of the classical (first-order) flow, :math:`\Gamma(X)=F(X,G(X,0))`: the metric
    applied to minus the energy gradient (kinetic terms vanish at Y = 0). One oracle call."""
    zero = torch.zeros_like(x)
    k = oracle.prepare(x, zero)
    return oracle.velocity(k, oracle.force(k, zero))


def euler(field: Callable[[Tensor], Tensor], x: Tensor, h: Tensor | float) -> Tensor:
    r"""Explicit Euler step :math:`X^+=X+h\,\Gamma(X)`: a residual layer (GPT: h = 1)."""
    return x + h * field(x)


def nesterov(
    field: Callable[[Tensor], Tensor],
    x: Tensor,
    v: Tensor,
    mu: Tensor | float,
    beta: Tensor | float,
    gamma: Tensor | float,
    norm: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    r"""One Nesterov sub-step (YuriiFormer): :math:`x_{\rm in}=X+\mu v`,
    :math:`v^+=\mathrm{norm}(\beta v+\gamma\,\Gamma(x_{\rm in}))`, :math:`X^+=X+v^+`."""
    v = beta * v + gamma * field(x + mu * v)
    if norm is not None:
        v = norm(v)
    return x + v, v
