"""Flows: elliptical laws stay elliptical (SPEC §4.4); acceleration beats the classical flow
(§5.1)."""

import dataclasses

import pytest
import torch

from sympformer.dynamics import SCHEMES, Damping, LinearOracle, QuadraticPotential, State, Steps
from sympformer.dynamics.flows import (
    PROBLEMS,
    best_trace,
    hamiltonian_rhs,
    integrate,
    linear_moment_rhs,
    rk4_step,
)
from tests.dynamics.helpers import F64

DAMP = Damping(3.0, 1e-2)  # alpha = 3/t + 0.01


def _gaussian_setup(dist: str, n=3000, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(d, d, generator=g, dtype=F64)
    a = 0.3 * r @ r.T / torch.linalg.matrix_norm(r @ r.T, ord=2)  # symmetric PSD kernel, |A| = 0.3
    w = torch.randn(d, d, generator=g, dtype=F64) / d
    v = -(torch.eye(d, dtype=F64) + w @ w.T)
    mean = torch.randn(d, generator=g, dtype=F64)
    chol = torch.linalg.cholesky(torch.eye(d, dtype=F64) + 0.5 * w @ w.T)
    z = torch.randn(n, d, generator=g, dtype=F64)
    if dist == "student":  # multivariate t, 5 degrees of freedom: an elliptical, non-Gaussian law
        chi2 = torch.distributions.Chi2(5.0).sample((n, 1)).to(F64)
        z = z / torch.sqrt(chi2 / 5.0)
    x0 = (mean + z @ chol.T)[None]  # (1, N, d)
    eye = torch.eye(d, dtype=F64)
    oracle = LinearOracle(a, eye, eye, 1, scale=1.0, potential=QuadraticPotential(-v), causal=False)
    return oracle, x0, a, v


def _moments(x):
    x = x[0]
    return x.T @ x / x.shape[0], x.mean(0)


def _affine_residual(x0, xt):
    """Relative residual of the least-squares fit x_t ≈ Q x_0 + q over all particles."""
    design = torch.cat([x0[0], torch.ones(x0.shape[1], 1, dtype=F64)], 1)
    beta = torch.linalg.lstsq(design, xt[0]).solution
    return float((design @ beta - xt[0]).norm() / xt[0].norm())


def _mahalanobis(x):
    x = x[0] - x[0].mean(0)
    cov = x.T @ x / x.shape[0]
    return (x @ torch.linalg.inv(cov) * x).sum(-1)


def _mardia(x):
    """Mardia's multivariate skewness and kurtosis: affine-invariant standardised 3rd/4th
    cumulants."""
    x = x[0] - x[0].mean(0)
    n = x.shape[0]
    g = x @ torch.linalg.inv(x.T @ x / n) @ x.T  # (N, N)
    return float((g**3).sum() / n**2), float((g.diagonal() ** 2).mean())


@pytest.mark.parametrize("dist", ["gaussian", "student"])
def test_accelerated_linear_flow_keeps_elliptical_laws_and_follows_the_moment_ode(dist):
    oracle, x0, a, v = _gaussian_setup(dist)
    t, h = torch.tensor(1.0, dtype=F64), 2.0 / 2000
    particles = (x0, torch.zeros_like(x0))
    s0, m0 = _moments(x0)
    moments = (s0, torch.zeros_like(s0), m0)  # S, C = E[y x^T] = 0, m
    f_part, f_mom = hamiltonian_rhs(oracle, DAMP), linear_moment_rhs(a, v, DAMP)
    for _ in range(2000):  # t from 1 to 3
        particles, moments, t = (
            rk4_step(f_part, particles, t, h),
            rk4_step(f_mom, moments, t, h),
            t + h,
        )
    xt = particles[0]
    s_emp, m_emp = _moments(xt)
    assert float((s_emp - moments[0]).norm() / moments[0].norm()) < 1e-10
    assert float((m_emp - moments[2]).norm() / moments[2].norm()) < 1e-10
    assert float(moments[0].norm()) < 0.5 * float(s0.norm())  # the flow did move the cloud
    assert _affine_residual(x0, xt) < 1e-10
    torch.testing.assert_close(_mahalanobis(xt), _mahalanobis(x0), rtol=0, atol=1e-8)
    skew0, kurt0 = _mardia(x0)
    skew, kurt = _mardia(xt)
    assert skew == pytest.approx(skew0, rel=1e-8)
    assert kurt == pytest.approx(kurt0, rel=1e-8)
    if dist == "gaussian":  # ... and they sit at the Gaussian sampling level: 0 and d(d+2) = 24
        assert skew < 0.05
        assert kurt == pytest.approx(24.0, abs=1.0)


@pytest.mark.parametrize("name", sorted(SCHEMES))
def test_every_scheme_step_is_an_affine_map_of_the_particles(name):
    oracle, x0, _, _ = _gaussian_setup("student", n=500)
    s = State(x0, torch.zeros_like(x0), torch.tensor(1.0, dtype=F64))
    s = integrate(SCHEMES[name], oracle, s, Steps(0.2, 0.2, 1.0), DAMP, 6)
    assert _affine_residual(x0, s.x) < 1e-12


def test_causal_prefix_oracle_breaks_the_affine_structure():
    """Negative control documenting the theorem's scope: each token has its own C_i."""
    oracle, x0, _, _ = _gaussian_setup("gaussian", n=500)
    causal = dataclasses.replace(oracle, causal=True)
    s = State(x0, torch.zeros_like(x0), torch.tensor(1.0, dtype=F64))
    s = integrate(SCHEMES["presymp_euler"], causal, s, Steps(0.2, 0.2), DAMP, 6)
    assert _affine_residual(x0, s.x) > 1e-4


@pytest.mark.parametrize("kernel", ["linear", "softmax"])
def test_accelerated_flow_needs_fewer_oracle_calls_than_the_classical_flow(kernel):
    """The paper's claim on the demo problems, with the best h of the same grid for each method."""
    problem, damping = PROBLEMS[kernel](), Damping(3.0, 0.0)
    calls = 400 if kernel == "linear" else 300
    tol = 1e-2 * float(problem.gap(problem.x0))
    classical = best_trace(problem, None, calls, damping)
    accelerated = best_trace(problem, SCHEMES["presymp_euler"], calls, damping)
    assert classical.calls_to(tol) is not None
    assert accelerated.calls_to(tol) < classical.calls_to(tol)
