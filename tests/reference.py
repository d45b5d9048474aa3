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

    def _head_cols(self, w, h):
        d = w.shape[1] // self.h
        return w[:, h * d : (h + 1) * d]

    def attention_field(self, x_hat, weight):
        """Γ_i = Σ_h W_out,h Σ_{j<=i} w_ij W_V,h x_j with w_ij = weight(h, scores) per head."""
        out = torch.zeros_like(x_hat)
        n_tok = x_hat.shape[1]
        for b in range(x_hat.shape[0]):
            for h in range(self.h):
                wq, wk, wv = (self._head(w, h) for w in (self.o.wq, self.o.wk, self.o.wv))
                wout = self._head_cols(self.o.wout, h)
                for i in range(n_tok):
                    keys = list(self._keys(i, n_tok))
                    s = [self.o.head_scale * (wq @ x_hat[b, i]) @ (wk @ x_hat[b, j]) for j in keys]
                    w = weight(torch.stack(s), self._n(i, n_tok))
                    for wj, j in zip(w, keys, strict=True):
                        out[b, i] += wj * (wout @ (wv @ x_hat[b, j]))
        return out

    def velocity(self, x_hat, p):
        return self.metric_velocity(x_hat, p) if self.o.mobility else p.clone()

    def force(self, x_hat, p):
        if self.o.wv is not None:
            g = self.attention_field(x_hat, self.attention_weights)
        else:
            g = self.hamiltonian_force(x_hat, p)
        return self._with_potential(g, x_hat)


class ReferenceSoftmaxOracle(_Reference):
    r"""F_i = B Y_i / z̄_i, G_i = (1/i) Σ_{j<=i} M_ij [½(r̄_i + r̄_j) + ν] A X_j, per head,
    summed (kinetic=False: r̄ = 0); mobility=False: F = Y; attention force: Σ_j softmax_j W_V x_j."""

    @staticmethod
    def attention_weights(scores, n):
        return torch.softmax(scores, 0)

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

    def metric_velocity(self, x_hat, p):
        out = torch.zeros_like(p)
        for b in range(p.shape[0]):
            for h in range(self.h):
                a, bm = self.kernel_matrix(h), self.metric(h)
                z = self._zbar(x_hat[b], a)
                for i in range(p.shape[1]):
                    out[b, i] += bm @ p[b, i] / z[i]
        return out

    def hamiltonian_force(self, x_hat, p):
        out = torch.zeros_like(p)
        n_tok = p.shape[1]
        for b in range(p.shape[0]):
            xb, yb = x_hat[b], p[b]
            for h in range(self.h):
                a = self.kernel_matrix(h)
                z = self._zbar(xb, a)
                r = [0.0] * n_tok  # kinetic=False: the potential part only
                if self.o.kinetic:
                    bm = self.metric(h)
                    r = [yb[j] @ bm @ yb[j] / z[j] ** 2 for j in range(n_tok)]
                for i in range(n_tok):
                    for j in self._keys(i, n_tok):
                        m = torch.exp(xb[i] @ a @ xb[j])
                        w = 0.5 * (r[i] + r[j]) + self.o.nu
                        out[b, i] += m * w * (a @ xb[j]) / self._n(i, n_tok)
        return out


class ReferenceLinearOracle(_Reference):
    r"""F_i = (1/i) Σ_{j<=i} (X_i^T A^s X_j) Π Y_j,  G_i = -(1/i) Σ_{j<=i} (Y_i^T Π Y_j) A^s X_j -
    ∇W (kinetic=False: -∇W); mobility=False: F = Y; attention force: (1/i) Σ_j s_ij W_V x_j."""

    @staticmethod
    def attention_weights(scores, n):
        return scores / n

    def projector(self, h):
        d = self.o.wo.shape[1] // self.h
        wo = self.o.wo[:, h * d : (h + 1) * d]
        return wo @ wo.T

    def _sym(self, h):
        a = self.kernel_matrix(h)
        return (a + a.T) / 2

    def metric_velocity(self, x_hat, p):
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

    def hamiltonian_force(self, x_hat, p):
        out = torch.zeros_like(p)
        n_tok = p.shape[1]
        if not self.o.kinetic:  # the potential part only (added by the caller)
            return out
        for b in range(p.shape[0]):
            for h in range(self.h):
                a, pi = self._sym(h), self.projector(h)
                for i in range(n_tok):
                    for j in self._keys(i, n_tok):
                        yy = p[b, i] @ pi @ p[b, j]
                        out[b, i] -= yy * (a @ x_hat[b, j]) / self._n(i, n_tok)
        return out


def reference_of(oracle):
    from sympformer.dynamics import LinearOracle

    cls = ReferenceLinearOracle if isinstance(oracle, LinearOracle) else ReferenceSoftmaxOracle
    return cls(oracle)
