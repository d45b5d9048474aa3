"""Closed-form oracles: equal to autograd of H, to the explicit loops, causal, cache-consistent."""

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from sympformer.dynamics import Tape, kernels, linear_hamiltonian, softmax_hamiltonian
from sympformer.dynamics.kernels import attention_reference, linear_attention, softmax_attention
from tests.dynamics.helpers import (
    F64,
    INGREDIENTS,
    linear_oracle,
    projected_oracles,
    softmax_oracle,
)
from tests.reference import reference_of

EXACT = {"rtol": 0, "atol": 1e-10}


def _state(b=2, n=9, c=5):
    return torch.randn(b, n, c, dtype=F64), torch.randn(b, n, c, dtype=F64)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("n_head", [1, 3])
def test_softmax_forces_are_derivatives_of_the_hamiltonian(fused, n_head):
    oracle = softmax_oracle(n_head=n_head, causal=False, fused=fused)
    x, p = (t.requires_grad_() for t in _state())
    dx, dp = torch.autograd.grad(softmax_hamiltonian(oracle, x, p).sum(), (x, p))
    f, g = oracle.field(oracle.prepare(x, p), p)
    assert_close(f, dp, **EXACT)
    assert_close(g, -dx, **EXACT)


@pytest.mark.parametrize("n_head", [1, 3])
def test_linear_forces_are_derivatives_of_the_hamiltonian(n_head):
    oracle = linear_oracle(n_head=n_head, causal=False)
    x, p = (t.requires_grad_() for t in _state())
    dx, dp = torch.autograd.grad(linear_hamiltonian(oracle, x, p).sum(), (x, p))
    f, g = oracle.field(oracle.prepare(x, p), p)
    assert_close(f, dp, **EXACT)
    assert_close(g, -dx, **EXACT)


def test_untied_low_rank_linear_heads_are_derivatives_of_the_hamiltonian():
    oracle = projected_oracles("linear", causal=False)
    x, p = (t.requires_grad_() for t in _state(c=8))
    dx, dp = torch.autograd.grad(linear_hamiltonian(oracle, x, p).sum(), (x, p))
    f, g = oracle.field(oracle.prepare(x, p), p)
    assert_close(f, dp, **EXACT)
    assert_close(g, -dx, **EXACT)


@pytest.mark.parametrize("ingredients", sorted(INGREDIENTS))
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_fast_oracles_equal_the_explicit_loops(kind, causal, ingredients):
    oracle = projected_oracles(kind, causal=causal, ingredients=ingredients)
    x, p = _state(n=7, c=8)
    ref = reference_of(oracle)
    kern = oracle.prepare(x, p)
    f, g = oracle.field(kern, p)
    f_ref, g_ref = ref.field(ref.prepare(x, p), p)
    assert_close(f, f_ref, **EXACT)
    assert_close(g, g_ref, **EXACT)
    # field, velocity and force agree (one kernel, any order)
    assert_close(oracle.velocity(kern, p), f, **EXACT)
    assert_close(oracle.force(kern, p), g, **EXACT)


@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_each_ingredient_changes_exactly_its_term(kind):
    """drift=identity: F = Y and G unchanged; kinetic terms off: G = G(X, 0) and F unchanged; the
    attention force differs from both. Negative controls: each switch does change the field."""
    x, p = _state(n=7, c=8)
    oracles = {}
    for name in ("hamiltonian", "identity", "potential", "attention"):
        torch.manual_seed(3)  # the same weights for every variant
        oracles[name] = projected_oracles(kind, ingredients=name)
    (f, g), (fi, gi), (fp, gp), (fa, ga) = (o.field(o.prepare(x, p), p) for o in oracles.values())
    full = oracles["hamiltonian"]
    at_rest = full.force(full.prepare(x, p), torch.zeros_like(p))
    assert_close(fi, p, rtol=0, atol=0)
    assert_close(gi, g, **EXACT)
    assert_close(fp, f, **EXACT)
    assert_close(gp, at_rest, **EXACT)
    assert_close(fa, f, **EXACT)
    for a, b in ((fi, f), (gp, g), (ga, g), (ga, gp)):
        assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("ingredients", sorted(INGREDIENTS))
@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_changing_later_particles_changes_nothing_before(kind, ingredients):
    oracle = projected_oracles(kind, ingredients=ingredients)
    x, p = _state(n=12, c=8)
    cut = 5
    x2, p2 = x.clone(), p.clone()
    x2[:, cut:] = 3 * torch.randn_like(x2[:, cut:])
    p2[:, cut:] = 3 * torch.randn_like(p2[:, cut:])
    f, g = oracle.field(oracle.prepare(x, p), p)
    f2, g2 = oracle.field(oracle.prepare(x2, p2), p2)
    assert_close(f[:, :cut], f2[:, :cut], rtol=0, atol=0)
    assert_close(g[:, :cut], g2[:, :cut], rtol=0, atol=0)
    assert (g[:, cut:] - g2[:, cut:]).abs().max() > 1e-3  # the perturbation did reach later tokens


def test_causal_linear_oracle_is_the_exact_force_on_the_last_token_of_each_prefix():
    oracle = projected_oracles("linear")
    glob = dataclasses.replace(oracle, causal=False)
    x, p = _state(n=8, c=8)
    f, g = oracle.field(oracle.prepare(x, p), p)
    for i in (0, 3, 7):
        xi, pi = x[:, : i + 1], p[:, : i + 1]
        fg, gg = glob.field(glob.prepare(xi, pi), pi)
        assert_close(f[:, i], fg[:, -1], **EXACT)
        assert_close(g[:, i], gg[:, -1], **EXACT)


@pytest.mark.parametrize("ingredients", sorted(INGREDIENTS))
@pytest.mark.parametrize("kind", ["softmax", "linear"])
def test_token_by_token_with_a_tape_equals_the_full_prefix(kind, ingredients):
    oracle = projected_oracles(kind, ingredients=ingredients)
    x, p = _state(n=10, c=8)
    f, g = oracle.field(oracle.prepare(x, p), p)
    tape = Tape(capacity=10)
    cached = dataclasses.replace(oracle, tape=tape)
    prefill = 6
    chunks = [(0, prefill)] + [(i, i + 1) for i in range(prefill, 10)]
    for lo, hi in chunks:
        tape.rewind()
        fc, gc = cached.field(cached.prepare(x[:, lo:hi], p[:, lo:hi]), p[:, lo:hi])
        tape.advance(hi - lo)
        assert_close(fc, f[:, lo:hi], **EXACT)
        assert_close(gc, g[:, lo:hi], **EXACT)


@pytest.mark.parametrize(("n_q", "causal"), [(11, True), (1, True), (11, False), (4, True)])
def test_fused_attention_with_lse_equals_the_reference_in_values_and_gradients(n_q, causal):
    q = torch.randn(2, 3, n_q, 4, dtype=F64, requires_grad=True)
    k, v = (torch.randn(2, 3, 11, 4, dtype=F64, requires_grad=True) for _ in range(2))
    out, lse = softmax_attention(q, k, v, 0.7, causal, need_lse=True)
    ref_out, ref_lse = attention_reference(q, k, v, 0.7, causal and n_q > 1)
    assert_close(out, ref_out, **EXACT)
    assert_close(lse, ref_lse, **EXACT)
    w1, w2 = torch.randn_like(out), torch.randn_like(lse)
    grads = torch.autograd.grad((out * w1).sum() + (lse * w2).sum(), (q, k, v))
    ref = torch.autograd.grad((ref_out * w1).sum() + (ref_lse * w2).sum(), (q, k, v))
    for a, b in zip(grads, ref, strict=True):
        assert_close(a, b, **EXACT)


@pytest.mark.parametrize("n", [1, 7, 64, 65, 150])
def test_chunked_linear_attention_equals_the_masked_quadratic_form(n):
    q, k = (torch.randn(2, 3, n, 4, dtype=F64) for _ in range(2))
    v = torch.randn(2, 3, n, 5, dtype=F64)
    ref = (q @ k.mT).tril() @ v
    assert_close(linear_attention(q, k, v, chunk=16), ref, **EXACT)
    tape = Tape(capacity=n)
    half = n // 2
    first = linear_attention(q[..., :half, :], k[..., :half, :], v[..., :half, :], tape=tape)
    tape.rewind()
    second = linear_attention(q[..., half:, :], k[..., half:, :], v[..., half:, :], tape=tape)
    assert_close(torch.cat([first, second], -2), ref, **EXACT)


def _loop_linear_attention(q, k, v, mean, scale):
    """out_i = scale w_i Σ_{j<=i} (q_i·k_j) v_j with w_i = 1/i (mean) or 1, by an explicit loop."""
    out = torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for i in range(q.shape[-2]):
        w = scale / (i + 1) if mean else scale
        out[..., i, :] = w * torch.einsum("...d,...jd,...je->...e", q[..., i, :],
                                          k[..., : i + 1, :], v[..., : i + 1, :])  # fmt: skip
    return out


@pytest.mark.parametrize("n", [1, 7, 33, 64, 65, 150])
@pytest.mark.parametrize(("mean", "scale"), [(False, 1.0), (True, 0.3)])
@pytest.mark.parametrize("quadratic_max", [0, 10**9], ids=["chunked", "quadratic"])
def test_both_linear_attention_forms_equal_the_loop_with_and_without_a_tape(
    n, mean, scale, quadratic_max
):
    q, k = (torch.randn(2, 3, n, 4, dtype=F64) for _ in range(2))
    v = torch.randn(2, 3, n, 5, dtype=F64)
    ref = _loop_linear_attention(q, k, v, mean, scale)
    form = {"chunk": 16, "mean": mean, "scale": scale, "quadratic_max": quadratic_max}
    assert_close(linear_attention(q, k, v, **form), ref, **EXACT)
    tape = Tape(capacity=n)
    cuts = [0, n // 2, *range(n // 2 + 1, n + 1)]  # a prefill, then one token at a time
    parts = []
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        tape.rewind()
        qs, ks, vs = (a[..., lo:hi, :] for a in (q, k, v))
        parts.append(linear_attention(qs, ks, vs, tape=tape, **form))
        tape.advance(hi - lo)
    assert_close(torch.cat(parts, -2), ref, **EXACT)


@pytest.mark.parametrize("ingredients", sorted(INGREDIENTS))
def test_the_chunked_linear_oracle_equals_the_explicit_loops(monkeypatch, ingredients):
    """The oracle tests above run the quadratic form (short sequences); this forces the chunks."""
    monkeypatch.setattr(kernels, "LINEAR_QUADRATIC_MAX", 0)
    oracle = dataclasses.replace(projected_oracles("linear", ingredients=ingredients), chunk=4)
    x, p = _state(n=11, c=8)
    ref = reference_of(oracle)
    f, g = oracle.field(oracle.prepare(x, p), p)
    f_ref, g_ref = ref.field(ref.prepare(x, p), p)
    assert_close(f, f_ref, **EXACT)
    assert_close(g, g_ref, **EXACT)
    tape = Tape(capacity=11)
    cached = dataclasses.replace(oracle, tape=tape)
    for lo, hi in [(0, 6)] + [(i, i + 1) for i in range(6, 11)]:
        tape.rewind()
        fc, gc = cached.field(cached.prepare(x[:, lo:hi], p[:, lo:hi]), p[:, lo:hi])
        tape.advance(hi - lo)
        assert_close(fc, f[:, lo:hi], **EXACT)
        assert_close(gc, g[:, lo:hi], **EXACT)
