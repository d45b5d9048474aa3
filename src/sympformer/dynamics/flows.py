r"""Particle flows: multi-step drivers, an RK4 reference, the Gaussian moment ODE and the demo
problems of ``sympformer flow`` (SPEC §4.4, §5.1). Pure tensor code; no I/O."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from sympformer.dynamics.damping import Damping
from sympformer.dynamics.energies import interaction_energy
from sympformer.dynamics.integrators import (
    Integrator,
    State,
    Steps,
    euler,
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
    name: str
    description: str
    oracle: Oracle  # global (bidirectional) oracle with fixed weights
    x0: Tensor  # (1, N, d) initial positions; momenta start at 0
    energy: Callable[[Tensor], Tensor]  # the first-order flow's energy, x (1, N, d) -> 0-d
    minimum: float  # its minimum value
    distance: Callable[[Tensor], Tensor]  # distance to the minimiser / target statistic
    constraint: Callable[[State], State] | None = None

    def gap(self, x: Tensor) -> Tensor:
        """Energy gap to the minimum, 0-d."""
        return self.energy(x) - self.minimum


def _logspace_diag(d: int, kappa: float, dtype: torch.dtype) -> Tensor:
    return torch.diag(torch.logspace(0, -math.log10(kappa), d, dtype=dtype))


def linear_problem(n: int = 256, d: int = 10, kappa: float = 100.0, seed: int = 0) -> FlowProblem:
    r"""Stein flow of :math:`W(x)=-\frac12x^\top Vx`,
    :math:`V=-\mathrm{diag}(\mathrm{logspace}(0,-\log_{10}
    \kappa,d))`, kernel :math:`y^\top x` (A = I); :math:`X^0\sim\mathcal N(0,I)`; minimiser: X =
    0."""
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
        energy=lambda x: pot.energy(x).mean(),
        minimum=0.0,
        distance=lambda x: x.pow(2).sum(-1).mean().sqrt(),
    )


def softmax_problem(n: int = 64, d: int = 8, kappa: float = 100.0, seed: int = 0) -> FlowProblem:
    r"""Softmax-kernel mobility :math:`B/\bar z_i` (B = I, random symmetric A, ‖A‖ = 0.3) with the
    convex potential :math:`W(x)=\frac12(x-m)^\top Q(x-m)`,
    :math:`Q=\mathrm{diag}(\mathrm{logspace}(0,-\log_{10}
    \kappa,d))`, m = 1; ν = 0. Minimiser: every particle at m."""
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
        energy=lambda x: pot.energy(x).mean(),
        minimum=0.0,
        distance=lambda x: (x - pot.m).pow(2).sum(-1).mean().sqrt(),
    )


def _on_sphere(s: State) -> State:
    x = s.x / s.x.norm(dim=-1, keepdim=True)
    return s._replace(x=x, p=s.p - (s.p * x).sum(-1, keepdim=True) * x)


def sphere_problem(n: int = 64, d: int = 8, seed: int = 0) -> FlowProblem:
    r"""Pure attention energy :math:`-\frac1{2N^2}\sum e^{x_i\cdot x_j}` on the unit sphere, A = V =
    B = I, ν = 1: positions renormalised and momenta projected to the tangent space after every
    step. Minimiser: one cluster. The accelerated flow is *slower* here (SPEC §5.1: a negative
    result)."""
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
        energy=lambda x: interaction_energy(x, eye)[0],
        minimum=-0.5 * math.e,
        distance=lambda x: 1 - x.mean(-2).norm(dim=-1)[0],
        constraint=_on_sphere,
    )


PROBLEMS: dict[str, Callable[..., FlowProblem]] = {
    "linear": linear_problem,
    "softmax": softmax_problem,
    "sphere": sphere_problem,
}


# ------------------------------------------------------------------------------------------
# Fair comparison at equal oracle calls


CLASSICAL = "classical"
H_GRID = (0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
THETA = 0.5
"""Rotation angle 2ξh of Tao's binding per step in the demos (the models' initial binding)."""


@dataclass(frozen=True)
class Trace:
    scheme: str
    h: float
    calls: list[int]  # oracle calls after each step (0 first)
    gap: list[float]  # energy gap after each step (inf once diverged)
    distance: list[float]

    @property
    def final_gap(self) -> float:
        return self.gap[-1]

    def calls_to(self, tol: float) -> int | None:
        """Oracle calls needed to reach gap <= tol (None if never within the budget)."""
        return next((c for c, g in zip(self.calls, self.gap, strict=True) if g <= tol), None)

    def score(self, floor: float) -> tuple[float, float]:
        """Ranking of step sizes: the final gap (at least ``floor``, so that runs in round-off tie),
        then the mean log gap over the run (faster convergence wins the tie)."""
        clipped = [max(g, floor) for g in self.gap]
        return clipped[-1], sum(math.log(g) for g in clipped) / len(clipped)


def run_trace(
    problem: FlowProblem,
    scheme: Integrator | None,
    h: float,
    calls: int,
    damping: Damping,
) -> Trace:
    """Runs ``scheme`` (None: explicit Euler of the classical gradient flow) for ``calls`` oracle
    calls from rest; a run that blows up (or whose gap grows 1e6-fold) counts as +inf from then
    on."""
    per_step = 1 if scheme is None else scheme.oracle_calls
    name = CLASSICAL if scheme is None else scheme.name
    x0 = problem.x0
    s = State(x0, torch.zeros_like(x0), torch.tensor(damping.t0, dtype=x0.dtype))
    steps = Steps(h, h, THETA / (2 * h))
    gap0 = float(problem.gap(x0))
    trace = Trace(name, h, [0], [gap0], [float(problem.distance(x0))])
    gap = dist = math.inf
    for i in range(1, calls // per_step + 1):
        if math.isfinite(gap) or i == 1:
            if scheme is None:
                s = s._replace(x=euler(lambda x: gradient_flow_velocity(problem.oracle, x), s.x, h))
            else:
                s = scheme.step(problem.oracle, s, steps, damping)
            if problem.constraint is not None:
                s = problem.constraint(s)
            gap, dist = float(problem.gap(s.x)), float(problem.distance(s.x))
            if not (math.isfinite(gap) and math.isfinite(dist) and gap <= 1e6 * (abs(gap0) + 1)):
                gap = dist = math.inf
        trace.calls.append(i * per_step)
        trace.gap.append(gap)
        trace.distance.append(dist)
    return trace


def best_trace(
    problem: FlowProblem,
    scheme: Integrator | None,
    calls: int,
    damping: Damping,
    grid: Sequence[float] = H_GRID,
) -> Trace:
    """The best run over the step grid (every method gets the same grid; see `Trace.score`)."""
    traces = [run_trace(problem, scheme, h, calls, damping) for h in grid]
    floor = 1e-13 * abs(traces[0].gap[0])
    return min(traces, key=lambda tr: tr.score(floor))
