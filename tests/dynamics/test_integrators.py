"""Integrators: declared oracle calls and order, structure preservation, the SVGD identity."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from sympformer.dynamics import (
    NO_DAMPING,
    SCHEMES,
    Damping,
    State,
    Steps,
    get_scheme,
    gradient_flow_velocity,
    linear_hamiltonian,
    softmax_hamiltonian,
)
from sympformer.dynamics.flows import integrate, linear_problem, rk4, softmax_problem
from sympformer.dynamics.integrators import register
from tests.dynamics.helpers import F64, MUTATIONS, Mutated, linear_oracle, softmax_oracle

DAMP = Damping(3.0, 0.1)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: see conftest


class Counting:
    """Wraps an oracle and counts `prepare` calls (= oracle calls)."""

    def __init__(self, oracle):
        self.oracle, self.calls = oracle, 0

    def prepare(self, x, p):
        self.calls += 1
        return self.oracle.prepare(x, p)

    def __getattr__(self, name):
        return getattr(self.oracle, name)


def _start(n=6, c=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, n, c, generator=g, dtype=F64)
    p = 0.5 * torch.randn(1, n, c, generator=g, dtype=F64)
    return State(x, p, torch.tensor(1.0, dtype=F64))


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown integrator 'rk9'; choose one of"):
        get_scheme("rk9")


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_oracle_calls_per_step_are_as_declared(name):
    scheme = SCHEMES[name]
    oracle = Counting(softmax_oracle(c=3, n_head=2, causal=False))
    s = _start()
    for _ in range(3):
        before = oracle.calls
        s = scheme.step(oracle, s, Steps(0.1, 0.1, 1.0), DAMP)
        assert oracle.calls - before == scheme.oracle_calls


def _error(name, oracle, n_steps, ref):
    h = 1.0 / n_steps
    s = integrate(SCHEMES[name], oracle, _start(), Steps(h, h, 1.0), DAMP, n_steps)
    return float(torch.cat([(s.x - ref.x).flatten(), (s.p - ref.p).flatten()]).abs().max())


@pytest.mark.parametrize("kind", ["linear", "softmax"])
@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_measured_order_equals_declared_order(name, kind):
    """Fixed weights, t in [1, 2], fixed Tao binding xi = 1: log-log slope of the error vs h."""
    oracle = (linear_oracle if kind == "linear" else softmax_oracle)(c=3, n_head=2, causal=False)
    ref = rk4(oracle, _start(), DAMP, 2.0**-10, 2**10)
    steps = [2**k for k in range(4, 9)]
    errors = [_error(name, oracle, n, ref) for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope == pytest.approx(SCHEMES[name].order, abs=0.2), errors


def test_ab2_keeps_order_two_with_varying_steps():
    oracle = softmax_oracle(c=3, n_head=2, causal=False)
    ref = rk4(oracle, _start(), DAMP, 2.0**-10, 2**10)
    errors = []
    for n in (16, 32, 64, 128):
        s, h = _start(), 1.0 / n
        for i in range(n):  # steps 2h/3, 4h/3 alternating: still sums to 1
            hi = h * (2 / 3 if i % 2 == 0 else 4 / 3)
            s = SCHEMES["ab2"].step(oracle, s, Steps(hi, hi), DAMP)
        errors.append(
            float(torch.cat([(s.x - ref.x).flatten(), (s.p - ref.p).flatten()]).abs().max())
        )
    slope = -np.polyfit(np.log([16, 32, 64, 128]), np.log(errors), 1)[0]
    assert slope == pytest.approx(2.0, abs=0.2), errors


class SeparableQuadratic:
    """H = ½ pᵀMp + ½ xᵀKx: F = Mp, G = -Kx (separable, so kick-damp-drift is conformally
    symplectic)."""

    def __init__(self, c=3):
        g = torch.Generator().manual_seed(3)
        a, b = (torch.randn(c, c, generator=g, dtype=F64) for _ in range(2))
        self.m = a @ a.T + torch.eye(c, dtype=F64)
        self.k = b @ b.T + torch.eye(c, dtype=F64)

    def prepare(self, x, p):
        return x

    def velocity(self, x, p):
        return p @ self.m

    def force(self, x, p):
        return -x @ self.k

    def field(self, x, p):
        return self.velocity(x, p), self.force(x, p)


def test_kick_damp_drift_is_conformally_symplectic():
    oracle, c = SeparableQuadratic(), 3
    t0, steps = torch.tensor(1.3, dtype=F64), Steps(0.2, 0.2)

    def step(z):
        s = SCHEMES["presymp_euler"].step(oracle, State(z[:c], z[c:], t0), steps, DAMP)
        return torch.cat([s.x, s.p])

    jac = torch.func.jacrev(step)(torch.randn(2 * c, dtype=F64))
    eye, zero = torch.eye(c, dtype=F64), torch.zeros(c, c, dtype=F64)
    omega = torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)])
    assert_close(jac.T @ omega @ jac, DAMP.sigma(t0, 0.2) * omega, rtol=0, atol=1e-12)


def _small_linear_problem():
    problem = linear_problem(n=16, d=4, kappa=10.0, seed=2)
    g = torch.Generator().manual_seed(5)
    s = State(problem.x0, 0.3 * torch.randn(problem.x0.shape, generator=g, dtype=F64), None)
    return problem.oracle, s._replace(t=torch.tensor(1.0, dtype=F64))


def _balance_defect(name, oracle, h, t_end=3.0):
    r"""Discrete energy balance of ``name`` on the small linear problem from t = 1 to ``t_end``:
    :math:`|H_n-H_0+\sum_k\frac h2(D_k+D_{k+1})|/|H_0|`, :math:`D=2\alpha(t)K` the exact
    flow's dissipation rate (K = H(X, Y) - H(X, 0); trapezoid rule, second order). H from
    `energies.py` with the right weights; the steps from ``oracle``."""
    true, s = _small_linear_problem()

    def kinetic(s):
        return linear_hamiltonian(true, s.x, s.p) - linear_hamiltonian(true, s.x, 0 * s.p)

    h0, rate, dissipated = linear_hamiltonian(true, s.x, s.p), DAMP.alpha(s.t) * 2 * kinetic(s), 0
    for _ in range(round((t_end - 1.0) / h)):
        s = SCHEMES[name].step(oracle, s, Steps(h, h, 1.0), DAMP)
        new_rate = DAMP.alpha(s.t) * 2 * kinetic(s)
        dissipated, rate = dissipated + h * (rate + new_rate) / 2, new_rate
    return float(((linear_hamiltonian(true, s.x, s.p) - h0 + dissipated) / h0).abs())


def _balance_rates(name, oracle):
    """Defect ratios when h halves (0.04 -> 0.02 -> 0.01); 2^-order for a consistent force."""
    defects = [_balance_defect(name, oracle, h) for h in (0.04, 0.02, 0.01)]
    return [defects[1] / defects[0], defects[2] / defects[1]]


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_discrete_energy_balance_converges_at_the_declared_order(name):
    """Energy lost over [1, 3] = the flow's dissipation, up to O(h^order): the scheme integrates
    dH/dt = -2 alpha K of the right Hamiltonian (measured ratios within 0.03 of 2^-order)."""
    for rate in _balance_rates(name, _small_linear_problem()[0]):
        assert rate == pytest.approx(2.0 ** -SCHEMES[name].order, abs=0.06)


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("name", ["presymp_euler", "tao"])
def test_a_wrong_force_breaks_the_discrete_energy_balance(name, mutation):
    """Negative controls: with a wrong force the defect does not shrink with h (measured ratios
    0.88 to 1.3, or not finite)."""
    rates = _balance_rates(name, Mutated(_small_linear_problem()[0], mutation))
    expected = 2.0 ** -SCHEMES[name].order
    assert not all(abs(r - expected) <= 0.06 for r in rates), rates


def test_damped_hamiltonian_does_not_increase_along_presymplectic_euler():
    """A property of the scheme (dissipative for any damped H), not of the force: wrong forces
    keep it too, so the energy balance above checks the force."""
    oracle, s = _small_linear_problem()
    energy = [float(linear_hamiltonian(oracle, s.x, s.p))]
    for _ in range(300):
        s = SCHEMES["presymp_euler"].step(oracle, s, Steps(0.05, 0.05), DAMP)
        energy.append(float(linear_hamiltonian(oracle, s.x, s.p)))
    assert np.all(np.diff(energy) <= 1e-12), np.diff(energy).max()
    assert energy[-1] < 0.1 * energy[0]


def test_tao_conserves_energy_without_damping_and_dissipates_with_it():
    """Softmax mobility with a convex potential (nu = 0): H >= 0 is coercive, so orbits are bounded.
    (The undamped linear flow is not: X collapses and Y blows up, even for RK4.) A structural
    property of Tao's map; the energy balance above checks the force."""
    problem = softmax_problem(n=8, d=3, kappa=10.0, seed=2)
    oracle, g = problem.oracle, torch.Generator().manual_seed(5)
    p0 = 0.5 * torch.randn(problem.x0.shape, generator=g, dtype=F64)
    s0 = State(problem.x0, p0, torch.tensor(1.0, dtype=F64))
    h0 = float(softmax_hamiltonian(oracle, s0.x, s0.p))
    s, drift = s0, []
    for i in range(10_000):
        s = SCHEMES["tao"].step(oracle, s, Steps(0.1, 0.1, 1.0), NO_DAMPING)
        if i % 10 == 9:
            drift.append(abs(float(softmax_hamiltonian(oracle, s.x, s.p)) - h0) / h0)
    assert max(drift) < 1e-2  # bounded energy error over 10^4 steps ...
    assert max(drift[500:]) < 1.5 * max(drift[:500])  # ... and no secular drift
    s, energy = s0, [h0]
    for _ in range(300):
        s = SCHEMES["tao"].step(oracle, s, Steps(0.05, 0.05, 1.0), DAMP)
        energy.append(float(softmax_hamiltonian(oracle, s.x, s.p)))
    assert np.all(np.diff(energy) <= 1e-12)
    assert energy[-1] < 0.1 * energy[0]


def _svgd_velocity(x, a, v):
    """SVGD of the potential energy W(x) = -½ xᵀVx with kernel k(x, y) = yᵀAx, written as in the
    SVGD literature: φ(x_i) = (1/N) Σ_j k(x_j, x_i) (-∇W(x_j)); no entropy, hence no repulsive ∇k
    term."""
    n = x.shape[0]
    out = torch.zeros_like(x)
    for i in range(n):
        for j in range(n):
            out[i] += (x[i] @ a @ x[j]) * (v @ x[j]) / n
    return out


def test_linear_attention_step_is_an_svgd_step():
    oracle, s = _small_linear_problem()
    a = torch.eye(4, dtype=F64)  # the problem's kernel
    v = -oracle.potential.q
    x = s.x[0]
    svgd = _svgd_velocity(x, a, v)
    # the classical flow (a residual linear-attention layer) is the SVGD step
    assert_close(gradient_flow_velocity(oracle, s.x)[0], svgd, rtol=0, atol=1e-10)
    # one kick-damp-drift step from rest is an SVGD step of size h²σ
    h = 0.3
    rest = s._replace(p=torch.zeros_like(s.x))
    new = SCHEMES["presymp_euler"].step(oracle, rest, Steps(h, h), DAMP)
    assert_close(new.x[0], x + h * h * DAMP.sigma(s.t, h) * svgd, rtol=0, atol=1e-10)


def test_damping_factor_matches_its_closed_form():
    t, h = torch.tensor(1.7, dtype=F64), 0.4
    expected = (1.7 / 2.1) ** 3.0 * math.exp(-0.1 * 0.4)
    assert float(DAMP.sigma(t, h)) == pytest.approx(expected, rel=1e-14)
    assert float(DAMP.alpha(t)) == pytest.approx(3 / 1.7 + 0.1, rel=1e-14)
    # sigma is the exact friction: d/dh log sigma = -alpha(t + h)
    hh = torch.tensor(h, dtype=F64, requires_grad=True)
    (dlog,) = torch.autograd.grad(torch.log(DAMP.sigma(t, hh)), hh)
    assert float(dlog) == pytest.approx(-float(DAMP.alpha(t + h)), rel=1e-12)


def test_untied_oracle_change_does_not_touch_the_registry():
    scheme = get_scheme("presymp_euler")
    with pytest.raises(dataclasses.FrozenInstanceError):
        scheme.order = 3  # type: ignore[misc]
    add = register("tao", order=2, oracle_calls=4, drift_uses_kick=True, h_init=0.1)
    with pytest.raises(ValueError, match="registered twice"):
        add(lambda *a: None)


@pytest.mark.parametrize("name", ["tao", "strang"])
def test_tao_rotation_is_computed_in_the_state_dtype(name):
    """Python-float steps and binding give the float64 step of float64 tensors: an angle built as a
    float32 tensor from Python floats costs about 1e-8 relative in float64 runs."""
    oracle = softmax_oracle(c=3, n_head=2, causal=False)
    s = _start()
    floats = SCHEMES[name].step(oracle, s, Steps(0.3, 0.3, 1.7), DAMP)
    tensors = Steps(*(torch.tensor(v, dtype=F64) for v in (0.3, 0.3, 1.7)))
    exact = SCHEMES[name].step(oracle, s, tensors, DAMP)
    assert floats.x.dtype == floats.p.dtype == F64
    assert_close(floats.x, exact.x, rtol=0, atol=1e-15)
    assert_close(floats.p, exact.p, rtol=0, atol=1e-15)
