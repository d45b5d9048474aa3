r"""Particle flows: multi-step drivers, an RK4 reference, the Gaussian moment ODE and the demo
problems of ``sympformer flow`` (SPEC §4.4, §5.1). Pure tensor code; no I/O.

Only mathematics lives here: right-hand sides, integrators of whole trajectories and the problems
(oracle, initial state, energy and its minimum). How methods are compared on them (the step grid,
scoring, divergence, calls to a tolerance, statistics over seeds) is ``sympformer.compare``."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sympformer.dynamics.damping import Damping
from sympformer.dynamics.energies import interaction_energy
from sympformer.dynamics.integrators import (
    Integrator,
    State,
    Steps,
    gradient_flow_velocity,
)
from sympformer.dynamics.oracles import LinearOracle, Oracle, QuadraticPotential, SoftmaxOracle

Vector = tuple[Tensor, ...]


def rk4_step(rhs: Callable[[Vector, Tensor], Vector], y: Vector, t: Tensor, h: float) -> Vector:
    """One classical Runge-Kutta 4 step of y' = rhs(y, t) for a tuple of tensors."""

    def add(a: Vector, b: Vector, c: float) -> Vector:
        return tuple(ai + c * bi for ai, bi in zip(a, b, strict=True))

    k1 = rhs(y, t)
    k2 = rhs(add(y, k1, h / 2), t + h / 2)
    k3 = rhs(add(y, k2, h / 2), t + h / 2)
    k4 = rhs(add(y, k3, h), t + h)
    return tuple(
        yi + h / 6 * (a + 2 * b + 2 * c + d)
        for yi, a, b, c, d in zip(y, k1, k2, k3, k4, strict=True)
    )


def hamiltonian_rhs(oracle: Oracle, damping: Damping) -> Callable[[Vector, Tensor], Vector]:
    r"""The damped Hamiltonian field :math:`(\dot X,\dot Y)=(F,\,G-\alpha(t)Y)` as an ODE right-hand
    side."""

    def rhs(y: Vector, t: Tensor) -> Vector:
        x, p = y
        f, g = oracle.field(oracle.prepare(x, p), p)
        return f, g - damping.alpha(t) * p

    return rhs


def gradient_flow_rhs(oracle: Oracle) -> Callable[[Vector, Tensor], Vector]:
    r"""The classical (first-order) flow :math:`\dot X=\Gamma(X)=F(X,G(X,0))` as an ODE right-hand
    side of the 1-tuple ``(x,)``: the metric applied to minus the energy gradient."""

    def rhs(y: Vector, t: Tensor) -> Vector:
        return (gradient_flow_velocity(oracle, y[0]),)

    return rhs


def rk4(oracle: Oracle, s: State, damping: Damping, h: float, n_steps: int) -> State:
    """Reference solution of the damped Hamiltonian flow by RK4 with a fixed step."""
    y, t, rhs = (s.x, s.p), s.t, hamiltonian_rhs(oracle, damping)
    for _ in range(n_steps):
        y, t = rk4_step(rhs, y, t, h), t + h
    return State(y[0], y[1], t)


def integrate(
    scheme: Integrator,
    oracle: Oracle,
    s: State,
    steps: Steps,
    damping: Damping,
    n_steps: int,
    constraint: Callable[[State], State] | None = None,
) -> State:
    """``n_steps`` steps of ``scheme`` with fixed weights (history carried in ``State.prev``)."""
    for _ in range(n_steps):
        s = scheme.step(oracle, s, steps, damping)
        if constraint is not None:
            s = constraint(s)
    return s


def linear_moment_rhs(a: Tensor, v: Tensor, damping: Damping) -> Callable[[Vector, Tensor], Vector]:
    r"""Closed moment ODE of the accelerated linear-attention flow (SPEC §4.4), A, V symmetric:

    .. math:: \dot S=CAS+SAC^\top,\quad \dot C=VS-\alpha C-AC^\top C+CAC^\top,\quad \dot m=CAm,

    :math:`S=\mathbb E[xx^\top]`, :math:`C=\mathbb E[yx^\top]`, :math:`m=\mathbb E[x]`; exact for
    the empirical measure at any N."""

    def rhs(y: Vector, t: Tensor) -> Vector:
        s, c, m = y
        cas = c @ a @ s
        dc = v @ s - damping.alpha(t) * c - a @ c.mT @ c + c @ a @ c.mT
        return cas + cas.mT, dc, c @ a @ m

    return rhs


# ------------------------------------------------------------------------------------------
# Demo problems of `sympformer flow` (SPEC §5.1)


@dataclass(frozen=True)
class FlowProblem:
    """One demo problem: a global (bidirectional) oracle with fixed weights, the initial positions
    (momenta start at 0) and the energy of the first-order flow, whose gap to the minimum is the
    convergence measure. Energies are per batch element, so one problem may carry a batch of
    independent copies of its particles (the same weights, e.g. one copy per step size)."""

    name: str
    description: str
    oracle: Oracle  # global (bidirectional) oracle with fixed weights
    x0: Tensor  # (1, N, d) initial positions; momenta start at 0
    energy: Callable[[Tensor], Tensor]  # the first-order flow's energy, x (B, N, d) -> (B,)
    minimum: float  # its minimum value
    constraint: Callable[[State], State] | None = None  # applied after every step
    damping: Damping | None = None  # the problem's own damping; None: the experiment chooses
    kappa: float | None = None  # condition number of the potential (None: no potential)

    def gap(self, x: Tensor) -> Tensor:
        """Energy gap to the minimum, (B,) for x (B, N, d)."""
        return self.energy(x) - self.minimum


def _logspace_diag(d: int, kappa: float, dtype: torch.dtype) -> Tensor:
    """diag(logspace(0, -log10 κ, d)): eigenvalues from 1 down to 1/κ, condition number κ."""
    return torch.diag(torch.logspace(0, -math.log10(kappa), d, dtype=dtype))


def _mean_potential(pot: QuadraticPotential) -> Callable[[Tensor], Tensor]:
    """x (B, N, d) -> the mean of W(x_i) over the particles, (B,)."""
    return lambda x: pot.energy(x).mean(-1)


def linear_problem(kappa: float = 100.0, seed: int = 0, n: int = 256, d: int = 10) -> FlowProblem:
    r"""Stein flow of :math:`W(x)=-\frac12x^\top Vx`,
    :math:`V=-\mathrm{diag}(\mathrm{logspace}(0,-\log_{10}\kappa,d))`, kernel :math:`y^\top x`
    (A = I), N = 256, d = 10; :math:`X^0\sim\mathcal N(0,I)` (the seed's generator). Minimiser:
    X = 0. Energy: the mean of W over the particles."""
    dtype = torch.float64
    g = torch.Generator().manual_seed(seed)
    eye = torch.eye(d, dtype=dtype)
    pot = QuadraticPotential(_logspace_diag(d, kappa, dtype))
    oracle = LinearOracle(eye, eye, eye, n_head=1, scale=1.0, potential=pot, causal=False)
    x0 = torch.randn(1, n, d, generator=g, dtype=dtype)
    return FlowProblem(
        "linear",
        f"Stein flow, bilinear kernel y^T x, quadratic potential (kappa={kappa:g}), N={n}, d={d}",
        oracle,
        x0,
        energy=_mean_potential(pot),
        minimum=0.0,
        kappa=kappa,
    )


def softmax_problem(kappa: float = 100.0, seed: int = 0, n: int = 64, d: int = 8) -> FlowProblem:
    r"""Softmax-kernel mobility :math:`B/\bar z_i` with the convex potential
    :math:`W(x)=\frac12(x-m)^\top Q(x-m)`, :math:`Q=\mathrm{diag}(\mathrm{logspace}(0,-\log_{10}
    \kappa,d))`, m = 1; B = I, ν = 0, N = 64, d = 8. The seed's generator draws a random symmetric
    A (‖A‖ = 0.3), then :math:`X^0\sim\mathcal N(0,I)`. Minimiser: every particle at m."""
    dtype = torch.float64
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(d, d, generator=g, dtype=dtype)
    a = (r + r.mT) / 2
    a = 0.3 * a / torch.linalg.matrix_norm(a, ord=2)
    eye = torch.eye(d, dtype=dtype)
    pot = QuadraticPotential(_logspace_diag(d, kappa, dtype), torch.ones(d, dtype=dtype))
    oracle = SoftmaxOracle(a, eye, eye, n_head=1, nu=0.0, scale=1.0, potential=pot, causal=False)
    x0 = torch.randn(1, n, d, generator=g, dtype=dtype)
    return FlowProblem(
        "softmax",
        f"softmax mobility B/z, convex quadratic potential (kappa={kappa:g}), N={n}, d={d}",
        oracle,
        x0,
        energy=_mean_potential(pot),
        minimum=0.0,
        kappa=kappa,
    )


def _on_sphere(s: State) -> State:
    x = s.x / s.x.norm(dim=-1, keepdim=True)
    return s._replace(x=x, p=s.p - (s.p * x).sum(-1, keepdim=True) * x)


def sphere_problem(seed: int = 0, n: int = 64, d: int = 8) -> FlowProblem:
    r"""Pure attention energy :math:`-\frac1{2N^2}\sum e^{x_i\cdot x_j}` on the unit sphere, A = V =
    B = I, ν = 1: positions renormalised and momenta projected to the tangent space after every
    step. Minimiser: one cluster, energy :math:`-e/2`. The accelerated flow is *slower* here (SPEC
    §5.1: a negative result)."""
    dtype = torch.float64
    g = torch.Generator().manual_seed(seed)
    eye = torch.eye(d, dtype=dtype)
    oracle = SoftmaxOracle(eye, eye, eye, n_head=1, nu=1.0, scale=1.0, causal=False)
    x0 = torch.randn(1, n, d, generator=g, dtype=dtype)
    x0 = x0 / x0.norm(dim=-1, keepdim=True)
    return FlowProblem(
        "sphere",
        f"attention energy on the unit sphere (clustering), N={n}, d={d}",
        oracle,
        x0,
        energy=lambda x: interaction_energy(x, eye),
        minimum=-0.5 * math.e,
        constraint=_on_sphere,
    )


CONTROL_KAPPA = 100.0
"""Condition number of the authors' positive control (SPEC §5.1)."""


def control_initial_positions(z: Tensor, kappa: float = CONTROL_KAPPA) -> Tensor:
    r"""The control's initial law from standard normals z (..., N, d): coordinate k scaled by
    :math:`\frac12\sqrt{\mu/H_{kk}}`, :math:`\mu=1/\kappa`, so every eigen-direction of H starts
    with the same share of the objective (the authors' E021 setting)."""
    h = _logspace_diag(z.shape[-1], kappa, z.dtype).diagonal().flip(0)  # 1/κ, ..., 1
    return 0.5 * torch.sqrt(h[0] / h) * z


def control_problem(
    eps: float = 0.2, seed: int = 0, n: int = 16, d: int = 2, kappa: float = CONTROL_KAPPA
) -> FlowProblem:
    r"""The authors' positive control ("E021", SPEC §5.1): softmax mobility :math:`B/\bar z_i` with
    A = εI, B = I, ν = 0 and :math:`W(x)=\frac12x^\top Hx`, H = diag(1/κ, 1) (κ = 100), N = 16,
    d = 2; heavy-ball damping :math:`\alpha=2\sqrt{\mu}=0.2` (:math:`c_{\log}=0`,
    :math:`c_{\rm lin}=0.2`), the problem's own. :math:`X^0` from
    :func:`control_initial_positions` of the seed's standard normals. Minimiser: X = 0."""
    dtype = torch.float64
    g = torch.Generator().manual_seed(seed)
    eye = torch.eye(d, dtype=dtype)
    h = torch.diag(_logspace_diag(d, kappa, dtype).diagonal().flip(0))  # diag(1/κ, ..., 1)
    pot = QuadraticPotential(h)
    oracle = SoftmaxOracle(
        eps * eye, eye, eye, n_head=1, nu=0.0, scale=1.0, potential=pot, causal=False
    )
    x0 = control_initial_positions(torch.randn(1, n, d, generator=g, dtype=dtype), kappa)
    return FlowProblem(
        "control",
        f"authors' positive control: softmax mobility, A = {eps:g} I, quadratic potential "
        f"(kappa={kappa:g}), heavy-ball damping, N={n}, d={d}",
        oracle,
        x0,
        energy=_mean_potential(pot),
        minimum=0.0,
        damping=Damping(0.0, 2 / math.sqrt(kappa)),
        kappa=kappa,
    )


PROBLEMS: dict[str, Callable[..., FlowProblem]] = {
    "linear": linear_problem,
    "softmax": softmax_problem,
    "sphere": sphere_problem,
    "control": control_problem,
}
"""Problem name -> its constructor (keyword arguments: kappa or eps where the problem has one,
seed)."""
