"""Small random oracles for the dynamics tests (float64, several heads)."""

import torch

from sympformer.dynamics import LinearOracle, QuadraticPotential, SoftmaxOracle

F64 = torch.float64


def sym(n: int, norm: float = 0.3) -> torch.Tensor:
    r = torch.randn(n, n, dtype=F64)
    r = (r + r.T) / 2
    return norm * r / torch.linalg.matrix_norm(r, ord=2)


def spd(n: int) -> torch.Tensor:
    r = torch.randn(n, n, dtype=F64)
    return r @ r.T / n + torch.eye(n, dtype=F64)


def heads_of_full_matrices(c: int, n_head: int):
    """wq, wk, wo, dm such that head h has a random symmetric A_h and a random SPD B_h (both C x
    C)."""
    wq = torch.cat([sym(c) for _ in range(n_head)])  # A_h = W_Q,h^T I with scale 1
    wk = torch.eye(c, dtype=F64).repeat(n_head, 1)
    eig = [torch.linalg.eigh(spd(c)) for _ in range(n_head)]
    wo = torch.cat([u for _, u in eig], dim=1)  # B_h = U_h diag(lam_h) U_h^T
    dm = torch.cat([lam for lam, _ in eig])
    return wq, wk, wo, dm


def potential(c: int) -> QuadraticPotential:
    return QuadraticPotential(spd(c), torch.randn(c, dtype=F64))


def softmax_oracle(c=5, n_head=3, causal=True, fused=True, nu=0.7, with_potential=True):
    wq, wk, wo, dm = heads_of_full_matrices(c, n_head)
    pot = potential(c) if with_potential else None
    return SoftmaxOracle(
        wq, wk, wo, n_head, dm=dm, nu=nu, scale=1.0, potential=pot, causal=causal, fused=fused
    )


def linear_oracle(c=5, n_head=3, causal=True, with_potential=True, chunk=64):
    wq, wk, wo, _ = heads_of_full_matrices(c, n_head)
    pot = QuadraticPotential(-sym(c)) if with_potential else None
    return LinearOracle(wq, wk, wo, n_head, scale=1.0, potential=pot, causal=causal, chunk=chunk)


INGREDIENTS = {
    "hamiltonian": {},
    "identity": {"mobility": False},
    "potential": {"kinetic": False},
    "identity+potential": {"mobility": False, "kinetic": False},
    "attention": {"attention": True},
    "identity+attention": {"mobility": False, "attention": True},
}
"""Oracle ingredients (ModelConfig.drift / .force) as oracle fields; "attention" adds W_V, W_out."""


def projected_oracles(kind: str, c=8, n_head=2, d=3, causal=True, ingredients="hamiltonian"):
    """Model-like oracles: random low-rank per-head projections (H*D != C), untied Q and K, with
    the given ingredients (a key of INGREDIENTS)."""
    wq, wk, wv = (torch.randn(n_head * d, c, dtype=F64) / c**0.5 for _ in range(3))
    wo, wout = (torch.randn(c, n_head * d, dtype=F64) / c**0.5 for _ in range(2))
    fields = dict(INGREDIENTS[ingredients])
    if fields.pop("attention", False):
        fields |= {"wv": wv, "wout": wout}
    if kind == "softmax":
        dm = torch.rand(n_head * d, dtype=F64) + 0.5
        return SoftmaxOracle(wq, wk, wo, n_head, dm=dm, nu=1.3, causal=causal, **fields)
    pot = QuadraticPotential(-sym(c))
    return LinearOracle(wq, wk, wo, n_head, potential=pot, causal=causal, **fields)


MUTATIONS = ("no_kinetic", "double_force", "double_velocity", "flip_kinetic", "flip_force")
"""Wrong forces for the negative controls of the flow tests: the kinetic terms of G removed (G
evaluated at p = 0, where they vanish), G doubled, F doubled, the sign of the kinetic terms of G
flipped, the sign of G flipped."""


class Mutated:
    """An oracle with a deliberately wrong velocity or force (one of `MUTATIONS`); a property that
    holds for the right force must fail for each of these."""

    def __init__(self, oracle, kind: str):
        if kind not in MUTATIONS:
            raise ValueError(f"unknown mutation {kind!r}")
        self.oracle, self.kind = oracle, kind

    def prepare(self, x, p):
        return self.oracle.prepare(x, p)

    def velocity(self, k, p):
        v = self.oracle.velocity(k, p)
        return 2 * v if self.kind == "double_velocity" else v

    def force(self, k, p):
        g = self.oracle.force(k, p)
        if self.kind in ("double_force", "flip_force"):
            return (2 if self.kind == "double_force" else -1) * g
        if self.kind in ("no_kinetic", "flip_kinetic"):
            g0 = self.oracle.force(k, torch.zeros_like(p))  # potential terms only
            return g0 if self.kind == "no_kinetic" else 2 * g0 - g
        return g

    def field(self, k, p):
        return self.velocity(k, p), self.force(k, p)
