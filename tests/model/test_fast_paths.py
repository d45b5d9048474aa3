"""Paths chosen for speed compute the same thing: both forms of causal linear attention inside whole
models, and per-block activation checkpointing (same loss, same gradients)."""

import pytest
import torch
from torch.testing import assert_close

from sympformer import build_model
from sympformer.dynamics import kernels
from sympformer.model.variant import Variant
from tests.model.configs import CONFIGS, TINY_MODEL, cfg_id

LINEAR = ["gpt_linear", "symp_linear:presymp_euler", "symp_linear:etd_ab2", "symp_linear:tao"]


def _loss_and_grads(model, idx):
    _, loss = model(idx, idx)
    return loss, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)


@pytest.mark.parametrize("label", LINEAR)
def test_quadratic_and_chunked_linear_attention_give_the_same_model(monkeypatch, label):
    """float64, a context longer than the chunk: logits, loss and every gradient agree."""
    model = build_model(Variant.parse(label).model(TINY_MODEL)).double()
    idx = torch.randint(model.cfg.vocab_size, (2, 40))
    with torch.no_grad():
        for p in model.parameters():  # away from the init, so that every term matters
            p.add_(0.05 * torch.randn_like(p))
    results = []
    for quadratic_max in (10**9, 0):
        monkeypatch.setattr(kernels, "LINEAR_QUADRATIC_MAX", quadratic_max)
        results.append((model(idx)[0], *_loss_and_grads(model, idx)))
    (logits_q, loss_q, grads_q), (logits_c, loss_c, grads_c) = results
    assert_close(logits_q, logits_c, rtol=0, atol=1e-10)
    assert_close(loss_q, loss_c, rtol=0, atol=1e-12)
    for a, b in zip(grads_q, grads_c, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("cfg", CONFIGS, ids=cfg_id)
def test_activation_checkpointing_gives_the_same_gradients(cfg):
    model = build_model(cfg).double()
    idx = torch.randint(cfg.vocab_size, (2, 24))
    loss, grads = _loss_and_grads(model, idx)
    model.activation_checkpointing = True
    loss_ckpt, grads_ckpt = _loss_and_grads(model, idx)
    assert torch.equal(loss_ckpt, loss)
    for a, b in zip(grads, grads_ckpt, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close(b, a, rtol=0, atol=1e-13)


def test_activation_checkpointing_leaves_decoding_and_evaluation_alone():
    """No recomputation without gradients (evaluation) or with a cache (decoding): the same
    logits, and the cache still fills once."""
    model = build_model(Variant.parse("symp").model(TINY_MODEL)).eval()
    idx = torch.randint(model.cfg.vocab_size, (1, 10))
    with torch.no_grad():
        plain = model(idx)[0]
        model.activation_checkpointing = True
        cache = model.new_cache()
        first = model(idx[:, :6], cache=cache)[0]
        rest = [model(idx[:, i : i + 1], cache=cache)[0] for i in range(6, 10)]
    assert cache.offset == 10
    assert_close(torch.cat([first, *rest], 1), plain, rtol=0, atol=1e-5)
