"""Slow, explicit reference oracles: loops over j <= i straight from the equations of SPEC §6.2.

They implement the same Oracle protocol as `sympformer.dynamics` (prepare / velocity / force /
field), so tests can run the integrators, and whole models, on them and compare with the fast path.
"""

import torch


class _Reference:
    def __init__(self, fast):
        self.o = fast
        self.h = fast.n_head

    def _head(self, w, h):
        d = w.shape[0] // self.h
        return w[h * d : (h + 1) * d]

    def kernel_matrix(self, h):  # A_h = scale W_Q,h^T W_K,h, (C, C)
        return self.o.head_scale * self._head(self.o.wq, h).T @ self._head(self.o.wk, h)

    def prepare(self, x, p):
        return x if self.o.pre is None else self.o.pre(x, p)

    def field(self, k, p):
        return self.velocity(k, p), self.force(k, p)

    def _n(self, i, n_tok):
        return i + 1 if self.o.causal else n_tok

    def _keys(self, i, n_tok):
        return range(i + 1) if self.o.causal else range(n_tok)

    def _with_potential(self, g, x_hat):
        return g if self.o.potential is None else g + self.o.potential.force(x_hat)


class ReferenceSoftmaxOracle(_Reference):
    r"""F_i = B Y_i / z̄_i, G_i = (1/i) Σ_{j<=i} M_ij [½(r̄_i + r̄_j) + ν] A X_j, per head,
    summed."""

    def metric(self, h):  # B_h = W_O,h diag(d_h) W_O,h^T
        d = self.o.wo.shape[1] // self.h
        wo = self.o.wo[:, h * d : (h + 1) * d]
        dm = torch.ones(d, dtype=wo.dtype) if self.o.dm is None else self.o.dm[h * d : (h + 1) * d]
        return wo @ torch.diag(dm) @ wo.T

    def _zbar(self, xb, a):
        n_tok = xb.shape[0]
        return [
            sum(torch.exp(xb[i] @ a @ xb[j]) for j in self._keys(i, n_tok)) / self._n(i, n_tok)
            for i in range(n_tok)
        ]

    def velocity(self, x_hat, p):
        out = torch.zeros_like(p)
        for b in range(p.shape[0]):
            for h in range(self.h):
                a, bm = self.kernel_matrix(h), self.metric(h)
                z = self._zbar(x_hat[b], a)
                for i in range(p.shape[1]):
                    out[b, i] += bm @ p[b, i] / z[i]
        return out

    def force(self, x_hat, p):
        out = torch.zeros_like(p)
        n_tok = p.shape[1]
        for b in range(p.shape[0]):
            xb, yb = x_hat[b], p[b]
            for h in range(self.h):
                a, bm = self.kernel_matrix(h), self.metric(h)
                z = self._zbar(xb, a)
                r = [yb[j] @ bm @ yb[j] / z[j] ** 2 for j in range(n_tok)]
                for i in range(n_tok):
                    for j in self._keys(i, n_tok):
                        m = torch.exp(xb[i] @ a @ xb[j])
                        w = 0.5 * (r[i] + r[j]) + self.o.nu
                        out[b, i] += m * w * (a @ xb[j]) / self._n(i, n_tok)
        return self._with_potential(out, x_hat)


class ReferenceLinearOracle(_Reference):
    r"""F_i = (1/i) Σ_{j<=i} (X_i^T A^s X_j) Π Y_j,  G_i = -(1/i) Σ_{j<=i} (Y_i^T Π Y_j) A^s X_j -
    ∇W."""

    def projector(self, h):
        d = self.o.wo.shape[1] // self.h
        wo = self.o.wo[:, h * d : (h + 1) * d]
        return wo @ wo.T

    def _sym(self, h):
        a = self.kernel_matrix(h)
        return (a + a.T) / 2

    def velocity(self, x_hat, p):
        out = torch.zeros_like(p)
        n_tok = p.shape[1]
        for b in range(p.shape[0]):
            for h in range(self.h):
                a, pi = self._sym(h), self.projector(h)
                for i in range(n_tok):
                    for j in self._keys(i, n_tok):
                        kij = x_hat[b, i] @ a @ x_hat[b, j]
                        out[b, i] += kij * (pi @ p[b, j]) / self._n(i, n_tok)
        return out

    def force(self, x_hat, p):
        out = torch.zeros_like(p)
        n_tok = p.shape[1]
        for b in range(p.shape[0]):
            for h in range(self.h):
                a, pi = self._sym(h), self.projector(h)
                for i in range(n_tok):
                    for j in self._keys(i, n_tok):
                        yy = p[b, i] @ pi @ p[b, j]
                        out[b, i] -= yy * (a @ x_hat[b, j]) / self._n(i, n_tok)
        return self._with_potential(out, x_hat)


def reference_of(oracle):
    from sympformer.dynamics import LinearOracle

    cls = ReferenceLinearOracle if isinstance(oracle, LinearOracle) else ReferenceSoftmaxOracle
    return cls(oracle)
