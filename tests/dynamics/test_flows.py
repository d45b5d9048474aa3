"""Flows: the damped flow dissipates energy at exactly the damping's rate (SPEC §4.1); elliptical
laws stay elliptical and the particles follow the moment ODE (§4.4).

Every property that depends on the force carries negative controls: the same check on oracles
with a deliberately wrong force (`helpers.MUTATIONS`) must fail."""

import dataclasses

import pytest
import torch

from sympformer.dynamics import (
    SCHEMES,
    Damping,
    LinearOracle,
    QuadraticPotential,
    State,
    Steps,
    linear_hamiltonian,
    softmax_hamiltonian,
)
from sympformer.dynamics.flows import (
    hamiltonian_rhs,
    integrate,
    linear_moment_rhs,
    rk4_step,
)
from tests.dynamics.helpers import F64, MUTATIONS, Mutated, linear_oracle, softmax_oracle

DAMP = Damping(3.0, 1e-2)  # alpha = 3/t + 0.01
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny problems: see conftest


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


MOMENT_TOL = 1e-10
"""Particles vs moment ODE, relative (both by RK4; 2000 steps on [1, 3] agree to ~2e-14)."""


def _particles_and_moments(oracle, x0, a, v, n_steps):
    """RK4 on t in [1, 3] of the particles from rest and of the moment ODE from their empirical
    moments; returns (X_t, moments (S, C, m) at t)."""
    t, h = torch.tensor(1.0, dtype=F64), 2.0 / n_steps
    particles = (x0, torch.zeros_like(x0))
    s0, m0 = _moments(x0)
    moments = (s0, torch.zeros_like(s0), m0)  # S, C = E[y x^T] = 0, m
    f_part, f_mom = hamiltonian_rhs(oracle, DAMP), linear_moment_rhs(a, v, DAMP)
    for _ in range(n_steps):
        particles, moments, t = (
            rk4_step(f_part, particles, t, h),
            rk4_step(f_mom, moments, t, h),
            t + h,
        )
    return particles[0], moments


def _relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("dist", ["gaussian", "student"])
def test_accelerated_linear_flow_keeps_elliptical_laws_and_follows_the_moment_ode(dist):
    oracle, x0, a, v = _gaussian_setup(dist)
    xt, moments = _particles_and_moments(oracle, x0, a, v, 2000)
    s0, _ = _moments(x0)
    s_emp, m_emp = _moments(xt)
    assert _relative(s_emp, moments[0]) < MOMENT_TOL
    assert _relative(m_emp, moments[2]) < MOMENT_TOL
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
    """SPEC §4.4 item 5. Affinity comes from the form of the linear oracle (F and G linear in X
    and Y given C), which wrong scalings of the force keep, so its negative control is the causal
    prefix oracle below; the moment and energy tests catch wrong forces."""
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


@pytest.mark.parametrize("mutation", [None, *MUTATIONS])
def test_a_wrong_force_leaves_the_moment_ode(mutation):
    """Negative controls of the moment test (smaller: 150 particles, 400 steps): the moment ODE is
    derived from the right force, so particles driven by a wrong one leave it (measured 0.13 to
    0.55 relative, or not finite, against 1e-11 for the right force)."""
    oracle, x0, a, v = _gaussian_setup("gaussian", n=150)
    if mutation is not None:
        oracle = Mutated(oracle, mutation)
    xt, moments = _particles_and_moments(oracle, x0, a, v, 400)
    apart = _relative(_moments(xt)[0], moments[0])
    assert (apart < MOMENT_TOL) == (mutation is None), apart


ENERGY_TOL = 1e-8
"""Energy-rate identity along RK4, relative to |H(0)| (measured <= 5e-11)."""


def _energy_rate_defect(oracle, kind):
    r"""max over an RK4 trajectory on t in [1, 1.25] of
    :math:`|H(t)+\int_1^t2\alpha(s)K(s)\,ds-H(1)|/|H(1)|`, K = H(X, Y) - H(X, 0) the kinetic
    energy: the damped flow has :math:`\dot H=-\alpha\langle Y,\partial_YH\rangle=-2\alpha K`
    (H is quadratic in Y). The dissipation integral is a third RK4 component; H comes from
    `energies.py` (closed form, the right weights), the trajectory from ``oracle``."""
    true = oracle.oracle if isinstance(oracle, Mutated) else oracle
    hamiltonian = softmax_hamiltonian if kind == "softmax" else linear_hamiltonian
    field = hamiltonian_rhs(oracle, DAMP)

    def rhs(y, t):
        x, p, _ = y
        kinetic = hamiltonian(true, x, p) - hamiltonian(true, x, torch.zeros_like(p))
        return (*field((x, p), t), 2 * DAMP.alpha(t) * kinetic)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 6, 3, generator=g, dtype=F64)
    p = 0.5 * torch.randn(1, 6, 3, generator=g, dtype=F64)
    h0 = hamiltonian(true, x, p)
    y, t, worst = (x, p, torch.zeros_like(h0)), torch.tensor(1.0, dtype=F64), 0.0
    for _ in range(100):
        y, t = rk4_step(rhs, y, t, 2.5e-3), t + 2.5e-3
        defect = (hamiltonian(true, y[0], y[1]) + y[2] - h0).abs() / h0.abs()
        worst = max(worst, float(defect.max()))
    return worst


def _multihead(kind):
    """A general global oracle: 3 dims, 2 heads, random A_h and B_h, potential (and nu for
    softmax)."""
    torch.manual_seed(0)
    return (softmax_oracle if kind == "softmax" else linear_oracle)(c=3, n_head=2, causal=False)


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_damped_flow_dissipates_energy_at_exactly_the_damping_rate(kind):
    """dH/dt = -alpha(t) <Y, dH/dY> along the exact flow: the force is -dH/dX of the right H."""
    assert _energy_rate_defect(_multihead(kind), kind) < ENERGY_TOL


@pytest.mark.parametrize("mutation", MUTATIONS)
@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_a_wrong_force_breaks_the_energy_rate_identity(kind, mutation):
    """Negative controls: measured defects 8e-4 to 0.5 against <= 5e-11 for the right force."""
    defect = _energy_rate_defect(Mutated(_multihead(kind), mutation), kind)
    assert not defect < ENERGY_TOL, defect
